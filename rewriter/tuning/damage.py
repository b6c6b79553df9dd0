"""How much of the output error each quantized node causes, measured: the fidelity guard's candidate order.

The per-tensor SQNR of a quantizer (from the calibration statistics) misses damage that only shows after
the node: a LayerNorm's variance quantized on one linear grid keeps a fine SQNR, since the large tokens
dominate its power, yet its small tokens lose their variance, and after ``Add(eps) -> Sqrt -> Div`` those
tokens' normalized values are wrong by orders of magnitude. So the guard measures instead: the float
model and the emitted QDQ model run on a few of the self-check's samples with their intermediate tensors
exposed as outputs (QDQ emission inserts QuantizeLinear/DequantizeLinear pairs after a tensor and keeps
every original node output under its name, so the same names hold the float and the quantized values).

A quantized node's **region** is the node and up to ``MAX_FOLLOWERS`` nodes after it that stay float (a
breadth-first walk from its outputs that stops at quantized nodes): no quantizer of their own adds error
there, so the region shows what the float ops after the node make of its error (the ``Sqrt`` and ``Div``
above). Errors are noise-to-signal ratios over the samples (``sum (f - q)^2 / sum f^2``, the reciprocal of
the self-check's SQNR), added in power (noise of independent sources adds so):

- ``inherited``: the worst ratio, against the float model, of the tensors the region reads from outside
  (constants excluded, graph inputs exact): the error made before the node;
- ``own``: the error of the node's own quantizers, summed over them: on an activation, its dequantized
  value against the value the quantized model feeds it (both from the quantized run); on a weight, and on
  an activation the run cannot expose, the plan's per-tensor figure (exact for a constant);
- ``outputs``: the worst ratio against the float model of the tensors the region writes.

The region's outputs carry both errors, grown alike by what the region computes, so the node's
**damage** is its own share of them: ``outputs * own / (inherited + own)``. Not the plain growth
``outputs - inherited``: a layer whose output is small next to its weights (a classifier's logits)
multiplies every relative error it reads, and would be charged for error made upstream, which returning it
to float does not remove: ranked so, the guard gained 0.1 dB on MiniLM in 12 measurements where the
per-tensor order gained 17.5 dB (docs/fidelity.md, "Candidate order"). ``damage_db`` is the damage in dB
of the signal's power (+10 dB: ten times the signal; -30 dB: a thousandth).

Bounded cost: ``DAMAGE_SAMPLES`` samples, one at a time (memory: one sample's exposed tensors in each
model, the order of the statistics pass's first run), one session per model; at most
``MAX_EXPOSED_TENSORS`` tensors are exposed, filled by the nodes in the caller's priority order (the
per-tensor one), so on a huge graph the nodes past the cap stay unmeasured and keep that order. In the
exposed run, onnxruntime computes a quantized node whose output is exposed from its dequantized inputs in
float instead of its fused integer kernel: the same values up to float rounding.

One run sees the model as planned: where several quantizers damage the same values, the error of the
first masks the next one's (``inherited`` dominates its share), and that one ranks low until the first is
reverted, which this order does not see (a LayerNorm with every input quantized: the variance's Add ranks
below the Sub and Pow before it).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Callable, Mapping, Sequence

import numpy as np

from rewriter.calibrate.in_graph import Layout
from rewriter.calibrate.session import RunFailed, Session, model_payload
from rewriter.errors import UserError
from rewriter.ir.graph import GraphView
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
#: Damage below this share of the signal's power (-110 dB) is float rounding (the two models' kernels
#: accumulate in other orders), not quantization: a 16-bit quantizer alone makes about 1e-9.
NOISE_FLOOR = 1e-11


@dataclass(frozen=True)
class Region:
    """A quantized node and the float nodes after it (module docstring).

    ``reads``: the non-constant tensors it reads from outside; ``writes``: every tensor it produces;
    ``quantized``: the node's input ports that read through a quantizer of its own, with the tensor (as
    the float model names it) each quantizes.
    """

    node: str
    followers: tuple[str, ...]
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    quantized: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class TensorError:
    """Values against their reference over the samples: sum (r - v)^2 and sum r^2."""

    noise: float
    power: float

    @property
    def ratio(self) -> float:
        """Noise over signal power: 0 exact, inf when the reference is all zeros and the values are not."""
        if self.noise == 0.0:
            return 0.0
        return math.inf if self.power == 0.0 else self.noise / self.power


@dataclass(frozen=True)
class NodeDamage:
    """A quantized node's measured damage (module docstring); the errors as noise-to-signal ratios."""

    node: str
    followers: tuple[str, ...]  # the float nodes after it that its region includes
    inherited: float  # the worst error of what the region reads (0: exact)
    own: float  # its quantizers' error on what they read
    outputs: float  # the worst error of what the region writes

    @property
    def damage(self) -> float:
        """Its quantizers' share of the error at the region's outputs; 0 where that cannot be told (nothing
        of its own, or an input already infinitely wrong: a NaN upstream)."""
        if self.own == 0.0 or math.isinf(self.inherited) or self.outputs == 0.0:
            return 0.0
        if math.isinf(self.own):
            return self.outputs
        return self.outputs * (self.own / (self.inherited + self.own))

    @property
    def damage_db(self) -> float | None:
        """The damage in dB of the signal's power, rounded as reported; None below ``NOISE_FLOOR``."""
        damage = self.damage
        if not damage > NOISE_FLOOR:
            return None
        return math.inf if math.isinf(damage) else round(10.0 * math.log10(damage), 3)

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "damage_db": self.damage_db, "inputs_sqnr_db": _round(_sqnr(self.inherited)),
                "quantizers_sqnr_db": _round(_sqnr(self.own)), "outputs_sqnr_db": _round(_sqnr(self.outputs)),
                "through": list(self.followers)}

    def describe(self) -> str:
        """One phrase for a revert's reason."""
        through = f" and {', '.join(self.followers)}" if self.followers else ""
        damage = "none measurable" if self.damage_db is None else f"{_text(self.damage_db, '+')} dB"
        return (f"damage measured before the guard {damage} (SQNR {_text(_sqnr(self.inherited))} dB of what it "
                f"reads, {_text(_sqnr(self.own))} dB of its quantizers, {_text(_sqnr(self.outputs))} dB after "
                f"it{through})")


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

        Three tiers: the nodes measured to do damage, by ``damage_db`` (the rounded figure the report
        shows, so that float noise in the last digits cannot reorder two runs); then the nodes not
        measured; then those measured to do none. Within a tier, and between equal figures, the given
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
    quantized: dict[str, set[tuple[int, str]]] = {}
    for point in plan.points:
        ports = {(c.node, c.port) for c in point.consumers}
        if point.at_output:  # it serves every reader
            ports.update((reader.name, port) for reader, port in graph.consumers_of(point.tensor))
        for reader_name, port in ports:
            quantized.setdefault(reader_name, set()).add((port, point.tensor))
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
        regions[node.name] = Region(node.name, tuple(m.name for m in members[1:]), reads, writes,
                                    tuple(sorted(quantized.get(node.name, ()))))
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
        for name, value in float_run.items():
            sums.add(name, value, quantized_run.get(name))
    return sums.result()


