"""Small ONNX models for tests, built with onnx.helper (shared by every test folder).

Every builder returns a checked ``onnx.ModelProto``: opset 17 (IR 8) unless
said, float32, weights drawn from ``numpy.random.default_rng(seed)`` so the
same call gives the same bytes. Shapes are realistic but tiny (1x3x16x16
images, hidden size 16). Node names are meaningful (``conv1``, ``bn1``) so
tests and golden plans can refer to them.

Use ``random_inputs(model, n, seed)`` to get feeds for onnxruntime.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; onnxruntime loads it everywhere
# Sizes used for symbolic dims by random_inputs unless told otherwise.
DEFAULT_DIMS = {"batch": 2, "seq": 8}


class GraphBuilder:
    """Collects nodes and initializers; helpers return the name of the value they produce.

    Args:
        seed: seed of the weight generator.
    """

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    # -- values ------------------------------------------------------------------------------

    def const(self, name: str, value: np.ndarray) -> str:
        """Add an initializer and return its name."""
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, name: str, shape: Sequence[int], fan_in: int | None = None) -> str:
        """A float32 initializer with He-style scaling, so activations stay O(1) through deep stacks."""
        fan_in = fan_in or int(np.prod(shape[1:])) or 1
        w = self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        return self.const(name, w.astype(np.float32))

    def node(self, op: str, inputs: Sequence[str], name: str, n_out: int = 1, **attrs: object) -> str:
        """Add a node named ``name`` whose outputs are ``name`` (and ``name:1``, ...); return the first."""
        outputs = [name] + [f"{name}:{k}" for k in range(1, n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outputs, name=name, **attrs))
        return name

    # -- layers --------------------------------------------------------------------------------

    def conv(self, x: str, name: str, cin: int, cout: int, k: int = 3, stride: int = 1,
             group: int = 1, bias: bool = True) -> str:
        w = self.weight(f"{name}.weight", (cout, cin // group, k, k))
        ins = [x, w]
        if bias:
            ins.append(self.const(f"{name}.bias", (self.rng.standard_normal(cout) * 0.1).astype(np.float32)))
        pad = k // 2
        return self.node("Conv", ins, name, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad, pad, pad, pad], group=group)

    def bn(self, x: str, name: str, c: int) -> str:
        r = self.rng
        params = [
            self.const(f"{name}.scale", r.uniform(0.5, 1.5, c).astype(np.float32)),
            self.const(f"{name}.bias", (r.standard_normal(c) * 0.1).astype(np.float32)),
            self.const(f"{name}.mean", (r.standard_normal(c) * 0.1).astype(np.float32)),
            self.const(f"{name}.var", r.uniform(0.5, 1.5, c).astype(np.float32)),
        ]
        return self.node("BatchNormalization", [x, *params], name, epsilon=1e-5)

    def linear(self, x: str, name: str, n_in: int, n_out: int) -> str:
        """MatMul by a constant [n_in, n_out] weight, then Add of a bias (as PyTorch exports Linear on 3-D input)."""
        w = self.weight(f"{name}.weight", (n_in, n_out), fan_in=n_in)
        mm = self.node("MatMul", [x, w], f"{name}_matmul")
        b = self.const(f"{name}.bias", (self.rng.standard_normal(n_out) * 0.1).astype(np.float32))
        return self.node("Add", [mm, b], f"{name}_add")

    def model(self, inputs: Sequence[onnx.ValueInfoProto], outputs: Sequence[onnx.ValueInfoProto],
              name: str, opset: int = OPSET) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, list(inputs), list(outputs), self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="rewriter-tests", ir_version=IR_VERSION)
        onnx.checker.check_model(m, full_check=True)
        return m


def _f32(name: str, shape: Sequence[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


# --- CNN blocks ---------------------------------------------------------------------------------


def conv_bn_relu_chain(seed: int = 0) -> onnx.ModelProto:
    """Two Conv-BN-Relu stages; conv2 has no bias (BN folding must add one).

    input [1, 3, 16, 16] -> conv1 (3->8, 3x3) -> bn1 -> relu1
    -> conv2 (8->8, 3x3, no bias) -> bn2 -> relu2 -> output [1, 8, 16, 16]
    """
    b = GraphBuilder(seed)
    x = b.conv("input", "conv1", 3, 8)
    x = b.node("Relu", [b.bn(x, "bn1", 8)], "relu1")
    x = b.conv(x, "conv2", 8, 8, bias=False)
    b.node("Relu", [b.bn(x, "bn2", 8)], "output")
    return b.model([_f32("input", [1, 3, 16, 16])], [_f32("output", [1, 8, 16, 16])], "conv_bn_relu_chain")


def residual_block(seed: int = 0) -> onnx.ModelProto:
    """A ResNet basic block.

    input [1, 8, 16, 16] -> conv1 -> bn1 -> relu1 -> conv2 -> bn2 -> add(+input) -> output (Relu) [1, 8, 16, 16]
    """
    b = GraphBuilder(seed)
    x = b.node("Relu", [b.bn(b.conv("input", "conv1", 8, 8), "bn1", 8)], "relu1")
    x = b.bn(b.conv(x, "conv2", 8, 8), "bn2", 8)
    x = b.node("Add", [x, "input"], "add")
    b.node("Relu", [x], "output")
    return b.model([_f32("input", [1, 8, 16, 16])], [_f32("output", [1, 8, 16, 16])], "residual_block")


def concat_two_branches(seed: int = 0) -> onnx.ModelProto:
    """Two Conv branches joined by Concat, then a 1x1 Conv.

    input [1, 3, 16, 16] -> conv_a (3->4, 1x1) -> relu_a ┐
                         -> conv_b (3->4, 3x3) -> relu_b ┴> concat (axis 1)
    concat -> conv_out (8->8, 1x1) -> output [1, 8, 16, 16]
    """
    b = GraphBuilder(seed)
    a = b.node("Relu", [b.conv("input", "conv_a", 3, 4, k=1)], "relu_a")
    c = b.node("Relu", [b.conv("input", "conv_b", 3, 4, k=3)], "relu_b")
    x = b.node("Concat", [a, c], "concat", axis=1)
    b.conv(x, "output", 8, 8, k=1)
    return b.model([_f32("input", [1, 3, 16, 16])], [_f32("output", [1, 8, 16, 16])], "concat_two_branches")


def squeeze_excitation(seed: int = 0, pool: str = "global_average") -> onnx.ModelProto:
    """A squeeze-and-excitation block, as in MobileNetV3 and EfficientNet.

    input [1, 8, 16, 16] -> conv_trunk (8->8, 3x3) -> relu_trunk -> pool -> se_reduce (8->4, 1x1)
    -> se_relu -> se_expand (4->8, 1x1) -> se_sigmoid -> scale (Mul with relu_trunk) -> output [1, 8, 16, 16]

    Args:
        seed: weight seed.
        pool: "global_average" (GlobalAveragePool) or "reduce_mean" (ReduceMean over H, W,
            keepdims, as PyTorch exports ``x.mean((2, 3), keepdim=True)``).
    """
    b = GraphBuilder(seed)
    trunk = b.node("Relu", [b.conv("input", "conv_trunk", 8, 8)], "relu_trunk")
    if pool == "reduce_mean":
        s = b.node("ReduceMean", [trunk], "pool", axes=[2, 3], keepdims=1)
    elif pool == "global_average":
        s = b.node("GlobalAveragePool", [trunk], "pool")
    else:
        raise ValueError(f"pool must be 'global_average' or 'reduce_mean', not {pool!r}")
    s = b.node("Relu", [b.conv(s, "se_reduce", 8, 4, k=1)], "se_relu")
    s = b.node("Sigmoid", [b.conv(s, "se_expand", 4, 8, k=1)], "se_sigmoid")
    b.node("Mul", [trunk, s], "output")
    return b.model([_f32("input", [1, 8, 16, 16])], [_f32("output", [1, 8, 16, 16])], "squeeze_excitation")


def depthwise_conv(seed: int = 0) -> onnx.ModelProto:
    """A MobileNet block: depthwise 3x3 then pointwise 1x1, each with BN and Relu.

    input [1, 8, 16, 16] -> dw_conv (group 8, 3x3) -> dw_bn -> dw_relu
    -> pw_conv (8->16, 1x1) -> pw_bn -> output (Relu) [1, 16, 16, 16]
    """
    b = GraphBuilder(seed)
    x = b.node("Relu", [b.bn(b.conv("input", "dw_conv", 8, 8, group=8), "dw_bn", 8)], "dw_relu")
    x = b.bn(b.conv(x, "pw_conv", 8, 16, k=1), "pw_bn", 16)
    b.node("Relu", [x], "output")
    return b.model([_f32("input", [1, 8, 16, 16])], [_f32("output", [1, 16, 16, 16])], "depthwise_conv")


def depthwise_after_conv(seed: int = 0) -> onnx.ModelProto:
    """A text recognizer's block as paddle2onnx exports it (opset 12): a depthwise Conv reading a Conv directly.

    input [1, 3, 16, 16] -> conv1 (3->8, 3x3) -> bn1 -> dw_conv (group 8, 3x3, no bias)
    -> pw_conv (8->8, 1x1) -> pw_relu -> pool (AveragePool 2x2) -> output (Conv 8->4, 1x1) [1, 4, 8, 8]

    Targets that quantize a depthwise Conv's input per channel put that quantizer on conv1's output, and
    the bias-less dw_conv runs as an integer kernel; the AveragePool's input is per channel on VPU.
    """
    b = GraphBuilder(seed)
    x = b.bn(b.conv("input", "conv1", 3, 8), "bn1", 8)
    x = b.conv(x, "dw_conv", 8, 8, group=8, bias=False)
    x = b.node("Relu", [b.conv(x, "pw_conv", 8, 8, k=1)], "pw_relu")
    x = b.node("AveragePool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    b.conv(x, "output", 8, 4, k=1)
    return b.model([_f32("input", [1, 3, 16, 16])], [_f32("output", [1, 4, 8, 8])], "depthwise_after_conv",
                   opset=12)


def conv_silu_head(seed: int = 0) -> onnx.ModelProto:
    """A detector's layers: a Conv into a SiLU (x * sigmoid(x)), a Conv into a Relu, and a head Conv into a Sigmoid.

    input [1, 3, 16, 16] -> conv0 (3->8) -> sig0, silu0 = conv0 * sig0 -> conv1 (8->8) -> relu1
    -> head (8->4, 1x1) -> output (Sigmoid) [1, 4, 16, 16]
    """
    b = GraphBuilder(seed)
    x = b.conv("input", "conv0", 3, 8)
    x = b.node("Mul", [x, b.node("Sigmoid", [x], "sig0")], "silu0")
    x = b.node("Relu", [b.conv(x, "conv1", 8, 8)], "relu1")
    b.node("Sigmoid", [b.conv(x, "head", 8, 4, k=1)], "output")
    return b.model([_f32("input", [1, 3, 16, 16])], [_f32("output", [1, 4, 16, 16])], "conv_silu_head")


def conv_sliced_bias(seed: int = 0) -> onnx.ModelProto:
    """A 1-D convolution as JAX/TF exports it: Unsqueeze to 2-D, Conv without bias, Squeeze, then Add(bias).

    input [1, 8, 32] -> lift (Unsqueeze axis 2) -> conv (8->16, 1x5, no bias) -> drop (Squeeze axis 2)
    -> bias (Add const) -> act (Tanh) -> output [1, 16, 32]
    """
    b = GraphBuilder(seed)
    x = b.node("Unsqueeze", ["input", b.const("lift.axes", np.array([2], np.int64))], "lift")
    w = b.weight("conv.weight", (16, 8, 1, 5))
    x = b.node("Conv", [x, w], "conv", kernel_shape=[1, 5], pads=[0, 2, 0, 2])
    x = b.node("Squeeze", [x, b.const("drop.axes", np.array([2], np.int64))], "drop")
    x = b.node("Add", [x, b.const("bias.value", (b.rng.standard_normal((16, 1)) * 0.1).astype(np.float32))], "bias")
    b.node("Tanh", [x], "output")
    return b.model([_f32("input", [1, 8, 32])], [_f32("output", [1, 16, 32])], "conv_sliced_bias")


def constant_node_weights(seed: int = 0) -> onnx.ModelProto:
    """A Conv whose weight and bias come from Constant nodes (as paddle2onnx exports them).

    input [1, 3, 16, 16] -> conv (3->8, 3x3; weight = Constant conv.weight, bias = Constant conv.bias)
    -> output (Relu) [1, 8, 16, 16]
    """
    b = GraphBuilder(seed)
    w = (b.rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    bias = (b.rng.standard_normal(8) * 0.1).astype(np.float32)
    for name, value in (("conv.weight", w), ("conv.bias", bias)):
        b.nodes.append(helper.make_node("Constant", [], [name], name=f"{name}_const",
                                        value=numpy_helper.from_array(value, name)))
    b.node("Conv", ["input", "conv.weight", "conv.bias"], "conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.node("Relu", ["conv"], "output")
    return b.model([_f32("input", [1, 3, 16, 16])], [_f32("output", [1, 8, 16, 16])], "constant_node_weights")


def tiny_cnn(seed: int = 0) -> onnx.ModelProto:
    """The bundled example: a small image classifier touching the common CNN patterns.

    input [1, 3, 32, 32]
    -> stem_conv (3->8, 3x3) -> stem_bn -> stem_relu
    -> res_conv1 -> res_bn1 -> res_relu1 -> res_conv2 -> res_bn2 -> res_add (+stem_relu) -> res_relu
    -> pool (MaxPool 2x2) -> [branch_a (8->8, 1x1) -> relu_a, branch_b (8->8, 3x3) -> relu_b] -> concat
    -> gap (GlobalAveragePool) -> flatten -> classifier (Gemm 16->10, transB) -> output [1, 10]
    """
    b = GraphBuilder(seed)
    x = b.node("Relu", [b.bn(b.conv("input", "stem_conv", 3, 8), "stem_bn", 8)], "stem_relu")
    r = b.node("Relu", [b.bn(b.conv(x, "res_conv1", 8, 8), "res_bn1", 8)], "res_relu1")
    r = b.bn(b.conv(r, "res_conv2", 8, 8), "res_bn2", 8)
    x = b.node("Relu", [b.node("Add", [r, x], "res_add")], "res_relu")
    x = b.node("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    a = b.node("Relu", [b.conv(x, "branch_a", 8, 8, k=1)], "relu_a")
    c = b.node("Relu", [b.conv(x, "branch_b", 8, 8, k=3)], "relu_b")
    x = b.node("Concat", [a, c], "concat", axis=1)
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x], "gap")], "flatten", axis=1)
    w = b.weight("classifier.weight", (10, 16))
    bias = b.const("classifier.bias", np.zeros(10, np.float32))
    b.node("Gemm", [x, w, bias], "output", transB=1)
    return b.model([_f32("input", [1, 3, 32, 32])], [_f32("output", [1, 10])], "tiny_cnn")


# --- MatMul models ------------------------------------------------------------------------------


def matmul_const_weights(seed: int = 0) -> onnx.ModelProto:
    """A Linear layer on a sequence: MatMul by a constant weight, Add bias, Relu.

    input [1, 8, 16] -> fc_matmul (weight fc.weight [16, 32]) -> fc_add (fc.bias [32]) -> output (Relu) [1, 8, 32]
    """
    b = GraphBuilder(seed)
    x = b.linear("input", "fc", 16, 32)
    b.node("Relu", [x], "output")
    return b.model([_f32("input", [1, 8, 16])], [_f32("output", [1, 8, 32])], "matmul_const_weights")


def matmul_two_activations(seed: int = 0) -> onnx.ModelProto:
    """A MatMul of two activations (no constant weight), as in attention scores.

    a [1, 8, 16], b [1, 8, 16] -> b_t (Transpose 0,2,1) -> output (MatMul a . b_t) [1, 8, 8]
    """
    b = GraphBuilder(seed)
    bt = b.node("Transpose", ["b"], "b_t", perm=[0, 2, 1])
    b.node("MatMul", ["a", bt], "output")
    return b.model([_f32("a", [1, 8, 16]), _f32("b", [1, 8, 16])], [_f32("output", [1, 8, 8])],
                   "matmul_two_activations")


def attention_block(seed: int = 0, dynamic: bool = False, hidden: int = 16, heads: int = 2) -> onnx.ModelProto:
    """A post-norm transformer encoder layer (BERT style), written out in elementary ops.

    input [1, 8, 16] (or ["batch", "seq", 16] if ``dynamic``)
    -> q/k/v (MatMul + Add bias) -> heads: Reshape to [B, S, heads, d] by a shape computed
       as PyTorch exports it (Shape -> Gather -> Unsqueeze -> Concat) -> Transpose
    -> scores (MatMul q . kT) -> scale (Div by sqrt(d)) -> softmax -> context (MatMul with v)
    -> Transpose -> Reshape [B, S, hidden] -> out (MatMul + Add) -> residual1 (Add input)
    -> ln1 (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div, Mul gamma, Add beta)
    -> ffn_in (MatMul + Add, 16->32) -> GELU (Div sqrt2, Erf, Add 1, Mul x, Mul 0.5)
    -> ffn_out (MatMul + Add, 32->16) -> residual2 (Add ln1) -> ln2 -> output (same shape as input)

    With ``dynamic=False`` every shape is static and normalization folds the shape
    arithmetic into constants; with ``dynamic=True`` batch and sequence are symbolic.
    """
    b = GraphBuilder(seed)
    d = hidden // heads
    shape = ["batch", "seq", hidden] if dynamic else [1, 8, hidden]
    q, k, v = (b.linear("input", n, hidden, hidden) for n in ("q", "k", "v"))
    heads_shape = _split_heads_shape(b, "input", heads, d)
    qh = b.node("Transpose", [b.node("Reshape", [q, heads_shape], "q_reshape")], "q_heads", perm=[0, 2, 1, 3])
    kt = b.node("Transpose", [b.node("Reshape", [k, heads_shape], "k_reshape")], "k_heads_t", perm=[0, 2, 3, 1])
    vh = b.node("Transpose", [b.node("Reshape", [v, heads_shape], "v_reshape")], "v_heads", perm=[0, 2, 1, 3])
    s = b.node("MatMul", [qh, kt], "scores")
    s = b.node("Div", [s, b.const("scale.value", np.array(np.sqrt(d), np.float32))], "scale")
    p = b.node("Softmax", [s], "softmax", axis=-1)
    ctx = b.node("Transpose", [b.node("MatMul", [p, vh], "context")], "context_t", perm=[0, 2, 1, 3])
    merge = b.const("merge_shape", np.array([0, 0, hidden], np.int64))
    ctx = b.node("Reshape", [ctx, merge], "context_merge")
    x = b.node("Add", [b.linear(ctx, "out", hidden, hidden), "input"], "residual1")
    x = _layer_norm(b, x, "ln1", hidden)
    f = b.linear(x, "ffn_in", hidden, 2 * hidden)
    f = _gelu(b, f, "gelu")
    f = b.linear(f, "ffn_out", 2 * hidden, hidden)
    x = b.node("Add", [f, x], "residual2")
    _layer_norm(b, x, "ln2", hidden, out="output")
    return b.model([_f32("input", shape)], [_f32("output", shape)], "attention_block")


def layer_norm_block() -> onnx.ModelProto:
    """LayerNorm written out in elementary ops on the input, then Linear -> Relu -> Linear: quantized on one
    linear grid, its variance loses tokens of small scale (the fidelity guard's and the searches' test)."""
    b = GraphBuilder(0)
    x = _layer_norm(b, "input", "ln", 16)
    x = b.node("Relu", [b.linear(x, "proj", 16, 16)], "act")
    b.linear(x, "head", 16, 10)
    b.nodes[-1].output[0] = "output"
    return b.model([_f32("input", [1, 8, 16])], [_f32("output", [1, 8, 10])], "ln_block")


def write_damaged_layer_norm(folder: Path) -> dict[str, Path]:
    """``layer_norm_block`` in ``folder`` with 40 samples whose tokens differ in scale by 1000x, and a target
    whose only rule quantizes every input the CPU spec allows: the LayerNorm decomposition gets quantized
    (keep_float.rules is not included), and its variance, quantized on one linear grid, loses the small
    tokens. Returns the paths: model, data, target, dir."""
    model = folder / "ln.onnx"
    onnx.save(layer_norm_block(), model)
    data = folder / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        scale = 10.0 ** rng.uniform(-2, 1, (1, 8, 1))
        np.save(data / f"s{i:02d}.npy", (rng.standard_normal((1, 8, 16)) * scale).astype(np.float32))
    (folder / "all.rules").write_text("rule quantize_everything {\n    match { op : @quantizable }\n"
                                      "    insert op.inputs\n}\n")
    (folder / "damaged.yaml").write_text("name: DAMAGED\nextends: cpu\nrules: [all.rules]\n")
    return {"model": model, "data": data, "target": folder / "damaged.yaml", "dir": folder}


def _split_heads_shape(b: GraphBuilder, x: str, heads: int, d: int) -> str:
    """[B, S, heads, d] computed from x's runtime shape, the way torch.onnx writes it."""
    shp = b.node("Shape", [x], "heads_shape_of")
    dims = []
    for axis in (0, 1):
        g = b.node("Gather", [shp, b.const(f"heads_axis{axis}", np.array(axis, np.int64))], f"heads_dim{axis}", axis=0)
        dims.append(b.node("Unsqueeze", [g, b.const(f"heads_unsq{axis}", np.array([0], np.int64))],
                           f"heads_dim{axis}_1d"))
    tail = b.const("heads_tail", np.array([heads, d], np.int64))
    return b.node("Concat", [*dims, tail], "heads_shape", axis=0)


