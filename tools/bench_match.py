"""Benchmark: spec + rules -> plan on synthetic graphs of 10k, 50k and 100k nodes.

The graph is a chain of conv/residual blocks and transformer attention blocks
(with a LayerNorm written as elementary ops), built directly as a GraphView so
the figure measures matching and planning alone. The bar (issue 2): under 10 s
for 100,000 nodes on a 2-core machine, growing linearly.

    python tools/bench_match.py [--sizes 10000 50000 100000] [--target CPU]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rewriter.api import load_plan_inputs  # noqa: E402
from rewriter.ir.graph import GraphView, NodeInfo, TensorInfo  # noqa: E402
from rewriter.match.planner import PlanOptions, build_plan  # noqa: E402


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[NodeInfo] = []
        self.tensors: dict[str, TensorInfo] = {}

    def const(self, name: str, shape: tuple[int, ...]) -> str:
        self.tensors[name] = TensorInfo(name, "float32", shape, is_constant=True)
        return name

    def op(self, op_type: str, inputs: list[str], shape: tuple[int, ...], attrs: dict | None = None) -> str:
        index = len(self.nodes)
        out = f"t{index}"
        self.tensors[out] = TensorInfo(out, "float32", shape)
        self.nodes.append(NodeInfo(f"{op_type.lower()}_{index}", op_type, tuple(inputs), (out,),
                                   attrs or {}, index=index))
        return out

    def conv_block(self, x: str) -> str:
        k = len(self.nodes)
        shape = (1, 16, 8, 8)
        a = self.op("Conv", [x, self.const(f"w{k}a", (16, 16, 3, 3)), self.const(f"b{k}a", (16,))], shape)
        a = self.op("Relu", [a], shape)
        b = self.op("Conv", [a, self.const(f"w{k}b", (16, 16, 3, 3)), self.const(f"b{k}b", (16,))], shape)
        s = self.op("Add", [b, x], shape)
        s = self.op("Relu", [s], shape)
        p = self.op("MaxPool", [s], shape, {"kernel_shape": [1, 1]})
        c = self.op("Concat", [p, s], (1, 32, 8, 8), {"axis": 1})
        return self.op("Conv", [c, self.const(f"w{k}c", (16, 32, 1, 1))], shape)

    def attention_block(self, x: str) -> str:
        k = len(self.nodes)
        shape = (1, 8, 16)
        proj = {}
        for name in "qkv":
            m = self.op("MatMul", [x, self.const(f"w{k}{name}", (16, 16))], shape)
            proj[name] = self.op("Add", [m, self.const(f"b{k}{name}", (16,))], shape)
        kt = self.op("Transpose", [proj["k"]], (1, 16, 8), {"perm": [0, 2, 1]})
        scores = self.op("MatMul", [proj["q"], kt], (1, 8, 8))
        scores = self.op("Div", [scores, self.const(f"s{k}", ())], (1, 8, 8))
        probs = self.op("Softmax", [scores], (1, 8, 8), {"axis": -1})
        ctx = self.op("MatMul", [probs, proj["v"]], shape)
        res = self.op("Add", [ctx, x], shape)
        return self.layer_norm(res, shape, k)

    def layer_norm(self, x: str, shape: tuple[int, ...], k: int) -> str:
        mean = self.op("ReduceMean", [x], (1, 8, 1), {"axes": [-1]})
        d = self.op("Sub", [x, mean], shape)
        sq = self.op("Pow", [d, self.const(f"two{k}", ())], shape)
        var = self.op("ReduceMean", [sq], (1, 8, 1), {"axes": [-1]})
        eps = self.op("Add", [var, self.const(f"eps{k}", ())], (1, 8, 1))
        std = self.op("Sqrt", [eps], (1, 8, 1))
        y = self.op("Div", [d, std], shape)
        y = self.op("Mul", [y, self.const(f"g{k}", (16,))], shape)
        return self.op("Add", [y, self.const(f"beta{k}", (16,))], shape)


def synthetic_graph(target_nodes: int) -> GraphView:
    """Alternate conv and attention sections until the graph has ``target_nodes`` nodes."""
    b = _Builder()
    b.tensors["image"] = TensorInfo("image", "float32", (1, 16, 8, 8), is_graph_input=True)
    b.tensors["tokens"] = TensorInfo("tokens", "float32", (1, 8, 16), is_graph_input=True)
    image, tokens = "image", "tokens"
    while len(b.nodes) < target_nodes:
        image = b.conv_block(image)
        tokens = b.attention_block(tokens)
    return GraphView(b.nodes, b.tensors, name=f"synthetic_{target_nodes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--target", default="CPU")
    args = parser.parse_args()

    start = time.perf_counter()
    inputs = load_plan_inputs(args.target)
    load_seconds = time.perf_counter() - start
    print(f"spec + rules loaded in {load_seconds:.3f} s ({len(inputs.rules.rules)} rules, "
          f"{len(inputs.rules.patterns)} patterns)")
    print(f"{'nodes':>8}  {'plan s':>8}  {'us/node':>8}  {'FQ':>7}")
    for size in args.sizes:
        graph = synthetic_graph(size)
        start = time.perf_counter()
        plan = build_plan(graph, inputs.spec, inputs.rules, PlanOptions())
        seconds = time.perf_counter() - start
        print(f"{len(graph):>8}  {seconds:>8.2f}  {seconds / len(graph) * 1e6:>8.1f}  {len(plan.points):>7}")


if __name__ == "__main__":
    main()
