"""ImageNet-shaped CNNs written here (torchvision is not usable beside the CPU torch build).

ResNet-50 (bottleneck blocks [3, 4, 6, 3], 1000 classes) and MobileNetV2
(inverted residuals with depthwise convs, ReLU6, width 1.0), both for
1x3x224x224 inputs. Weights are random (seeded by the caller);
`randomize_bn_affine` gives every BatchNorm its own random scale and shift (as
a trained network has; identical ones would also be deduplicated by the
exporter into Identity nodes), `reestimate_bn` then sets every BatchNorm's
running statistics from data so that activations stay well scaled through the
depth of the network, and `standardize_head` re-centres and re-scales the
classifier so that the logits vary with the image instead of being dominated
by one class for every input.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.bn3.residual_branch_end = True
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + idt)


class ResNet50(nn.Module):
    def __init__(self, classes: int = 1000, layers=(3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        stages = []
        for i, (n, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    mods = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        mods.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*mods)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        mods = []
        if expand != 1:
            mods.append(_conv_bn(cin, hidden, 1))
        mods += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, cout, 1, act=False)]
        self.conv = nn.Sequential(*mods)
        self.use_res = stride == 1 and cin == cout
        if self.use_res:
            mods[-1][1].residual_branch_end = True

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    # (expansion t, channels c, repeats n, first stride s), as in the MobileNetV2 paper
    CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, classes: int = 1000):
        super().__init__()
        layers = [_conv_bn(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in self.CONFIG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(1280, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.classifier(self.dropout(x))


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Callable[[int], torch.Tensor], n_batches: int) -> None:
    """Reset every BatchNorm's running stats and re-estimate them (cumulative
    average over `n_batches` batches from `batches(i)`) in train mode; leaves
    the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for i in range(n_batches):
        model(batches(i))
    model.eval()
    for bn in bns:
        bn.momentum = 0.1


@torch.no_grad()
def randomize_bn_affine(model: nn.Module, gen: torch.Generator, scale=(0.7, 1.3), shift_std: float = 0.1,
                        residual_scale=(0.1, 0.4)) -> None:
    """Random BatchNorm scales and shifts. The BatchNorm that ends a residual
    branch gets a small scale (`residual_scale`), as in trained ResNets and
    MobileNets: each block then adds a modest change to the identity path
    instead of drowning it, and the final features still depend on the image."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            rng = residual_scale if getattr(m, "residual_branch_end", False) else scale
            m.weight.copy_(torch.empty_like(m.weight).uniform_(*rng, generator=gen))
            m.bias.copy_(torch.empty_like(m.bias).normal_(0.0, shift_std, generator=gen))


@torch.no_grad()
def standardize_head(model: nn.Module, head: nn.Linear, batches: Callable[[int], torch.Tensor], n_batches: int,
                     logit_std: float = 2.0) -> None:
    """Re-centre the head on its input features' mean over `n_batches` batches
    (eval mode): bias = -W @ mean, so no class wins for every image; then scale
    it so the logits have standard deviation `logit_std` over those batches.
    (Dividing each feature by its own std as well would blow up the weights of
    near-constant features and make the head unrealistically fragile.)"""
    feats = []
    hook = head.register_forward_hook(lambda mod, inp, out: feats.append(inp[0].detach().clone()))
    model.eval()
    for i in range(n_batches):
        model(batches(i))
    hook.remove()
    f = torch.cat(feats)
    w = head.weight.clone()
    b = -(w @ f.mean(0))
    k = logit_std / float((f @ w.T + b).std())
    head.weight.copy_(w * k)
    head.bias.copy_(b * k)
