"""Check an emitted model against its plan: the plan is the whole truth about what the output holds.

QDQ output: every QuantizeLinear/DequantizeLinear must be one the plan declares (a FakeQuantize, a
requantized output, an int32 bias) and carry in ``rewriter.source`` a decision of the plan's trails, and
their counts must equal what the plan calls for. FakeQuantize output: every node the emitter added (a
FakeQuantize, or a compressed weight's Cast, Sub and Mul) must carry such a decision, and there must be one
FakeQuantize or compressed weight per planned point that has a reader. The pipeline runs this after
emission: a mismatch is a bug in the planner or the emitter, never the user's input.
"""
from __future__ import annotations

import onnx

from rewriter.plan import QuantPlan
from rewriter.sources import SOURCE_KEY, source_text

__all__ = ["expected_qdq_counts", "expected_quantizers", "provenance_problems"]

#: Grids wider than this many bits have no ONNX integer type; such FakeQuantizes stay float.
_MAX_STORED_BITS = 16


def expected_qdq_counts(float_model: onnx.ModelProto, plan: QuantPlan) -> tuple[int, int]:
    """(QuantizeLinear, DequantizeLinear) that ``plan`` calls for in ``float_model`` (the model it was made for)."""
    ranks = {t.name: len(t.dims) for t in float_model.graph.initializer}
    nodes = {n.name: n for n in float_model.graph.node}
    read = {name for node in float_model.graph.node for name in node.input}
    quantize = dequantize = 0
    for p in plan.points:
        if p.config.bits > _MAX_STORED_BITS or not (p.consumers or (p.at_output and p.tensor in read)):
            continue  # no integer type holds the grid, or only a graph output reads it: left float
        if p.tensor in ranks:
            readers = [(nodes[c.node], c.port) for c in p.consumers]
            dequantize += len(readers) if _gathered_table(readers, ranks[p.tensor], p.channel_axis) else 1
        else:
            quantize, dequantize = quantize + 1, dequantize + 1
    quantize += len(plan.requantized)
    dequantize += len(plan.requantized) + sum(1 for b in plan.int32_biases if b.bias)
    return quantize, dequantize


def _gathered_table(readers: list[tuple[onnx.NodeProto, int]], rank: int, channel_axis: int | None) -> bool:
    """The emitter's embedding-table form: a table read only by Gathers, whose scales (one, or one per last-axis
    column) survive the Gather, is dequantized after each Gather."""
    if not readers or any(node.op_type != "Gather" or port != 0 for node, port in readers):
        return False
    if channel_axis is None:
        return True
    axes = [next((a.i for a in node.attribute if a.name == "axis"), 0) % rank for node, _ in readers]
    return channel_axis % rank == rank - 1 and all(a != rank - 1 for a in axes)


def expected_quantizers(float_model: onnx.ModelProto, plan: QuantPlan) -> int:
    """The FakeQuantizes and compressed weights that ``plan`` calls for in FakeQuantize output: one per point
    something reads (a point only a graph output reads is left float)."""
    read = {name for node in float_model.graph.node for name in node.input}
    return sum(1 for p in plan.points if p.consumers or (p.at_output and p.tensor in read))


#: What the FakeQuantize emitter adds: FakeQuantize on activations, Cast -> (Sub) -> Mul for a compressed weight.
_FAKEQUANTIZE_FORM = ("FakeQuantize", "Cast", "Sub", "Mul")


def provenance_problems(float_model: onnx.ModelProto, plan: QuantPlan, quantized: onnx.ModelProto,
                        output_format: str = "qdq") -> list[str]:
    """What in ``quantized`` (of ``output_format``, "qdq" or "fakequantize") the plan does not declare; empty
    when the output is exactly the plan."""
    problems = []
    if output_format == "fakequantize":
        before = {n.name for n in float_model.graph.node}
        added = [n for n in quantized.graph.node if n.name not in before]
        problems += [f"{n.op_type} {n.name} is not part of a FakeQuantize or a compressed weight"
                     for n in added if n.op_type not in _FAKEQUANTIZE_FORM]
        quantizers = sum(n.op_type in ("FakeQuantize", "Mul") for n in added)
        casts = sum(n.op_type == "Cast" for n in added)
        expected = expected_quantizers(float_model, plan)
        if quantizers != expected or casts != quantizers - sum(n.op_type == "FakeQuantize" for n in added):
            problems.append(f"the output holds {quantizers} FakeQuantize or compressed weights ({casts} Cast); "
                            f"the plan declares {expected}")
        checked = added
    else:
        checked = [n for n in quantized.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        counts = (sum(n.op_type == "QuantizeLinear" for n in checked),
                  sum(n.op_type == "DequantizeLinear" for n in checked))
        qdq_expected = expected_qdq_counts(float_model, plan)
        if counts != qdq_expected:
            problems.append(f"the output holds {counts[0]} QuantizeLinear and {counts[1]} DequantizeLinear; "
                            f"the plan declares {qdq_expected[0]} and {qdq_expected[1]}")
    trails = [p.trail for p in plan.points] + [r.trail for r in plan.requantized] + [
        b.trail for b in plan.int32_biases]
    known = {source_text(d) for trail in trails for d in trail}
    for node in checked:
        sources = [p.value for p in node.metadata_props if p.key == SOURCE_KEY]
        if len(sources) != 1 or sources[0] not in known:
            problems.append(f"{node.op_type} {node.name} names no decision of the plan ({sources or 'no source'})")
    problems += [f"node {n.node} has no trail in the plan" for n in plan.nodes if not n.trail]
    return problems
