"""Embedding tables on the ORT target: int8 table, DequantizeLinear after the Gather, checked against numpy."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from rewriter.pipeline import QuantizeOptions, quantize

ROWS, WIDTH = 50, 8


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    table = rng.standard_normal((ROWS, WIDTH)).astype(np.float32)
    table[:, 2] *= 20.0  # an outlier column: per-column scales keep the others fine
    inits = [numpy_helper.from_array(table, "table"),
             numpy_helper.from_array((rng.standard_normal((WIDTH, 4)) * 0.3).astype(np.float32), "w")]
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"], name="lookup"),
             helper.make_node("MatMul", ["emb", "w"], ["y"], name="proj")]
    graph = helper.make_graph(nodes, "emb", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _samples(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"ids": rng.integers(0, ROWS, (1, 6)).astype(np.int64)} for _ in range(n)]


def test_table_is_stored_int8_and_dequantized_after_the_gather() -> None:
    model = _model()
    result = quantize(model, _samples(8, 1), QuantizeOptions(target="ORT"))
    point = result.plan.point("table")
    assert point is not None and point.role == "weight" and point.channel_axis == 1
    assert point.trail[0].source == "quantize_embedding_tables"
    q = result.model
    inits = {t.name: t for t in q.graph.initializer}
    assert "table" not in inits  # the float table is gone
    gather = next(n for n in q.graph.node if n.op_type == "Gather")
    assert inits[gather.input[0]].data_type == TensorProto.INT8
    dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == gather.output[0])
    assert dq.output[0] == "emb" and [a.i for a in dq.attribute if a.name == "axis"] == [-1]
    assert not any(n.op_type == "DequantizeLinear" and n.input[0] == gather.input[0] for n in q.graph.node)
    assert len(inits[gather.input[0]].raw_data) == ROWS * WIDTH  # one byte per value

    # The gathered rows equal numpy's per-column symmetric quantization of the table.
    rng_ = result.ranges["table"]
    table = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "table")).astype(np.float64)
    scale = (np.asarray(rng_.input_high, np.float64) - np.asarray(rng_.input_low, np.float64)) / (rng_.levels - 1)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(q)
    exposed.graph.output.append(onnx.ValueInfoProto(name="emb"))
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    for sample in _samples(4, 2):
        got = session.run(["emb"], sample)[0]
        rows = table[sample["ids"]]
        expected = np.clip(np.round(rows / scale), -127, 127) * scale
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
        # Per column, the error stays within half a step of that column's own scale.
        assert np.all(np.abs(got - rows) <= scale / 2 + 1e-6)


def test_other_targets_keep_the_table_float() -> None:
    result = quantize(_model(), _samples(8, 1), QuantizeOptions(target="CPU"))
    assert result.plan.point("table") is None
    assert "table" in {t.name for t in result.model.graph.initializer}


def test_large_weights_quantize_in_slices_to_the_same_integers(monkeypatch) -> None:
    from rewriter.algorithms.fq_math import qdq_params
    from rewriter.emit import qdq_params as qdq

    rng = np.random.default_rng(3)
    for axis in (0, 1, None):
        w = rng.standard_normal((40, 24)).astype(np.float32)
        high = np.abs(w).max(axis=1 - axis) if axis is not None else np.float32(np.abs(w).max())
        scale, zero_point, qmin, qmax = qdq_params(-high, high, 255, storage_signed=True)
        params = qdq._QParams(np.asarray(scale, np.float32), np.asarray(zero_point, np.int64), int(qmin), int(qmax),
                              "int8", axis, 255, np.asarray(-high, np.float32), np.asarray(high, np.float32))
        whole = qdq._quantize_constant(w, params)
        monkeypatch.setattr(qdq, "_CHUNK_VALUES", 100)  # 960 values: sliced into 10 parts
        assert qdq.slicing_axis(w, axis, qdq._CHUNK_VALUES) is not None
        np.testing.assert_array_equal(qdq._quantize_constant(w, params), whole)
        monkeypatch.undo()


def test_sliced_weights_are_gathered_in_the_storage_sized_type(monkeypatch) -> None:
    # int64 slices joined would be an array twice the size of the float32 weight.
    from rewriter.algorithms.fq_math import qdq_params
    from rewriter.emit import qdq_params as qdq

    w = np.random.default_rng(4).standard_normal((40, 24)).astype(np.float32)
    high = np.float32(np.abs(w).max())
    scale, zero_point, qmin, qmax = qdq_params(-high, high, 255, storage_signed=True)
    params = qdq._QParams(np.asarray(scale, np.float32), np.asarray(zero_point, np.int64), int(qmin), int(qmax),
                          "int8", None, 255, np.asarray(-high, np.float32), np.asarray(high, np.float32))
    whole = qdq._quantize_constant(w, params)
    monkeypatch.setattr(qdq, "_CHUNK_VALUES", 100)
    sliced = qdq._quantize_constant(w, params)
    assert sliced.dtype == np.int8 and np.array_equal(sliced, whole)
