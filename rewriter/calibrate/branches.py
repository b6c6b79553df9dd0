"""Which branch of each top-level If the calibration samples take.

Only the nodes the conditions depend on run (a comparison of a sample-rate input, a shape test), one
onnxruntime session over the samples; a condition that is a constant needs no run. An If whose samples
all go one way can be quantized inside that branch (``rewriter.ir.control_flow``); one whose samples
split, or whose condition cannot be computed alone, stays float.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from rewriter.calibrate.in_graph import default_opset
from rewriter.calibrate.session import open_session, session_options
from rewriter.errors import UserError
from rewriter.ir.control_flow import InlinedBranch, if_conditions, restore, specialize
from rewriter.ir.opset import convert_opset
from rewriter.ir.protos import node_reads
from rewriter.ir.tensors import tensor_array

__all__ = ["BranchCount", "InlinedIfs", "count_branches", "inline_taken_branches"]


@dataclass(frozen=True)
class BranchCount:
    """How many samples took each branch of one If; ``problem`` says why none was counted."""

    then_samples: int = 0
    else_samples: int = 0
    problem: str = ""

    @property
    def taken(self) -> str | None:
        """The branch every sample took ("then_branch" or "else_branch"), else None."""
        if self.problem or (self.then_samples and self.else_samples) or not (self.then_samples or self.else_samples):
            return None
        return "then_branch" if self.then_samples else "else_branch"


def count_branches(model: onnx.ModelProto, conditions: Mapping[str, str],
                   samples: Iterable[Mapping[str, np.ndarray]]) -> dict[str, BranchCount]:
    """For each If (name -> its condition tensor), the samples that take each branch.

    Args:
        model: the model the Ifs are top-level nodes of.
        conditions: If node name -> condition tensor name.
        samples: checked calibration samples (input name -> array).
    """
    constants = {t.name: t for t in model.graph.initializer}
    fixed = {name: bool(np.asarray(tensor_array(constants[c])).reshape(-1)[0])
             for name, c in conditions.items() if c in constants}
    computed = {name: c for name, c in conditions.items() if name not in fixed}
    then = dict.fromkeys(conditions, 0)
    other = dict.fromkeys(conditions, 0)
    problems: dict[str, str] = {}
    session, feeds = _condition_session(model, sorted(set(computed.values()))) if computed else (None, [])
    if computed and session is None:
        problems = dict.fromkeys(computed, "its condition could not be computed alone")
    for sample in samples:
        values: dict[str, bool] = {}
        if session is not None:
            try:
                results = session.run(None, {name: sample[name] for name in feeds})
            except Exception as e:  # noqa: BLE001 - a failed run only leaves the If float
                problems = {name: f"its condition could not be computed alone ({str(e).splitlines()[0]})"
                            for name in computed}
                session = None
            else:
                by_tensor = dict(zip(sorted(set(computed.values())), results))
                values = {name: bool(np.asarray(by_tensor[c]).reshape(-1)[0]) for name, c in computed.items()}
        for name, value in (*fixed.items(), *values.items()):
            if value:
                then[name] += 1
            else:
                other[name] += 1
    return {name: BranchCount(then[name], other[name], problems.get(name, "")) for name in conditions}


def _condition_session(model: onnx.ModelProto, tensors: list[str]) -> tuple[ort.InferenceSession | None, list[str]]:
    """A session computing only ``tensors`` (the nodes they depend on), and the inputs it reads."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output if o}
    needed: list[onnx.NodeProto] = []
    seen: set[int] = set()
    stack = list(tensors)
    reads: set[str] = set()
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None:
            reads.add(name)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        needed.append(node)
        stack.extend(node_reads(node))
    order = [n for n in g.node if id(n) in seen]
    inputs = [vi for vi in g.input if vi.name in reads]
    inits = [t for t in g.initializer if t.name in reads]
    outputs = [helper.make_tensor_value_info(t, onnx.TensorProto.BOOL, None) for t in tensors]
    small = helper.make_model(helper.make_graph(order, "conditions", inputs, outputs, inits),
                              opset_imports=list(model.opset_import), ir_version=model.ir_version)
    try:
        session = open_session(small, session_options())
    except Exception:  # noqa: BLE001 - no session: the Ifs stay float
        return None, []
    return session, [vi.name for vi in inputs]