class _ErrorSums:
    """``TensorError`` sums one sample at a time, so that a sample's tensors can go before the next is run."""

    def __init__(self) -> None:
        self._sums: dict[str, tuple[float, float]] = {}
        self._left_out: set[str] = set()

    def add(self, key: str, reference: Any, values: Any) -> None:
        """Add one sample of ``values`` against ``reference`` (``tensor_errors`` says what is left out)."""
        if key in self._left_out:
            return
        if not _float_array(reference) or not _float_array(values) or np.shape(reference) != np.shape(values):
            self._left_out.add(key)
            self._sums.pop(key, None)
            return
        noise, power = _noise_and_power(reference, values)
        before = self._sums.get(key, (0.0, 0.0))
        self._sums[key] = (before[0] + noise, before[1] + power)

    def result(self) -> dict[str, TensorError]:
        return {key: TensorError(noise, power) for key, (noise, power) in self._sums.items()}


def node_damage(region: Region, errors: Mapping[str, TensorError], own: float,
                exact: AbstractSet[str] = frozenset()) -> NodeDamage | None:
    """The damage of ``region`` from its tensors' errors against the float model and ``own``, its node's
    quantizers' error; ``exact``: tensors known to carry no error (the graph inputs). A read neither
    measured nor exact does not count; None when no write was measured."""
    written = [errors[t].ratio for t in region.writes if t in errors]
    if not written:
        return None
    read = [0.0 if t in exact else errors[t].ratio for t in region.reads if t in exact or t in errors]
    return NodeDamage(region.node, region.followers, max(read, default=0.0), own, max(written))


