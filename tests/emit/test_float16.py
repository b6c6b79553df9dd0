"""float16 models: QDQ pairs in the model's own float type; bfloat16 and double refused before any work.

A float16 model's pairs carry float16 scales (opset 19, converted when the model is older), so onnxruntime
loads the output and DequantizeLinear gives its readers the float16 they expect. The reference is the
float32 twin of the same model (the float16 weights widened): quantized with the same options it must give
the same integer weights and, run in onnxruntime, the same outputs up to float16 rounding.
"""
from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from models import IR_VERSION
from rewriter.cli import main
from rewriter.emit.qdq_params import float_types
from rewriter.options import QuantizeOptions
from rewriter.pipeline import quantize


def _layers_model(elem: int, opset: int, seed: int = 0) -> onnx.ModelProto:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> MatMul -> Gemm, weights and tensors of type ``elem``."""
    rng = np.random.default_rng(seed)
    np_type = helper.tensor_dtype_to_np_dtype(elem)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        values = rng.standard_normal(shape) * np.sqrt(2.0 / (int(np.prod(shape[1:])) or 1))
        return numpy_helper.from_array(values.astype(np.float16).astype(np_type), name)

    inits = [weight("conv.weight", (8, 3, 3, 3)), weight("conv.bias", (8,)), weight("mm.weight", (8, 8)),
             weight("fc.weight", (4, 8)), weight("fc.bias", (4,))]
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
             helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool"),
             helper.make_node("Flatten", ["pool"], ["flat"], name="flat"),
             helper.make_node("MatMul", ["flat", "mm.weight"], ["mm"], name="mm"),
             helper.make_node("Gemm", ["mm", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "layers", [helper.make_tensor_value_info("x", elem, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", elem, [1, 4])], inits)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="rewriter-tests",
                              ir_version=max(IR_VERSION, helper.find_min_ir_version_for(opsets)))
    onnx.checker.check_model(model, full_check=True)
    return model


def _samples(n: int = 8, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(n)]


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    elem = model.graph.input[0].type.tensor_type.elem_type
    return session.run(None, {"x": x.astype(helper.tensor_dtype_to_np_dtype(elem))})[0]


def _int_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.INT8}


@pytest.mark.parametrize("opset", [17, 19])
@pytest.mark.parametrize("target", ["ORT", "CPU"])
def test_float16_model_quantizes_in_float16_and_matches_its_float32_twin(opset: int, target: str) -> None:
    half, full = _layers_model(TensorProto.FLOAT16, opset), _layers_model(TensorProto.FLOAT, opset)
    options = QuantizeOptions(target=target, progress=False)
    with pytest.warns(UserWarning, match="casting float32 samples to the model's float16"):
        q_half = quantize(half, _samples(), options).model
    q_full = quantize(full, _samples(), options).model

    assert max(o.version for o in q_half.opset_import if o.domain in ("", "ai.onnx")) >= 19
    pairs = [n for n in q_half.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(pairs) == sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in q_full.graph.node) - 2
    scales = {n.input[1] for n in pairs}
    types = float_types(q_half, scales)
    assert types and set(types.values()) == {TensorProto.FLOAT16}, types
    # Same levels: the float16 weights are exactly representable in float32.
    full_ints = _int_weights(q_full)
    for name, values in _int_weights(q_half).items():
        np.testing.assert_array_equal(values, full_ints[name])

    for sample in _samples(4, seed=9):
        got, twin = _run(q_half, sample["x"]), _run(q_full, sample["x"])
        float_out = _run(half, sample["x"]).astype(np.float32)
        assert got.dtype == np.float16
        np.testing.assert_allclose(got.astype(np.float32), twin, rtol=0.02, atol=0.02)
        error = float(np.sum((got.astype(np.float32) - float_out) ** 2))
        assert 10 * np.log10(float(np.sum(float_out ** 2)) / max(error, 1e-12)) > 20  # SQNR in dB


@pytest.mark.filterwarnings("ignore:calibration input:UserWarning")
def test_float16_layers_keep_a_float_bias() -> None:
    """onnxruntime's integer kernels take float32 pairs only: a float16 layer's int32 bias gains nothing."""
    half = quantize(_layers_model(TensorProto.FLOAT16, 19), _samples(), QuantizeOptions(target="ORT"))
    full = quantize(_layers_model(TensorProto.FLOAT, 19), _samples(), QuantizeOptions(target="ORT"))
    assert {b.node for b in full.plan.int32_biases if b.bias} == {"conv", "fc"}
    assert half.plan.int32_biases == ()
    assert not [t for t in half.model.graph.initializer if t.data_type == TensorProto.INT32]


@pytest.mark.parametrize("elem, name", [(TensorProto.BFLOAT16, "bfloat16"), (TensorProto.DOUBLE, "double")])
def test_types_no_qdq_pair_carries_are_refused_before_calibration(tmp_path, capsys, elem: int, name: str) -> None:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    if elem == TensorProto.BFLOAT16:
        w = helper.make_tensor("w", elem, [4, 4], np.ones(16, np.float32).tolist())
    else:
        w = numpy_helper.from_array(np.ones((4, 4), np.float64), "w")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, [1, 4])],
                              [helper.make_tensor_value_info("y", elem, [1, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    onnx.checker.check_model(model)
    path, out = tmp_path / "m.onnx", tmp_path / "q.onnx"
    onnx.save(model, str(path))
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "s0.npy", np.ones((1, 4), np.float32))  # not even read: the refusal comes first
    code = main(["quantize", str(path), "-o", str(out), "--data", str(data), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(f"tensor '[xw]' is {name}: QuantizeLinear/DequantizeLinear take float32 or float16", err), err
    assert "convert the model to float32" in err
    assert "Traceback" not in err and not out.exists()


def test_a_float16_region_inside_a_float32_model_gets_pairs_of_each_type() -> None:
    """Exports that run part of the network in float16 (Cast in, Cast out): each pair carries its tensor's type."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float16), "half.weight"),
             numpy_helper.from_array((rng.standard_normal((4, 4)) * 0.5).astype(np.float32), "full.weight")]
    nodes = [helper.make_node("Cast", ["x"], ["x16"], name="to_half", to=TensorProto.FLOAT16),
             helper.make_node("Conv", ["x16", "half.weight"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["conv"], ["pool"], name="pool"),
             helper.make_node("Flatten", ["pool"], ["flat"], name="flat"),
             helper.make_node("Cast", ["flat"], ["flat32"], name="to_full", to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["flat32", "full.weight"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "mixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    # One sample, measured on itself: its ranges are its own extremes, so the error is rounding alone (the
    # pooled vector has 4 values per sample, which the default statistics clip on unseen samples).
    sample = _samples(1, seed=4)[0]
    quantized = quantize(model, [sample], QuantizeOptions(target="ORT", progress=False)).model
    onnx.checker.check_model(quantized, full_check=True)
    dq = {n.input[0]: n.input[1] for n in quantized.graph.node if n.op_type == "DequantizeLinear"}
    types = float_types(quantized, dq.values())
    assert types[dq["half.weight_quantized"]] == TensorProto.FLOAT16
    assert types[dq["full.weight_quantized"]] == TensorProto.FLOAT
    expected, got = _run(model, sample["x"]), _run(quantized, sample["x"])
    error = float(np.sum((got - expected) ** 2))
    assert 10 * np.log10(float(np.sum(expected ** 2)) / max(error, 1e-12)) > 20
