"""Layer-wise tuning as a pass: new weight ranges and biases, from the float model's layer inputs and outputs."""
from __future__ import annotations

from rewriter.algorithms.bias_correction import bias_constants, bias_targets
from rewriter.algorithms.layerwise import float_layer_values, layerwise_subset, layerwise_tuning
from rewriter.calibrate.layer_runner import LayerRunner
from rewriter.ir.edit import apply_weight_updates
from rewriter.ir.view import graph_view
from rewriter.passes.base import Pass, PassContext, PassResult, counted
from rewriter.passes.bias_correction import added_biases, bias_insertions
from rewriter.sources import pass_source

__all__ = ["LayerwiseTuningPass"]


class LayerwiseTuningPass(Pass):
    """Per layer, the weight range and bias with the least output error (``rewriter.algorithms.layerwise``)."""

    name = "layerwise_tuning"
    title = "LayerwiseTuning"
    phase = "quantized"

    def call(self, context: PassContext) -> PassResult:
        assert context.ranges is not None  # requires() checked it
        # The context's graph is after bias correction: the biases it added are the layers' biases now.
        targets = bias_targets(context.graph, context.plan)
        if not targets:
            return PassResult(context.model, {"layers": [], "note": "no Conv/ConvTranspose/Gemm/MatMul with a "
                                                                    "quantized constant weight"})
        values = context.initializers(sorted({t.weight for t in targets}) + bias_constants(targets))
        subset = context.subset[:layerwise_subset(len(context.subset), context.options.layerwise_samples)]
        float_runner, runner = LayerRunner(context.float_model), LayerRunner(context.model)
        try:
            with context.progress("layer-wise tuning") as bar:
                reference = float_layer_values(graph_view(context.float_model), targets,
                                               context.calibration.iter_samples(subset), counted(float_runner.run, bar))
                result = layerwise_tuning(context.graph, context.plan, targets, context.ranges, values, reference,
                                          counted(runner.run, bar), context.options.ranges)
        finally:
            float_runner.clear()
            runner.clear()
        model = apply_weight_updates(context.model, result.updates, result.new_biases, pass_source(self.title))
        return PassResult(model, result.report(), ranges=result.ranges,
                          inserted=bias_insertions(targets, result.new_biases, self.title),
                          added_biases=added_biases(result.new_biases, self.title))
