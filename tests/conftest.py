"""Test-wide setup: make the shared model builders importable as ``from models import ...``.

The tests folder is not a package (each subfolder's test modules are collected
by path), so its own directory and the repository root go on sys.path here.
"""
from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for _path in (_TESTS, _TESTS.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _steady_speed_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The speed guard (on by default for QDQ output on the ORT target) times the models in onnxruntime;
    real timings differ from run to run, and the outputs of the other tests must not. Here every model
    takes the same time and the integer kernels are not looked at, so the guard finds nothing to revert.
    Tests of the guard itself inject their own timings, and a test marked ``real_profiler`` runs
    onnxruntime's profiler. The guard's decision cache is a fresh folder per test (never the user's),
    inherited by the command-line runs a test starts."""
    monkeypatch.setenv("REWRITER_CACHE_DIR", str(tmp_path_factory.mktemp("rewriter-cache")))
    if request.node.get_closest_marker("real_profiler"):
        return
    from rewriter.emit.runtime_profile import RunProfile
    import fake_timing
    import rewriter.tuning.speed_guard as speed_guard

    def same_time(float_model, quantized_model, feeds, runs, threads=1):
        return RunProfile(1000.0, {}, runs), RunProfile(1000.0, {}, runs)

    fake_timing.install(monkeypatch, same_time)
    # Nor does it look at onnxruntime's integer kernels (a model with none would go back to float whole).
    monkeypatch.setattr(speed_guard, "integer_kernels", lambda model: None)
