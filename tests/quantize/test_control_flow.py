"""Control flow: quantized inside the If branch the calibration data takes, and never silent about the rest.

A top-level If whose calibration samples all take one branch is quantized inside that branch (weights and
activations, outer-scope reads, nested Ifs), the other branch kept exactly as it was; the output runs in
onnxruntime like the float model within quantization error. Nodes left inside bodies (an If the samples
split on, a Loop) are counted on the node that holds them, and the CLI says so in one ``warning:`` line.
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
from rewriter.options import QuantizeOptions
from rewriter.pipeline import quantize
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
    assert "rewriter quantize quantizes inside a top-level If's branch when every calibration sample" in text


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
    samples = rate_samples(2, 16000) + rate_samples(2, 8000, seed=3)  # they split: no branch to calibrate
    code = main(["quantize", model, "-o", str(out), "--data", _data(tmp_path, samples),
                 "--report", str(report), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err
    assert warnings[0].startswith("warning: nothing was quantized: 12 of the model's 14 nodes are inside "
                                  "control-flow bodies (If rate_switch (12))")
    assert warnings[0].endswith("; If rate_switch: calibration samples take both branches (2 then_branch, "
                                "2 else_branch), so neither is quantized")
    assert "rewriter quantize quantizes" not in warnings[0]  # the run says what its data did instead
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


# --- quantized inside the branch every calibration sample takes ----------------------------------


def _branch(model: onnx.ModelProto, if_name: str, attr: str) -> onnx.GraphProto:
    node = next(n for n in model.graph.node if n.name == if_name)
    return next(a.g for a in node.attribute if a.name == attr)


def _sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    error = float(np.sum((reference - value) ** 2))
    return 10 * np.log10(float(np.sum(reference ** 2)) / max(error, 1e-20))


@pytest.mark.parametrize("as_constant_nodes", [False, True])
@pytest.mark.parametrize("stem", [False, True])
def test_the_taken_branch_is_quantized_and_the_other_kept_float(tmp_path, capsys, stem: bool,
                                                                 as_constant_nodes: bool) -> None:
    float_model = if_on_sample_rate(stem=stem, as_constant_nodes=as_constant_nodes)
    model = _save(tmp_path, float_model)
    out, report = tmp_path / "q.onnx", tmp_path / "r.json"
    channels = 1
    code = main(["quantize", model, "-o", str(out), "--data", _data(tmp_path, rate_samples(8, channels=channels)),
                 "--report", str(report), "--target", "ORT", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    quantized = onnx.load(str(out))
    onnx.checker.check_model(quantized, full_check=True)
    then = _branch(quantized, "rate_switch", "then_branch")
    ops = [n.op_type for n in then.node]
    # The branch's weights and activations: DequantizeLinear of int8 weights and Q/DQ pairs, inside the branch.
    assert ops.count("DequantizeLinear") >= 3 + 3 and ops.count("QuantizeLinear") >= 2, ops
    assert {"high_conv1", "high_conv2", "high_fc"} <= {n.name for n in then.node}
    weights = {t.name: t for t in quantized.graph.initializer}
    assert weights["high.conv1.weight_quantized"].data_type == onnx.TensorProto.INT8
    # The other branch is exactly as it was: float.
    assert _branch(quantized, "rate_switch", "else_branch") == _branch(float_model, "rate_switch", "else_branch")
    doc = json.loads(report.read_text())
    assert doc["control_flow"] == [{"node": "rate_switch", "then_samples": 8, "else_samples": 0,
                                    "quantized": "then_branch", "float_nodes": 12 if as_constant_nodes else 6}]
    assert any(p["tensor"] == "high.conv2.weight" for p in doc["fakequantize"])
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: If rate_switch: all 8 calibration samples take then_branch, which is quantized; "
                        f"else_branch ({12 if as_constant_nodes else 6} node(s)) stays float"], err
    for seed in range(3):
        high = rate_samples(1, 16000, seed=100 + seed)[0]
        expected, got = _run(model, high)[0], _run(str(out), high)[0]
        assert _sqnr_db(expected, got) > 20
        low = rate_samples(1, 8000, seed=100 + seed)[0]
        expected, got = _run(model, low)[0], _run(str(out), low)[0]
        if stem:  # the main graph's stem is quantized: close to float
            assert _sqnr_db(expected, got) > 20
        else:  # nothing on the 8 kHz path is quantized
            np.testing.assert_array_equal(got, expected)


def test_samples_that_split_keep_the_if_float(tmp_path, capsys) -> None:
    model = _save(tmp_path, if_on_sample_rate())
    samples = rate_samples(3, 16000) + rate_samples(2, 8000, seed=3)
    out, report = tmp_path / "q.onnx", tmp_path / "r.json"
    assert main(["quantize", model, "-o", str(out), "--data", _data(tmp_path, samples), "--report", str(report),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert json.loads(report.read_text())["control_flow"] == [
        {"node": "rate_switch", "then_samples": 3, "else_samples": 2, "quantized": None, "float_nodes": None}]
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "(3 then_branch, 2 else_branch), so neither is quantized" in warnings[0]


def test_a_nested_if_in_the_taken_branch_is_quantized_too(tmp_path, capsys) -> None:
    outer = if_on_sample_rate()
    then = _branch(outer, "rate_switch", "then_branch")
    # Wrap the then branch's layers in an inner If on a test the samples always pass (the input is finite).
    inner_then = onnx.GraphProto()
    inner_then.CopyFrom(then)
    inner_then.name = "inner_then"
    inner_else = onnx.helper.make_graph(
        [onnx.helper.make_node("ReduceMean", ["x"], ["fallback"], name="fallback", axes=[2], keepdims=0),
         onnx.helper.make_node("Tile", ["fallback", "four"], ["fallback_y"], name="fallback_tile")],
        "inner_else", [], [onnx.helper.make_tensor_value_info("fallback_y", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.numpy_helper.from_array(np.array([1, 4], np.int64), "four")])
    del then.node[:]
    del then.initializer[:]
    then.node.extend([
        onnx.helper.make_node("ReduceMax", ["x"], ["peak"], name="peak", keepdims=0),
        onnx.helper.make_node("Less", ["peak", "huge"], ["finite"], name="finite"),
        onnx.helper.make_node("If", ["finite"], ["high_y"], name="inner_switch", then_branch=inner_then,
                              else_branch=inner_else)])
    then.initializer.append(onnx.numpy_helper.from_array(np.array(1e30, np.float32), "huge"))
    onnx.checker.check_model(outer, full_check=True)
    model = _save(tmp_path, outer)
    out = tmp_path / "q.onnx"
    assert main(["quantize", model, "-o", str(out), "--data", _data(tmp_path, rate_samples(6)), "--target", "ORT",
                 "--quiet"]) == 0
    quantized = onnx.load(str(out))
    onnx.checker.check_model(quantized, full_check=True)
    inner = _branch(_branch_graph_model(quantized, "rate_switch", "then_branch"), "inner_switch", "then_branch")
    assert "QuantizeLinear" in [n.op_type for n in inner.node]
    for rate in (16000, 8000):
        feed = rate_samples(1, rate, seed=42)[0]
        assert _sqnr_db(_run(model, feed)[0], _run(str(out), feed)[0]) > 20


def _branch_graph_model(model: onnx.ModelProto, if_name: str, attr: str) -> onnx.ModelProto:
    """The branch as a model's graph, so ``_branch`` can look into its nodes."""
    wrapper = onnx.ModelProto()
    wrapper.graph.CopyFrom(_branch(model, if_name, attr))
    return wrapper


