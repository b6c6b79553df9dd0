"""normalize keeps float results and makes the graph regular (constants, BN folding, names, order)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import models
from ir_helpers import max_relative_diff, run
from models import GraphBuilder, random_inputs
from rewriter.ir.normalize import NormalizeResult, normalize
from rewriter.ir.order import topological_order

BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    **models.ALL_BUILDERS,
    "attention_block_dynamic": lambda: models.attention_block(dynamic=True),
    "squeeze_excitation_reduce_mean": lambda: models.squeeze_excitation(pool="reduce_mean"),
}


def _f32(name: str, shape: list) -> onnx.ValueInfoProto:  # type: ignore[type-arg]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _assert_same_results(before: onnx.ModelProto, after: onnx.ModelProto, label: str) -> float:
    diff, scale = max_relative_diff(before, after)
    print(f"{label}: max abs diff {diff:.3g} (output scale {scale:.3g})")
    assert diff <= 1e-5 * scale, f"{label}: normalize changed the results by {diff} (scale {scale})"
    return diff


# --- every builder ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_keeps_float_results(name: str, record_property: Callable[[str, object], None]) -> None:
    model = BUILDERS[name]()
    result = normalize(model)
    onnx.checker.check_model(result.model, full_check=True)
    record_property("max_abs_diff", _assert_same_results(model, result.model, name))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_rows_are_the_normalized_nodes(name: str) -> None:
    """graph_view trusts NormalizeResult.rows instead of reading the nodes again: they must be exact."""
    from rewriter.ir.protos import node_rows
    from rewriter.ir.view import graph_view

    result = normalize(BUILDERS[name]())
    assert result.rows == tuple(node_rows(result.model.graph.node))
    with_rows, without = graph_view(result.model, result.rows), graph_view(result.model)
    assert with_rows.nodes == without.nodes and with_rows.tensors == without.tensors


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_does_not_mutate_and_is_deterministic(name: str) -> None:
    model = BUILDERS[name]()
    snapshot = model.SerializeToString()
    first = normalize(model)
    assert model.SerializeToString() == snapshot
    second = normalize(model)
    assert first.model.SerializeToString() == second.model.SerializeToString()
    assert first.actions == second.actions


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_idempotent(name: str) -> None:
    once = normalize(BUILDERS[name]()).model
    twice = normalize(once)
    assert twice.actions == ()
    assert [n.name for n in twice.model.graph.node] == [n.name for n in once.graph.node]


def test_result_is_frozen() -> None:
    result = normalize(models.conv_bn_relu_chain())
    assert isinstance(result, NormalizeResult)
    with pytest.raises(AttributeError):
        result.actions = ()  # type: ignore[misc]


# --- BatchNormalization -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["conv_bn_relu_chain", "residual_block", "depthwise_conv", "tiny_cnn"])
def test_batchnorm_folded_into_conv(name: str) -> None:
    model = BUILDERS[name]()
    result = normalize(model)
    assert "BatchNormalization" not in _ops(result.model)
    n_bn = _ops(model).count("BatchNormalization")
    assert sum(a.startswith("folded BatchNormalization") for a in result.actions) == n_bn


def test_conv_without_bias_gets_one() -> None:
    result = normalize(models.conv_bn_relu_chain())
    conv2 = next(n for n in result.model.graph.node if n.name == "conv2")
    assert len(conv2.input) == 3
    assert conv2.input[2] in {t.name for t in result.model.graph.initializer}
    assert "folded BatchNormalization bn2 into Conv conv2" in result.actions


def _conv_bn(extra_reader: bool = False, conv_is_output: bool = False) -> onnx.ModelProto:
    b = GraphBuilder(3)
    c = b.conv("input", "conv", 3, 4)
    b.bn(c, "bn", 4)
    outputs = [_f32("bn", [1, 4, 8, 8])]
    if extra_reader:
        b.node("Relu", [c], "side")
        outputs.append(_f32("side", [1, 4, 8, 8]))
    if conv_is_output:
        outputs.append(_f32("conv", [1, 4, 8, 8]))
    return b.model([_f32("input", [1, 3, 8, 8])], outputs, "conv_bn")


@pytest.mark.parametrize("kwargs", [{"extra_reader": True}, {"conv_is_output": True}])
def test_batchnorm_kept_when_conv_output_is_shared(kwargs: dict[str, bool]) -> None:
    model = _conv_bn(**kwargs)
    result = normalize(model)
    assert "BatchNormalization" in _ops(result.model)
    _assert_same_results(model, result.model, f"conv_bn {kwargs}")


def test_shared_weight_is_not_changed_for_the_other_reader() -> None:
    b = GraphBuilder(4)
    w = b.weight("shared.weight", (4, 4, 3, 3))
    c1 = b.node("Conv", ["input", w], "conv1", pads=[1, 1, 1, 1])
    x = b.bn(c1, "bn1", 4)
    b.node("Conv", [x, w], "conv2", pads=[1, 1, 1, 1])
    model = b.model([_f32("input", [1, 4, 8, 8])], [_f32("conv2", [1, 4, 8, 8])], "shared")
    result = normalize(model)
    assert "BatchNormalization" not in _ops(result.model)
    convs = [n for n in result.model.graph.node if n.op_type == "Conv"]
    assert convs[1].input[1] == "shared.weight" and convs[0].input[1] != "shared.weight"
    _assert_same_results(model, result.model, "shared weight")


@pytest.mark.parametrize("group", [1, 2])
def test_batchnorm_folded_into_conv_transpose(group: int) -> None:
    b = GraphBuilder(5)
    w = b.weight("up.weight", (4, 6 // group, 2, 2))
    up = b.node("ConvTranspose", ["input", w], "up", strides=[2, 2], group=group)
    b.bn(up, "bn", 6)
    model = b.model([_f32("input", [1, 4, 8, 8])], [_f32("bn", [1, 6, 16, 16])], "deconv")
    result = normalize(model)
    assert _ops(result.model) == ["ConvTranspose"]
    _assert_same_results(model, result.model, f"ConvTranspose group {group}")


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("bias", ["none", "vector", "scalar", "matrix"])
def test_batchnorm_folded_into_gemm(trans_b: int, bias: str) -> None:
    b = GraphBuilder(6)
    w = b.weight("fc.weight", (5, 8) if trans_b else (8, 5), fan_in=8)
    inputs = ["input", w]
    c_shapes = {"vector": (5,), "scalar": (), "matrix": (2, 5)}
    if bias != "none":
        inputs.append(b.const("fc.bias", b.rng.standard_normal(c_shapes[bias]).astype(np.float32)))
    fc = b.node("Gemm", inputs, "fc", transB=trans_b, alpha=0.5, beta=2.0)
    b.bn(fc, "bn", 5)
    model = b.model([_f32("input", [2, 8])], [_f32("bn", [2, 5])], "gemm_bn")
    result = normalize(model)
    assert _ops(result.model) == ["Gemm"]
    _assert_same_results(model, result.model, f"Gemm transB={trans_b} bias={bias}")


def _matmul_bn(rank: int) -> onnx.ModelProto:
    b = GraphBuilder(7)
    w = b.weight("fc.weight", (8, 5), fan_in=8)
    mm = b.node("MatMul", ["input", w], "fc")
    channels = 5 if rank == 2 else 3
    b.bn(mm, "bn", channels)
    shape_in = [2, 8] if rank == 2 else [2, 3, 8]
    shape_out = [2, 5] if rank == 2 else [2, 3, 5]
    return b.model([_f32("input", shape_in)], [_f32("bn", shape_out)], "matmul_bn")


def test_batchnorm_folded_into_matmul_as_add() -> None:
    model = _matmul_bn(rank=2)
    result = normalize(model)
    assert _ops(result.model) == ["MatMul", "Add"]
    assert result.model.graph.node[1].output[0] == "bn"
    _assert_same_results(model, result.model, "MatMul + BN")


def test_batchnorm_after_3d_matmul_is_kept() -> None:
    # BN normalizes axis 1 (the sequence here), not the MatMul's output columns.
    model = _matmul_bn(rank=3)
    result = normalize(model)
    assert "BatchNormalization" in _ops(result.model)
    _assert_same_results(model, result.model, "3-D MatMul + BN")


def _matmul_add(x_shape: list[int], bias_shape: list[int], shared: bool = False) -> onnx.ModelProto:
    """x @ w + bias, as TensorFlow and JAX exports write a dense layer (bias of shape [1, N]); with
    ``shared``, a second Add reads the same bias."""
    rng = np.random.default_rng(4)
    w = numpy_helper.from_array(rng.standard_normal((x_shape[-1], 6)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(bias_shape).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),
             helper.make_node("Add", ["mm", "b"], ["y"], name="bias_add")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if shared:
        nodes.append(helper.make_node("Add", ["y", "b"], ["z"], name="again"))
        outputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              outputs, [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("x_shape,bias_shape", [([3, 5], [1, 6]), ([2, 3, 5], [1, 1, 6]), ([2, 3, 5], [1, 6])])
def test_a_dense_layers_bias_of_shape_1_n_is_stored_as_a_vector(x_shape: list[int], bias_shape: list[int]) -> None:
    model = _matmul_add(x_shape, bias_shape)
    result = normalize(model)
    bias = next(t for t in result.model.graph.initializer if t.name == "b")
    assert list(bias.dims) == [6]
    assert any("as [N]" in line for line in result.actions)
    _assert_same_results(model, result.model, f"MatMul {x_shape} + bias {bias_shape}")


@pytest.mark.parametrize("x_shape,bias_shape,shared", [
    ([5], [1, 6], False),        # a vector product: [6] + [1, 6] is [1, 6], and [6] + [6] would be [6]
    ([3, 5], [1, 6], True),      # another reader sees the bias too
    ([3, 5], [3, 6], False),     # not a bias per column
])
def test_a_bias_whose_shape_matters_is_left_alone(x_shape: list[int], bias_shape: list[int], shared: bool) -> None:
    model = _matmul_add(x_shape, bias_shape, shared)
    result = normalize(model)
    bias = next(t for t in result.model.graph.initializer if t.name == "b")
    assert list(bias.dims) == bias_shape
    _assert_same_results(model, result.model, f"MatMul {x_shape} + bias {bias_shape}")


# --- constants ----------------------------------------------------------------------------------


def test_constant_node_weights_become_initializers() -> None:
    result = normalize(models.constant_node_weights())
    assert "Constant" not in _ops(result.model)
    inits = {t.name for t in result.model.graph.initializer}
    assert {"conv.weight", "conv.bias"} <= inits
    assert "turned 2 Constant node(s) into initializers" in result.actions


@pytest.mark.parametrize("attr, value", [
    ("value_float", 2.5), ("value_floats", [1.0, 2.0]), ("value_int", 3), ("value_ints", [1, 2]),
])
def test_constant_attribute_forms(attr: str, value: object) -> None:
    is_float = attr.startswith("value_float")
    const = helper.make_node("Constant", [], ["c"], name="c", **{attr: value})
    cast = helper.make_node("Cast", ["c"], ["cf"], name="cast", to=TensorProto.FLOAT)
    add = helper.make_node("Add", ["x", "cf" if not is_float else "c"], ["y"], name="add")
    nodes = [const, add] if is_float else [const, cast, add]
    g = helper.make_graph(nodes, "g", [_f32("x", [2])], [_f32("y", [2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    result = normalize(model)
    assert _ops(result.model) == ["Add"]
    _assert_same_results(model, result.model, attr)


def test_constant_graph_output_stays_a_node() -> None:
    const = helper.make_node("Constant", [], ["c"], name="c", value_floats=[1.0, 2.0])
    relu = helper.make_node("Relu", ["x"], ["y"], name="relu")
    g = helper.make_graph([const, relu], "g", [_f32("x", [2])], [_f32("y", [2]), _f32("c", [2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert _ops(normalize(model).model) == ["Constant", "Relu"]


def test_identity_of_initializer_is_bypassed() -> None:
    b = GraphBuilder(8)
    w = b.weight("tied.weight", (8, 8), fan_in=8)
    alias = b.node("Identity", [w], "tied_alias")
    x = b.node("MatMul", ["input", w], "mm1")
    b.node("MatMul", [x, alias], "mm2")
    model = b.model([_f32("input", [2, 8])], [_f32("mm2", [2, 8])], "tied")
    result = normalize(model)
    assert _ops(result.model) == ["MatMul", "MatMul"]
    assert [n.input[1] for n in result.model.graph.node] == ["tied.weight", "tied.weight"]
    assert len(result.model.graph.initializer) == 1
    _assert_same_results(model, result.model, "tied weights")


def test_identity_chains_of_initializers_are_bypassed_and_the_rows_follow() -> None:
    """Identity(Identity(w)) is read as w, also by a node that reads two aliases; an alias that is a graph
    output stays a node; the rows handed on are those of the nodes left, as read from them again."""
    from rewriter.ir.protos import node_rows

    b = GraphBuilder(10)
    w = b.weight("w", (8, 8), fan_in=8)
    first = b.node("Identity", [w], "alias1")
    second = b.node("Identity", [first], "alias2")
    shown = b.node("Identity", [w], "alias_out")
    x = b.node("MatMul", ["input", second], "mm1")
    b.node("Concat", [x, first, second], "stacked", axis=0)
    model = b.model([_f32("input", [2, 8])], [_f32("stacked", [18, 8]), _f32(shown, [8, 8])], "chains")
    result = normalize(model)
    readers = {n.name: list(n.input) for n in result.model.graph.node}
    assert readers["mm1"] == ["input", "w"] and readers["stacked"] == ["mm1", "w", "w"]
    assert _ops(result.model).count("Identity") == 1  # the one a graph output names
    assert result.rows == tuple(node_rows(result.model.graph.node))
    _assert_same_results(model, result.model, "identity chains")


@pytest.mark.parametrize("name", sorted(models.ALL_BUILDERS))
def test_the_normalized_model_is_as_inferred(name: str) -> None:
    """normalize infers types again only after the edits that can change them (folding): whatever it did,
    inferring the result once more changes nothing."""
    from rewriter.ir.shape_inference import infer_shapes_in_place

    result = normalize(models.ALL_BUILDERS[name]())
    again = onnx.ModelProto()
    again.CopyFrom(result.model)
    infer_shapes_in_place(again, [])
    assert again.SerializeToString(deterministic=True) == result.model.SerializeToString(deterministic=True)


def _inference_calls(model: onnx.ModelProto, monkeypatch: pytest.MonkeyPatch) -> tuple[NormalizeResult, int]:
    calls = []
    infer = onnx.shape_inference.infer_shapes
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", lambda *a, **k: calls.append(1) or infer(*a, **k))
    return normalize(model), len(calls)


def test_constants_and_identities_alone_are_not_inferred_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant nodes turned initializers and Identity nodes bypassed keep every type: one inference, and
    the result is what a second would give."""
    from rewriter.ir.shape_inference import infer_shapes_in_place

    b = GraphBuilder(11)
    w = b.weight("w", (8, 8), fan_in=8)
    shift = b.node("Constant", [], "shift", value=numpy_helper.from_array(np.ones(8, np.float32), "shift"))
    b.node("Add", [b.node("MatMul", ["input", b.node("Identity", [w], "alias")], "mm"), shift], "out")
    model = b.model([_f32("input", [2, 8])], [_f32("out", [2, 8])], "constants")
    result, calls = _inference_calls(model, monkeypatch)
    assert any(a.startswith("turned 1 Constant") for a in result.actions)
    assert any(a.startswith("bypassed 1 Identity") for a in result.actions)
    assert calls == 1
    assert [vi.name for vi in result.model.graph.value_info] == ["mm"]  # the removed names' entries went
    again = onnx.ModelProto()
    again.CopyFrom(result.model)
    infer_shapes_in_place(again, [])
    assert again.SerializeToString(deterministic=True) == result.model.SerializeToString(deterministic=True)
    _assert_same_results(model, result.model, "constants")


