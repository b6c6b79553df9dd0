"""How much error each quantized node adds to the model, measured: the fidelity guard's candidate order.

The per-tensor SQNR of a quantizer (from the calibration statistics) misses damage that only shows after
the node: a LayerNorm's variance quantized on one linear grid keeps a fine SQNR, since the large tokens
dominate its power, yet its small tokens lose their variance, and after ``Add(eps) -> Sqrt -> Div`` those
tokens' normalized values are wrong by orders of magnitude. So the guard measures instead: the float
model and the emitted QDQ model run on a few of the self-check's samples with their intermediate tensors
exposed as outputs (QDQ emission inserts QuantizeLinear/DequantizeLinear pairs after a tensor and keeps
every original node output under its name, so the same names hold the float and the quantized values).

A quantized node's **region** is the node and up to ``MAX_FOLLOWERS`` nodes after it that stay float (a
breadth-first walk from its outputs that stops at quantized nodes): no quantizer of their own adds error
there, so what the error grows by from the region's inputs to its outputs is the node's doing, including
what the float ops after it make of its error (the ``Sqrt`` and ``Div`` above). Per tensor, the error is
its noise-to-signal ratio against the float model over the samples (``sum (f - q)^2 / sum f^2``, the
reciprocal of the self-check's SQNR); the node's **added error** is the worst ratio among the tensors
its region writes minus the worst among those it reads from outside (constants excluded; graph inputs
read exact). The difference is taken in power, not in dB: a node that turns an exact input into a
40 dB tensor adds 1e-4 of the signal and one that takes a 3 dB tensor to 2 dB adds 0.1, and it is the
second whose revert the output notices (noise of independent sources adds in power), where an SQNR
drop in dB would rank the first infinitely worse. ``damage_db`` is that ratio in dB (+10 dB: the error
the node adds is ten times the signal's power; -30 dB: a thousandth).

Bounded cost: ``DAMAGE_SAMPLES`` samples, one at a time (memory: one sample's exposed tensors in each
model, the order of the statistics pass's first run), one session per model; at most
``MAX_EXPOSED_TENSORS`` tensors are exposed, filled by the nodes in the caller's priority order (the
per-tensor one), so on a huge graph the nodes past the cap stay unmeasured and keep that order. In the
exposed run, onnxruntime computes a quantized node whose output is exposed from its dequantized inputs in
float instead of its fused integer kernel: the same values up to float rounding.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from rewriter.calibrate.in_graph import Layout
from rewriter.calibrate.session import LARGE_MODEL_BYTES, RunFailed, Session
from rewriter.errors import UserError
from rewriter.ir.graph import GraphView
from rewriter.ir.load import is_large
from rewriter.ir.view import graph_view
from rewriter.plan import QuantPlan

__all__ = ["DAMAGE_SAMPLES", "MAX_EXPOSED_TENSORS", "MAX_FOLLOWERS", "DamageRanking", "NodeDamage", "Region",
           "TensorError", "damage_regions", "measure_damage", "node_damage", "tensor_errors"]

#: Samples of the extra run: enough to see a node's error over a few inputs; it only orders candidates,
#: and every revert is then measured on all the check samples.
DAMAGE_SAMPLES = 4
#: Float nodes after a quantized node counted in its region: enough for Add(eps) -> Sqrt -> Div or
#: Pow -> ReduceMean -> Add, few enough that a region stays local to its node.
MAX_FOLLOWERS = 3
#: Tensors exposed in the extra run at most (each is copied out of onnxruntime per sample and model).
MAX_EXPOSED_TENSORS = 1024
#: Added error below this share of the signal's power (110 dB) is float rounding (the two models' kernels
#: accumulate in other orders), not quantization: a 16-bit quantizer adds about 1e-9.
NOISE_FLOOR = 1e-11


@dataclass(frozen=True)
class Region:
    """A quantized node and the float nodes after it: the tensors it reads from outside, those it writes."""

    node: str
    followers: tuple[str, ...]
    reads: tuple[str, ...]
    writes: tuple[str, ...]


@dataclass(frozen=True)
class TensorError:
    """A tensor's error against the float model over the samples: sum (f - q)^2 and sum f^2."""

    noise: float
    power: float

    @property
    def ratio(self) -> float:
        """Noise over signal power: 0 exact, inf when the float tensor is all zeros and the quantized one is not."""
        if self.noise == 0.0:
            return 0.0
        return math.inf if self.power == 0.0 else self.noise / self.power


