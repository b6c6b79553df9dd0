"""Golden plans: every builder model on every target, rendered as text with trails.

Regenerate after an intended change with `REWRITER_REGEN_GOLDEN=1 python -m pytest tests/plan`
and review the diff: it shows exactly which placements moved and why.
"""
from __future__ import annotations

import os

import pytest

import models
from plan_helpers import GOLDEN, plan_model
from rewriter.report.plan_report import plan_text

MODELS = ["conv_bn_relu_chain", "residual_block", "concat_two_branches", "squeeze_excitation",
          "matmul_const_weights", "matmul_two_activations", "attention_block", "depthwise_conv", "tiny_cnn",
          "depthwise_after_conv"]
TARGETS = ["CPU", "GPU", "VPU", "GNA", "ANY", "ORT"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("builder", MODELS)
def test_golden_plan(builder: str, target: str) -> None:
    plan = plan_model(getattr(models, builder)(), target, name=builder)
    text = plan_text(plan)
    golden = GOLDEN / f"{builder}.{target}.txt"
    if os.environ.get("REWRITER_REGEN_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden.name}; run with REWRITER_REGEN_GOLDEN=1"
    assert text == golden.read_text(), f"plan for {builder} on {target} changed; see the diff above"
