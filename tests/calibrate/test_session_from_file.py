"""A session over a model with much data in memory is opened from a saved file, not from its bytes."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import rewriter.calibrate.session as calib_session
from models import random_inputs, tiny_cnn


def _sources(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    seen: list[object] = []
    real = ort.InferenceSession

    def spy(source, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(calib_session.ort, "InferenceSession", spy)
    return seen


@pytest.mark.parametrize("threshold, from_file", [(1 << 40, False), (1024, True)])
def test_sessions_over_a_model_of_saved_first_bytes_are_opened_from_a_file(
        monkeypatch: pytest.MonkeyPatch, threshold: int, from_file: bool) -> None:
    # Serialized, the model's data is in memory three times while the session opens; a file is mapped.
    model = tiny_cnn()
    feeds = random_inputs(model, 1)[0]
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    monkeypatch.setattr(calib_session, "SAVED_FIRST_BYTES", threshold)
    seen = _sources(monkeypatch)
    got = calib_session.open_session(model, calib_session.session_options()).run(None, feeds)
    assert payload_is_path(seen[-1]) is from_file
    serialized, _ = calib_session.model_payload(model)
    assert (serialized is None) is from_file
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


def payload_is_path(source: object) -> bool:
    return isinstance(source, str)
