"""The contract every numeric pass keeps: one typed context in, one typed result out.

A pass is a ``Pass`` with a ``name`` (its key in the report and the timings),
a ``title`` (the original tool's name of the algorithm, which also names what
made the nodes it inserts) and a ``phase``:

``"float"``
    runs on the float model before the statistics pass (activation smoothing,
    channel alignment). It may rewrite weights and insert nodes, and must keep
    the float function; ranges do not exist yet. When it inserts nodes, the
    pipeline plans the model again with those nodes kept float.
``"quantized"``
    runs after the statistics pass and MinMax (bias correction, layer-wise
    tuning). It reads the statistics and ranges and may return new ranges.
    It may ask for statistics of its own in that one statistics pass
    (``reducers``).

Calling a pass checks ``requires`` (preconditions on the context), runs
``call`` and checks ``ensures`` (postconditions on the result); a failed check
is a bug in rewriter (``PassContractError``), never the user's input. The
algorithms themselves (``rewriter.algorithms``) stay pure numpy functions of
values; a pass gathers those values from the context and applies the
algorithm's answer to a copy of the model (``rewriter.ir.edit``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping, Protocol, Sequence

import numpy as np

from rewriter.algorithms.layer_runs import NodeRunner
from rewriter.algorithms.minmax import RangeOptions
from rewriter.algorithms.types import TensorRange
from rewriter.calibrate.collect import CollectedStats, Reducer, collect_statistics
from rewriter.calibrate.data import CalibrationData
from rewriter.calibrate.progress import Progress
from rewriter.ir.graph import GraphView
from rewriter.ir.tensors import initializer_arrays
from rewriter.ir.view import graph_view
from rewriter.errors import SourceLoc
from rewriter.plan import Decision, QuantPlan

__all__ = ["AddedBias", "InsertedNode", "Pass", "PassContext", "PassContractError",
           "PassOptions", "PassResult", "Phase"]

Phase = Literal["float", "quantized"]


class PassContractError(RuntimeError):
    """A pass was called without what it requires, or returned what it must not: a bug, not bad input."""


class PassOptions(Protocol):
    """The options that turn the passes on and that they read (``rewriter.pipeline.QuantizeOptions`` has them all)."""

    @property
    def smoothing(self) -> float | None: ...

    @property
    def channel_alignment(self) -> bool: ...

    @property
    def layerwise_tuning(self) -> bool: ...

    @property
    def bias_correction(self) -> str | bool | None: ...

    @property
    def bias_threshold(self) -> float | None: ...

    @property
    def layerwise_samples(self) -> int | None: ...

    @property
    def ranges(self) -> RangeOptions: ...

    @property
    def batch_size(self) -> int | None: ...

    @property
    def progress(self) -> bool: ...


@dataclass(frozen=True)
class InsertedNode:
    """A node a pass added to the model, and which pass (its ``title``) made it."""

    node: str
    op_type: str
    made_by: str


@dataclass(frozen=True, eq=False)
class PassContext:
    """Everything a pass may read.

    Attributes:
        model: the model as the pass finds it (an ``onnx.ModelProto``; never modified in place).
        graph: ``graph_view(model)``.
        plan: the quantization plan of ``model``.
        calibration: the calibration data.
        subset: the ids of the statistics subset, in order.
        options: the quantize options.
        statistics: the statistics pass's results, with every quantized-phase
            pass's ``reducers`` merged in (quantized phase only).
        ranges: the FakeQuantize range of every planned tensor (quantized phase only).
        float_model: the model the statistics pass measured: the float reference
            of the quantized phase, before any pass of that phase changed it.
    """

    model: Any
    graph: GraphView
    plan: QuantPlan
    calibration: CalibrationData
    subset: tuple[int, ...]
    options: PassOptions
    statistics: CollectedStats | None = None
    ranges: Mapping[str, TensorRange] | None = None
    float_model: Any = None

    def collect(self, reducers: Mapping[str, Sequence[Reducer]], label: str) -> CollectedStats:
        """A statistics pass of the pass's own over the subset, on ``model``; ``label`` names it on the
        progress line."""
        return collect_statistics(self.model, sorted(reducers), reducers, self.calibration.iter_samples(self.subset),
                                  batch_size=self.options.batch_size, progress=self.options.progress,
                                  total=len(self.subset), label=label)

    def progress(self, label: str) -> Progress:
        """A progress line for a pass that runs layers one by one (their number is not known ahead):
        ``counted(runner.run, bar)`` counts each run. Drawn only as ``options.progress`` says."""
        return Progress(None, label=label, unit="layer runs", enabled=self.options.progress)

    def initializers(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The named initializers of ``model`` as arrays."""
        return dict(initializer_arrays(self.model, names))

    def after(self, result: PassResult) -> PassContext:
        """The context the next pass sees: the result's model (and its view), ranges, and the plan with the
        biases the pass added named in its int32-bias entries."""
        changed = result.model is not self.model
        ranges = self.ranges
        if result.ranges:
            ranges = {**(ranges or {}), **result.ranges}
        return replace(self, model=result.model, graph=graph_view(result.model) if changed else self.graph,
                       ranges=ranges, plan=_with_added_biases(self.plan, result.added_biases))


