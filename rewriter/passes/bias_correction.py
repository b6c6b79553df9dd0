"""FastBiasCorrection and BiasCorrection as a pass: new biases, applied to a model copy."""
from __future__ import annotations

from typing import Mapping, Sequence

from rewriter.algorithms.bias_correction import (FAST_THRESHOLD, THRESHOLD, BiasTarget, bias_constants,
                                                 bias_correction, bias_correction_subset, bias_reducers, bias_targets,
                                                 fast_bias_correction)
from rewriter.calibrate.collect import Reducer
from rewriter.calibrate.layer_runner import LayerRunner
from rewriter.ir.edit import apply_weight_updates
from rewriter.ir.layers import matmul_bias_names
from rewriter.passes.base import AddedBias, InsertedNode, Pass, PassContext, PassResult, counted
from rewriter.sources import pass_source

__all__ = ["BiasCorrectionPass", "bias_insertions"]


class BiasCorrectionPass(Pass):
    """Fold each quantized layer's output mean shift into its bias (``rewriter.algorithms.bias_correction``).

    Args:
        method: "fast" (FastBiasCorrection: each layer alone on its mean input)
            or "full" (BiasCorrection: the quantized model's own activations).
        threshold: the acceptance threshold; None for the method's default.
    """

    name = "bias_correction"
    phase = "quantized"

    def __init__(self, method: str, threshold: float | None = None) -> None:
        if method not in ("fast", "full"):
            raise ValueError(f"bias correction method must be fast or full, not {method!r}")
        self.method = method
        self.title = "FastBiasCorrection" if method == "fast" else "BiasCorrection"
        self.threshold = threshold or (FAST_THRESHOLD if method == "fast" else THRESHOLD)

    def applies(self, context: PassContext) -> bool:
        return bool(bias_targets(context.graph, context.plan))

    def reducers(self, context: PassContext) -> Mapping[str, Sequence[Reducer]]:
        return bias_reducers(bias_targets(context.graph, context.plan))

    def call(self, context: PassContext) -> PassResult:
        assert context.statistics is not None and context.ranges is not None  # requires() checked them
        plan, stats = context.plan, context.statistics
        targets = bias_targets(context.graph, plan)
        weights = context.initializers(sorted({p.tensor for p in plan.points if p.role == "weight"})
                                       + bias_constants(targets))
        runner = LayerRunner(context.model)
        try:
            with context.progress(f"bias correction ({self.method})") as bar:
                run = counted(runner.run, bar)
                if self.method == "fast":
                    result = fast_bias_correction(targets, stats.stats, context.ranges, weights,
                                                  stats.observed_shapes, run, threshold=self.threshold)
                else:
                    subset = context.subset[:bias_correction_subset(len(context.subset))]
                    result = bias_correction(context.graph, plan, targets, stats.stats, context.ranges, weights,
                                             context.calibration.iter_samples(subset), run,
                                             threshold=self.threshold)
        finally:
            runner.clear()
        model = apply_weight_updates(context.model, result.updates, result.new_biases, pass_source(self.title))
        return PassResult(model, result.report(), inserted=bias_insertions(targets, result.new_biases, self.title),
                          added_biases=added_biases(result.new_biases, self.title))


def added_biases(new_biases: Mapping[str, tuple[str, object]], made_by: str) -> tuple[AddedBias, ...]:
    """The biases ``apply_weight_updates`` gives to layers without one, by layer."""
    return tuple(AddedBias(layer, bias, made_by) for layer, (bias, _) in sorted(new_biases.items()))


def bias_insertions(targets: Sequence[BiasTarget], new_biases: Mapping[str, object],
                    made_by: str) -> tuple[InsertedNode, ...]:
    """The Add nodes ``apply_weight_updates`` inserts for the new biases of MatMul layers."""
    return tuple(InsertedNode(matmul_bias_names(t.node, t.node_output)[0], "Add", made_by)
                 for t in targets if t.node in new_biases and t.op_type == "MatMul")