def _layer_norm(b: GraphBuilder, x: str, name: str, hidden: int, out: str = "") -> str:
    mean = b.node("ReduceMean", [x], f"{name}_mean", axes=[-1], keepdims=1)
    diff = b.node("Sub", [x, mean], f"{name}_sub")
    sq = b.node("Pow", [diff, b.const(f"{name}.two", np.array(2.0, np.float32))], f"{name}_pow")
    var = b.node("ReduceMean", [sq], f"{name}_var", axes=[-1], keepdims=1)
    std = b.node("Sqrt", [b.node("Add", [var, b.const(f"{name}.eps", np.array(1e-5, np.float32))], f"{name}_add_eps")],
                 f"{name}_sqrt")
    y = b.node("Div", [diff, std], f"{name}_div")
    gamma = b.const(f"{name}.gamma", b.rng.uniform(0.8, 1.2, hidden).astype(np.float32))
    beta = b.const(f"{name}.beta", (b.rng.standard_normal(hidden) * 0.1).astype(np.float32))
    return b.node("Add", [b.node("Mul", [y, gamma], f"{name}_mul"), beta], out or f"{name}_out")


def _gelu(b: GraphBuilder, x: str, name: str) -> str:
    """GELU as torch exports it: x * 0.5 * (1 + erf(x / sqrt(2)))."""
    e = b.node("Erf", [b.node("Div", [x, b.const(f"{name}.sqrt2", np.array(np.sqrt(2.0), np.float32))], f"{name}_div")],
               f"{name}_erf")
    e = b.node("Add", [e, b.const(f"{name}.one", np.array(1.0, np.float32))], f"{name}_add")
    y = b.node("Mul", [x, e], f"{name}_mul")
    return b.node("Mul", [y, b.const(f"{name}.half", np.array(0.5, np.float32))], f"{name}_out")


