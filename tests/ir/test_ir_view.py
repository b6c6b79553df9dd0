"""graph_view: plain-Python nodes and tensors, producer/consumer indexes, speed."""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import models
from rewriter.ir.graph import GraphView, TensorInfo
from rewriter.ir.normalize import normalize
from rewriter.ir.view import graph_view


@pytest.fixture(scope="module")
def residual() -> GraphView:
    return graph_view(normalize(models.residual_block()).model)


def test_nodes_in_order_with_plain_attrs(residual: GraphView) -> None:
    assert [(n.name, n.op_type) for n in residual.nodes] == [
        ("conv1", "Conv"), ("relu1", "Relu"), ("conv2", "Conv"), ("add", "Add"), ("output", "Relu")]
    conv = residual.nodes[0]
    assert conv.inputs == ("input", "conv1.weight", "conv1.bias")
    assert conv.outputs == ("bn1",)  # the folded BN's output name survives
    assert conv.attrs == {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "group": 1}
    assert all(n.index == i for i, n in enumerate(residual.nodes))


def test_indexes(residual: GraphView) -> None:
    assert residual.by_op == {"Conv": [0, 2], "Relu": [1, 4], "Add": [3]}
    assert residual.by_name["add"] == 3
    assert residual.producer["relu1"] == (1, 0)
    assert residual.producer_of("bn2").name == "conv2"
    assert residual.producer_of("input") is None
    assert sorted((n.name, port) for n, port in residual.consumers_of("input")) == [("add", 1), ("conv1", 0)]
    assert residual.fanout("input") == 2
    assert residual.fanout("output") == 1  # a graph output counts as a reader
    assert residual.fanout("relu1") == 1


def test_tensor_infos(residual: GraphView) -> None:
    assert residual.tensors["input"] == TensorInfo("input", "float32", (1, 8, 16, 16), is_graph_input=True)
    assert residual.tensors["output"].is_graph_output
    assert residual.tensors["relu1"] == TensorInfo("relu1", "float32", (1, 8, 16, 16))
    w = residual.tensors["conv1.weight"]
    assert w.is_constant and not w.is_graph_input and w.dtype == "float32" and w.shape == (8, 8, 3, 3)
    assert residual.is_constant("conv2.bias") and not residual.is_constant("relu1")


def test_each_value_name_is_one_object(residual: GraphView) -> None:
    """A value's name as its writer's output, as each reader's input, and as the key and name of its
    TensorInfo is one str object, so the tables keyed by name settle a hit by identity."""
    by_name: dict[str, list[str]] = {}
    for node in residual.nodes:
        for name in (*node.inputs, *node.outputs):
            by_name.setdefault(name, []).append(name)
    for key, info in residual.tensors.items():
        by_name.setdefault(key, []).extend([key, info.name])
    shared = {name: copies for name, copies in by_name.items() if len(copies) > 1}
    assert {"relu1", "input", "conv1.weight", "output"} <= set(shared)  # written and read, read twice, ...
    for name, copies in shared.items():
        assert all(copy is copies[0] for copy in copies), name


def test_symbolic_dims_and_unknown_types() -> None:
    view = graph_view(normalize(models.attention_block(dynamic=True)).model)
    assert view.tensors["input"].shape == ("batch", "seq", 16)
    assert view.tensors["heads_shape_of"].dtype == "int64"
    # A value with no type information at all still has an entry.
    m = models.matmul_two_activations()
    del m.graph.value_info[:]
    assert graph_view(m).tensors["b_t"] == TensorInfo("b_t")


