"""The self-check takes the float outputs of calibration samples from the statistics pass instead of
running the float model again, and its figures are the same as when it runs the float model itself."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest

import models
import rewriter.tuning.self_check as self_check
from rewriter.calibrate.collect import collect_statistics
from rewriter.emit.runtime_check import ModelRunner
from rewriter.options import QuantizeOptions
from rewriter.pipeline import quantize


def _data(tmp_path: Path, model: onnx.ModelProto, count: int) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for i, sample in enumerate(models.random_inputs(model, n=count, seed=1)):
        np.savez(folder / f"s{i:03d}.npz", **sample)
    return folder


@pytest.fixture()
def float_runners(monkeypatch) -> list[str]:
    """The models the self-check loads, by how it names them."""
    made: list[str] = []

    class Counting(ModelRunner):
        def __init__(self, model, runtime, what, *args, **kwargs) -> None:
            made.append(what)
            super().__init__(model, runtime, what, *args, **kwargs)
    monkeypatch.setattr(self_check, "ModelRunner", Counting)
    return made


def test_calibration_samples_checked_without_a_second_float_pass(tmp_path, float_runners) -> None:
    model = models.tiny_cnn()
    data = _data(tmp_path, model, 12)  # the subset takes all 12: the check runs on calibration samples
    result = quantize(model, str(data), QuantizeOptions(target="ORT", check_samples=8, guard=False))
    assert float_runners == ["the quantized model"]
    fidelity = result.report["fidelity"]
    assert fidelity["held_out"] is False and fidelity["samples"] == 8

    # The same figures with the float model run by the check itself.
    samples = [dict(np.load(data / f"s{i:03d}.npz")) for i in fidelity["sample_ids"]]
    fresh = self_check.SelfCheck(model, samples, "onnxruntime").measure(result.model)
    for mine, theirs in zip(fidelity["outputs"], fresh.outputs):
        assert mine["sqnr_db"] == pytest.approx(theirs.sqnr_db, abs=1e-3)


def test_held_out_samples_are_run_in_the_float_model(tmp_path, float_runners) -> None:
    model = models.tiny_cnn()
    data = _data(tmp_path, model, 20)
    result = quantize(model, str(data), QuantizeOptions(target="ORT", subset_size=8, check_samples=4, guard=False))
    assert result.report["fidelity"]["held_out"] is True
    # The float model is loaded when the comparison first needs its outputs, after the quantized one.
    assert sorted(float_runners) == ["the float model", "the quantized model"]


def test_statistics_keep_the_outputs_of_the_samples_asked_for() -> None:
    model = models.tiny_cnn()
    samples = models.random_inputs(model, n=6, seed=2)
    name = model.graph.output[0].name
    collected = collect_statistics(model, [], {}, samples, keep_outputs=[1, 4], batch_size=1)
    everything = collect_statistics(model, [], {}, samples, keep_outputs=True, batch_size=1)
    assert collected.outputs is not None and everything.outputs is not None and len(everything.outputs) == 6
    assert [o[name].tobytes() for o in collected.outputs] == [everything.outputs[i][name].tobytes() for i in (1, 4)]


@pytest.fixture()
def runs_per_model(monkeypatch) -> dict[str, int]:
    """Samples each loaded model ran, by how the self-check names the model."""
    counts: dict[str, int] = {}

    class Counting(ModelRunner):
        def run(self, samples):
            counts[self.what] = counts.get(self.what, 0) + len(samples)
            return super().run(samples)
    monkeypatch.setattr(self_check, "ModelRunner", Counting)
    return counts


def test_a_model_far_above_the_threshold_is_checked_on_the_first_samples_only(runs_per_model) -> None:
    model = models.tiny_cnn()
    samples = models.random_inputs(model, n=20, seed=3)
    check = self_check.SelfCheck(model, samples, "onnxruntime")
    # The float model against itself: every output infinitely far above any threshold.
    fidelity = check.measure(model, clear_above_db=40.0)
    assert fidelity.samples == self_check.EARLY_SAMPLES == 8
    assert runs_per_model == {"the quantized model": 8, "the float model": 8}
    # Without the early stop, or above what the first samples show, all 20 are compared (the float model
    # runs only on the 12 it has not run yet).
    assert check.measure(model).samples == 20
    assert runs_per_model == {"the quantized model": 28, "the float model": 20}


def test_a_model_near_the_threshold_is_checked_on_every_sample(runs_per_model) -> None:
    model = models.tiny_cnn()
    samples = models.random_inputs(model, n=20, seed=3)
    quantized = quantize(model, samples[:8], QuantizeOptions(target="ORT", guard=False, speed_guard=False,
                                                              check_samples=4)).model
    first = self_check.SelfCheck(model, samples, "onnxruntime").measure(quantized, clear_above_db=math.inf)
    assert first.samples == 20 and runs_per_model["the quantized model"] == 4 + 20


def test_the_report_says_how_many_samples_the_figures_come_from(tmp_path) -> None:
    model = models.tiny_cnn()
    data = _data(tmp_path, model, 40)
    result = quantize(model, str(data), QuantizeOptions(target="ORT", subset_size=8, check_samples=32))
    fidelity = result.report["fidelity"]
    assert fidelity["worst_sqnr_db"] >= fidelity["threshold_db"] + self_check.CLEAR_MARGIN_DB
    assert fidelity["samples"] == len(fidelity["sample_ids"]) == 8
    assert "the first 8 of 32" in fidelity["note"] and "on 8 held-out samples" in fidelity["summary"]


def test_outputs_already_run_are_taken_and_only_the_rest_is_run(runs_per_model) -> None:
    model = models.tiny_cnn()
    samples = models.random_inputs(model, n=20, seed=3)
    quantized = quantize(model, samples[:8], QuantizeOptions(target="ORT", guard=False, speed_guard=False,
                                                              check_samples=4)).model
    reference = self_check.SelfCheck(model, samples, "onnxruntime").measure(quantized)
    runs_before = runs_per_model["the quantized model"]
    # The speed guard's timed runs gave the outputs on the first 9 samples: only the other 11 are run, and
    # the figures are those of running all 20 here.
    known = ModelRunner(quantized, "onnxruntime", "the timer").run(samples[:9])
    check = self_check.SelfCheck(model, samples, "onnxruntime")
    fidelity = check.measure(quantized, known_runs=known)
    assert runs_per_model["the quantized model"] - runs_before == 11
    assert fidelity == reference
    # Far above the threshold on the first 8: the known outputs are the whole check, nothing is loaded.
    far = check.measure(model, clear_above_db=40.0,
                        known_runs=ModelRunner(model, "onnxruntime", "the timer").run(samples[:8]))
    assert far.samples == 8 and runs_per_model["the quantized model"] - runs_before == 11