ALL_BUILDERS = {
    "conv_bn_relu_chain": conv_bn_relu_chain,
    "residual_block": residual_block,
    "concat_two_branches": concat_two_branches,
    "squeeze_excitation": squeeze_excitation,
    "depthwise_conv": depthwise_conv,
    "constant_node_weights": constant_node_weights,
    "tiny_cnn": tiny_cnn,
    "matmul_const_weights": matmul_const_weights,
    "matmul_two_activations": matmul_two_activations,
    "attention_block": attention_block,
}


# --- inputs -------------------------------------------------------------------------------------


def random_inputs(model: onnx.ModelProto, n: int = 4, seed: int = 0,
                  dims: Mapping[str, int] | None = None) -> list[dict[str, np.ndarray]]:
    """``n`` feed dicts for the model's real inputs (initializers excluded).

    Floats are standard normal, integers uniform in [0, 10), booleans fair coins.
    Symbolic dims take their size from ``dims`` (default ``DEFAULT_DIMS``), unknown ones 1.

    Args:
        model: the model whose graph inputs to feed.
        n: number of feed dicts.
        seed: generator seed; the same seed gives the same arrays.
        dims: sizes for symbolic dimension names.
    """
    rng = np.random.default_rng(seed)
    sizes = {**DEFAULT_DIMS, **(dims or {})}
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else sizes.get(d.dim_param, 1) for d in tt.shape.dim)
        specs.append((vi.name, helper.tensor_dtype_to_np_dtype(tt.elem_type), shape))
    return [{name: _random_array(rng, dtype, shape) for name, dtype, shape in specs} for _ in range(n)]


def _random_array(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    return rng.integers(0, 10, shape).astype(dtype)