def measure_damage(float_model: Any, quantized_model: Any, plan: QuantPlan, samples: Sequence[Mapping[str, np.ndarray]],
                   priority: Sequence[str], quantizer_errors: Mapping[str, float],
                   max_exposed: int = MAX_EXPOSED_TENSORS) -> DamageRanking:
    """Run both models on ``samples`` with the regions' tensors exposed; each measurable node's damage.

    ``priority``: the quantized nodes in the order their tensors are exposed until ``max_exposed`` (the
    caller's fallback order, most suspect first). ``quantizer_errors``: the plan's per-tensor SQNR (dB),
    read for the quantizers of constants. Never raises for the runtime: a model onnxruntime cannot load or
    run with its tensors exposed gives a ranking with ``skipped`` saying so.
    """
    start = time.perf_counter()
    if not samples:
        return DamageRanking(skipped="no check sample to measure on")
    graph = graph_view(float_model)
    regions = damage_regions(graph, plan)
    graph_inputs = {i.name for i in float_model.graph.input}
    # The tensors to compare: float node outputs (an integer tensor has no SQNR; an untyped one is tried)
    # that the quantized model computes too (a tensor a float pass replaced is not in both).
    quantized_inputs = {n.name: list(n.input) for n in quantized_model.graph.node}
    quantized_produced = {o for n in quantized_model.graph.node for o in n.output if o}
    both = {t for t in graph.producer if t in quantized_produced and _maybe_float(graph.tensor(t).dtype)}
    compared: dict[str, None] = {}
    dequantized: dict[str, str] = {}  # a quantizer's output in the quantized model -> the tensor it quantizes
    own_outputs: dict[str, tuple[str, ...]] = {}  # node -> its quantizers' outputs measured in the run
    from_figures: dict[str, float] = {}  # node -> the error of its quantizers taken from the plan's figures
    measurable: dict[str, Region] = {}

    def exposable(dequantized_name: str, tensor: str) -> bool:
        return dequantized_name in quantized_produced and (tensor in both or tensor in graph_inputs)

    for name in priority:
        region = regions.get(name)
        if region is None:
            continue
        needed = [t for t in (*region.reads, *region.writes) if t in both and t not in compared]
        pairs, figures = _own_quantizers(region, graph, quantized_inputs.get(name, []), quantizer_errors, exposable)
        new_pairs = {dq: t for dq, t in pairs.items() if dq not in dequantized}
        if len(compared) + len(dequantized) + len(needed) + len(new_pairs) > max_exposed:
            continue
        compared.update(dict.fromkeys(needed))
        dequantized.update(new_pairs)
        own_outputs[name] = tuple(pairs)
        from_figures[name] = figures
        measurable[name] = region
    if not compared:
        return DamageRanking(skipped="no quantized node's tensors can be compared between the two models")
    float_names = tuple(compared)
    quantized_names = (*float_names, *dequantized)
    sessions: list[Session] = []
    errors, quantizer_noise = _ErrorSums(), _ErrorSums()
    try:
        for model, names in ((float_model, float_names), (quantized_model, quantized_names)):
            serialized, folder = model_payload(model)
            sessions.append(Session(model, serialized, Layout(raw=names, from_feed=()), None, folder))
        # One sample at a time, reduced to sums before the next: one sample's tensors per model in memory.
        for sample in samples:
            float_run, quantized_run = (session.run(sample) for session in sessions)
            for name in float_names:
                errors.add(name, float_run[name], quantized_run[name])
            for dq, tensor in dequantized.items():
                # On the values the quantized model feeds it: error made before it is not its own.
                quantizer_noise.add(dq, sample[tensor] if tensor in graph_inputs else quantized_run[tensor],
                                    quantized_run[dq])
    except (UserError, RunFailed) as e:
        text = e.render() if isinstance(e, UserError) else str(e)
        return DamageRanking(skipped=f"onnxruntime could not run the models with their tensors exposed: {text}",
                             seconds=time.perf_counter() - start)
    finally:
        for session in sessions:
            session.close()
    measured_errors, noise = errors.result(), quantizer_noise.result()
    nodes: dict[str, NodeDamage] = {}
    for name, region in measurable.items():
        own = from_figures[name] + sum(noise[dq].ratio for dq in own_outputs[name] if dq in noise)
        damage = node_damage(region, measured_errors, own, graph_inputs)
        if damage is not None:
            nodes[name] = damage
    return DamageRanking(nodes, len(samples), len(quantized_names), time.perf_counter() - start)


