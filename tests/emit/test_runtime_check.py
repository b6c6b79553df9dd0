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


def _batch_model(mix_samples: bool) -> onnx.ModelProto:
    """y = x * 2 over a dynamic batch; with ``mix_samples`` y also adds the batch's mean (rows depend on
    the other samples of a run, as in a model that normalizes over its batch axis)."""
    nodes = [helper.make_node("Mul", ["x", "two"], ["doubled"])]
    if mix_samples:
        nodes += [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[0], keepdims=1),
                  helper.make_node("Add", ["doubled", "mean"], ["y"])]
    else:
        nodes += [helper.make_node("Identity", ["doubled"], ["y"])]
    graph = helper.make_graph(
        nodes, "batch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _samples(count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [{"x": rng.standard_normal((1, 4)).astype(np.float32)} for _ in range(count)]


def test_samples_run_batched_when_the_model_allows_it_with_each_samples_own_outputs() -> None:
    samples = _samples(11)
    runner = ModelRunner(_batch_model(mix_samples=False), "onnxruntime", "the quantized model", batch_size=4)
    runs = runner.run(samples)
    assert runner.verified and runner.can_batch  # the first batch agreed with its samples run alone
    assert len(runs) == 11
    for sample, run in zip(samples, runs):
        assert run["y"].shape == (1, 4)
        np.testing.assert_allclose(run["y"], sample["x"] * 2, rtol=1e-6)


def test_a_model_that_mixes_the_samples_of_a_run_falls_back_to_one_sample_per_run() -> None:
    samples = _samples(6)
    runner = ModelRunner(_batch_model(mix_samples=True), "onnxruntime", "the quantized model", batch_size=4)
    runs = runner.run(samples)
    assert not runner.can_batch
    for sample, run in zip(samples, runs):  # alone, the mean over the batch axis is the sample itself
        np.testing.assert_allclose(run["y"], sample["x"] * 3, rtol=1e-6)


def test_samples_of_other_shapes_or_a_fixed_batch_run_alone() -> None:
    model = _batch_model(mix_samples=False)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # batch written into the model
    assert not ModelRunner(model, "onnxruntime", "the quantized model").can_batch
    runner = ModelRunner(_batch_model(mix_samples=False), "onnxruntime", "the quantized model")
    mixed = [{"x": np.ones((2, 4), np.float32)}, {"x": np.ones((1, 4), np.float32)}]
    runs = runner.run(mixed)
    assert [r["y"].shape for r in runs] == [(2, 4), (1, 4)] and not runner.verified
