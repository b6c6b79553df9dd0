"""The speed guard: reverts to float, through the plan, the quantized groups that make onnxruntime slower.

Timings are made up here (a fake profiler prices each node of the model it is given), so every decision is
deterministic; one test runs onnxruntime's real profiler and checks only the structure of what it reports.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper
import onnx
import pytest

import fake_timing
import models
import rewriter.emit.ort_check as ort_check
import rewriter.emit.runtime_check as runtime_check
import rewriter.tuning.self_check as self_check
import rewriter.tuning.speed_guard as speed_guard
from rewriter.api import audit, reverts_in_report
from rewriter.cli import main
from rewriter.emit.runtime_profile import RunProfile, measure_pair, profiled_node, qdq_readers
from rewriter.ir.normalize import normalize
from rewriter.ir.view import graph_view
from rewriter.options import QuantizeOptions
from rewriter.pipeline import quantize
from rewriter.match.planner import RevertRequest
from rewriter.tuning.check_run import with_revert_details
from rewriter.tuning.revert_search import revert_search
from rewriter.tuning.speed_decisions import SPEED_SOURCE
from rewriter.tuning.speed_guard import revert_closure, speed_guard_applies


_priced = fake_timing.priced
_steady_clock = fake_timing.steady_clock


def _data(model: onnx.ModelProto, n: int = 12) -> list[dict[str, np.ndarray]]:
    return models.random_inputs(model, n, seed=1)


def test_a_group_slower_quantized_is_reverted_through_the_plan_with_its_measured_times(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # dw_conv runs 3x slower quantized, pw_conv 2x faster: only dw_conv goes back to float.
    # pw_conv alone keeps an integer kernel here (the real onnxruntime would fuse it only with a
    # QuantizeLinear after it, and would then have the guard return it to float too).
    monkeypatch.setattr(speed_guard, "integer_kernels", lambda model: 1)
    fake_timing.install(monkeypatch, _priced({"dw_conv": 300.0, "pw_conv": 50.0}))
    _steady_clock(monkeypatch)
    model = models.depthwise_conv()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4))
    speed = result.report["speed"]
    assert [r["node"] for r in speed["reverts"]] == ["dw_conv"]
    assert speed["initial_speedup"] < 1.0 <= speed["final_speedup"]
    node = result.plan.node("dw_conv")
    assert node is not None and node.status == "reverted"
    decision = next(d for d in node.trail if d.action == "revert")
    # Its group is the Conv and the Relu fused into its kernel (100 us either way).
    assert decision.source == SPEED_SOURCE and "400 us against 200 us" in decision.detail
    assert result.plan.node("pw_conv").status == "quantized"
    readers = {r for rs in qdq_readers(result.model).values() for r in rs}
    assert "dw_conv" not in readers and "pw_conv" in readers, "the output is the re-made plan"
    # A revert only raises fidelity; the report's fidelity is the final model's.
    assert result.report["fidelity"]["measured_after"] == "the speed guard's reverts"
    # audit --report re-makes the same plan from the report.
    report = tmp_path / "report.json"
    report.write_text(json.dumps(result.report))
    onnx.save(model, tmp_path / "model.onnx")
    plan = audit(tmp_path / "model.onnx", target="ORT", reverted=reverts_in_report(report, "ORT"))
    assert plan.node("dw_conv").status == "reverted" and plan.node("pw_conv").status == "quantized"


def test_the_accuracy_aware_base_trial_lists_the_speed_guards_reverts_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every later trial's configuration starts from the plan's reverts (both guards'); the base trial must
    # list the same ones, not only the fidelity guard's.
    from rewriter.search.accuracy_aware import _guard_nodes
    monkeypatch.setattr(speed_guard, "integer_kernels", lambda model: 1)
    fake_timing.install(monkeypatch, _priced({"dw_conv": 300.0, "pw_conv": 50.0}))
    _steady_clock(monkeypatch)
    model = models.depthwise_conv()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4))
    assert [r["node"] for r in result.report["speed"]["reverts"]] == ["dw_conv"]
    assert _guard_nodes(result) == ["dw_conv"]


def test_all_losing_groups_go_in_one_step_then_each_is_tried_quantized_again_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_timing.install(monkeypatch, _priced({"res_conv1": 300.0, "res_conv2": 250.0,
                                                              "stem_conv": 50.0, "branch_a": 50.0,
                                                              "branch_b": 50.0}))
    _steady_clock(monkeypatch)
    model = models.tiny_cnn()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4))
    speed = result.report["speed"]
    steps = [(m["action"], m["nodes"], m["kept"]) for m in speed["measurements"]]
    # res_conv2 quantized again alone is slower: it stays reverted. res_conv1 quantized again alone changes
    # nothing, because reverting res_conv2 reverts it too (nothing quantized would read its result).
    assert steps == [("revert", ["res_conv1", "res_conv2"], True), ("requantize", ["res_conv2"], False),
                     ("requantize", ["res_conv1"], True)]
    assert [(r["node"], r["with"]) for r in speed["reverts"]] == [("res_conv2", ["res_conv1"])]
    assert result.plan.node("res_conv1").status == "reverted"
    assert "reverted with res_conv2" in next(d.detail for d in result.plan.node("res_conv1").trail
                                             if d.action == "revert")
    assert result.plan.node("stem_conv").status == "quantized", "another quantized node reads its result"


def test_the_search_ends_on_a_measured_attempt_without_planning_it_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The search keeps the revert it measured; its final plan only gains the reasons, and must equal what a
    # fresh re-plan with those reasons gives, with the very model that attempt emitted.
    made: list[object] = []
    real_reverter = speed_guard.revert_through_plan

    def counting(*args, **kwargs):
        carry_out = real_reverter(*args, **kwargs)

        def counted(reverts):
            result = carry_out(reverts)
            made.append((reverts, result))
            return result
        return counted
    monkeypatch.setattr(speed_guard, "revert_through_plan", counting)
    monkeypatch.setattr(speed_guard, "integer_kernels", lambda model: 1)
    fake_timing.install(monkeypatch, _priced({"dw_conv": 300.0, "pw_conv": 50.0}))
    _steady_clock(monkeypatch)
    model = models.depthwise_conv()
    options = QuantizeOptions(target="ORT", subset_size=8, check_samples=4, speed_cache=False)
    result = quantize(model, _data(model), options)
    speed = result.report["speed"]
    assert [r["node"] for r in speed["reverts"]] == ["dw_conv"]
    assert len(made) == len(speed["measurements"]), "one re-plan per measurement, none for the final plan"
    (_, attempt), = [(r, m) for r, m in made if [q.node for q in r] == ["dw_conv"]]
    assert result.model.SerializeToString() == attempt.emitted.model.SerializeToString()
    detail = next(d.detail for d in result.plan.node("dw_conv").trail if d.action == "revert")
    assert "400 us against 200 us" in detail
    # With no attempt kept (as for a large model), the final plan is made again: the same plan and bytes.
    monkeypatch.setattr(speed_guard, "_MAX_KEPT_MODEL_BYTES", 0)
    made.clear()
    replanned = quantize(model, _data(model), options)
    assert len(made) == len(speed["measurements"]) + 1
    assert replanned.plan == result.plan
    assert replanned.model.SerializeToString() == result.model.SerializeToString()


def test_with_revert_details_equals_a_re_plan_with_those_details(tmp_path: Path) -> None:
    path = tmp_path / "tiny_cnn.onnx"
    onnx.save(models.tiny_cnn(), path)
    plain = [RevertRequest("res_conv2", SPEED_SOURCE), RevertRequest("res_conv1", SPEED_SOURCE, "companion")]
    detailed = [RevertRequest("res_conv2", SPEED_SOURCE, "measured 300 us"),
                RevertRequest("res_conv1", SPEED_SOURCE, "reverted with res_conv2")]
    updated = with_revert_details(audit(path, target="ORT", reverted=plain), detailed)
    assert updated == audit(path, target="ORT", reverted=detailed)
    assert updated != audit(path, target="ORT", reverted=plain), "the details are in the plan"


def test_same_inputs_same_timings_same_output(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_timing.install(monkeypatch, _priced({"dw_conv": 300.0, "pw_conv": 50.0}))
    _steady_clock(monkeypatch)
    model = models.depthwise_conv()
    options = QuantizeOptions(target="ORT", subset_size=8, check_samples=4)
    first = quantize(model, _data(model), options).model.SerializeToString()
    assert quantize(model, _data(model), options).model.SerializeToString() == first


def _no_timing(*args, **kwargs):
    raise AssertionError("the guard timed a model although its decision was stored")


def test_a_repeated_run_replays_the_stored_decision_untimed_and_writes_the_same_bytes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Timings that change from call to call, as a loaded machine's do: the first run reverts dw_conv.
    fake_timing.install(monkeypatch, _priced({"dw_conv": 300.0, "pw_conv": 50.0}))
    _steady_clock(monkeypatch)
    model = models.depthwise_conv()
    options = QuantizeOptions(target="ORT", subset_size=8, check_samples=4, speed_cache=str(tmp_path / "c"))
    first = quantize(model, _data(model), options)
    assert [r["node"] for r in first.report["speed"]["reverts"]] == ["dw_conv"]
    assert len(list((tmp_path / "c").glob("*.json"))) == 1
    # The second run would now find dw_conv fast; it must not time anything and must decide the same.
    fake_timing.install(monkeypatch, _no_timing)
    second = quantize(model, _data(model), options)
    assert second.model.SerializeToString() == first.model.SerializeToString()
    assert second.report["speed"]["replayed_from"].startswith(str(tmp_path / "c"))
    assert second.report["speed"]["reverts"] == first.report["speed"]["reverts"]
    assert second.plan.node("dw_conv").status == "reverted"
    assert next(d.detail for d in second.plan.node("dw_conv").trail if d.action == "revert") == \
        next(d.detail for d in first.plan.node("dw_conv").trail if d.action == "revert")
    assert second.report["fidelity"]["measured_after"] == "the speed guard's reverts"


def test_another_model_machine_or_option_is_measured_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []
    priced = _priced({"dw_conv": 300.0, "pw_conv": 50.0})

    def counted(*args, **kwargs):
        calls.append(1)
        return priced(*args, **kwargs)
    fake_timing.install(monkeypatch, counted)
    _steady_clock(monkeypatch)
    model = models.depthwise_conv()
    options = QuantizeOptions(target="ORT", subset_size=8, check_samples=4, speed_cache=str(tmp_path))
    quantize(model, _data(model), options)
    measured = len(calls)
    quantize(model, _data(model), options)
    assert len(calls) == measured, "same model, options and machine: replayed"
    quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4,
                                                   ignore_scope=("pw_conv",), speed_cache=str(tmp_path)))
    assert len(calls) > measured, "another plan: measured"
    measured = len(calls)
    real = speed_guard.machine_fingerprint()
    monkeypatch.setattr(speed_guard, "machine_fingerprint", lambda: {**real, "cpu": "another CPU"})
    quantize(model, _data(model), options)
    assert len(calls) > measured, "another machine: measured"
    measured = len(calls)
    quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4, speed_cache=False))
    quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4, speed_cache=False))
    assert len(calls) >= measured + 2 * 2, "no cache: every run measures"


def test_an_unreadable_entry_is_measured_again_and_replaced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_timing.install(monkeypatch, _priced({"dw_conv": 300.0, "pw_conv": 50.0}))
    _steady_clock(monkeypatch)
    model = models.depthwise_conv()
    options = QuantizeOptions(target="ORT", subset_size=8, check_samples=4, speed_cache=str(tmp_path))
    first = quantize(model, _data(model), options)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text("{not json")
    second = quantize(model, _data(model), options)
    assert "replayed_from" not in second.report["speed"]
    assert second.model.SerializeToString() == first.model.SerializeToString()
    assert json.loads(entry.read_text())["schema"] == "rewriter.speed-cache/1"


def test_the_default_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rewriter.tuning.speed_cache import default_cache_dir
    monkeypatch.setenv("REWRITER_CACHE_DIR", str(tmp_path / "r"))
    assert default_cache_dir() == tmp_path / "r" / "speed"
    monkeypatch.delenv("REWRITER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "rewriter" / "speed"


def test_size_mode_keeps_the_groups_that_hold_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_timing.install(monkeypatch, _priced({"dw_conv": 300.0, "pw_conv": 50.0}))
    _steady_clock(monkeypatch)
    model = models.depthwise_conv()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4,
                                                           optimize_for="size"))
    assert result.report["speed"]["reverts"] == [] and result.plan.node("dw_conv").status == "quantized"
    assert result.report["speed"]["stopped"] == "no group costs more than it saves"


def test_a_revert_that_does_not_pay_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # Attribution says pw_conv's group costs more (230 > 200 us), but reverting it takes dw_conv's integer
    # kernel with it (nothing quantized would read dw_conv's result), which is fast: the model gets slower.
    fake_timing.install(monkeypatch, _priced({"dw_conv": 10.0, "pw_conv": 130.0}))
    _steady_clock(monkeypatch)
    model = models.depthwise_conv()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4))
    speed = result.report["speed"]
    assert speed["reverts"] == []
    assert [m["nodes"] for m in speed["measurements"]] == [["pw_conv"]] and not speed["measurements"][0]["kept"]


def test_guard_is_on_for_qdq_on_the_ort_target_only() -> None:
    assert speed_guard_applies(QuantizeOptions(target="ORT"))
    assert not speed_guard_applies(QuantizeOptions(target="CPU"))
    assert speed_guard_applies(QuantizeOptions(target="CPU", speed_guard=True))
    assert not speed_guard_applies(QuantizeOptions(target="ORT", speed_guard=False))
    assert not speed_guard_applies(QuantizeOptions(output_format="fakequantize", speed_guard=True))


def test_revert_closure_takes_the_units_that_would_lose_their_integer_kernel() -> None:
    graph = graph_view(normalize(models.depthwise_conv()).model)
    units = {"dw_conv", "pw_conv"}
    assert revert_closure(graph, units, "pw_conv") == ("dw_conv", "pw_conv")
    assert revert_closure(graph, units, "dw_conv") == ("dw_conv",)
    # A unit whose result another quantized unit still reads keeps its kernel.
    tiny = graph_view(normalize(models.tiny_cnn()).model)
    tiny_units = {n.name for n in tiny.nodes if n.op_type == "Conv"}
    assert "stem" not in revert_closure(tiny, tiny_units, "branch_a")


def test_profiled_names_map_back_through_fusion_suffixes_and_written_tensors() -> None:
    # onnxruntime's names for a QLinearConv made from conv0, and a Conv+Relu named after the Relu's output.
    known = speed_guard.names_of([("conv0", ("conv0_out",)), ("relu0", ("relu_0.tmp_0",))])
    assert profiled_node("conv0_token_2", known) == "conv0"
    assert profiled_node("relu_0.tmp_0_nchwc", known) == "relu0"
    assert profiled_node("ReorderInput_token_14", known) is None


def test_revert_search_margin_ignores_gains_below_it() -> None:
    scores = {(): 1.0, ("a",): 1.02, ("b",): 1.2, ("a", "b"): 1.22}
    result = revert_search(["a", "b"], lambda units: scores[units], 1.0, float("inf"), 10, 1, margin=0.05)
    assert [r.unit for r in result.reverted] == ["b"]
    exact = revert_search(["a", "b"], lambda units: scores[units], 1.0, float("inf"), 10, 1)
    assert sorted(r.unit for r in exact.reverted) == ["a", "b"]


def test_cli_flags(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(models.depthwise_conv(), model)
    data = tmp_path / "data"
    data.mkdir()
    for i, sample in enumerate(_data(models.depthwise_conv(), 6)):
        np.save(data / f"{i}.npy", sample["input"])
    report = tmp_path / "r.json"
    args = ["quantize", str(model), "-o", str(tmp_path / "q.onnx"), "--data", str(data), "--report", str(report),
            "--quiet"]
    assert main(args + ["--no-speed-guard"]) == 0
    assert "speed" not in json.loads(report.read_text())
    assert main(args + ["--optimize-for", "size"]) == 0
    assert json.loads(report.read_text())["speed"]["optimize_for"] == "size"
    with pytest.raises(SystemExit) as exit_info:
        main(args + ["--optimize-for", "speed"])
    assert exit_info.value.code == 2
    cache = tmp_path / "cache"
    assert main(args + ["--speed-cache", str(cache)]) == 0
    assert len(list(cache.glob("*.json"))) == 1
    assert main(args + ["--speed-cache", str(cache)]) == 0
    assert json.loads(report.read_text())["speed"]["replayed_from"].startswith(str(cache))
    assert main(args + ["--no-speed-cache"]) == 0
    assert "replayed_from" not in json.loads(report.read_text())["speed"]
    with pytest.raises(SystemExit) as exit_info:
        main(args + ["--no-speed-cache", "--speed-cache", str(cache)])
    assert exit_info.value.code == 2


@pytest.mark.real_profiler
def test_real_profiler_reports_every_quantized_group_and_its_own_cost() -> None:
    model = models.tiny_cnn()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4))
    speed = result.report["speed"]
    assert [t["threads"] for t in speed["initial"]["threads"]] == ["1 thread"]
    assert all(t["float_ms"] > 0 and t["quantized_ms"] > 0 for t in speed["initial"]["threads"])
    quantized = {n.node for n in result.plan.nodes if n.status == "quantized"}
    assert quantized <= {g["node"] for g in speed["groups"]}
    assert speed["cost_s"] >= 0
    # One plain float pass over the 8 calibration samples, estimated from the profile: never over the
    # statistics pass, which runs the same model with its intermediate tensors exposed.
    float_ms = speed["initial"]["threads"][0]["float_ms"]
    assert speed["budget_s"] == pytest.approx(min(8 * float_ms / 1e3, result.report["timings_s"]["statistics"]),
                                              abs=1.5e-3)
    assert speed["stopped"] in ("target met", "budget spent", "no candidate left", "revert limit",
                                "time budget spent", "no group costs more than it saves")
    assert result.report["timings_s"]["speed_guard"] >= 0


@pytest.mark.real_profiler
def test_measure_pair_times_both_models_and_names_their_nodes() -> None:
    model = models.conv_bn_relu_chain()
    feeds = _data(model, 3)
    float_profile, same = measure_pair(model, model, feeds, runs=4)
    assert float_profile.runs == same.runs == 4
    assert float_profile.total_us > 0 and sum(float_profile.nodes.values()) <= float_profile.total_us
    known = speed_guard.names_of((n.name, tuple(n.output)) for n in model.graph.node)
    named = [profiled_node(name, known) for name in float_profile.nodes]
    assert any(named), f"no profiled node maps back to the model: {sorted(float_profile.nodes)}"


@pytest.mark.real_profiler
def test_a_model_too_large_to_serialize_is_profiled_from_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from rewriter.calibrate import session as calib_session

    model = models.conv_bn_relu_chain()
    feeds = _data(model, 2)
    # Every model counts as large: the sessions must come from a saved file, never from the whole message.
    monkeypatch.setattr(calib_session, "LARGE_MODEL_BYTES", 0)
    sources: list[type] = []
    real = calib_session.ort.InferenceSession
    monkeypatch.setattr(calib_session.ort, "InferenceSession",
                        lambda source, *args, **kw: sources.append(type(source)) or real(source, *args, **kw))
    float_profile, quantized_profile = measure_pair(model, model, feeds, runs=2)
    assert float_profile.runs == quantized_profile.runs == 2 and float_profile.total_us > 0
    assert sources == [str, str], f"sessions built from {sources}, not from saved files"


def test_the_time_budget_is_at_most_one_plain_float_pass_over_the_calibration_subset() -> None:
    settings = speed_guard.SpeedSettings(seconds=10.0, threads=(1, 2))
    first = [(RunProfile(20_000.0, {}, 9), RunProfile(30_000.0, {}, 9)),
             (RunProfile(15_000.0, {}, 9), RunProfile(25_000.0, {}, 9))]
    # The float model's fastest run (15 ms, at 2 threads) times 100 samples: 1.5 s, under the 10 s given.
    assert speed_guard._float_pass_budget(settings, first, 100).seconds == pytest.approx(1.5)
    # A statistics pass shorter than the estimate stays the budget; without a sample count nothing changes.
    assert speed_guard._float_pass_budget(settings, first, 1000).seconds == 10.0
    assert speed_guard._float_pass_budget(settings, first, None).seconds == 10.0
    assert speed_guard._float_pass_budget(speed_guard.SpeedSettings(), first, 100).seconds is None


def test_the_pipeline_gives_the_guard_the_float_pass_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    priced = _priced({"dw_conv": 300.0, "pw_conv": 50.0})
    float_runs_us: list[float] = []

    def measure_pair(float_model, quantized_model, feeds, runs, threads=1):
        pair = priced(float_model, quantized_model, feeds, runs, threads)
        float_runs_us.append(pair[0].total_us)
        return pair
    fake_timing.install(monkeypatch, measure_pair)
    model = models.depthwise_conv()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4))
    estimate = 8 * float_runs_us[0] / 1e6  # the first profile's float run, times the 8 calibration samples
    assert result.report["speed"]["budget_s"] == pytest.approx(min(result.report["timings_s"]["statistics"],
                                                                   estimate), abs=1e-3)


def test_a_model_left_with_no_integer_kernel_goes_back_to_float_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # The profile finds nothing slower, but onnxruntime would fuse no Q/DQ pair into an integer kernel:
    # every pair left is overhead, so every quantized node returns to float, each with that reason.
    fake_timing.install(monkeypatch, _priced({}))
    looked_at: list[int] = []

    def no_kernels(model: onnx.ModelProto) -> int:
        looked_at.append(sum(n.op_type == "QuantizeLinear" for n in model.graph.node))
        return 0
    monkeypatch.setattr(speed_guard, "integer_kernels", no_kernels)
    model = models.depthwise_conv()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4))
    assert looked_at and looked_at[0] > 0
    assert not any(n.status == "quantized" for n in result.plan.nodes)
    reverted = [n for n in result.plan.nodes if n.status == "reverted"]
    assert reverted and all(any(speed_guard.NO_INTEGER_KERNEL in d.detail for d in n.trail) for n in reverted)
    assert sorted(result.report["speed"]["no_integer_kernel"]) == sorted(n.node for n in reverted)
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in result.model.graph.node)


def test_a_model_still_slower_after_the_measured_reverts_goes_back_to_float_whole(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Every quantized run costs 50 % more than the float one, whatever is reverted, and no group's own
    # profile explains it: the revert of the losing groups does not pay, and the model stays slower.
    def slow_whenever_quantized(float_model, quantized_model, feeds, runs, threads=1):
        quantized = any(n.op_type == "QuantizeLinear" for n in quantized_model.graph.node)
        return (RunProfile(1000.0, {}, runs), RunProfile(1500.0 if quantized else 1000.0, {}, runs))
    fake_timing.install(monkeypatch, slow_whenever_quantized)
    monkeypatch.setattr(speed_guard, "integer_kernels", lambda model: 1)
    _steady_clock(monkeypatch)
    model = models.depthwise_conv()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4))
    speed = result.report["speed"]
    assert speed["measured_final_speedup"] == pytest.approx(1000 / 1500, abs=1e-3)
    assert speed["final_speedup"] == 1.0 and speed["as_fast_as_float"]
    reverted = [n for n in result.plan.nodes if n.status == "reverted"]
    assert reverted and not any(n.status == "quantized" for n in result.plan.nodes)
    assert sorted(speed["still_slower"]) == sorted(n.node for n in reverted)
    assert all("0.67x the float speed" in next(d.detail for d in n.trail if d.action == "revert") for n in reverted)
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in result.model.graph.node)
    # --optimize-for size keeps the smaller, slower model.
    sized = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4,
                                                          optimize_for="size"))
    assert "still_slower" not in sized.report["speed"]
    assert any(n.status == "quantized" for n in sized.plan.nodes)
    # The summary line says the written model is float, and why.
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", np.stack([s["input"] for s in _data(model, 6)]))
    assert main(["quantize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "q.onnx"), "--data",
                 str(tmp_path / "x.npy"), "--no-speed-cache"]) == 0
    assert "it stayed slower than float, so the model is float" in capsys.readouterr().out


def test_a_model_back_to_float_whole_takes_its_fidelity_from_the_float_runs_already_made(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Every node back to float: the written model is the float model the timer ran, so its fidelity comes
    # from those runs and no session of the written model is opened for it.
    def slow_whenever_quantized(float_model, quantized_model, feeds, runs, threads=1):
        quantized = any(n.op_type == "QuantizeLinear" for n in quantized_model.graph.node)
        return (RunProfile(1000.0, {}, runs), RunProfile(1500.0 if quantized else 1000.0, {}, runs))
    fake_timing.install(monkeypatch, slow_whenever_quantized, float_outputs=True)
    counted: list[int] = []
    monkeypatch.setattr(speed_guard, "integer_kernels", lambda model: counted.append(1) or 1)
    _steady_clock(monkeypatch)
    loaded: list[str] = []

    class Counting(runtime_check.ModelRunner):
        def __init__(self, model, runtime, what, *args, **kwargs) -> None:
            loaded.append(what)
            super().__init__(model, runtime, what, *args, **kwargs)
    monkeypatch.setattr(self_check, "ModelRunner", Counting)
    model = models.depthwise_conv()
    result = quantize(model, _data(model, 16), QuantizeOptions(target="ORT", subset_size=8, check_samples=8))
    assert not any(n.status == "quantized" for n in result.plan.nodes)
    # The guard ran first; the self-check takes the written model's outputs from the timer's float runs and
    # loads no model of its own for them.
    assert loaded.count("the quantized model") == 0
    # Kernels counted once, before the timing: the measured 0.67x decides without opening another session.
    assert counted == [1]
    fidelity = result.report["fidelity"]
    assert fidelity["measured_after"] == "the speed guard's reverts" and fidelity["samples"] == 8
    # The written model against the float model: the same values, up to the rounding of another run.
    assert fidelity["worst_sqnr_db"] > 100 and not fidelity["below_threshold"]


def test_a_model_with_an_integer_kernel_keeps_its_quantized_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_timing.install(monkeypatch, _priced({}))
    monkeypatch.setattr(speed_guard, "integer_kernels", ort_check.integer_kernels)  # the real count
    model = models.depthwise_conv()  # onnxruntime fuses its convolutions into QLinearConv
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4))
    assert "no_integer_kernel" not in result.report["speed"]
    assert any(n.status == "quantized" for n in result.plan.nodes)


def test_integer_kernels_counts_what_onnxruntime_fuses() -> None:
    model = models.depthwise_conv()
    assert ort_check.integer_kernels(model) == 0  # float
    quantized = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4,
                                                              speed_guard=False)).model
    assert ort_check.integer_kernels(quantized) == ort_check.fused_counts(quantized)["QLinearConv"] > 0


@pytest.mark.real_profiler
def test_pair_timer_counts_integer_kernels_in_its_own_session_before_running_anything() -> None:
    from rewriter.emit.runtime_profile import NoIntegerKernel, PairTimer

    model = models.depthwise_conv()
    quantized = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4,
                                                              speed_guard=False)).model
    assert ort_check.integer_kernels(quantized) > 0  # the reference: a session of its own
    feeds = _data(model, 3)
    timer = PairTimer(model, feeds)
    # A model with no integer kernel (the float model itself): refused before the float session opens.
    with pytest.raises(NoIntegerKernel):
        timer.time(model, runs=2, profile_runs=1, require_integer_kernels=True)
    assert timer._float_session is None
    timed = timer.time(quantized, runs=2, profile_runs=1, require_integer_kernels=True)
    assert timed.quantized.runs == timed.float.runs == 2 and timed.profiles is not None


@pytest.mark.real_profiler
def test_pair_timer_times_both_models_in_turns_and_keeps_the_quantized_outputs() -> None:
    import onnxruntime as ort

    from rewriter.emit.runtime_profile import PairTimer

    model = models.tiny_cnn()
    quantized = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4,
                                                              speed_guard=False)).model
    feeds = _data(model, 5)
    timer = PairTimer(model, feeds)
    timed = timer.time(quantized, runs=3, profile_runs=2)
    assert timed.float.runs == timed.quantized.runs == 3
    assert timed.float.total_us > 0 and timed.quantized.total_us > 0 and not timed.quantized.nodes
    # The profiled rounds come first, in the same sessions: each model's profile holds them and names nodes.
    assert timed.profiles is not None
    assert [p.runs for p in timed.profiles] == [2, 2] and all(p.nodes for p in timed.profiles)
    known = speed_guard.names_of((n.name, tuple(n.output)) for n in quantized.graph.node)
    assert any(profiled_node(name, known) for name in timed.profiles[1].nodes)
    # The warm-up and the first 3 rounds ran feeds 0..3; each one's outputs are onnxruntime's own.
    session = ort.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert len(timed.outputs) == 3
    for feed, outputs in zip(feeds, timed.outputs):
        assert list(outputs) == names
        for name, value in zip(names, session.run(None, feed)):
            np.testing.assert_array_equal(outputs[name], value)
    # The float model's outputs on the same feeds come from its session too, as onnxruntime gives them.
    float_session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert len(timed.float_outputs) == 3
    for feed, outputs in zip(feeds, timed.float_outputs):
        for name, value in zip([o.name for o in float_session.get_outputs()], float_session.run(None, feed)):
            np.testing.assert_array_equal(outputs[name], value)
    # The float session is kept for the next model; more runs than feeds give every feed's outputs once.
    again = timer.time(model, runs=12)
    assert again.quantized.runs == 12 and len(again.outputs) == len(feeds) and again.profiles is None
    assert again.float_outputs == ()  # given by the call that opened the float session
    with pytest.raises(ValueError, match="only the first call"):
        timer.time(model, runs=1, profile_runs=1)


def test_a_model_with_no_integer_kernel_goes_back_to_float_untimed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # onnxruntime would fuse no Q/DQ pair into an integer kernel: the guard needs no timing to know the pairs
    # only add work, so it times nothing and every quantized node returns to float with that reason.
    timed: list[int] = []

    def counted(float_model, quantized_model, feeds, runs, threads=1):
        timed.append(runs)
        return RunProfile(1000.0, {}, runs), RunProfile(1000.0, {}, runs)
    fake_timing.install(monkeypatch, counted)
    monkeypatch.setattr(speed_guard, "integer_kernels", lambda model: 0)
    model = models.depthwise_conv()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4))
    speed = result.report["speed"]
    assert timed == [] and speed["measurements"] == [] and speed["initial_speedup"] is None
    assert speed["stopped"] == "no integer kernel: not timed" and speed["final_speedup"] == 1.0
    assert sorted(speed["no_integer_kernel"]) == sorted(n.node for n in result.plan.nodes if n.status == "reverted")
    assert not any(n.status == "quantized" for n in result.plan.nodes)
    assert result.report["fidelity"]["measured_after"] == "the speed guard's reverts"
    # The summary line says what happened without a figure it does not have.
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    np.savez(tmp_path / "data.npz", **{model.graph.input[0].name: np.stack(
        [d[model.graph.input[0].name][0] for d in _data(model)])})
    assert main(["quantize", str(path), "-o", str(tmp_path / "q.onnx"), "--data", str(tmp_path / "data.npz"),
                 "--subset-size", "8"]) == 0
    assert "not timed; no integer kernel was left, so the model is float" in capsys.readouterr().out


def test_no_revert_is_measured_when_the_profile_predicts_less_than_the_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    # pw_conv's group (with its fused Relu) costs 7.5 % more quantized, a candidate, but 15 us of the whole run
    # is less than the margin of speed-up a revert must gain to be kept: measuring it could only cost time.
    fake_timing.install(monkeypatch, _priced({"pw_conv": 115.0}))
    _steady_clock(monkeypatch)
    model = models.depthwise_conv()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4))
    speed = result.report["speed"]
    assert [g["node"] for g in speed["groups"] if g["candidate"]] == ["pw_conv"]
    assert speed["measurements"] == [] and speed["reverts"] == []
    assert speed["predicted_speedup"] < speed["initial_speedup"] + speed["margin"]
    assert speed["stopped"].startswith("the profile predicts") and "no revert measured" in speed["stopped"]
    # A larger excess is measured: the same model with pw_conv at 300 us (not the stored decision).
    fake_timing.install(monkeypatch, _priced({"pw_conv": 300.0}))
    again = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4,
                                                          speed_cache=False))
    assert [m["nodes"] for m in again.report["speed"]["measurements"]][:1] == [["pw_conv"]]


def test_the_timed_runs_take_at_most_an_eighth_of_the_time_budget_per_model() -> None:
    # A 1 ms model with a 0.08 s budget (one float pass over 80 samples): 10 ms of runs per model and timing,
    # 10 runs, where the settings alone would give 100; never fewer than the settings' minimum of 9.
    settings = speed_guard._timing_share(speed_guard.SpeedSettings(seconds=0.08))
    assert settings.seconds_per_model == pytest.approx(0.01)
    assert speed_guard._runs_for(settings, 0.001) == 10
    assert speed_guard._runs_for(speed_guard.SpeedSettings(), 0.001) == 100
    assert speed_guard._runs_for(settings, 0.01) == settings.runs == 9
    # Without a time budget the settings' time per model holds.
    assert speed_guard._timing_share(speed_guard.SpeedSettings()).seconds_per_model == 0.1


def test_the_fidelity_guard_keeps_the_speed_guards_reverts_in_every_plan_it_makes(tmp_path: Path) -> None:
    # The speed guard runs first; when the fidelity guard then re-plans, a node the speed guard returned to
    # float stays float (a re-plan without that revert would quantize it again, unmeasured for speed).
    from rewriter.tuning.check_run import check_and_guard, revert_through_plan
    from rewriter.tuning.self_check import HeldOut

    paths = models.write_damaged_layer_norm(tmp_path)
    options = QuantizeOptions(target=str(paths["target"]), subset_size=16, speed_guard=False, guard=False)
    hooks = quantize(str(paths["model"]), str(paths["data"]), options, search_hooks=True).search
    assert hooks is not None and hooks.fidelity is not None and hooks.fidelity["below_threshold"]
    sped = revert_through_plan(hooks.emitter, hooks.plan, hooks.ranges, options)(
        (RevertRequest("head_add", SPEED_SOURCE, "slower quantized"),))
    assert sped is not None
    samples = [{"input": np.load(p)} for p in sorted(paths["data"].glob("*.npy"))[16:32]]
    checked = check_and_guard(onnx.load(str(paths["model"])), samples, HeldOut(tuple(range(16)), True), sped.plan,
                              sped.ranges, sped.emitted, hooks.emitter.errors(sped.plan, sped.ranges),
                              QuantizeOptions(target=str(paths["target"]), guard=True), hooks.emitter)
    assert checked.fidelity["guard"] and checked.fidelity["guard"]["reverts"]  # the fidelity guard acted
    statuses = {n.node: n for n in checked.plan.nodes}
    assert statuses["head_add"].status == "reverted"
    assert [d.source for d in statuses["head_add"].trail if d.action == "revert"] == [SPEED_SOURCE]
    assert any(d.source == "fidelity-guard" for n in checked.plan.nodes for d in n.trail if d.action == "revert")


def test_a_fidelity_guard_revert_is_timed_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The speed guard finds nothing to revert; the fidelity guard then reverts the damaged LayerNorm, which
    # changes what onnxruntime fuses, so the model the run ends on is timed again.
    fake_timing.install(monkeypatch, _priced({}))
    monkeypatch.setattr(speed_guard, "integer_kernels", lambda model: 1)
    _steady_clock(monkeypatch)
    paths = models.write_damaged_layer_norm(tmp_path)
    result = quantize(str(paths["model"]), str(paths["data"]),
                      QuantizeOptions(target=str(paths["target"]), subset_size=16, speed_guard=True,
                                      speed_cache=False))
    assert result.report["fidelity"]["guard"]["reverts"]
    speed = result.report["speed"]
    assert "before_fidelity_guard" in speed and speed["before_fidelity_guard"]["reverts"] == []
    assert "speed_guard_after_fidelity_guard" in result.report["timings_s"]


def test_a_revert_the_time_budget_cannot_pay_for_is_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first timing took the whole budget: no attempt is made past it, and a model measured slower than
    # float goes back to float whole, its reason saying no revert was measured.
    fake_timing.install(monkeypatch, _priced({"dw_conv": 300.0, "pw_conv": 300.0}))
    monkeypatch.setattr(speed_guard, "integer_kernels", lambda model: 1)
    ticks = iter(range(1000))

    class Slow:
        @staticmethod
        def perf_counter() -> float:
            return float(next(ticks))  # every reading one second after the last
    monkeypatch.setattr(speed_guard, "time", Slow)
    model = models.depthwise_conv()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4,
                                                           speed_cache=False))
    speed = result.report["speed"]
    assert speed["measurements"] == [] or all(m["speedup"] is None for m in speed["measurements"])
    assert speed["stopped"] == "time budget spent"
    assert not any(n.status == "quantized" for n in result.plan.nodes)
    reverted = [n for n in result.plan.nodes if n.status == "reverted"]
    assert reverted and all("left no room to measure a revert" in next(d.detail for d in n.trail
                                                                        if d.action == "revert") for n in reverted)


def test_the_cache_key_changes_with_the_code_even_at_the_same_version_number(tmp_path: Path) -> None:
    # A checkout or an editable install keeps its version number while its code changes: the key also holds
    # a digest of the package's modules, so a decision stored by other code is measured again.
    package = tmp_path / "rewriter"
    (package / "tuning").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tuning" / "speed_guard.py").write_text("MARGIN = 0.05\n")
    before = speed_guard._source_digest(package)
    assert speed_guard._source_digest(package) == before
    (package / "tuning" / "speed_guard.py").write_text("MARGIN = 0.10\n")
    assert speed_guard._source_digest(package) != before
    package_root = Path(speed_guard.__file__).resolve().parent.parent
    assert speed_guard._rewriter_code() == speed_guard._source_digest(package_root)


def test_the_first_timing_is_profiled_only_when_the_budget_could_pay_for_a_revert_after_it() -> None:
    # Warm-up runs of 2 ms (float) and 4 ms (quantized), 9 timed runs, 10 ms spent opening sessions, a
    # statistics pass of 0.4 s over 200 samples (2 ms a sample): 3 profiled and 9 timed runs of each, 82 ms.
    budget, first = speed_guard.first_timing_estimate(0.010, 0.002, 0.004, 0.4, 200, 9)
    assert (budget, first) == (pytest.approx(0.4), pytest.approx(0.010 + 12 * 0.006))
    assert 3 * first <= budget
    # Over 40 samples the plain float pass is 80 ms: no attempt fits after the first timing.
    budget, first = speed_guard.first_timing_estimate(0.010, 0.002, 0.004, 0.4, 40, 9)
    assert budget == pytest.approx(0.08) and 3 * first > budget
    # A statistics pass faster per sample than the float warm-up run scales both runs down alike.
    assert speed_guard.first_timing_estimate(0.0, 0.002, 0.004, 0.1, 100, 9) == (pytest.approx(0.1),
                                                                                 pytest.approx(12 * 0.003))
    # The warm-up's float run is the estimate when the statistics pass gives none.
    assert speed_guard.first_timing_estimate(0.0, 0.002, 0.004, 0.5, None, 9) == (0.5, pytest.approx(12 * 0.006))


def test_a_first_timing_the_budget_cannot_follow_with_a_revert_is_not_profiled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every clock reading a second after the last: no attempt could be paid for, so the profiler's rounds are
    # not run, no group is attributed, and a model measured slower than float goes back to float whole.
    fake_timing.install(monkeypatch, _priced({"dw_conv": 300.0, "pw_conv": 300.0}), warm_ups=True)
    monkeypatch.setattr(speed_guard, "integer_kernels", lambda model: 1)
    ticks = iter(range(1000))

    class Slow:
        @staticmethod
        def perf_counter() -> float:
            return float(next(ticks))
    monkeypatch.setattr(speed_guard, "time", Slow)
    model = models.depthwise_conv()
    result = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4,
                                                           speed_cache=False))
    speed = result.report["speed"]
    assert speed["stopped"] == "time budget spent" and "not profiled" in speed["not_profiled"]
    assert speed["groups"] == [] and speed["measurements"] == []
    assert not any(n.status == "quantized" for n in result.plan.nodes)


@pytest.mark.real_profiler
def test_pair_timer_asks_before_profiling_and_ends_the_profiler_when_told_not_to() -> None:
    from rewriter.emit.runtime_profile import PairTimer

    model = models.tiny_cnn()
    quantized = quantize(model, _data(model), QuantizeOptions(target="ORT", subset_size=8, check_samples=4,
                                                              speed_guard=False)).model
    asked: list[tuple[float, float]] = []
    skipped = PairTimer(model, _data(model, 3)).time(quantized, runs=3, profile_runs=2,
                                                     profile_if=lambda f, q: asked.append((f, q)) is not None)
    assert len(asked) == 1 and all(s > 0 for s in asked[0])  # the warm-up runs' seconds
    assert skipped.profiles is None and skipped.float.runs == skipped.quantized.runs == 3
    profiled = PairTimer(model, _data(model, 3)).time(quantized, runs=3, profile_runs=2, profile_if=lambda f, q: True)
    assert profiled.profiles is not None and [p.runs for p in profiled.profiles] == [2, 2]


def test_a_timing_is_clear_once_every_run_of_one_model_beats_every_run_of_the_other_by_the_margin() -> None:
    from rewriter.emit.runtime_profile import clearly_apart

    float_runs, slow_runs = [1.0, 1.1, 1.05], [1.3, 1.2, 1.4]
    assert clearly_apart(float_runs, slow_runs, 0.05) and clearly_apart(slow_runs, float_runs, 0.05)
    assert not clearly_apart(float_runs, slow_runs, 0.2)  # 1.1 x 1.2 is not below 1.2
    assert not clearly_apart(float_runs[:2], slow_runs[:2], 0.05)  # too few rounds to tell
    assert not clearly_apart(float_runs + [1.5], slow_runs + [1.3], 0.05)  # one stalled run: go on timing


@pytest.mark.real_profiler
def test_pair_timer_stops_once_the_outcome_is_clear() -> None:
    from rewriter.emit.runtime_profile import CLEAR_AFTER_ROUNDS, PairTimer

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16384])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16384])
    fast = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "fast", [x], [y]),
                             opset_imports=[helper.make_opsetid("", 17)])
    # The same function behind 400 more nodes: every run is many times slower than the fast model's.
    nodes = [helper.make_node("Relu", ["x" if i == 0 else f"t{i}"], [f"t{i + 1}"]) for i in range(400)]
    nodes.append(helper.make_node("Relu", ["t400"], ["y"]))
    slow = helper.make_model(helper.make_graph(nodes, "slow", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    feeds = [{"x": np.ones((1, 16384), np.float32)}]
    timed = PairTimer(fast, feeds).time(slow, runs=30, clear_margin=0.05)
    assert CLEAR_AFTER_ROUNDS <= timed.float.runs == timed.quantized.runs < 30
    assert PairTimer(fast, feeds).time(slow, runs=30).quantized.runs == 30  # without the margin: every run
