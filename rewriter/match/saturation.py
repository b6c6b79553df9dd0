"""Saturation fix: 7-bit weights where an integer kernel could overflow.

x86 CPUs without VNNI (AVX2, AVX-512F) multiply uint8 activations by int8
weights with an instruction that adds two neighbouring products into a
saturating int16: 255 * 127 * 2 = 64770 does not fit in 32767, so a full-range
8-bit weight gives a wrong sum whenever two large activations meet two large
weights of the same sign. onnxruntime's QLinearConv, QGemm and MatMulInteger
kernels run that way on such CPUs, so the integer model computes something
else than its own QDQ graph says. Halving the weight grid (7 bits kept in
8-bit storage: [-63, 63] symmetric, [-64, 63] asymmetric) keeps every pair
sum at most 255 * 64 * 2 = 32640, exact on every CPU. The original tool
called this ``saturation_fix``; its modes are kept:

- ``first_layer``: the weighted layers reached from a model input before any
  other weighted layer (image inputs fill the whole uint8 range, so that is
  where saturation is most likely);
- ``all``: every weighted layer;
- ``no``: full-range 8-bit weights.

A target's default is its spec's ``saturation_fix`` key; a run may override it.
"""
from __future__ import annotations

from dataclasses import replace

from rewriter.errors import SourceLoc, UserError
from rewriter.ir.graph import GraphView
from rewriter.levels import level_bounds
from rewriter.plan import Decision, FakeQuantizePoint, QuantPlan
from rewriter.spec.model import SATURATION_FIX_MODES, HardwareSpec, QuantizerConfig

# Ops whose integer kernels are matrix products of an activation by a weight (the kernels above).
MATRIX_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
# The largest weight magnitude whose pair sums with uint8 activations fit in int16: 2 * 255 * 64 = 32640.
SAFE_WEIGHT_LEVEL = 64
_INT8 = (-128, 127)


def check_saturation_fix(mode: str) -> None:
    """Raise a UserError unless ``mode`` is one of first_layer, all, no."""
    if mode not in SATURATION_FIX_MODES:
        raise UserError(f"unknown saturation fix {mode!r}; choose one of {', '.join(SATURATION_FIX_MODES)}")


def fix_saturation(plan: QuantPlan, graph: GraphView, spec: HardwareSpec, override: str | None = None,
                   override_source: str = "options") -> QuantPlan:
    """Give 7-bit weights to the layers the saturation fix names; every change joins the point's trail.

    Args:
        plan: the plan to adjust (returned unchanged when nothing applies).
        graph: the graph the plan was made for.
        spec: the target, whose ``saturation_fix`` is the default mode.
        override: a mode that replaces the target's (a config file or the command line).
        override_source: how the trail names ``override``'s origin.
    """
    if override is not None:
        check_saturation_fix(override)
        mode, source, loc = override, override_source, SourceLoc("<builtin>")
    else:
        mode, source, loc = spec.saturation_fix, f"{spec.name}:saturation_fix", spec.saturation_fix_loc
    if mode == "no":
        return plan
    layers = first_layers(graph) if mode == "first_layer" else None
    where = "first layer" if mode == "first_layer" else "every layer"
    points = []
    # Per config (by identity; the config is kept in the value): the narrowed config and its note, one
    # object each however many weights share the config.
    changes: dict[int, tuple[QuantizerConfig, QuantizerConfig | None, Decision | None]] = {}
    for point in plan.points:
        if _in_scope(point, graph, layers):
            change = changes.get(id(point.config))
            if change is None:
                narrowed = _seven_bit(point.config)
                note = None if narrowed is None else Decision(
                    "config", "saturation_fix", loc, f"{where} ({mode} by {source}): levels "
                    f"[{_low_high(point.config)}] -> [{narrowed.level_low},{narrowed.level_high}]")
                change = changes[id(point.config)] = (point.config, narrowed, note)
            _, narrowed, note = change
            if narrowed is not None and note is not None:
                point = replace(point, config=narrowed, trail=point.trail + (note,))
        points.append(point)
    return replace(plan, points=tuple(points))


def first_layers(graph: GraphView) -> frozenset[str]:
    """The matrix-product nodes reached from a model input without passing through another one."""
    found: set[str] = set()
    seen: set[int] = set()
    frontier = [t.name for t in graph.tensors.values() if t.is_graph_input and not t.is_constant]
    while frontier:
        for index, _port in graph.consumers.get(frontier.pop(), ()):
            if index in seen:
                continue
            seen.add(index)
            node = graph.nodes[index]
            if node.op_type in MATRIX_OPS:
                found.add(node.name)
            else:
                frontier.extend(t for t in node.outputs if t)
    return frozenset(found)


def _in_scope(point: FakeQuantizePoint, graph: GraphView, layers: frozenset[str] | None) -> bool:
    if point.role != "weight":
        return False
    for consumer in point.consumers:
        index = graph.by_name.get(consumer.node)
        if index is not None and graph.nodes[index].op_type in MATRIX_OPS and (
                layers is None or consumer.node in layers):
            return True
    return False


def _levels(config: QuantizerConfig) -> tuple[int, int]:
    low, high, _ = level_bounds(config.bits, config.mode, "weight", config.signed,
                                level_low=config.level_low, level_high=config.level_high)
    return low, high


def _low_high(config: QuantizerConfig) -> str:
    return ",".join(str(v) for v in _levels(config))


def _seven_bit(config: QuantizerConfig) -> QuantizerConfig | None:
    """The config on half the grid, or None when its int8 values cannot saturate (or are not int8)."""
    low, high = _levels(config)
    if low >= 0 or low < _INT8[0] or high > _INT8[1] or max(-low, high) <= SAFE_WEIGHT_LEVEL:
        return None  # uint8 weights go to uint8 x uint8 kernels (no int16 pair sums); wider ones to none
    return replace(config, level_low=int(low / 2), level_high=int(high / 2))