def _own_quantizers(region: Region, graph: GraphView, quantized_inputs: Sequence[str],
                    quantizer_errors: Mapping[str, float],
                    exposable: Callable[[str, str], bool]) -> tuple[dict[str, str], float]:
    """A node's quantizers: those the run measures (an activation's, when its quantizer's output and the
    tensor it quantizes can both be exposed), each quantizer's output in the quantized model -> the tensor;
    and the summed error of the others from the plan's figures (a constant's is exact, so not measured
    again; an activation's is its error on the calibration samples)."""
    pairs: dict[str, str] = {}
    figures = 0.0
    for port, tensor in region.quantized:
        dequantized = quantized_inputs[port] if port < len(quantized_inputs) else tensor
        if not graph.is_constant(tensor) and dequantized != tensor and exposable(dequantized, tensor):
            pairs[dequantized] = tensor
            continue
        figure = quantizer_errors.get(tensor)
        if figure is not None and not math.isnan(figure):
            figures += 0.0 if figure == math.inf else 10.0 ** (-figure / 10.0)
    return pairs, figures


def _maybe_float(dtype: str | None) -> bool:
    return dtype is None or dtype.startswith("float")


def _unmeasured(node: str) -> dict[str, Any]:
    return {"node": node, "damage_db": None, "inputs_sqnr_db": None, "quantizers_sqnr_db": None,
            "outputs_sqnr_db": None, "through": []}


def _float_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)


def _noise_and_power(f: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    """sum (f - q)^2 and sum f^2 of one sample's tensor, non-finite values as in ``tensor_errors``."""
    # In the tensors' own type, summed in float64: three times faster than converting them first (and no
    # BLAS dot, whose threads contend with onnxruntime's); a sum that overflows that type is done again
    # in float64 below.
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, a square past the type: handled below
        noise = float(np.sum(np.square(f - q), dtype=np.float64))
        power = float(np.sum(np.square(f), dtype=np.float64))
    if math.isfinite(noise) and math.isfinite(power):
        return noise, power
    f, q = f.astype(np.float64), q.astype(np.float64)
    finite = np.isfinite(f)
    both = finite & np.isfinite(q)
    same = (f == q) | (np.isnan(f) & np.isnan(q))
    power = float(np.sum(f[finite] ** 2))
    if np.any(~same & ~both):
        return math.inf, power
    return float(np.sum((f[both] - q[both]) ** 2)), power


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
