"""The shared builders give valid, runnable, deterministic models; the bundled example matches its builder."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import models
from ir_helpers import run
from models import ALL_BUILDERS, random_inputs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(ALL_BUILDERS))
def test_builder_runs_with_declared_shapes(name: str) -> None:
    model = ALL_BUILDERS[name]()
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == models.OPSET
    assert ALL_BUILDERS[name].__doc__, "every builder documents its structure"
    feeds = random_inputs(model, 1, seed=0)[0]
    outputs = run(model, feeds)
    for vi, out in zip(model.graph.output, outputs):
        declared = tuple(d.dim_value or models.DEFAULT_DIMS.get(d.dim_param, 1) for d in vi.type.tensor_type.shape.dim)
        assert out.shape == declared and out.dtype == np.float32
        assert np.all(np.isfinite(out))


@pytest.mark.parametrize("name", sorted(ALL_BUILDERS))
def test_builder_is_deterministic(name: str) -> None:
    assert ALL_BUILDERS[name]().SerializeToString() == ALL_BUILDERS[name]().SerializeToString()


def test_seed_changes_weights() -> None:
    assert models.tiny_cnn(seed=0).SerializeToString() != models.tiny_cnn(seed=1).SerializeToString()


def test_example_matches_builder() -> None:
    saved = (ROOT / "examples" / "tiny_cnn.onnx").read_bytes()
    assert saved == models.tiny_cnn().SerializeToString(deterministic=True), \
        "examples/tiny_cnn.onnx is stale: run python tools/make_example.py"
    assert len(saved) < 200_000


def test_example_calibration_set() -> None:
    files = sorted((ROOT / "examples" / "calib").glob("*.npy"))
    assert len(files) == 32
    sample = np.load(files[0])
    assert sample.shape == (1, 3, 32, 32) and sample.dtype == np.float32


def test_make_example_is_reproducible(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_example
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert make_example.main(["--out", str(tmp_path), "--samples", "3"]) == 0
    assert (tmp_path / "tiny_cnn.onnx").read_bytes() == (ROOT / "examples" / "tiny_cnn.onnx").read_bytes()
    for i in range(3):
        name = f"sample_{i:03d}.npy"
        assert (tmp_path / "calib" / name).read_bytes() == (ROOT / "examples" / "calib" / name).read_bytes()
