"""The measured damage that orders the fidelity guard's candidates: each quantized node's added error against
a numpy reference, what counts as error, the regions, the order and the cost bound."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import models
from rewriter.ir.view import graph_view
from rewriter.pipeline import QuantizeOptions, quantize
from rewriter.tuning.damage import DamageRanking, NodeDamage, damage_regions, measure_damage, tensor_errors


def _mm_abs_sqrt_mm() -> onnx.ModelProto:
    """x -> MatMul -> Abs -> Sqrt -> MatMul: on the ORT target the two MatMuls are quantized and Abs, Sqrt
    stay float, so the first MatMul's region runs through both."""
    b = models.GraphBuilder(5)
    h = b.node("MatMul", ["x", b.weight("w1", (8, 8))], "mm1")
    s = b.node("Sqrt", [b.node("Abs", [h], "abs")], "sqrt")
    b.node("MatMul", [s, b.weight("w2", (8, 4))], "y")
    return b.model([models._f32("x", (4, 8))], [models._f32("y", (4, 4))], "mm_abs_sqrt_mm")


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def _fake_quantized(model: onnx.ModelProto, tensor: str, values: np.ndarray) -> np.ndarray:
    """``values`` through the QuantizeLinear -> DequantizeLinear pair the emitted model put on ``tensor``."""
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor)
    scale, zero = _initializer(model, q.input[1]), _initializer(model, q.input[2])
    info = np.iinfo(zero.dtype)
    levels = np.clip(np.round(values / scale) + zero.astype(np.float32), info.min, info.max)
    return ((levels - zero.astype(np.float32)) * scale).astype(np.float32)


def _dequantized_weight(model: onnx.ModelProto, reader: str) -> np.ndarray:
    """The weight ``reader`` (a MatMul) multiplies by in the emitted model: its DequantizeLinear, by hand."""
    node = next(n for n in model.graph.node if n.name == reader)
    dq = next(n for n in model.graph.node if n.output[0] == node.input[1])
    levels, scale, zero = (_initializer(model, name).astype(np.float32) for name in dq.input)
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    shape = [1] * levels.ndim
    shape[axis] = -1
    return ((levels - zero.reshape(shape if zero.ndim else ())) * scale.reshape(shape if scale.ndim else ()))


def test_the_damage_of_each_node_is_the_added_error_a_numpy_reference_computes() -> None:
    model = _mm_abs_sqrt_mm()
    samples = models.random_inputs(model, 12, seed=3)
    result = quantize(model, samples, QuantizeOptions(target="ORT", subset_size=8, self_check=False))
    statuses = {n.node: n.status for n in result.plan.nodes}
    assert (statuses["mm1"], statuses["y"]) == ("quantized", "quantized")
    assert statuses["abs"] != "quantized" and statuses["sqrt"] != "quantized"
    regions = damage_regions(graph_view(model), result.plan)
    assert (regions["mm1"].followers, regions["mm1"].reads, regions["mm1"].writes) == \
        (("abs", "sqrt"), ("x",), ("mm1", "abs", "sqrt"))
    assert (regions["y"].followers, regions["y"].reads, regions["y"].writes) == ((), ("sqrt",), ("y",))

    checked = samples[8:]
    ranking = measure_damage(model, result.model, result.plan, checked, ["y", "mm1"])
    assert ranking.skipped is None and ranking.samples == 4 and ranking.exposed_tensors == 4

    # The reference: both models written out in numpy, the quantized one with the emitted scales.
    emitted = result.model
    w1, w2 = _initializer(model, "w1"), _initializer(model, "w2")
    w1q, w2q = _dequantized_weight(emitted, "mm1"), _dequantized_weight(emitted, "y")
    sums: dict[str, list[float]] = {name: [0.0, 0.0] for name in ("mm1", "abs", "sqrt", "y")}
    for sample in checked:
        x = sample["x"]
        h = x @ w1
        f = {"mm1": h, "abs": np.abs(h), "sqrt": np.sqrt(np.abs(h))}
        f["y"] = f["sqrt"] @ w2
        hq = _fake_quantized(emitted, "x", x) @ w1q
        q = {"mm1": hq, "abs": np.abs(hq), "sqrt": np.sqrt(np.abs(hq))}
        q["y"] = _fake_quantized(emitted, "sqrt", q["sqrt"]) @ w2q
        for name, total in sums.items():
            total[0] += float(np.sum((f[name].astype(np.float64) - q[name]) ** 2))
            total[1] += float(np.sum(f[name].astype(np.float64) ** 2))
    ratio = {name: noise / power for name, (noise, power) in sums.items()}
    expected = {"mm1": max(ratio["mm1"], ratio["abs"], ratio["sqrt"]) - 0.0, "y": ratio["y"] - ratio["sqrt"]}
    # The second MatMul averages away more of the error it reads than its own quantizers add: no damage.
    assert expected["mm1"] > 0 > expected["y"]
    for node, added in expected.items():
        assert ranking.nodes[node].added_error == pytest.approx(added, rel=1e-3)
    assert ranking.nodes["mm1"].damage_db == pytest.approx(10 * math.log10(expected["mm1"]), abs=0.01)
    assert ranking.nodes["y"].damage_db is None
    assert ranking.order(["y", "mm1"]) == ["mm1", "y"]
    assert ranking.nodes["mm1"].inputs_sqnr_db == math.inf  # it reads the model input, exact in both
    assert ranking.nodes["y"].inputs_sqnr_db == pytest.approx(-10 * math.log10(ratio["sqrt"]), abs=0.01)
    assert ranking.nodes["y"].outputs_sqnr_db == pytest.approx(-10 * math.log10(ratio["y"]), abs=0.01)
    assert ranking.nodes["mm1"].followers == ("abs", "sqrt")


