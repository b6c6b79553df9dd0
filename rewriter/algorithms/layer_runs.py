"""What the passes that run single layers share.

The ``NodeRunner`` callable through which they run nodes in onnxruntime
(``rewriter.calibrate.layer_runner.LayerRunner.run``), lookups of ranges and
weights whose errors name the missing tensor, a FakeQuantize applied as a
``TensorRange`` describes it, and the nodes a tensor depends on.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Protocol, Sequence

import numpy as np

from rewriter.algorithms.fq_math import fake_quantize
from rewriter.algorithms.types import TensorRange
from rewriter.ir.graph import GraphView

__all__ = ["NodeRunner", "ancestors", "fake_quantize_range", "range_of", "weight_of"]


class NodeRunner(Protocol):
    """Runs some nodes of the model (``LayerRunner.run``): names in topological order -> outputs."""

    def __call__(self, nodes: Sequence[str], feeds: Mapping[str, np.ndarray],
                 overrides: Mapping[str, np.ndarray] | None = None, *, outputs: Sequence[str] | None = None,
                 aliases: Mapping[tuple[str, int], str] | None = None) -> dict[str, np.ndarray]: ...


def fake_quantize_range(x: np.ndarray, rng: TensorRange) -> np.ndarray:
    """``x`` through the FakeQuantize ``rng`` describes (per channel along ``rng.axis`` when it has one)."""
    per_channel = np.ndim(rng.input_low) > 0
    return fake_quantize(x, rng.input_low, rng.input_high, rng.levels, axis=rng.axis if per_channel else None)


def range_of(ranges: Mapping[str, TensorRange], tensor: str) -> TensorRange:
    """``ranges[tensor]``, or a ValueError naming the tensor (a plan/ranges mismatch is a bug)."""
    try:
        return ranges[tensor]
    except KeyError:
        raise ValueError(f"no range for planned tensor {tensor!r}") from None


def weight_of(weights: Mapping[str, np.ndarray], tensor: str) -> np.ndarray:
    """``weights[tensor]`` as an array, or a ValueError naming the missing constant."""
    try:
        return np.asarray(weights[tensor])
    except KeyError:
        raise ValueError(f"weights has no value for {tensor!r}") from None


def ancestors(graph: GraphView, tensors: Iterable[str]) -> set[int]:
    """Indexes of the nodes the given tensors depend on (their producers included)."""
    seen: set[int] = set()
    stack = [graph.producer[t][0] for t in tensors if t in graph.producer]
    while stack:
        index = stack.pop()
        if index in seen:
            continue
        seen.add(index)
        for name in graph.nodes[index].inputs:
            hit = graph.producer.get(name)
            if hit is not None and hit[0] not in seen:
                stack.append(hit[0])
    return seen
