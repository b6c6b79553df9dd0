"""Control flow: what happens to the nodes inside If/Loop/Scan bodies is said, never silent.

Nodes inside bodies are not planned; the plan's node record of the If/Loop says how many stay float and
why, the summary counts them, and the CLI prints one ``warning:`` line (a louder one when nothing at all
was quantized). The output still runs in onnxruntime with the float model's outputs.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import rewriter
from control_flow_models import if_on_sample_rate, loop_recurrence, rate_samples
from rewriter.calibrate.collect import collect_statistics
from rewriter.cli import main
from rewriter.errors import UserError
from rewriter.report.plan_report import control_flow_warning, plan_dict, plan_text


def _save(tmp_path, model: onnx.ModelProto, name: str = "model.onnx") -> str:
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def _data(tmp_path, samples: list[dict[str, np.ndarray]]) -> str:
    folder = tmp_path / "data"
    folder.mkdir()
    for i, sample in enumerate(samples):
        np.savez(folder / f"s{i}.npz", **sample)
    return str(folder)


def _audit(model: onnx.ModelProto):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        onnx.save(model, str(path))
        return rewriter.audit(path)


def _run(model_path: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).run(None, feed)


def test_plan_counts_the_nodes_inside_bodies_and_says_why() -> None:
    plan = _audit(if_on_sample_rate())
    record = plan.node("rate_switch")
    assert record is not None and record.status == "float" and record.body_nodes == 12
    assert "12 node(s)" in record.reason and "stay float" in record.reason
    assert any(d.source == "control-flow" and "main graph only" in d.detail for d in record.trail)
    doc = plan_dict(plan)
    assert doc["summary"]["nodes_in_bodies"] == 12
    assert next(n for n in doc["nodes"] if n["node"] == "rate_switch")["body_nodes"] == 12
    assert all("body_nodes" not in n for n in doc["nodes"] if n["node"] != "rate_switch")
    text = plan_text(plan)
    assert "warning: nothing was quantized: 12 of the model's 14 nodes are inside control-flow bodies" in text


def test_nested_bodies_are_counted_at_every_depth() -> None:
    outer = if_on_sample_rate()
    branches = outer.graph.node[1].attribute
    inner = onnx.helper.make_graph(
        [onnx.helper.make_node("If", ["is_high"], ["y"], name="inner", then_branch=branches[0].g,
                               else_branch=branches[1].g)],
        "wrap", [], [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    identity = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y1"], name="pass_through")], "id",
                                      [], [onnx.helper.make_tensor_value_info("y1", onnx.TensorProto.FLOAT, None)])
    del outer.graph.node[1]
    outer.graph.node.append(onnx.helper.make_node("If", ["is_high"], ["y"], name="outer",
                                                  then_branch=inner, else_branch=identity))
    record = _audit(outer).node("outer")
    assert record is not None and record.body_nodes == 1 + 12 + 1  # the inner If, its 12 nodes, the Identity


def test_partly_quantized_model_warns_about_the_bodies_only() -> None:
    plan = _audit(if_on_sample_rate(stem=True))
    assert plan.point("stem.weight") is not None  # the main graph is planned as usual
    note = control_flow_warning(plan)
    assert note is not None and note.startswith("12 node(s) inside control-flow bodies (If rate_switch (12))")
    assert "nothing was quantized" not in note
    assert control_flow_warning(_audit(loop_recurrence())).startswith("4 node(s)")  # type: ignore[union-attr]


def test_models_without_bodies_have_no_warning() -> None:
    import models
    assert control_flow_warning(_audit(models.tiny_cnn())) is None


def test_cli_warns_once_and_the_output_runs_like_the_float_model(tmp_path, capsys) -> None:
    model = _save(tmp_path, if_on_sample_rate())
    out, report = tmp_path / "q.onnx", tmp_path / "r.json"
    code = main(["quantize", model, "-o", str(out), "--data", _data(tmp_path, rate_samples(4)),
                 "--report", str(report), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err
    assert "nothing was quantized" in warnings[0] and "If rate_switch (12)" in warnings[0]
    assert json.loads(report.read_text())["summary"]["nodes_in_bodies"] == 12
    for rate in (16000, 8000):
        feed = rate_samples(1, rate, seed=5)[0]
        np.testing.assert_array_equal(_run(str(out), feed)[0], _run(model, feed)[0])


def test_cli_warns_about_the_loop_body(tmp_path, capsys) -> None:
    model = _save(tmp_path, loop_recurrence())
    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((1, 8)).astype(np.float32)} for _ in range(4)]
    out = tmp_path / "q.onnx"
    assert main(["quantize", model, "-o", str(out), "--data", _data(tmp_path, samples), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("warning:")] == [
        "warning: 4 node(s) inside control-flow bodies (Loop recurrence (4)) stay float: the planner places "
        "quantizers in the main graph only"]
    feed = {"x": samples[0]["x"]}
    np.testing.assert_allclose(_run(str(out), feed)[0], _run(model, feed)[0], atol=0.1)


def test_statistics_with_nothing_to_observe_check_the_samples_without_running_the_model(monkeypatch) -> None:
    import rewriter.calibrate.collect as collect

    def no_session(*args, **kwargs):
        raise AssertionError("a session was built although no tensor is observed")

    monkeypatch.setattr(collect, "Sessions", no_session)
    model = if_on_sample_rate()
    assert collect_statistics(model, [], {}, rate_samples(3)).num_samples == 3
    with pytest.raises(UserError, match="missing model input 'sr'"):
        collect_statistics(model, [], {}, [{"x": rate_samples(1)[0]["x"]}])
    with pytest.raises(UserError, match="no samples"):
        collect_statistics(model, [], {}, [])