@dataclass(frozen=True, eq=False)
class PassResult:
    """What a pass did.

    Attributes:
        model: the model after the pass: a new object when anything changed,
            the context's model when nothing did.
        report: the pass's entry in the quantize report (plain JSON data).
        ranges: new ranges of some planned tensors; they replace the context's.
        inserted: the nodes the pass added to the model.
        added_biases: the biases the pass gave to layers that had none.
    """

    model: Any
    report: dict[str, Any]
    ranges: Mapping[str, TensorRange] = field(default_factory=dict)
    inserted: tuple[InsertedNode, ...] = ()
    added_biases: tuple[AddedBias, ...] = ()


@dataclass(frozen=True)
class AddedBias:
    """A bias a pass gave to a layer without one (as input 2, or as an Add after a MatMul)."""

    layer: str
    bias: str
    made_by: str


def _with_added_biases(plan: QuantPlan, added: Sequence[AddedBias]) -> QuantPlan:
    """The plan whose int32-bias entries name the biases just added: the output holds them, so the plan does."""
    if not added:
        return plan
    by_layer = {a.layer: a for a in added}
    entries = []
    for entry in plan.int32_biases:
        new = by_layer.get(entry.node)
        if new is not None and not entry.bias:
            edit = Decision("edit", new.made_by, SourceLoc("<pass>"), f"bias {new.bias} added to {entry.node}")
            entry = replace(entry, bias=new.bias, trail=entry.trail + (edit,))
        entries.append(entry)
    return replace(plan, int32_biases=tuple(entries))


class Pass(ABC):
    """A numeric pass (module docstring). Subclasses set ``name``, ``title`` and ``phase`` and implement ``call``."""

    name: str
    title: str
    phase: Phase

    def applies(self, context: PassContext) -> bool:
        """Whether the pass has anything to work on; one that does not runs not at all and leaves no report entry.

        A quantized-phase pass is asked before the statistics pass, so a pass
        that does not apply adds no statistics either.
        """
        del context
        return True

    def reducers(self, context: PassContext) -> Mapping[str, Sequence[Reducer]]:
        """Statistics a quantized-phase pass needs from the one statistics pass: tensor -> reducers."""
        del context
        return {}

    def requires(self, context: PassContext) -> None:
        """Preconditions: a quantized-phase pass needs the statistics, the ranges and the float reference."""
        if self.phase == "quantized":
            missing = [what for what, value in (("statistics", context.statistics), ("ranges", context.ranges),
                                                ("float_model", context.float_model)) if value is None]
            if missing:
                raise PassContractError(f"pass {self.name} runs after the statistics pass; the context has no "
                                        f"{', '.join(missing)}")

    @abstractmethod
    def call(self, context: PassContext) -> PassResult:
        """Run the pass; never modify ``context.model``."""

    def ensures(self, context: PassContext, result: PassResult) -> None:
        """Postconditions: a result, no ranges from a float pass, inserted nodes in a new model, named by this pass."""
        if not isinstance(result, PassResult):
            raise PassContractError(f"pass {self.name} returned {type(result).__name__}, not a PassResult")
        if self.phase == "float" and result.ranges:
            raise PassContractError(f"pass {self.name} runs before the ranges exist but returned ranges")
        if result.inserted and result.model is context.model:
            raise PassContractError(f"pass {self.name} reports inserted nodes but returned the model it was given")
        strangers = [n.node for n in result.inserted if n.made_by != self.title]
        if strangers:
            raise PassContractError(f"pass {self.name} ({self.title}) reports nodes made by another pass: "
                                    f"{', '.join(strangers)}")

    def __call__(self, context: PassContext) -> PassResult:
        self.requires(context)
        result = self.call(context)
        self.ensures(context, result)
        return result

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.title}, {self.phase} phase)>"


def counted(run: NodeRunner, bar: Progress) -> NodeRunner:
    """``run``, counting each call on ``bar``."""

    def counting(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        result = run(*args, **kwargs)
        bar.update()
        return result

    return counting