@dataclass(frozen=True)
class NodeDamage:
    """A quantized node's measured damage (module docstring)."""

    node: str
    followers: tuple[str, ...]  # the float nodes after it that its region includes
    inputs_sqnr_db: float  # the worst SQNR of the tensors the region reads (inf: exact)
    outputs_sqnr_db: float  # the worst SQNR of the tensors it writes
    added_error: float  # outputs' noise-to-signal ratio minus inputs'

    @property
    def damage_db(self) -> float | None:
        """The added error in dB of the signal's power, rounded as reported; None below ``NOISE_FLOOR``."""
        if not self.added_error > NOISE_FLOOR:
            return None
        return math.inf if math.isinf(self.added_error) else round(10.0 * math.log10(self.added_error), 3)

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "damage_db": self.damage_db, "inputs_sqnr_db": _round(self.inputs_sqnr_db),
                "outputs_sqnr_db": _round(self.outputs_sqnr_db), "through": list(self.followers)}

    def describe(self) -> str:
        """One phrase for a revert's reason."""
        through = f" and {', '.join(self.followers)}" if self.followers else ""
        damage = "none measurable" if self.damage_db is None else f"{_text(self.damage_db, '+')} dB"
        return (f"damage measured before the guard {damage} (SQNR {_text(self.inputs_sqnr_db)} dB at its inputs, "
                f"{_text(self.outputs_sqnr_db)} dB after it{through})")


@dataclass(frozen=True)
class DamageRanking:
    """The measured damage of the nodes it could measure, and what the measurement cost.

    ``skipped``: why nothing was measured (the order is then the caller's).
    """

    nodes: Mapping[str, NodeDamage] = field(default_factory=dict)
    samples: int = 0
    exposed_tensors: int = 0
    seconds: float = 0.0
    skipped: str | None = None

    def order(self, candidates: Sequence[str]) -> list[str]:
        """``candidates`` (given most suspect first), most measured damage first.

        Three tiers: the nodes measured to add error, by ``damage_db`` (the rounded figure the report
        shows, so that float noise in the last digits cannot reorder two runs); then the nodes not
        measured; then those measured to add none. Within a tier, and between equal figures, the given
        order.
        """
        given = {name: i for i, name in enumerate(candidates)}

        def key(name: str) -> tuple[int, float, int]:
            measured = self.nodes.get(name)
            if measured is None:
                return 1, 0.0, given[name]
            damage = measured.damage_db
            return (2, 0.0, given[name]) if damage is None else (0, -damage, given[name])

        return sorted(candidates, key=key)

    def as_dict(self, candidates: Sequence[str], count: int) -> dict[str, Any]:
        """The report's account: how candidates were ordered, at what cost, and the first ``count`` of them."""
        return {"by": "measured damage" if self.nodes else "per-tensor SQNR",
                "skipped": self.skipped, "samples": self.samples, "exposed_tensors": self.exposed_tensors,
                "measured_nodes": len(self.nodes), "seconds": round(self.seconds, 3),
                "first": [self.nodes[c].as_dict() if c in self.nodes else _unmeasured(c) for c in candidates[:count]]}