def test_non_finite_values_count_as_infinite_error_unless_both_models_have_them() -> None:
    mask = np.array([0.0, -np.inf, 2.0], np.float32)
    errors = tensor_errors(
        [{"mask": mask, "div": np.array([1.0, 2.0], np.float32), "ids": np.array([1, 2]), "odd": np.ones(2)}],
        [{"mask": mask.copy(), "div": np.array([1.0, np.inf], np.float32), "ids": np.array([1, 3]),
          "odd": np.ones(3)}])
    assert errors["mask"].ratio == 0.0  # the same -inf in both: an attention mask, no error
    assert errors["div"].ratio == math.inf  # a division by a variance quantized to zero
    assert "ids" not in errors and "odd" not in errors  # integers have no SQNR; shapes that differ are left out


def _damage(node: str, added: float) -> NodeDamage:
    return NodeDamage(node, (), 40.0, 30.0, added)


def test_the_order_is_measured_damage_then_unmeasured_then_harmless_each_in_the_given_order() -> None:
    ranking = DamageRanking({"a": _damage("a", 1e-4), "b": _damage("b", 0.0), "c": _damage("c", 1e-2),
                             "d": _damage("d", 1e-4 * (1 + 1e-9)), "e": _damage("e", math.inf)}, 4, 10)
    # e: infinite first; c; then a and d, equal once rounded as reported, in the given order; then the
    # unmeasured f; last b, measured to add nothing.
    assert ranking.order(["b", "d", "f", "a", "c", "e"]) == ["e", "c", "d", "a", "f", "b"]
    assert DamageRanking(skipped="why").order(["b", "a"]) == ["b", "a"]
    assert ranking.as_dict(["e", "f"], 2)["first"] == [
        {"node": "e", "damage_db": math.inf, "inputs_sqnr_db": 40.0, "outputs_sqnr_db": 30.0, "through": []},
        {"node": "f", "damage_db": None, "inputs_sqnr_db": None, "outputs_sqnr_db": None, "through": []}]


def test_past_the_exposure_cap_the_less_suspect_nodes_stay_unmeasured() -> None:
    model = _mm_abs_sqrt_mm()
    samples = models.random_inputs(model, 10, seed=4)
    result = quantize(model, samples, QuantizeOptions(target="ORT", subset_size=8, self_check=False))
    # y needs sqrt and y exposed; mm1 then needs mm1 and abs too, past a cap of 3.
    ranking = measure_damage(model, result.model, result.plan, samples[8:], ["y", "mm1"], max_exposed=3)
    assert set(ranking.nodes) == {"y"} and ranking.exposed_tensors == 2
    assert measure_damage(model, result.model, result.plan, [], ["y"]).skipped == "no check sample to measure on"