def test_attribute_conversion() -> None:
    value = numpy_helper.from_array(np.array([0.5], np.float32))
    then_g = helper.make_graph([helper.make_node("Identity", ["x"], ["a"])], "then", [],
                               [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2])])
    nodes = [
        helper.make_node("LeakyRelu", ["x"], ["l"], name="leaky", alpha=0.1),
        helper.make_node("Pad", ["l", "pads"], ["p"], name="pad", mode="reflect"),
        helper.make_node("ConstantOfShape", ["shape"], ["c"], name="fill", value=value),
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=then_g),
        helper.make_node("Resize", ["p", "", "scales"], ["r"], name="resize", mode="nearest",
                         coordinate_transformation_mode="asymmetric"),
    ]
    f32 = TensorProto.FLOAT
    g = helper.make_graph(
        nodes, "attrs",
        [helper.make_tensor_value_info("x", f32, [2]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info(n, f32, None) for n in ("y", "c", "r")],
        [numpy_helper.from_array(np.array([1, 1], np.int64), "pads"),
         numpy_helper.from_array(np.array([2], np.int64), "shape"),
         numpy_helper.from_array(np.array([2.0], np.float32), "scales")],
    )
    view = graph_view(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    by = {n.name: n for n in view.nodes}
    assert by["leaky"].attrs == {"alpha": 0.1}
    assert type(by["leaky"].attrs["alpha"]) is float
    assert by["pad"].attrs == {"mode": "reflect"}
    fill = by["fill"].attrs["value"]
    assert isinstance(fill, np.ndarray) and fill.dtype == np.float32 and fill.tolist() == [0.5]
    assert by["if"].attrs == {}  # subgraphs are not viewed
    assert by["resize"].inputs == ("p", "", "scales")
    assert by["resize"].attrs["coordinate_transformation_mode"] == "asymmetric"


def test_initializer_listed_as_input_is_not_a_graph_input() -> None:
    m = models.matmul_const_weights()
    m.graph.input.append(helper.make_tensor_value_info("fc.weight", TensorProto.FLOAT, [16, 32]))
    t = graph_view(m).tensors["fc.weight"]
    assert t.is_constant and not t.is_graph_input


def test_unsorted_model_is_viewed_in_topological_order() -> None:
    m = models.residual_block()
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    view = graph_view(m)
    assert [n.name for n in view.nodes] == [n.name for n in nodes]
    # The values without a type are listed in the model's order, not the view's.
    del m.graph.value_info[:]
    untyped = [t for n in m.graph.node for t in n.output if t not in {o.name for o in m.graph.output}]
    assert [t for t in graph_view(m).tensors if t in untyped] == untyped


def _reversed(build: Callable[[], onnx.ModelProto]) -> onnx.ModelProto:
    m = build()
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    return m


@pytest.mark.parametrize("name", sorted(models.ALL_BUILDERS))
def test_a_normalized_model_viewed_in_its_order_is_the_view_checked(name: str) -> None:
    """normalize sorts the nodes (here given in reverse), so the audit takes its order without a check: the
    view must be the one the check gives."""
    result = normalize(_reversed(models.ALL_BUILDERS[name]))
    trusted = graph_view(result.model, result.rows, in_order=True)
    checked = graph_view(result.model)
    assert trusted.nodes == checked.nodes
    assert trusted.tensors == checked.tensors and list(trusted.tensors) == list(checked.tensors)
    assert (trusted.producer, trusted.consumers, trusted.by_name) == (checked.producer, checked.consumers,
                                                                    checked.by_name)


@pytest.mark.parametrize("name", sorted(models.ALL_BUILDERS))
@pytest.mark.parametrize("prepare", ["normalized", "reversed"])
def test_indexes_built_with_the_nodes_are_the_ones_graphview_builds(name: str, prepare: str) -> None:
    """graph_view fills the view's indexes in its pass over the nodes (GraphView.from_indexes): they must be
    what GraphView's own constructor builds from the same nodes, order of keys and of lists included."""
    if prepare == "normalized":
        result = normalize(models.ALL_BUILDERS[name]())
        view = graph_view(result.model, result.rows, in_order=True)
    else:
        view = graph_view(_reversed(models.ALL_BUILDERS[name]))  # sorted by the view itself
    rebuilt = GraphView(list(view.nodes), view.tensors, view.name)
    for index in ("producer", "consumers", "by_op", "by_name"):
        mine, theirs = getattr(view, index), getattr(rebuilt, index)
        assert mine == theirs and list(mine) == list(theirs), index
    assert view.tensors == rebuilt.tensors and view.nodes == rebuilt.nodes and view.name == rebuilt.name


def test_later_type_entries_win_and_names_keep_their_first_place() -> None:
    """A value listed twice in value_info, and again as a graph output: the last entry's type counts (the
    output's), at the place of the name's first entry."""
    f32, f16 = TensorProto.FLOAT, TensorProto.FLOAT16
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["b"], name="r2"),
             helper.make_node("Relu", ["b"], ["y"], name="r3")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", f32, [2])],
                          [helper.make_tensor_value_info("b", f32, [2]), helper.make_tensor_value_info("y", f32, [2])],
                          value_info=[helper.make_tensor_value_info("b", f16, [3]),
                                      helper.make_tensor_value_info("a", f16, [4]),
                                      helper.make_tensor_value_info("b", f16, [5])])
    view = graph_view(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    assert list(view.tensors) == ["b", "a", "y", "x"]
    assert view.tensors["b"] == TensorInfo("b", "float32", (2,), is_graph_output=True)
    assert view.tensors["a"] == TensorInfo("a", "float16", (4,))


def _chain(n_blocks: int) -> onnx.ModelProto:
    """n_blocks x (MatMul, LeakyRelu, Transpose, Add): 4 * n_blocks nodes with attributes."""
    nodes, inits, x = [], [], "input"
    for i in range(n_blocks):
        inits.append(numpy_helper.from_array(np.full((4, 4), 0.01, np.float32), f"w{i}"))
        nodes += [
            helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"], name=f"mm{i}"),
            helper.make_node("LeakyRelu", [f"mm{i}"], [f"lr{i}"], name=f"lr{i}", alpha=0.1),
            helper.make_node("Transpose", [f"lr{i}"], [f"tr{i}"], name=f"tr{i}", perm=[1, 0]),
            helper.make_node("Add", [f"tr{i}", x], [f"add{i}"], name=f"add{i}"),
        ]
        x = f"add{i}"
    f32 = TensorProto.FLOAT
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", f32, [4, 4])],
                          [helper.make_tensor_value_info(x, f32, [4, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_20000_node_graph_is_viewed_whole() -> None:
    # Its speed is measured by tools/bench_match.py (CPU time and growth up to 1M nodes), not here: a
    # wall-clock bound fails whenever the machine is loaded.
    m = _chain(5000)
    view = graph_view(m)
    assert len(view) == 20_000
    assert [n.name for n in view.nodes][-1] == m.graph.node[-1].name


def test_bulk_built_infos_are_the_dataclasses() -> None:
    """TensorInfo and NodeInfo are built by direct_init's __init__; what it builds must not differ from what the
    dataclass's own __init__ builds."""
    import itertools

    from rewriter.ir.graph import NodeInfo

    def by_dataclass(cls: type, *args: object) -> object:
        made = object.__new__(cls)
        cls.__init__.__dataclass_init__(made, *args)  # type: ignore[misc]
        return made

    # Every combination of the flags, so two flags' slots set in each other's place would show.
    for flags in itertools.product((False, True), repeat=4):
        tensor = TensorInfo("t", "float32", (1, "n", None), *flags)
        assert tensor == by_dataclass(TensorInfo, "t", "float32", (1, "n", None), *flags)
        assert hash(tensor) == hash(by_dataclass(TensorInfo, "t", "float32", (1, "n", None), *flags))
    node = NodeInfo("n", "Conv", ("a", ""), ("b",), {"group": 1}, "ai.x", 3, 2)
    assert node == by_dataclass(NodeInfo, "n", "Conv", ("a", ""), ("b",), {"group": 1}, "ai.x", 3, 2)
    assert repr(node) == repr(by_dataclass(NodeInfo, "n", "Conv", ("a", ""), ("b",), {"group": 1}, "ai.x", 3, 2))
    # Slots only: hundreds of thousands of these live at once in a large graph's view.
    assert not hasattr(tensor, "__dict__") and not hasattr(node, "__dict__")
    with pytest.raises(AttributeError):
        tensor.name = "u"  # type: ignore[misc]


def test_zero_check_reads_float_bytes_as_numpy_would() -> None:
    """_all_zero answers small float32 constants from their bytes; -0.0 is 0, a denormal or NaN is not."""
    import itertools

    from rewriter.ir.view import _all_zero

    cases = [np.zeros(8, np.float32), -np.zeros(8, np.float32), np.array([0.0, -0.0, 2.0], np.float32),
             np.array([0, 1e-45], np.float32), np.zeros((), np.float32)]
    cases += [np.frombuffer(bytes(b), np.float32).copy() for b in itertools.product([0, 0x80, 0x01, 0x7F], repeat=4)]
    for values in cases:
        with np.errstate(invalid="ignore"):
            expected = not np.any(values)
        tensor = numpy_helper.from_array(values)
        assert _all_zero(tensor, tuple(tensor.dims), tensor.data_type) == expected, values