def damage_regions(graph: GraphView, plan: QuantPlan, max_followers: int = MAX_FOLLOWERS) -> dict[str, Region]:
    """The region of every quantized node of ``plan`` in ``graph`` (module docstring).

    Nodes the plan does not know (none, normally) count as float; the walk takes consumers in graph
    order, so the regions are the same run to run.
    """
    status = {n.node: n.status for n in plan.nodes}
    regions: dict[str, Region] = {}
    for node in graph.nodes:
        if status.get(node.name) != "quantized":
            continue
        members, names = [node], {node.name}
        pending = [o for o in node.outputs if o]
        while pending and len(members) <= max_followers:
            for reader, _ in graph.consumers_of(pending.pop(0)):
                if len(members) > max_followers:
                    break
                if reader.name in names or status.get(reader.name) == "quantized":
                    continue
                members.append(reader)
                names.add(reader.name)
                pending.extend(o for o in reader.outputs if o)
        writes = tuple(dict.fromkeys(o for m in members for o in m.outputs if o))
        written = set(writes)
        reads = tuple(dict.fromkeys(i for m in members for i in m.inputs
                                    if i and i not in written and not graph.is_constant(i)))
        regions[node.name] = Region(node.name, tuple(m.name for m in members[1:]), reads, writes)
    return regions


def tensor_errors(float_runs: Sequence[Mapping[str, np.ndarray]],
                  quantized_runs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, TensorError]:
    """Every float tensor's error over the runs (one mapping per sample, same order, same names).

    A tensor is left out when it is not a float array in both runs of every sample, or the shapes differ.
    Where the float value is not finite, an equal quantized value (the same infinity: an attention mask's
    -inf) is no error and another one an infinite error; so is a non-finite quantized value where the float
    one is finite (a division by a variance quantized to zero).
    """
    sums = _ErrorSums()
    for float_run, quantized_run in zip(float_runs, quantized_runs):
        sums.add(float_run, quantized_run)
    return sums.result()


class _ErrorSums:
    """``tensor_errors`` one sample at a time, so that a sample's tensors can go before the next is run."""

    def __init__(self) -> None:
        self._sums: dict[str, tuple[float, float]] = {}
        self._left_out: set[str] = set()

    def add(self, float_run: Mapping[str, np.ndarray], quantized_run: Mapping[str, np.ndarray]) -> None:
        for name, f in float_run.items():
            if name in self._left_out:
                continue
            q = quantized_run.get(name)
            if q is None or not _float_array(f) or not _float_array(q) or np.shape(f) != np.shape(q):
                self._left_out.add(name)
                self._sums.pop(name, None)
                continue
            noise, power = _noise_and_power(np.asarray(f, dtype=np.float64), np.asarray(q, dtype=np.float64))
            before = self._sums.get(name, (0.0, 0.0))
            self._sums[name] = (before[0] + noise, before[1] + power)

    def result(self) -> dict[str, TensorError]:
        return {name: TensorError(noise, power) for name, (noise, power) in self._sums.items()}


def node_damage(regions: Mapping[str, Region], errors: Mapping[str, TensorError],
                exact: frozenset[str] | set[str] = frozenset()) -> dict[str, NodeDamage]:
    """The damage of each region whose writes were measured; ``exact``: tensors known to carry no error
    (the graph inputs). A read neither measured nor exact does not count; a region with no write
    measured has no damage figure."""
    result: dict[str, NodeDamage] = {}
    for name, region in regions.items():
        written = [errors[t].ratio for t in region.writes if t in errors]
        if not written:
            continue
        read = [0.0 if t in exact else errors[t].ratio for t in region.reads if t in exact or t in errors]
        before, after = max(read, default=0.0), max(written)
        # Past an input already infinitely wrong (a NaN upstream), what the node adds cannot be told.
        added = 0.0 if math.isinf(before) else after - before
        result[name] = NodeDamage(name, region.followers, _sqnr(before), _sqnr(after), added)
    return result


