"""Loading and running a model in its runtime: a refusal carries onnxruntime's message and the node it names."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rewriter.emit.runtime_check import ModelRunner, runtime_for
from rewriter.errors import RuntimeRefused


def _reshape_model() -> onnx.ModelProto:
    """Reshape of a dynamic-length input to [3]: loads, and fails on any input of other than 3 values."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="to_three")], "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [numpy_helper.from_array(np.array([3], np.int64), "shape")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_run_the_runtime_rejects_names_the_node() -> None:
    runner = ModelRunner(_reshape_model(), "onnxruntime", "the quantized model")
    (ok,) = runner.run([{"x": np.arange(3, dtype=np.float32)}])
    np.testing.assert_array_equal(ok["y"], np.arange(3, dtype=np.float32))
    with pytest.raises(RuntimeRefused) as refused:
        runner.run([{"x": np.arange(4, dtype=np.float32)}])
    assert refused.value.message.startswith("onnxruntime cannot run the quantized model: ")
    assert refused.value.node == "to_three" and refused.value.render().endswith("(node to_three)")


def test_a_model_the_runtime_cannot_load_names_the_node() -> None:
    model = _reshape_model()
    model.graph.node[0].op_type = "Reshap"  # no such op
    with pytest.raises(RuntimeRefused) as refused:
        ModelRunner(model, "onnxruntime", "the quantized model")
    assert refused.value.message.startswith("onnxruntime cannot load the quantized model: ")
    assert "Reshap" in refused.value.message


def test_each_format_has_its_runtime() -> None:
    assert runtime_for("qdq") == "onnxruntime"
    assert runtime_for("fakequantize") in ("openvino", None)
