"""Write a GPT-2-style decoder exported by torch, for scale benchmarks on a real exporter's graph.

The synthetic graphs of tools/bench_match.py are written node by node with onnx.helper: static shapes, no
shape arithmetic, no Constant or Identity nodes. A decoder exported by torch has all of those, as the large
transformer exports users audit do: dynamic batch and sequence axes, Shape -> Gather -> Unsqueeze -> Concat
-> Reshape chains (TorchScript), Constant nodes, Identity nodes of initializers, value_info from the
exporter (dynamo). The width is small (64) so that a decoder of a thousand layers stays a few hundred MB.

    python tools/export_decoder.py --layers 1200 --style torchscript -o decoder_ts_1200.onnx
    python tools/export_decoder.py --layers 300 --style dynamo -o decoder_dynamo_300.onnx
    python tools/bench_match.py --stages --models decoder_ts_1200.onnx

Needs torch (and onnxscript for --style dynamo), as in the benchmark venv (tools/bench/requirements.txt);
the package itself does not.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

WIDTH, HEADS, VOCAB, POSITIONS = 64, 4, 500, 128


def _decoder(layers: int) -> Any:
    """The decoder of ``layers`` blocks, its weights seeded."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
            self.qkv, self.proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
            self.fc, self.out = nn.Linear(WIDTH, 4 * WIDTH), nn.Linear(4 * WIDTH, WIDTH)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(WIDTH, dim=2)
            q, k, v = (y.view(b, t, HEADS, WIDTH // HEADS).transpose(1, 2) for y in (q, k, v))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(WIDTH // HEADS)
            causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
            att = att.masked_fill(~causal, float("-inf")).softmax(-1)
            x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, WIDTH))
            return x + self.out(nn.functional.gelu(self.fc(self.ln2(x))))

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens, self.positions = nn.Embedding(VOCAB, WIDTH), nn.Embedding(POSITIONS, WIDTH)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln, self.head = nn.LayerNorm(WIDTH), nn.Linear(WIDTH, VOCAB, bias=False)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1]).unsqueeze(0))
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln(x))

    torch.manual_seed(0)
    return Decoder().eval()


def export(layers: int, style: str, path: Path) -> None:
    """Export the decoder of ``layers`` blocks in ``style`` ("torchscript" or "dynamo") to ``path``."""
    import torch

    model = _decoder(layers)
    ids = torch.randint(0, VOCAB, (1, 16))
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        if style == "torchscript":
            axes = {0: "batch", 1: "sequence"}
            torch.onnx.export(model, (ids,), tmp, input_names=["ids"], output_names=["logits"], opset_version=17,
                              dynamic_axes={"ids": axes, "logits": axes}, dynamo=False)
        else:
            batch, sequence = torch.export.Dim("batch", max=64), torch.export.Dim("sequence", min=2, max=POSITIONS)
            torch.onnx.export(model, (ids,), tmp, input_names=["ids"], output_names=["logits"], opset_version=18,
                              dynamic_shapes={"ids": {0: batch, 1: sequence}}, dynamo=True, external_data=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, required=True, help="decoder blocks (about 83 nodes each in "
                                                                   "TorchScript's export, 32 in dynamo's)")
    parser.add_argument("--style", choices=("torchscript", "dynamo"), default="torchscript")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    export(args.layers, args.style, args.output)
    import onnx

    model = onnx.load(str(args.output), load_external_data=False)
    print(f"wrote {args.output}: {len(model.graph.node)} nodes, {len(model.graph.value_info)} value_info, "
          f"{args.output.stat().st_size / 1e6:.1f} MB, in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