def measure_damage(float_model: Any, quantized_model: Any, plan: QuantPlan,
                   samples: Sequence[Mapping[str, np.ndarray]], priority: Sequence[str],
                   max_exposed: int = MAX_EXPOSED_TENSORS) -> DamageRanking:
    """Run both models on ``samples`` with the regions' tensors exposed; each measurable node's damage.

    ``priority``: the quantized nodes in the order their tensors are exposed until ``max_exposed`` (the
    caller's fallback order, most suspect first). Never raises for the runtime: a model onnxruntime cannot
    load or run with its tensors exposed gives a ranking with ``skipped`` saying so.
    """
    start = time.perf_counter()
    if not samples:
        return DamageRanking(skipped="no check sample to measure on")
    graph = graph_view(float_model)
    regions = damage_regions(graph, plan)
    graph_inputs = {i.name for i in float_model.graph.input}
    # The tensors to compare: float node outputs (an integer tensor has no SQNR; an untyped one is tried)
    # that the quantized model computes too (a tensor a float pass replaced is not in both).
    quantized_produced = {o for n in quantized_model.graph.node for o in n.output if o}
    both = {t for t in graph.producer if t in quantized_produced and _maybe_float(graph.tensor(t).dtype)}
    exposed: dict[str, None] = {}
    measurable: dict[str, Region] = {}
    for name in priority:
        region = regions.get(name)
        if region is None:
            continue
        needed = [t for t in (*region.reads, *region.writes) if t in both and t not in exposed]
        if len(exposed) + len(needed) > max_exposed:
            continue
        exposed.update(dict.fromkeys(needed))
        measurable[name] = region
    if not exposed:
        return DamageRanking(skipped="no quantized node's tensors can be compared between the two models")
    names = tuple(exposed)
    sessions: list[Session] = []
    sums = _ErrorSums()
    try:
        for model in (float_model, quantized_model):
            serialized = None if is_large(model, LARGE_MODEL_BYTES) else model.SerializeToString()
            sessions.append(Session(model, serialized, Layout(raw=names, from_feed=()), None))
        # One sample at a time, reduced to sums before the next: one sample's tensors per model in memory.
        for sample in samples:
            float_run, quantized_run = (session.run(sample) for session in sessions)
            sums.add(float_run, quantized_run)
    except (UserError, RunFailed) as e:
        text = e.render() if isinstance(e, UserError) else str(e)
        return DamageRanking(skipped=f"onnxruntime could not run the models with their tensors exposed: {text}",
                             seconds=time.perf_counter() - start)
    finally:
        for session in sessions:
            session.close()
    return DamageRanking(node_damage(measurable, sums.result(), graph_inputs), len(samples), len(names),
                         time.perf_counter() - start)


def _maybe_float(dtype: str | None) -> bool:
    return dtype is None or dtype.startswith("float")


def _unmeasured(node: str) -> dict[str, Any]:
    return {"node": node, "damage_db": None, "inputs_sqnr_db": None, "outputs_sqnr_db": None, "through": []}


def _float_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)


def _noise_and_power(f: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    finite = np.isfinite(f)
    if finite.all() and np.isfinite(q).all():
        return float(np.sum((f - q) ** 2)), float(np.sum(f ** 2))
    same = (f == q) | (np.isnan(f) & np.isnan(q))
    if np.any(~same & ~(finite & np.isfinite(q))):
        return math.inf, float(np.sum(f[finite] ** 2))
    both = finite & np.isfinite(q)
    return float(np.sum((f[both] - q[both]) ** 2)), float(np.sum(f[finite] ** 2))


def _sqnr(ratio: float) -> float:
    if ratio == 0.0:
        return math.inf
    return -math.inf if math.isinf(ratio) else -10.0 * math.log10(ratio)


def _round(value: float) -> float:
    return value if math.isinf(value) else round(value, 3)


def _text(value: float, sign: str = "") -> str:
    if math.isinf(value):
        return f"{sign}inf" if value > 0 else "-inf"
    return f"{value:{sign}.2f}"
