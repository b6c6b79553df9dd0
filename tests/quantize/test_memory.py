"""Peak memory of `rewriter quantize` on a model with external data, measured in a child process.

The model is the 2.4 GB test model's shape scaled down (144 MiB of float32 weights) with the size
thresholds shrunk, so that it takes every path a model over 2 GB takes: weights kept in their file,
sessions from a saved file, the output saved split. What is measured is the child's peak resident
set (VmHWM) minus its resident set once everything is imported, against the weights' bytes.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from quantize.peak_memory import MEASURABLE, measured_quantize
from quantize.test_large_model import build_large_model

# Measured 1.75x on this model: the float session's packed weights (1x), the int8 weights in the output
# (0.25x), one weight mapped while onnxruntime packs it (0.25x here, four weights), onnxruntime's arenas.
# 5.4x before the weights stayed in their file (1.58x / 5.0x on the 2.4 GB model itself).
MAX_PEAK_OVER_WEIGHTS = 2.0


@pytest.mark.skipif(not MEASURABLE, reason="reads /proc/self/status (Linux)")
def test_peak_memory_stays_near_the_weights(tmp_path: Path) -> None:
    model, calib, weight_bytes = build_large_model(tmp_path, width=2048, hidden=4608)
    out = tmp_path / "out" / "big.int8.onnx"
    # glibc keeps freed blocks under its dynamic mmap threshold (up to 32 MB) for reuse: with this model's
    # 9 to 36 MB tensors that retention, not live data, would be a third of the peak. A fixed threshold
    # measures the live data, as the 2.4 GB model's 150 to 600 MB tensors are.
    figures = measured_quantize([str(model), "-o", str(out), "--data", str(calib), "--quiet"], shrink=1 << 20,
                                env={"REWRITER_CACHE_DIR": str(tmp_path / "cache"),
                                     "MALLOC_MMAP_THRESHOLD_": str(1 << 20)})
    ratio = (figures["peak"] - figures["imported"]) / weight_bytes
    assert ratio < MAX_PEAK_OVER_WEIGHTS, (
        f"peak {figures['peak'] / 2**20:.0f} MiB, {figures['imported'] / 2**20:.0f} MiB after imports: "
        f"{ratio:.2f}x the {weight_bytes / 2**20:.0f} MiB of weights")
    assert any(p.name.endswith(".data") for p in out.parent.iterdir()), "saved as a large model"
