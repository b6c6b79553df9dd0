"""How the planner picks one quantizer config per FakeQuantize from what its consumers allow.

The spec lists configs fastest first, most accurate last; consumers of one tensor may allow different
lists, which are intersected (and relaxed, as the original tool did, when they share none); the preset
then picks by position; unified groups share one config; a configuration file's weights/activations
sections override the result.
"""
from __future__ import annotations

from dataclasses import replace

from rewriter.plan import Decision, FakeQuantizePoint
from rewriter.spec.model import QuantizerConfig


def intersect_configs(lists: list[tuple[QuantizerConfig, ...]]) -> tuple[QuantizerConfig, ...]:
    """Configs (by key) allowed by every list, in the first list's priority order."""
    if not lists:
        return ()
    common = set.intersection(*({c.key for c in configs} for configs in lists))
    return tuple(c for c in lists[0] if c.key in common)


def relax_configs(lists: list[tuple[QuantizerConfig, ...]]) -> tuple[QuantizerConfig, ...]:
    """When consumers disagree: per-tensor, then symmetric, as the original tool relaxed."""
    relaxed = [tuple(replace(c, granularity="pertensor") for c in configs) for configs in lists]
    common = intersect_configs(relaxed)
    if common:
        return common
    symmetric = [tuple(replace(c, mode="symmetric") for c in configs) for configs in relaxed]
    return intersect_configs(symmetric) or symmetric[0][:1]


def per_tensor_configs(candidates: tuple[QuantizerConfig, ...]) -> tuple[QuantizerConfig, ...]:
    """The per-tensor candidates, in order; when there are none, every candidate made per-tensor."""
    kept = tuple(c for c in candidates if c.granularity == "pertensor")
    if kept:
        return kept
    relaxed: list[QuantizerConfig] = []
    for c in candidates:
        one = replace(c, granularity="pertensor")
        if one.key not in {r.key for r in relaxed}:
            relaxed.append(one)
    return tuple(relaxed)


def choose_config(candidates: tuple[QuantizerConfig, ...], role: str, preset: str, force_symmetric: bool,
            prefer_asymmetric: bool = False) -> QuantizerConfig:
    """Pick by position, as the original tool did: the spec lists configs fastest
    first, most accurate last. performance = first everywhere; mixed = first for
    weights, last for activations; accuracy = last everywhere.

    A ``symmetric`` rule forces symmetric mode (it is a hardware constraint);
    an ``asymmetric`` rule only narrows the choice to the asymmetric
    candidates when the spec allows any, and yields to ``symmetric``."""
    if force_symmetric:
        symmetric = [c for c in candidates if c.mode == "symmetric"]
        return symmetric[0] if symmetric else replace(candidates[0], mode="symmetric")
    if prefer_asymmetric:
        candidates = tuple(c for c in candidates if c.mode == "asymmetric") or candidates
    last = preset == "accuracy" or (preset == "mixed" and role != "weight")
    return candidates[-1] if last else candidates[0]


def override_config(point: FakeQuantizePoint, overrides: object) -> FakeQuantizePoint:
    """Apply a configuration file's weights/activations sections to one FakeQuantize's config."""
    if overrides is None or getattr(overrides, "is_empty", lambda: False)():
        return point
    config = overrides.apply(point.config, point.role)  # type: ignore[attr-defined]
    if config == point.config:
        return point
    note = Decision("config", "config file", detail=f"{point.config.describe()} -> {config.describe()}")
    return replace(point, config=config, trail=point.trail + (note,),
                   channel_axis=point.channel_axis if config.granularity == "perchannel" else None)


def share_group_configs(points: list[FakeQuantizePoint]) -> list[FakeQuantizePoint]:
    """A unified group shares one config: its first member's by tensor name, per-tensor (one scale).

    The points come back in the order given."""
    first: dict[int, FakeQuantizePoint] = {}
    for p in points:
        if p.unify_group is not None:
            known = first.get(p.unify_group)
            if known is None or p.tensor < known.tensor:
                first[p.unify_group] = p
    if not first:
        return points
    leaders = {group: replace(p.config, granularity="pertensor") for group, p in first.items()}
    return [p if p.unify_group is None else replace(p, config=leaders[p.unify_group], channel_axis=None)
            for p in points]
