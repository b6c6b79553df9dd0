"""The self-check takes the float outputs of calibration samples from the statistics pass instead of
running the float model again, and its figures are the same as when it runs the float model itself."""
from __future__ import annotations

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
    assert float_runners == ["the float model", "the quantized model"]


def test_statistics_keep_the_outputs_of_the_samples_asked_for() -> None:
    model = models.tiny_cnn()
    samples = models.random_inputs(model, n=6, seed=2)
    name = model.graph.output[0].name
    collected = collect_statistics(model, [], {}, samples, keep_outputs=[1, 4], batch_size=1)
    everything = collect_statistics(model, [], {}, samples, keep_outputs=True, batch_size=1)
    assert collected.outputs is not None and everything.outputs is not None and len(everything.outputs) == 6
    assert [o[name].tobytes() for o in collected.outputs] == [everything.outputs[i][name].tobytes() for i in (1, 4)]
