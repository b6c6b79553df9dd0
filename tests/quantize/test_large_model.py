"""A model over 2 GB (weights in external data) quantizes end to end.

Slow (about 2 minutes and 4 GB of memory): run with ``pytest -m slow``. The model is a
chain of four MatMuls with 2.4 GB of float32 weights, mostly zeros so that it is quick to build.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from quantize.peak_memory import MEASURABLE, measured_quantize
from rewriter.cli import main

WIDTH, HIDDEN, LAYERS = 8192, 18432, 4  # 4 x 604 MB of weights
# Peak resident memory above the imports, as a multiple of the weights' bytes (measured 1.58x).
MAX_PEAK_OVER_WEIGHTS = 2.0


def build_large_model(folder: Path, width: int = WIDTH, hidden: int = HIDDEN) -> tuple[Path, Path, int]:
    """(model, calibration folder, bytes of weights): weights written straight to the data file,
    so no proto over 2 GB is ever built. ``width`` and ``hidden`` scale it down for quicker tests."""
    rng = np.random.default_rng(0)
    data_name = "big.onnx.data"
    initializers, nodes = [], []
    offset, previous, size = 0, "input", width
    with open(folder / data_name, "wb") as f:
        for i in range(LAYERS):
            out_size = hidden if i % 2 == 0 else width
            weight = np.zeros((size, out_size), np.float32)
            weight[::256] = rng.standard_normal((len(range(0, size, 256)), out_size)).astype(np.float32) * 0.05
            raw = weight.tobytes()
            f.write(raw)
            tensor = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=list(weight.shape),
                                 data_location=TensorProto.EXTERNAL)
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            offset += len(raw)
            initializers.append(tensor)
            nodes += [helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"], name=f"matmul{i}"),
                      helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}")]
            previous, size = f"r{i}", out_size
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, size])], initializers)
    model = folder / "big.onnx"
    model.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    calib = folder / "calib"
    calib.mkdir()
    for j in range(2):
        np.save(calib / f"s{j}.npy", rng.standard_normal((1, width)).astype(np.float32))
    return model, calib, offset


@pytest.mark.slow
def test_a_model_over_2_gb_quantizes(tmp_path: Path) -> None:
    model, calib, weight_bytes = build_large_model(tmp_path)
    assert weight_bytes > 2 * 1024**3
    out = tmp_path / "out" / "big.int8.onnx"
    if not MEASURABLE:
        assert main(["quantize", str(model), "-o", str(out), "--data", str(calib), "--quiet"]) == 0
    else:
        # In a child process, whose peak memory is its own: the weights are read where they are (their file
        # mapped), so the peak stays near them. Measured 1.58x the weights above the imports (5.0x before).
        figures = measured_quantize([str(model), "-o", str(out), "--data", str(calib), "--quiet"])
        ratio = (figures["peak"] - figures["imported"]) / weight_bytes
        assert ratio < MAX_PEAK_OVER_WEIGHTS, f"peak {figures['peak'] / 2**30:.2f} GiB: {ratio:.2f}x the weights"
    quantized = onnx.load(os.fspath(out), load_external_data=False)
    weights = {t.name: t for t in quantized.graph.initializer}
    assert all(weights[f"w{i}_quantized"].data_type == TensorProto.INT8 for i in range(LAYERS)), sorted(weights)
    # onnxruntime runs the output (from the file, as a user would).
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(out), providers=["CPUExecutionProvider"])
    result = session.run(None, {"input": np.load(calib / "s0.npy")})[0]
    assert result.shape == (1, WIDTH) and np.isfinite(result).all()
