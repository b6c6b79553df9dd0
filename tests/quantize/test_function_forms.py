"""Normalization, GELU and softmax stay float in every export form, and quantize as well as their op.

The forms are built in tests/function_forms.py. For each form and target the plan must put no
FakeQuantize on any input of a node inside the function (8-bit or narrower: GNA's 32-bit
activation grid in front of a Sigmoid is its spec's choice, as the original tool's GNA config
quantized its activation functions). After
quantization, onnxruntime runs the form and its op form (the same function, the same weights):
the written-out form must keep the op form's output SQNR against float.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from function_forms import FORMS
from models import random_inputs
from rewriter.api import load_plan_inputs, plan_graph, quantize
from rewriter.ir.normalize import normalize
from rewriter.ir.view import graph_view
from rewriter.match.planner import PlanOptions

TARGETS = ("CPU", "GPU", "VPU", "GNA", "ANY", "ORT")
# GPU and ANY place quantizers with the CPU rules; the SQNR check runs on the four placements.
SQNR_TARGETS = ("CPU", "VPU", "GNA", "ORT")
WRITTEN_OUT = sorted(name for name, form in FORMS.items() if form.reference)


def _run(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, f)[0] for f in feeds])


def _sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - approx) ** 2)))


@pytest.mark.parametrize("name", WRITTEN_OUT)
def test_each_written_out_form_computes_its_op(name: str) -> None:
    """The builders are honest: each form gives the op's float output (so the SQNR comparison is fair)."""
    form = FORMS[name]
    model, reference = form.build(), FORMS[form.reference].build()
    feeds = random_inputs(model, 2, seed=5)
    np.testing.assert_allclose(_run(model, feeds), _run(reference, feeds), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", sorted(FORMS))
def test_nothing_inside_a_function_reads_a_narrow_fake_quantize(name: str, target: str) -> None:
    form = FORMS[name]
    plan = plan_graph(graph_view(normalize(form.build()).model), load_plan_inputs(target, (), None), PlanOptions(),
                      name)
    inside = set(form.inside)
    statuses = {n.node: n.status for n in plan.nodes}
    assert inside <= set(statuses), f"the form names nodes the plan does not have: {inside - set(statuses)}"
    wrong = [(p.tensor, c.node, p.config.bits) for p in plan.points for c in p.consumers
             if c.node in inside and p.config.bits <= 8]
    assert not wrong, f"{name} on {target}: FakeQuantize inside the function: {wrong}"
    assert statuses["post_matmul"] == "quantized"


def _quantized_sqnr(model: onnx.ModelProto, target: str) -> float:
    quantized, _ = quantize(model, random_inputs(model, 16, seed=1), target=target)
    feeds = random_inputs(model, 8, seed=2)
    return _sqnr_db(_run(model, feeds), _run(quantized, feeds))


@pytest.mark.parametrize("target", SQNR_TARGETS)
def test_written_out_forms_keep_the_op_forms_output_sqnr(target: str) -> None:
    op_sqnr: dict[str, float] = {}
    for name in WRITTEN_OUT:
        reference = FORMS[name].reference
        assert reference is not None
        if reference not in op_sqnr:
            op_sqnr[reference] = _quantized_sqnr(FORMS[reference].build(), target)
        got = _quantized_sqnr(FORMS[name].build(), target)
        assert got >= op_sqnr[reference] - 0.5, (
            f"{name} on {target}: output SQNR {got:.1f} dB, its op form {op_sqnr[reference]:.1f} dB")
        if target != "VPU":  # VPU's per-tensor activations cost the two MatMuls around the function more
            assert got > 24, f"{name} on {target}: output SQNR {got:.1f} dB"