#: Rounds of inlining: a taken branch may hold Ifs of its own, which become top-level once it is inlined.
MAX_ROUNDS = 8


@dataclass(frozen=True)
class InlinedIfs:
    """The working model with every If the samples agree on inlined, and how to put the branches back."""

    model: onnx.ModelProto
    rounds: tuple[tuple[InlinedBranch, ...], ...]
    counts: dict[str, BranchCount]
    before: tuple[onnx.ModelProto, ...] = ()  # the model each round started from
    samples: tuple[Mapping[str, np.ndarray], ...] | None = None  # the samples read, when small enough to keep

    def restore(self, emitted: onnx.ModelProto) -> onnx.ModelProto:
        """``emitted`` (the working model quantized) with each branch back in its If, last round first."""
        model = emitted
        target = default_opset(emitted)
        for items, before in zip(reversed(self.rounds), reversed(self.before)):
            if default_opset(before) < target:
                # Emission raised the opset (per-channel scales, float16, 4-bit): the branch kept float must
                # be written for the new opset too, or it no longer loads (Squeeze's axes became an input).
                before = _converted(before, target)
                converted = {n.name: n for n in before.graph.node}
                items = tuple(replace(item, if_node=converted[item.if_node.name]) for item in items)
            model = restore(model, items, before)
        return model

    def entries(self) -> list[dict]:
        """One report entry per top-level If met: samples per branch, the branch quantized, nodes left float."""
        inlined = {item.if_node.name: item for items in self.rounds for item in items}
        out = []
        for name, count in self.counts.items():
            item = inlined.get(name)
            out.append({"node": name, "then_samples": count.then_samples, "else_samples": count.else_samples,
                        "quantized": item.branch if item else None,
                        "float_nodes": item.float_nodes if item else None, **(
                            {"problem": count.problem} if count.problem else {})})
        return out


def inline_taken_branches(model: onnx.ModelProto,
                          samples: Callable[[], Iterable[Mapping[str, np.ndarray]]]) -> InlinedIfs:
    """Inline, round after round, every top-level If whose samples all take one branch.

    Args:
        model: the normalized model.
        samples: gives a fresh iterator over the calibration subset (each round reads it once).
    """
    rounds: list[tuple[InlinedBranch, ...]] = []
    before: list[onnx.ModelProto] = []
    counts: dict[str, BranchCount] = {}
    kept: list[Mapping[str, np.ndarray]] | None = None
    for _ in range(MAX_ROUNDS):
        conditions = {name: c for name, c in if_conditions(model).items() if name not in counts}
        if not conditions:
            break
        if kept is None:
            # The first round reads the data; later rounds (nested Ifs) reuse it when it is small.
            first = _Remembered(samples())
            found = count_branches(model, conditions, first)
            kept = first.kept
        else:
            found = count_branches(model, conditions, kept)
        counts.update(found)
        taken = {name: c.taken for name, c in found.items() if c.taken is not None}
        if not taken:
            break
        before.append(model)
        model, items = specialize(model, taken)
        rounds.append(items)
    return InlinedIfs(model, tuple(rounds), counts, tuple(before), tuple(kept) if kept is not None else None)


#: Samples up to this many bytes are kept in memory between rounds instead of read again.
KEEP_BYTES = 64 * 2**20


class _Remembered:
    """Iterates ``samples`` once, keeping them while they fit in ``KEEP_BYTES`` (``kept`` is None after)."""

    def __init__(self, samples: Iterable[Mapping[str, np.ndarray]]) -> None:
        self.samples = samples
        self.kept: list[Mapping[str, np.ndarray]] | None = []

    def __iter__(self) -> Iterator[Mapping[str, np.ndarray]]:
        size = 0
        for sample in self.samples:
            if self.kept is not None:
                size += sum(np.asarray(v).nbytes for v in sample.values())
                if size <= KEEP_BYTES:
                    self.kept.append(sample)
                else:
                    self.kept = None
            yield sample


def _converted(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``model`` at default-domain ``opset`` (onnx's version converter also converts If branches)."""
    try:
        return convert_opset(model, opset)
    except Exception as e:  # the converter raises bare RuntimeErrors from C++
        raise UserError(f"the quantized model needs opset {opset}, but onnx's version converter cannot convert "
                        f"the If branch kept float ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                        f"re-export the model at opset {opset} or newer") from None
