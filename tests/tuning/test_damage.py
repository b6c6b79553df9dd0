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


def _ratio(reference: np.ndarray, values: np.ndarray) -> float:
    reference, values = reference.astype(np.float64), values.astype(np.float64)
    return float(np.sum((reference - values) ** 2) / np.sum(reference ** 2))


def test_the_damage_of_each_node_is_what_a_numpy_reference_computes() -> None:
    model = _mm_abs_sqrt_mm()
    samples = models.random_inputs(model, 12, seed=3)
    result = quantize(model, samples, QuantizeOptions(target="ORT", subset_size=8, self_check=False))
    statuses = {n.node: n.status for n in result.plan.nodes}
    assert (statuses["mm1"], statuses["y"]) == ("quantized", "quantized")
    assert statuses["abs"] != "quantized" and statuses["sqrt"] != "quantized"
    regions = damage_regions(graph_view(model), result.plan)
    assert (regions["mm1"].followers, regions["mm1"].reads, regions["mm1"].writes, regions["mm1"].quantized) == \
        (("abs", "sqrt"), ("x",), ("mm1", "abs", "sqrt"), ((0, "x"), (1, "w1")))
    assert (regions["y"].followers, regions["y"].reads, regions["y"].writes) == ((), ("sqrt",), ("y",))

    # The reference: both models written out in numpy, the quantized one with the emitted scales.
    emitted = result.model
    w1, w2 = _initializer(model, "w1"), _initializer(model, "w2")
    w1q, w2q = _dequantized_weight(emitted, "mm1"), _dequantized_weight(emitted, "y")
    weight_errors = {"w1": _ratio(w1, w1q), "w2": _ratio(w2, w2q)}
    checked = samples[8:]
    f: dict[str, list[np.ndarray]] = {}
    q: dict[str, list[np.ndarray]] = {}
    for sample in checked:
        x = sample["x"]
        h = x @ w1
        values = {"x": x, "mm1": h, "abs": np.abs(h), "sqrt": np.sqrt(np.abs(h))}
        values["y"] = values["sqrt"] @ w2
        hq = _fake_quantized(emitted, "x", x) @ w1q
        quantized = {"x": x, "x_q": _fake_quantized(emitted, "x", x), "mm1": hq, "abs": np.abs(hq),
                     "sqrt": np.sqrt(np.abs(hq))}
        quantized["sqrt_q"] = _fake_quantized(emitted, "sqrt", quantized["sqrt"])
        quantized["y"] = quantized["sqrt_q"] @ w2q
        for name, value in values.items():
            f.setdefault(name, []).append(value)
        for name, value in quantized.items():
            q.setdefault(name, []).append(value)
    both = {name: (np.concatenate(f[name]), np.concatenate(q[name])) for name in f}
    error = {name: _ratio(*pair) for name, pair in both.items()}
    # A quantizer's own error: on the values the quantized model feeds it.
    own = {"mm1": _ratio(np.concatenate(q["x"]), np.concatenate(q["x_q"])) + weight_errors["w1"],
           "y": _ratio(np.concatenate(q["sqrt"]), np.concatenate(q["sqrt_q"])) + weight_errors["w2"]}
    expected = {"mm1": max(error["mm1"], error["abs"], error["sqrt"]),  # reads the exact model input: all its own
                "y": error["y"] * own["y"] / (error["sqrt"] + own["y"])}

    figures = {name: -10 * math.log10(value) for name, value in weight_errors.items()}
    ranking = measure_damage(model, emitted, result.plan, checked, ["y", "mm1"], figures)
    assert ranking.skipped is None and ranking.samples == 4
    assert ranking.exposed_tensors == 6  # mm1, abs, sqrt, y and the two activation quantizers' outputs
    for node in ("mm1", "y"):
        measured = ranking.nodes[node]
        assert measured.own == pytest.approx(own[node], rel=1e-3)
        assert measured.damage == pytest.approx(expected[node], rel=1e-3)
        assert measured.damage_db == pytest.approx(10 * math.log10(expected[node]), abs=0.01)
    assert ranking.nodes["mm1"].inherited == 0.0 and ranking.nodes["mm1"].followers == ("abs", "sqrt")
    assert ranking.nodes["y"].inherited == pytest.approx(error["sqrt"], rel=1e-3)
    assert ranking.nodes["y"].outputs == pytest.approx(error["y"], rel=1e-3)


def test_non_finite_values_count_as_infinite_error_unless_both_models_have_them() -> None:
    mask = np.array([0.0, -np.inf, 2.0], np.float32)
    errors = tensor_errors(
        [{"mask": mask, "div": np.array([1.0, 2.0], np.float32), "ids": np.array([1, 2]), "odd": np.ones(2)}],
        [{"mask": mask.copy(), "div": np.array([1.0, np.inf], np.float32), "ids": np.array([1, 3]),
          "odd": np.ones(3)}])
    assert errors["mask"].ratio == 0.0  # the same -inf in both: an attention mask, no error
    assert errors["div"].ratio == math.inf  # a division by a variance quantized to zero
    assert "ids" not in errors and "odd" not in errors  # integers have no SQNR; shapes that differ are left out


def _damage(node: str, damage: float) -> NodeDamage:
    """A node whose measured damage is ``damage``: it reads exact values, so the outputs' error is all its own."""
    return NodeDamage(node, (), 0.0, 1e-4 if damage else 0.0, damage)


def test_the_order_is_measured_damage_then_unmeasured_then_harmless_each_in_the_given_order() -> None:
    ranking = DamageRanking({"a": _damage("a", 1e-4), "b": _damage("b", 0.0), "c": _damage("c", 1e-2),
                             "d": _damage("d", 1e-4 * (1 + 1e-9)), "e": _damage("e", math.inf)}, 4, 10)
    # e: infinite first; c; then a and d, equal once rounded as reported, in the given order; then the
    # unmeasured f; last b, measured to add nothing.
    assert ranking.order(["b", "d", "f", "a", "c", "e"]) == ["e", "c", "d", "a", "f", "b"]
    assert DamageRanking(skipped="why").order(["b", "a"]) == ["b", "a"]
    assert ranking.as_dict(["e", "f"], 2)["first"] == [
        {"node": "e", "damage_db": math.inf, "inputs_sqnr_db": math.inf, "quantizers_sqnr_db": 40.0,
         "outputs_sqnr_db": -math.inf, "through": []},
        {"node": "f", "damage_db": None, "inputs_sqnr_db": None, "quantizers_sqnr_db": None, "outputs_sqnr_db": None,
         "through": []}]


def test_past_the_exposure_cap_the_less_suspect_nodes_stay_unmeasured() -> None:
    model = _mm_abs_sqrt_mm()
    samples = models.random_inputs(model, 10, seed=4)
    result = quantize(model, samples, QuantizeOptions(target="ORT", subset_size=8, self_check=False))
    # y needs sqrt, y and its quantizer's output exposed; mm1 then needs mm1, abs and x's quantizer's output
    # too, past a cap of 5.
    ranking = measure_damage(model, result.model, result.plan, samples[8:], ["y", "mm1"], {}, max_exposed=5)
    assert set(ranking.nodes) == {"y"} and ranking.exposed_tensors == 3
    assert measure_damage(model, result.model, result.plan, [], ["y"], {}).skipped == "no check sample to measure on"