def test_branches_that_reuse_names_stay_valid() -> None:
    """Sibling branches may define the same names (their scopes are apart); inlined, one set is renamed."""
    model = if_on_sample_rate()
    for attr in next(n for n in model.graph.node if n.name == "rate_switch").attribute:
        tag, body = attr.g.name, attr.g
        plain = {t.name: t.name.replace(f"{tag}.", "") for t in body.initializer}
        plain.update({o: o.replace(f"{tag}_", "") for n in body.node for o in n.output})
        for t in body.initializer:
            t.name = plain[t.name]
        for n in body.node:
            n.input[:] = [plain.get(i, i) for i in n.input]
            n.output[:] = [plain.get(o, o) for o in n.output]
        for out in body.output:
            out.name = plain.get(out.name, out.name)
    onnx.checker.check_model(model, full_check=True)
    result = quantize(model, rate_samples(4), QuantizeOptions(target="ORT", progress=False))
    onnx.checker.check_model(result.model, full_check=True)
    assert result.report["control_flow"][0]["quantized"] == "then_branch"
    for rate in (16000, 8000):
        feed = rate_samples(1, rate, seed=7)[0]
        expected = _run_model(model, feed)
        got = _run_model(result.model, feed)
        if rate == 8000:
            np.testing.assert_array_equal(got, expected)
        else:
            assert _sqnr_db(expected, got) > 20


