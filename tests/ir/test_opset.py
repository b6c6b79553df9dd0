"""convert_opset: onnx's version converter with large weights passed as stubs gives onnx's own result."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, version_converter

from rewriter.ir.opset import STUB_BYTES, convert_opset


def _opset_11_model() -> onnx.ModelProto:
    """Ops whose form changes from opset 11 to 13 (Squeeze/Unsqueeze/Split/ReduceSum axes become inputs,
    Softmax its axis semantics), a large weight, and small constants an adapter could read."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 8, 3, 3)).astype(np.float32)  # 18 KiB: passed as a stub
    bias = rng.standard_normal(64).astype(np.float32)
    shape = np.array([1, 64, -1], dtype=np.int64)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["r"]),
        helper.make_node("Split", ["r"], ["s0", "s1"], axis=1, split=[16, 48]),
        helper.make_node("ReduceSum", ["s0"], ["m"], axes=[2], keepdims=1),
        helper.make_node("Unsqueeze", ["m"], ["u"], axes=[0]),
        helper.make_node("Squeeze", ["u"], ["y0"], axes=[0]),
        helper.make_node("Softmax", ["s1"], ["y1"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
        [helper.make_tensor_value_info("y0", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("y1", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b"),
         numpy_helper.from_array(shape, "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    return model


def test_the_result_is_onnx_converters_own_and_the_input_is_untouched() -> None:
    model = _opset_11_model()
    assert len(model.graph.initializer[0].raw_data) >= STUB_BYTES  # the weight does go through as a stub
    before = model.SerializeToString()
    ours = convert_opset(model, 13)
    reference = version_converter.convert_version(model, 13)
    assert ours.SerializeToString() == reference.SerializeToString()
    assert model.SerializeToString() == before
    assert [o.version for o in ours.opset_import if o.domain in ("", "ai.onnx")] == [13]


def test_the_converted_model_computes_what_the_original_does() -> None:
    model = _opset_11_model()
    x = np.random.default_rng(1).standard_normal((1, 8, 6, 6)).astype(np.float32)
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
           for m in (model, convert_opset(model, 13))]
    for a, b in zip(*run):
        np.testing.assert_array_equal(a, b)


def test_initializers_sharing_a_name_keep_their_own_data() -> None:
    model = _opset_11_model()
    twin = numpy_helper.from_array(np.full((64, 8, 3, 3), 2.0, dtype=np.float32), "w")
    model.graph.initializer.append(twin)  # the checker refuses this; nothing may pair them wrongly anyway
    assert convert_opset(model, 13).SerializeToString() == version_converter.convert_version(
        model, 13).SerializeToString()
