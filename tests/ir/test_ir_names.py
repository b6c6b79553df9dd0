"""rewriter.ir.names: graph names, fresh names and what subgraphs read from outside."""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from rewriter.ir.names import FreshNames, graph_names, node_outer_reads, outer_reads, subgraph_reads
from rewriter.ir.order import topological_order
from rewriter.ir.protos import node_rows, replace_entries


def _f32(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [2])


def _if_model() -> onnx.ModelProto:
    # then: Neg(t) from a node; else: returns the outer tensor "u" itself, with no node reading it.
    then_g = helper.make_graph([helper.make_node("Neg", ["t"], ["a"], name="then_neg")], "then", [], [_f32("a")])
    else_g = helper.make_graph([], "else", [], [_f32("u")])
    nodes = [helper.make_node("Relu", ["x"], ["t"], name="make_t"),
             helper.make_node("Abs", ["x"], ["u"], name="make_u"),
             helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g)]
    graph = helper.make_graph(nodes, "g", [_f32("x"), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [_f32("y")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_outer_reads_include_a_branch_output_named_outside() -> None:
    model = _if_model()
    if_node = model.graph.node[2]
    branch = {a.name: a.g for a in if_node.attribute}
    assert outer_reads(branch["then_branch"]) == ["t"]
    assert outer_reads(branch["else_branch"]) == ["u"]
    assert sorted(node_outer_reads(if_node)) == ["t", "u"]
    assert subgraph_reads(model.graph) == {"t"}  # node inputs inside subgraphs only
    assert {"x", "cond", "t", "u", "y", "make_t", "if"} <= graph_names(model.graph)


def test_fresh_names_skip_taken_and_given_ones() -> None:
    fresh = FreshNames({"a", "a_1"})
    assert [fresh("a"), fresh("a"), fresh("b"), fresh("b")] == ["a_2", "a_3", "b", "b_1"]


def test_node_rows_hold_inputs_outputs_and_subgraph_reads() -> None:
    rows = node_rows(_if_model().graph.node)
    assert [r.op_type for r in rows] == ["Relu", "Abs", "If"]
    assert rows[0].inputs == ("x",) and rows[0].outputs == ("t",) and rows[0].reads == ("x",)
    assert rows[2].reads[0] == "cond" and sorted(rows[2].reads[1:]) == ["t", "u"]


def test_topological_order_from_rows_matches_reading_the_protos() -> None:
    # An omitted optional output ("") on two nodes is not a name produced twice: the order stays as given.
    nodes = [helper.make_node("Dropout", ["x"], ["a", ""], name="d1"),
             helper.make_node("Dropout", ["a"], ["b", ""], name="d2"),
             helper.make_node("Relu", ["b"], ["c"], name="r")]
    assert topological_order(nodes, node_rows(nodes)) == topological_order(nodes) == [0, 1, 2]
    shuffled = [nodes[2], nodes[0], nodes[1]]
    assert topological_order(shuffled, node_rows(shuffled)) == topological_order(shuffled) == [1, 2, 0]


def test_replace_entries_takes_the_fields_own_entries_reordered_and_dropped() -> None:
    # The entries are handed back to the field they came from, without a copy of their own first: they must
    # survive the field letting them go, memory being reused meanwhile, and end up independent of the list.
    model = _if_model()
    expected = [model.graph.node[2], model.graph.node[0]]
    expected = [type(n)() for n in expected]
    for copy, node in zip(expected, [model.graph.node[2], model.graph.node[0]]):
        copy.CopyFrom(node)
    taken = [model.graph.node[2], model.graph.node[0]]
    replace_entries(model.graph.node, taken)
    _ = [helper.make_node("Relu", [f"x{i}"], [f"y{i}"]) for i in range(1000)]  # memory taken meanwhile
    assert list(model.graph.node) == expected
    taken[0].name = "renamed"
    assert model.graph.node[0].name == "if"


def test_node_rows_reads_leave_out_omitted_inputs() -> None:
    """An omitted optional input ("") is an input of the row but not a name it reads; a node that omits
    none reads exactly its inputs."""
    from onnx import helper

    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize"),
             helper.make_node("Clip", ["y", "lo", "hi"], ["z"], name="clip")]
    rows = node_rows(nodes)
    assert rows[0].inputs == ("x", "", "scales") and rows[0].reads == ("x", "scales")
    assert rows[1].reads == ("y", "lo", "hi")