def _run_model(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def test_an_if_on_a_static_shape_is_quantized_in_the_branch_the_shape_picks() -> None:
    """TF cond and torch.jit write shape tests: after constant folding the condition is a constant."""
    model = if_on_sample_rate()
    graph = model.graph
    del graph.node[0]  # the Equal on the sample rate
    graph.node.insert(0, onnx.helper.make_node("Shape", ["x"], ["x_shape"], name="x_shape"))
    graph.node.insert(1, onnx.helper.make_node("Gather", ["x_shape", "time_axis"], ["length"], name="length",
                                               axis=0))
    graph.node.insert(2, onnx.helper.make_node("Greater", ["length", "short"], ["is_high"], name="is_long"))
    graph.initializer.extend([onnx.numpy_helper.from_array(np.array(2, np.int64), "time_axis"),
                              onnx.numpy_helper.from_array(np.array(32, np.int64), "short")])
    del graph.input[1]  # no sample-rate input any more
    onnx.checker.check_model(model, full_check=True)
    samples = [{"x": s["x"]} for s in rate_samples(3)]
    result = quantize(model, samples, QuantizeOptions(target="ORT", progress=False))
    assert result.report["control_flow"] == [{"node": "rate_switch", "then_samples": 3, "else_samples": 0,
                                              "quantized": "then_branch", "float_nodes": 6}]
    onnx.checker.check_model(result.model, full_check=True)
    feed = {"x": rate_samples(1, seed=11)[0]["x"]}
    assert _sqnr_db(_run_model(model, feed), _run_model(result.model, feed)) > 20


def test_the_float_branch_follows_the_opset_emission_needs() -> None:
    """An opset-11 model gets opset 13 for per-channel scales: its float branch is converted too (Squeeze's
    axes become an input), or the output would not load."""
    model = if_on_sample_rate()
    low = next(a.g for a in model.graph.node[1].attribute if a.name == "else_branch")
    result_name = low.output[0].name
    low.node.extend([onnx.helper.make_node("Unsqueeze", [result_name], ["low_u"], name="low_unsqueeze", axes=[0]),
                     onnx.helper.make_node("Squeeze", ["low_u"], ["low_s"], name="low_squeeze", axes=[0])])
    low.output[0].name = "low_s"
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", 11))
    model.ir_version = 6
    onnx.checker.check_model(model, full_check=True)
    result = quantize(model, rate_samples(4), QuantizeOptions(progress=False))
    assert max(o.version for o in result.model.opset_import if o.domain in ("", "ai.onnx")) == 13
    onnx.checker.check_model(result.model, full_check=True)
    for rate in (16000, 8000):
        feed = rate_samples(1, rate, seed=7)[0]
        expected, got = _run_model(model, feed), _run_model(result.model, feed)
        if rate == 8000:
            np.testing.assert_array_equal(got, expected)
        else:
            assert _sqnr_db(expected, got) > 20