def test_a_declared_type_of_a_constant_does_not_hide_its_shape() -> None:
    """The model says less about a Constant's output than its value does ([4, "k"] for a [4, 6] tensor):
    inference reads the value, so the Shape of what it feeds folds."""
    c = helper.make_node("Constant", [], ["c"], name="c", value=numpy_helper.from_array(np.ones((4, 6), np.float32)))
    nodes = [c, helper.make_node("MatMul", ["x", "c"], ["mm"], name="mm"),
             helper.make_node("Shape", ["mm"], ["s"], name="shape"),
             helper.make_node("Reshape", ["mm", "s"], ["y"], name="reshape")]
    g = helper.make_graph(nodes, "declared", [_f32("x", [2, 4])], [_f32("y", ["a", "b"])],
                          value_info=[_f32("c", [4, "k"])])
    result = normalize(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    assert "Shape" not in _ops(result.model)
    assert any(a.startswith("folded 1 constant node(s)") for a in result.actions)


def test_a_failed_inference_is_tried_again_after_an_edit() -> None:
    """Inference fails on a node of an unknown domain that nobody reads; once dead-node removal takes it
    away, the types come back."""
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Sigmoid", ["a"], ["y"], name="sig"),
             helper.make_node("Foo", ["a"], ["unused"], name="dead", domain="weird")]
    g = helper.make_graph(nodes, "failing", [_f32("x", [2, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                                 None)])
    result = normalize(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    assert any(a.startswith("shape inference failed") for a in result.actions)
    assert _ops(result.model) == ["Relu", "Sigmoid"]
    dims = result.model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 4]


def test_constants_and_identities_rebuild_the_node_list_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both steps take nodes away; the graph's nodes are put back once (each a copy), after both, and the
    nodes left are the ones the two steps kept, the Identity's reader reading the weight."""
    import rewriter.ir.normalize as normalize_module

    b = GraphBuilder(11)
    w = b.weight("w", (8, 8), fan_in=8)
    shift = b.node("Constant", [], "shift", value=numpy_helper.from_array(np.ones(8, np.float32), "shift"))
    b.node("Add", [b.node("MatMul", ["input", b.node("Identity", [w], "alias")], "mm"), shift], "out")
    model = b.model([_f32("input", [2, 8])], [_f32("out", [2, 8])], "constants")
    rebuilt: list[list[str]] = []
    replace = normalize_module.replace_nodes
    monkeypatch.setattr(normalize_module, "replace_nodes",
                        lambda g, nodes: rebuilt.append([n.op_type for n in nodes]) or replace(g, nodes))
    result = normalize(model)
    assert rebuilt == [["MatMul", "Add"]]
    assert [list(n.input) for n in result.model.graph.node] == [["input", "w"], ["mm", "shift"]]
    assert {t.name for t in result.model.graph.initializer} == {"w", "shift"}
    _assert_same_results(model, result.model, "constants")


def test_folding_is_inferred_again(monkeypatch: pytest.MonkeyPatch) -> None:
    b = GraphBuilder(12)
    w16 = b.const("w16", b.rng.standard_normal((8, 4)).astype(np.float16))
    b.node("MatMul", ["input", b.node("Cast", [w16], "cast", to=TensorProto.FLOAT)], "mm")
    _, calls = _inference_calls(b.model([_f32("input", [2, 8])], [_f32("mm", [2, 4])], "fold"), monkeypatch)
    assert calls >= 2


def test_weight_chain_is_folded() -> None:
    # fp16 weight -> Cast -> Transpose -> MatMul: the MatMul must end up reading one float initializer.
    b = GraphBuilder(9)
    w16 = b.const("w16", b.rng.standard_normal((4, 8)).astype(np.float16))
    w = b.node("Transpose", [b.node("Cast", [w16], "cast", to=TensorProto.FLOAT)], "w_t", perm=[1, 0])
    b.node("MatMul", ["input", w], "mm")
    model = b.model([_f32("input", [2, 8])], [_f32("mm", [2, 4])], "chain")
    result = normalize(model)
    assert _ops(result.model) == ["MatMul"]
    inits = {t.name: t for t in result.model.graph.initializer}
    assert result.model.graph.node[0].input[1] in inits and list(inits) == ["w_t"]
    _assert_same_results(model, result.model, "weight chain")


def test_static_shape_subgraph_folds() -> None:
    result = normalize(models.attention_block(dynamic=False))
    ops = _ops(result.model)
    for op in ("Shape", "Gather", "Unsqueeze", "Concat"):
        assert op not in ops
    inits = {t.name for t in result.model.graph.initializer}
    reshapes = [n for n in result.model.graph.node if n.op_type == "Reshape"]
    assert reshapes and all(n.input[1] in inits for n in reshapes)


def test_dynamic_shape_subgraph_is_kept() -> None:
    result = normalize(models.attention_block(dynamic=True))
    assert "Shape" in _ops(result.model)


def test_gather_of_static_dim_folds_when_others_are_dynamic() -> None:
    b = GraphBuilder(10)
    shp = b.node("Shape", ["input"], "shape")
    b.node("Gather", [shp, b.const("one", np.array(1, np.int64))], "seq", axis=0)
    b.node("Gather", [shp, b.const("zero", np.array(0, np.int64))], "batch", axis=0)
    # Graph outputs stay node outputs, so read the folded value through a node.
    b.node("Add", ["seq", "one"], "seq_len")
    i64 = TensorProto.INT64
    model = b.model([_f32("input", ["batch", 8])],
                    [helper.make_tensor_value_info("seq_len", i64, []),
                     helper.make_tensor_value_info("batch", i64, [])],
                    "partial")
    result = normalize(model)
    assert "seq" in {t.name for t in result.model.graph.initializer}
    assert "batch" not in {t.name for t in result.model.graph.initializer}
    _assert_same_results(model, result.model, "partial shape")


def test_unfoldable_constant_node_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx.reference

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no kernel")

    monkeypatch.setattr(onnx.reference.ReferenceEvaluator, "run", broken)
    model = models.attention_block(dynamic=False)
    result = normalize(model)
    assert "Concat" in _ops(result.model)
    assert any(a.startswith("kept") and "could not run" in a for a in result.actions)
    _assert_same_results(model, result.model, "folding disabled")


def test_huge_constant_is_not_materialized() -> None:
    shape = helper.make_node("Constant", [], ["shape"], name="shape_c", value_ints=[4096, 2048])  # 32 MiB of float32
    fill = helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill",
                            value=numpy_helper.from_array(np.array([1.0], np.float32)))
    red = helper.make_node("ReduceSum", ["big"], ["total"], name="sum", keepdims=0)
    add = helper.make_node("Add", ["x", "total"], ["y"], name="add")
    g = helper.make_graph([shape, fill, red, add], "g", [_f32("x", [1])], [_f32("y", [1])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    result = normalize(model)
    assert "ConstantOfShape" in _ops(result.model)
    assert result.model.ByteSize() < 100_000
    assert any("would add over" in a for a in result.actions)
    _assert_same_results(model, result.model, "huge constant")


def test_random_ops_are_not_folded() -> None:
    like = helper.make_node("RandomUniformLike", ["c"], ["r"], name="rand", seed=1.0)
    const = helper.make_node("Constant", [], ["c"], name="c", value_floats=[0.0, 0.0])
    add = helper.make_node("Add", ["x", "r"], ["y"], name="add")
    g = helper.make_graph([const, like, add], "g", [_f32("x", [2])], [_f32("y", [2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert "RandomUniformLike" in _ops(normalize(model).model)


def test_shape_inference_failure_is_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise onnx.shape_inference.InferenceError("[ShapeInferenceError] boom")

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", broken)
    model = models.tiny_cnn()
    result = normalize(model)
    assert any(a.startswith("shape inference failed") for a in result.actions)
    assert "BatchNormalization" not in _ops(result.model)
    _assert_same_results(model, result.model, "no shape inference")


def test_shapes_are_inferred() -> None:
    result = normalize(models.tiny_cnn())
    known = {vi.name for vi in result.model.graph.value_info}
    assert {"stem_relu", "pool", "concat", "flatten"} <= known


@pytest.mark.parametrize("name", ["constant_node_weights", "tiny_cnn"])
def test_the_taken_model_has_no_other_holder_when_inference_takes_it(name: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # normalize_taken hands the model to inference in a box so that it is freed once serialized: a local that
    # still holds its node list (or nodes from it) keeps the whole model in memory through inference (850 MB
    # at a million nodes). CPython counts the holders of the node list's wrapper: the check's own two.
    import sys  # noqa: PLC0415 - only this test needs it

    import rewriter.ir.normalize as normalize_module  # noqa: PLC0415

    counts = []
    infer = normalize_module.with_inferred_shapes

    def counting(box: list[onnx.ModelProto], log: list[str], rows: object) -> onnx.ModelProto:
        container = box[0].graph.node
        counts.append(sys.getrefcount(container))
        return infer(box, log, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(normalize_module, "with_inferred_shapes", counting)
    normalize_module.normalize_taken([getattr(models, name)()])
    fresh = models.tiny_cnn().graph.node
    assert counts and all(c == sys.getrefcount(fresh) for c in counts), counts


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_inferred_model_taken_is_the_model_refreshed_in_place(name: str) -> None:
    """with_inferred_shapes returns onnx's inferred model instead of copying its types back: it must be the
    model the copy would give, byte for byte."""
    from rewriter.ir.protos import node_rows
    from rewriter.ir.shape_inference import infer_shapes_in_place, with_inferred_shapes

    model = BUILDERS[name]()
    refreshed = onnx.ModelProto()
    refreshed.CopyFrom(model)
    infer_shapes_in_place(refreshed, [])
    box = [model]
    taken = with_inferred_shapes(box, [], node_rows(model.graph.node))
    assert box == []
    assert taken.SerializeToString(deterministic=True) == refreshed.SerializeToString(deterministic=True)


def test_a_model_whose_inference_fails_comes_back_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model is let go once serialized for onnx; when onnx fails, the same model comes back from its
    bytes, and the log says inference was skipped."""
    from rewriter.ir.protos import node_rows
    from rewriter.ir.shape_inference import with_inferred_shapes

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("inference broke")

    model = models.tiny_cnn()
    before = model.SerializeToString()
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", fail)
    log: list[str] = []
    back = with_inferred_shapes([model], log, node_rows(model.graph.node))
    assert back.SerializeToString() == before
    assert log == ["shape inference failed (inference broke); continuing without it"]


def test_inference_gets_the_float_weights_without_their_values_and_the_answer_gets_them_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a tensor's dims and type matter to inference, but for shape values: a float tensor of more than 64
    values (a weight) goes without its values, one of 64 or fewer (Resize's scales, say) and every integer
    tensor keep theirs, and the model that comes back holds every value it had."""
    from rewriter.ir.protos import node_rows
    from rewriter.ir.shape_inference import infer_shapes_in_place, with_inferred_shapes

    b = GraphBuilder(0)
    x = b.conv("x", "conv", 4, 8)  # an 8x4x3x3 weight: 288 values
    b.const("small", np.arange(64, dtype=np.float32))
    b.const("shape_like", np.arange(300, dtype=np.int64))
    x = b.node("Add", [x, b.const("bias", np.ones((8, 1, 1), np.float32))], "add")
    model = b.model([_f32("x", [1, 4, 8, 8])], [_f32(x, ["n", "c", "h", "w"])], "g")
    before = {t.name: t.SerializeToString() for t in model.graph.initializer}
    seen: list[onnx.ModelProto] = []
    infer = onnx.shape_inference.infer_shapes

    def watching(data: bytes | onnx.ModelProto, *args: object, **kwargs: object) -> onnx.ModelProto:
        seen.append(onnx.load_from_string(data if isinstance(data, bytes) else data.SerializeToString()))
        return infer(data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", watching)
    # Refreshed in place (as constant folding does between its passes), and taken whole (as normalize does).
    refreshed = onnx.ModelProto()
    refreshed.CopyFrom(model)
    infer_shapes_in_place(refreshed, [])
    taken = with_inferred_shapes([model], [], node_rows(model.graph.node))
    for sent in seen:
        valueless = {t.name for t in sent.graph.initializer if not t.HasField("raw_data")}
        assert valueless == {"conv.weight"}, valueless
    assert len(seen) == 2
    for result in (refreshed, taken):
        assert {t.name: t.SerializeToString() for t in result.graph.initializer} == before
        conv = next(vi for vi in result.graph.value_info if vi.name == "conv")
        assert [d.dim_value for d in conv.type.tensor_type.shape.dim] == [1, 8, 8, 8]


def test_shape_values_in_float_tensors_still_reach_inference() -> None:
    """Resize reads its scales' values and Range its bounds' to give a static shape: they still do."""
    from rewriter.ir.protos import node_rows
    from rewriter.ir.shape_inference import with_inferred_shapes

    b = GraphBuilder(0)
    scales = b.const("scales", np.array([1, 1, 2, 2], np.float32))
    b.const("weight_like", np.zeros(100, np.float32))
    up = b.node("Relu", [b.node("Resize", ["x", "", scales], "resize", mode="nearest")], "relu")
    span = b.node("Relu", [b.node("Range", [b.const("start", np.array(0, np.float32)),
                                            b.const("limit", np.array(6, np.float32)),
                                            b.const("delta", np.array(1.5, np.float32))], "range")], "relu2")
    model = b.model([_f32("x", [1, 3, 4, 4])], [_f32(up, ["n", "c", "h", "w"]), _f32(span, ["k"])], "g")
    taken = with_inferred_shapes([model], [], node_rows(model.graph.node))
    dims = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in taken.graph.value_info}
    assert dims["resize"] == [1, 3, 8, 8]
    assert dims["range"] == [4]


def test_values_given_back_by_name_when_the_order_differs() -> None:
    from rewriter.ir.shape_inference import _give_back, _take_float_values

    tensors = [numpy_helper.from_array(np.full(100, k, np.float32), f"w{k}") for k in range(3)]
    taken = _take_float_values(tensors, [0, 1, 2])
    assert [name for _, name, _ in taken] == ["w0", "w1", "w2"]
    assert not any(t.HasField("raw_data") for t in tensors)
    reordered = tensors[::-1]
    _give_back(reordered, taken)
    assert [float(numpy_helper.to_array(t)[0]) for t in tensors] == [0.0, 1.0, 2.0]


def test_a_model_with_subgraphs_is_refreshed_in_place() -> None:
    """onnx fills the value_info of If branches too, which the copy back leaves out: such a model is kept."""
    from rewriter.ir.protos import node_rows
    from rewriter.ir.shape_inference import with_inferred_shapes

    then_g = helper.make_graph([helper.make_node("Neg", ["t"], ["n"]), helper.make_node("Abs", ["n"], ["a"])],
                               "then", [], [_f32("a", [2])])
    else_g = helper.make_graph([helper.make_node("Abs", ["t"], ["b"])], "else", [], [_f32("b", [2])])
    nodes = [helper.make_node("Relu", ["x"], ["t"], name="relu"),
             helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g)]
    graph = helper.make_graph(nodes, "g", [_f32("x", [2]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [_f32("y", None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    inferred = onnx.shape_inference.infer_shapes(model)
    then_inferred = next(a.g for a in inferred.graph.node[1].attribute if a.name == "then_branch")
    assert [vi.name for vi in then_inferred.value_info] == ["n"]  # what the copy back leaves out
    taken = with_inferred_shapes([model], [], node_rows(model.graph.node))
    assert taken is model and {vi.name for vi in model.graph.value_info} == {"t"}
    branches = [a.g for a in model.graph.node[1].attribute]
    assert all(len(b.value_info) == 0 for b in branches)


def test_unused_initializers_and_initializer_inputs_removed() -> None:
    model = models.conv_bn_relu_chain()
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "orphan"))
    model.graph.input.append(_f32("conv1.weight", [8, 3, 3, 3]))
    result = normalize(model)
    names = {t.name for t in result.model.graph.initializer}
    assert "orphan" not in names
    assert [vi.name for vi in result.model.graph.input] == ["input"]


def test_ir3_model_with_initializer_inputs() -> None:
    # Old exports (IR 3, opset 8) list every weight as a graph input too.
    b = GraphBuilder(11)
    b.bn(b.conv("input", "conv", 3, 4), "bn", 4)
    inits = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in b.inits]
    graph = helper.make_graph(b.nodes, "old", [_f32("input", [1, 3, 8, 8]), *inits], [_f32("bn", [1, 4, 8, 8])],
                              b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)], ir_version=3)
    onnx.checker.check_model(model)
    result = normalize(model)
    onnx.checker.check_model(result.model, full_check=True)
    assert result.model.ir_version == 4 and result.model.opset_import[0].version == 8
    assert [vi.name for vi in result.model.graph.input] == ["input"]
    assert _ops(result.model) == ["Conv"]
    _assert_same_results(model, result.model, "IR 3")


def test_dead_nodes_removed() -> None:
    model = models.conv_bn_relu_chain()
    model.graph.node.append(helper.make_node("Sigmoid", ["relu1"], ["unused"], name="dangling"))
    result = normalize(model)
    assert "dangling" not in {n.name for n in result.model.graph.node}


def test_dead_node_removal_ignores_omitted_outputs_and_tells_what_is_used() -> None:
    """A node whose only named output nobody reads is dead even when it omits another (""); the names
    returned as used are the graph's outputs and what the kept nodes read, as the initializer cleanup needs."""
    from rewriter.ir.normalize import _remove_dead_nodes
    from rewriter.ir.protos import node_rows

    g = helper.make_graph(
        [helper.make_node("Dropout", ["x"], ["kept", ""], name="d1"),
         helper.make_node("Add", ["kept", "w"], ["y"], name="add"),
         helper.make_node("Dropout", ["x"], ["dropped", ""], name="d2"),
         helper.make_node("Mul", ["dropped", "v"], ["z"], name="mul")],
        "g", [_f32("x", [2])], [_f32("y", [2])],
        [numpy_helper.from_array(np.ones(2, np.float32), n) for n in ("w", "v")])
    log: list[str] = []
    rows, used = _remove_dead_nodes(g, log, node_rows(g.node))
    assert [n.name for n in g.node] == ["d1", "add"] and rows == node_rows(g.node)
    assert used == {"y", "kept", "w", "x"}
    assert log == ["removed 2 node(s) whose outputs nobody reads"]


def test_opset_is_left_alone() -> None:
    model = models.conv_bn_relu_chain()
    assert normalize(model).model.opset_import == model.opset_import


# --- names and order ----------------------------------------------------------------------------


def _unnamed_model() -> onnx.ModelProto:
    model = models.conv_bn_relu_chain()
    names = ["", "Relu_0", "", "dup", "dup", ""]  # conv1, bn1, relu1, conv2, bn2, output
    for node, name in zip(model.graph.node, names):
        node.name = name
    return model


def test_empty_and_duplicate_names_fixed() -> None:
    result = normalize(_unnamed_model())
    names = [n.name for n in result.model.graph.node]
    # "Relu_0" was taken (by bn1, since folded away), so the Relus count on from 1; the first "dup" keeps it.
    assert names == ["Conv_0", "Relu_1", "dup", "Relu_2"]
    assert "folded BatchNormalization BatchNormalization_0 into Conv dup" in result.actions


def test_names_before_folding() -> None:
    model = _unnamed_model()
    model.graph.output.append(_f32("conv1", [1, 8, 16, 16]))  # keeps bn1 from folding
    result = normalize(model)
    names = [n.name for n in result.model.graph.node]
    assert names == ["Conv_0", "Relu_0", "Relu_1", "dup", "Relu_2"]


def test_names_are_stable() -> None:
    first = [n.name for n in normalize(_unnamed_model()).model.graph.node]
    second = [n.name for n in normalize(_unnamed_model()).model.graph.node]
    assert first == second


def test_unique_names_are_kept() -> None:
    model = models.tiny_cnn()
    result = normalize(model)
    kept = {n.name for n in model.graph.node if n.op_type != "BatchNormalization"}
    assert {n.name for n in result.model.graph.node} == kept


def test_nodes_are_sorted() -> None:
    model = models.residual_block()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    result = normalize(model)
    assert [n.name for n in result.model.graph.node] == ["conv1", "relu1", "conv2", "add", "output"]
    assert "reordered nodes into topological order" in result.actions


def test_topological_order_respects_subgraph_reads() -> None:
    # The If's branches read "t", produced by a node listed after the If.
    then_g = helper.make_graph([helper.make_node("Identity", ["t"], ["a"], name="then_id")], "then", [],
                               [_f32("a", [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["t"], ["b"], name="else_neg")], "else", [], [_f32("b", [2])])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    nodes = [
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g),
        helper.make_node("Relu", ["x"], ["t"], name="make_t"),
    ]
    assert topological_order(nodes) == [1, 0]
    g = helper.make_graph(nodes, "g", [_f32("x", [2]), cond], [_f32("y", [2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    result = normalize(model)
    assert _ops(result.model) == ["Relu", "If"]
    feeds = {"x": np.array([1.0, -2.0], np.float32), "cond": np.array(False)}
    np.testing.assert_array_equal(run(result.model, feeds)[0], np.array([-1.0, 0.0], np.float32))


def test_random_inputs_are_deterministic() -> None:
    model = models.attention_block(dynamic=True)
    a, b = random_inputs(model, 2, seed=5), random_inputs(model, 2, seed=5)
    assert a[0]["input"].shape == (2, 8, 16)
    np.testing.assert_array_equal(a[1]["input"], b[1]["input"])


# --- property: BN folding is exact up to float rounding, whatever the layer's settings -----------


@st.composite
def _conv_bn_models(draw: st.DrawFn) -> onnx.ModelProto:
    op = draw(st.sampled_from(["Conv", "ConvTranspose"]))
    group = draw(st.sampled_from([1, 2]))
    cin = group * draw(st.integers(1, 3))
    cout = group * draw(st.integers(1, 3))
    k = draw(st.sampled_from([1, 3]))
    bias = draw(st.booleans())
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    b = GraphBuilder(draw(st.integers(0, 1000)))
    shape = (cout, cin // group, k, k) if op == "Conv" else (cin, cout // group, k, k)
    ins = ["input", b.weight("w", shape)]
    if bias:
        ins.append(b.const("b", b.rng.standard_normal(cout).astype(np.float32)))
    pads = [k // 2] * 4
    b.node(op, ins, "layer", group=group, kernel_shape=[k, k], pads=pads)
    r = b.rng
    params = [b.const(n, v.astype(np.float32)) for n, v in (
        ("scale", r.uniform(-2, 2, cout)), ("shift", r.standard_normal(cout)),
        ("mean", r.standard_normal(cout)), ("var", r.uniform(0.01, 3, cout)))]
    b.node("BatchNormalization", ["layer", *params], "bn", epsilon=eps)
    return b.model([_f32("input", [1, cin, 5, 5])], [_f32("bn", [1, cout, 5, 5])], "prop")


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_conv_bn_models())
def test_batchnorm_folding_property(model: onnx.ModelProto) -> None:
    result = normalize(model)
    assert "BatchNormalization" not in _ops(result.model)
    diff, scale = max_relative_diff(model, result.model, n=1)
    assert diff <= 1e-5 * max(scale, 1.0)


@pytest.mark.parametrize("declared", [False, True])
def test_value_info_names_only_values_of_the_normalized_graph(declared: bool) -> None:
    """An entry the model declared for a name no node produces is dropped even when nothing was edited; with
    none declared, normalize does not look for one (inference adds entries of node outputs only)."""
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Neg", ["a"], ["y"], name="neg")]
    stale = [helper.make_tensor_value_info("gone", TensorProto.FLOAT, [1])] if declared else []
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], value_info=stale)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    result = normalize(model)
    assert [vi.name for vi in result.model.graph.value_info] == ["a"]
    assert [d.dim_value for d in result.model.graph.output[0].type.tensor_type.shape.dim] == [1, 2]


def test_normalize_taken_gives_what_normalize_gives() -> None:
    """The in-place form hands back the same model bytes and actions as the copying one, and takes the model
    out of its box; the copying form leaves the caller's model as it was."""
    from models import tiny_cnn

    from rewriter.ir.normalize import normalize_taken

    model = tiny_cnn()
    model.graph.node[0].name = ""  # a step with something to do (naming) before inference
    before = model.SerializeToString()
    copied = normalize(model)
    assert model.SerializeToString() == before
    box = [onnx.load_from_string(before)]
    taken = normalize_taken(box)
    assert box == []
    assert taken.model.SerializeToString() == copied.model.SerializeToString()
    assert taken.actions == copied.actions and taken.rows == copied.rows


def test_a_model_that_cannot_be_serialized_keeps_its_shapes_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serializing for onnx can fail (over protobuf's 2 GB, the checker having read the file itself): that
    only costs shape information, as a failure of inference does; the model comes back as it was."""
    import rewriter.ir.shape_inference as shape_inference
    from google.protobuf.message import EncodeError

    from rewriter.ir.protos import node_rows

    def too_big(m: onnx.ModelProto) -> bytes:
        raise EncodeError("Failed to serialize proto")

    model = models.tiny_cnn()
    before = model.SerializeToString()
    monkeypatch.setattr(shape_inference, "_serialized", too_big)
    log: list[str] = []
    back = shape_inference.with_inferred_shapes([model], log, node_rows(model.graph.node))
    assert back is model and back.SerializeToString() == before
    assert log == ["shape inference failed (Failed to serialize proto); continuing without it"]


def test_value_types_decode_each_asked_name_as_declared() -> None:
    """The types folding reads, decoded when asked for: dtype and dims (None for a symbolic or negative
    size), a later entry of a name replacing an earlier one, no entry for a non-tensor type, and each answer
    with a dims list of its own."""
    from rewriter.ir.shape_inference import value_types

    seq = helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [2])
    graph = helper.make_graph(
        [], "types",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "n", -1]), seq],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [3])],
        value_info=[helper.make_tensor_value_info("z", TensorProto.FLOAT16, None),
                    helper.make_tensor_value_info("y", TensorProto.INT32, [4])])
    types = value_types(graph)
    assert types["x"] == (np.dtype(np.float32), [2, None, None])
    assert types["y"] == (np.dtype(np.int32), [4])  # the value_info entry, after the output's
    assert types["z"] == (np.dtype(np.float16), None)
    assert "seq" not in types and types.get("seq") is None and types.get("nowhere") is None
    assert dict(types) == {"x": types["x"], "y": types["y"], "z": types["z"]}
    first = types["x"][1]
    assert first is not None
    first.append(7)
    assert types["x"][1] == [2, None, None]


def test_value_types_skip_a_later_entry_without_a_tensor_type() -> None:
    """A name's last entry that holds no tensor type (an empty value_info entry, a sequence) leaves the
    earlier typed entry in force; an element type numpy has no dtype for still gives the dims."""
    from rewriter.ir.shape_inference import value_types

    unknown = helper.make_tensor_value_info("w", TensorProto.FLOAT, [5])
    unknown.type.tensor_type.elem_type = 50  # no ONNX type has this number (yet)
    graph = helper.make_graph(
        [], "types", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        value_info=[helper.make_empty_tensor_value_info("y"),
                    helper.make_tensor_value_info("x", TensorProto.INT64, [1]),
                    helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, [2]), unknown])
    types = value_types(graph)
    assert types["y"] == (np.dtype(np.float32), [2, 3])
    assert types["x"] == (np.dtype(np.int64), [1])  # the last typed entry, not the input's
    assert types["w"] == (None, [5])


def test_shape_of_an_output_with_an_untyped_value_info_entry_folds() -> None:
    """The output's own type counts when a value_info entry of the same name says nothing."""
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu"),
             helper.make_node("Shape", ["y"], ["s"], name="shape"),
             helper.make_node("Reshape", ["x", "s"], ["z"], name="reshape")]
    graph = helper.make_graph(nodes, "g", [_f32("x", [2, 3])], [_f32("y", [2, 3]), _f32("z", [2, 3])],
                              value_info=[helper.make_empty_tensor_value_info("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    result = normalize(model)
    assert _ops(result.model) == ["Relu", "Reshape"]
    assert any(a.startswith("folded 1 constant node") for a in result.actions)
