"""Golden plans: every builder model on every target, rendered as text with trails; a few also as the
audit's JSON (schema rewriter.plan/2, decisions by id), which must expand back to the plan/1 form.

Regenerate after an intended change with `REWRITER_REGEN_GOLDEN=1 python -m pytest tests/plan`
and review the diff: it shows exactly which placements moved and why.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import models
from plan_helpers import GOLDEN, plan_model

from rewriter.plan import QuantPlan
from rewriter.report.plan_report import plan_dict, plan_json, plan_text

MODELS = ["conv_bn_relu_chain", "residual_block", "concat_two_branches", "squeeze_excitation",
          "matmul_const_weights", "matmul_two_activations", "attention_block", "depthwise_conv", "tiny_cnn",
          "depthwise_after_conv", "conv_silu_head"]
TARGETS = ["CPU", "GPU", "VPU", "GNA", "ANY", "ORT"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("builder", MODELS)
def test_golden_plan(builder: str, target: str) -> None:
    plan = plan_model(getattr(models, builder)(), target, name=builder)
    _check_golden(plan_text(plan), GOLDEN / f"{builder}.{target}.txt", f"plan for {builder} on {target}")


def _check_golden(text: str, golden: Path, what: str) -> None:
    if os.environ.get("REWRITER_REGEN_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden.name}; run with REWRITER_REGEN_GOLDEN=1"
    assert text == golden.read_text(), f"{what} changed; see the diff above"


JSON_MODELS = ["tiny_cnn", "attention_block", "concat_two_branches"]


@pytest.mark.parametrize("builder", JSON_MODELS)
def test_golden_plan_json(builder: str) -> None:
    plan = plan_model(getattr(models, builder)(), "CPU", name=builder)
    _check_golden(plan_json(plan), GOLDEN / f"{builder}.CPU.json", f"JSON plan for {builder}")


def _expand(doc: dict) -> dict:
    """plan/2 -> plan/1 by following the ids: the independent reading of the compact form."""
    def trail(ids: list[int]) -> list[dict]:
        return [dict(zip(("action", "source", "loc", "detail"), doc["decisions"][i])) for i in ids]

    out = {k: doc[k] for k in ("model", "target", "spec", "preset", "rules", "summary")}
    out["schema"] = "rewriter.plan/1"
    out["fakequantize"] = [{**p, "config": doc["configs"][p["config"]], "trail": trail(p["trail"]),
                            "consumers": [{"node": n, "port": port} for n, port in p["consumers"]]}
                           for p in doc["fakequantize"]]
    for key in ("requantized", "int32_biases", "nodes"):
        out[key] = [{**r, "trail": trail(r["trail"])} for r in doc[key]]
    out["activation_storage"] = {**doc["activation_storage"], "trail": trail(doc["activation_storage"]["trail"])}
    return out


@pytest.mark.parametrize("target", ["CPU", "GPU", "ORT"])
@pytest.mark.parametrize("builder", MODELS)
def test_compact_json_carries_every_decision(builder: str, target: str) -> None:
    plan = plan_model(getattr(models, builder)(), target, name=builder)
    doc = json.loads(plan_json(plan))
    assert doc["schema"] == "rewriter.plan/2"
    assert len(doc["decisions"]) == len({tuple(d) for d in doc["decisions"]}), "a decision listed twice"
    assert _expand(doc) == plan_dict(plan)


def test_compact_json_lines_are_what_the_json_module_writes() -> None:
    """The records are written as text, not through json.dumps: each line must be exactly json.dumps's text
    for the same value, also for names that need escapes, a unified group, an int32 bias without a bias
    tensor yet and a node holding bodies."""
    from dataclasses import replace

    plan = plan_model(models.tiny_cnn(), "ORT", name="tiny_cnn")
    odd = 'n\u00e9"\\\t\u2603'
    points = tuple(replace(p, tensor=p.tensor + odd, unify_group=k if k % 2 else None)
                   for k, p in enumerate(plan.points))
    nodes = tuple(replace(n, node=n.node + odd, reason=n.reason + odd, body_nodes=k % 3)
                  for k, n in enumerate(plan.nodes))
    biases = tuple(replace(b, bias="") for b in plan.int32_biases)
    assert points and nodes and biases
    text = plan_json(replace(plan, points=points, nodes=nodes, int32_biases=biases))
    for line in text.splitlines()[1:-1]:
        body = line.rstrip(",")
        if body.startswith("{") or body.startswith("["):
            assert json.dumps(json.loads(body), separators=(",", ":")) == body
    assert json.loads(text)["nodes"][1]["node"].endswith(odd)


def _long_plan(pairs: int = 1500) -> QuantPlan:
    """The CPU plan of ``pairs`` Conv + Relu pairs (1,500: more lines than one batch of writes holds)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], "x"
    for k in range(pairs):
        inits.append(numpy_helper.from_array(np.full((2, 2, 1, 1), 0.5, np.float32), f"w{k}"))
        nodes += [helper.make_node("Conv", [x, f"w{k}"], [f"c{k}"], name=f"conv{k}"),
                  helper.make_node("Relu", [f"c{k}"], [f"r{k}"], name=f"relu{k}")]
        x = f"r{k}"
    graph = helper.make_graph(nodes, "long", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 2, 4, 4])], inits)
    return plan_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "CPU", name="long")


def test_a_large_plan_is_written_in_pieces() -> None:
    """The audit writes its table and its JSON piece by piece: the same text as the whole string, in several
    writes, so a million-node plan's document is never one string in memory."""
    import io

    from rewriter.report.plan_report import write_plan_json, write_plan_text

    plan = _long_plan()

    class Recorder(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            self.writes += 1
            return super().write(text)

    for write, whole in ((lambda s: write_plan_text(plan, s), plan_text(plan)),
                         (lambda s: write_plan_json(plan, s), plan_json(plan))):
        stream = Recorder()
        write(stream)
        assert stream.getvalue() == whole
        assert stream.writes > 1 and whole.count("\n") > 4096


def test_the_json_records_are_made_as_they_are_written() -> None:
    """The decision table comes first in the document, but the records' text is made only as it is written.
    Made before the first write, the records were the larger part of the writer's peak: 1.31 times the
    document's size on this plan, against 0.73 with the ids numbered first (the tables of ids and a batch of
    lines remain)."""
    import tracemalloc

    from rewriter.report.plan_report import plan_json, write_plan_json

    plan = _long_plan(6000)
    size = len(plan_json(plan))

    class Counting:
        written = 0

        def write(self, text: str) -> int:
            self.written += len(text)
            return len(text)

    stream = Counting()
    tracemalloc.start()
    try:
        write_plan_json(plan, stream)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stream.written == size
    assert peak < size, (peak, size)


def test_decision_ids_follow_equality_in_first_met_order() -> None:
    """The JSON's decision table gives equal decisions one id and distinct ones their own, numbered in the
    order first met, whether trails share the objects, hold equal copies, or hold distinct decisions that
    share a detail; checked against a brute-force numbering by the decisions' fields."""
    import random

    from rewriter.errors import SourceLoc
    from rewriter.plan import Decision, decision_key
    from rewriter.report.plan_report import _Tables

    rng = random.Random(7)
    for _ in range(200):
        pool = [Decision(rng.choice(["insert", "spec", "ignore"]), rng.choice(["r1", "r2"]),
                         SourceLoc("a.rules", rng.randint(1, 2), 1), rng.choice(["", "x", "y", "z"]))
                for _ in range(rng.randint(1, 12))]
        def equal_copy(d: Decision) -> Decision:
            return Decision(d.action, d.source, SourceLoc(d.loc.file, d.loc.line, d.loc.column), d.detail)

        trails = [[rng.choice(pool) if rng.random() < 0.7 else equal_copy(rng.choice(pool))
                   for _ in range(rng.randint(0, 6))] for _ in range(rng.randint(1, 6))]
        tables = _Tables()
        got = [tables.trail(trail) for trail in trails]
        numbering: dict[tuple, int] = {}
        expected = [[numbering.setdefault(decision_key(d), len(numbering)) for d in trail] for trail in trails]
        assert got == expected
        assert [decision_key(d) for d in tables.decisions] == list(numbering)
