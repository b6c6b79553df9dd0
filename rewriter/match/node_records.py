"""The record of one node in the plan: its status (quantized, agnostic, ignored, float), the reason, and the
trail of decisions behind it, so a reviewer reading one node sees why without reading the FakeQuantizes."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Mapping, Sequence

from rewriter.ir.graph import NodeInfo
from rewriter.errors import SourceLoc
from rewriter.plan import Decision, FakeQuantizePoint, NodeDecision, NodeStatus, decision_key
from rewriter.records import direct_init
from rewriter.spec.model import HardwareSpec

# Trail actions that say where a quantizer is and why; a node record repeats them from its quantizers.
PLACING = ("insert", "propagate", "unify", "symmetric", "asymmetric", "spec")


@direct_init
@dataclass(frozen=True, slots=True)
class NodeQuantizers:
    """Where a node reads or writes quantized values.

    Attributes:
        ports: inputs that read a FakeQuantize placed on the tensor itself.
        outputs: its output tensors that carry an output FakeQuantize.
        upstream: input port -> the tensor above agnostic ops whose FakeQuantize it reads.
    """

    ports: Sequence[int]
    outputs: Sequence[str]
    upstream: Mapping[int, str]


class NodeRecorder:
    """Makes the plan's node records for one plan.

    A node no decision names (not ignored, nothing noted, no quantizer, no bodies) has the record of its op
    type: the same status, reason and trail for every such node, worked out once per op type (most nodes of a
    large graph are such nodes).

    Args:
        spec: the target (its op entry explains float and agnostic nodes).
        by_tensor: the plan's FakeQuantizes by tensor.
    """

    def __init__(self, spec: HardwareSpec, by_tensor: Mapping[str, FakeQuantizePoint]) -> None:
        self.spec = spec
        self.by_tensor = by_tensor
        self._plain: dict[str, NodeDecision] = {}

    def record(self, node: NodeInfo, ignored_by: Sequence[Decision], noted: Sequence[Decision],
               quantizers: NodeQuantizers) -> NodeDecision:
        """The plan's record of ``node`` (arguments as ``node_record``)."""
        if ignored_by or noted or node.body_nodes or quantizers.ports or quantizers.outputs or quantizers.upstream:
            return node_record(node, self.spec, ignored_by, noted, quantizers, self.by_tensor)
        known = self._plain.get(node.op_type)
        if known is None:
            known = self._plain[node.op_type] = _record(node, self.spec, (), (), quantizers, self.by_tensor)
            return known
        return NodeDecision(node.name, node.op_type, known.status, known.reason, known.trail)


def node_record(node: NodeInfo, spec: HardwareSpec, ignored_by: Sequence[Decision], noted: Sequence[Decision],
                quantizers: NodeQuantizers, by_tensor: Mapping[str, FakeQuantizePoint]) -> NodeDecision:
    """The plan's record of ``node``; a node holding If/Loop/Scan bodies says how many nodes stay float there.

    Args: as ``_record``.
    """
    record = _record(node, spec, ignored_by, noted, quantizers, by_tensor)
    if not node.body_nodes:
        return record
    # The matcher walks the main graph only, so nothing inside a body is ever quantized: say so where the
    # node is listed, instead of the spec's silence about the If/Loop/Scan op itself.
    hint = ("; rewriter quantize inlines a top-level If whose calibration samples all take one branch, and "
            "quantizes that branch" if node.op_type == "If" else "")
    kept = Decision("float", "control-flow", detail=f"{node.body_nodes} node(s) inside its {node.op_type} "
                    f"bodies stay float: the planner places quantizers in the main graph only{hint}")
    reason = record.reason if record.status != "float" else (
        f"holds {node.body_nodes} node(s) in its {node.op_type} bodies, which stay float (not planned)")
    return replace(record, reason=reason, trail=(*record.trail, kept), body_nodes=node.body_nodes)


def _record(node: NodeInfo, spec: HardwareSpec, ignored_by: Sequence[Decision], noted: Sequence[Decision],
            quantizers: NodeQuantizers, by_tensor: Mapping[str, FakeQuantizePoint]) -> NodeDecision:
    """The plan's record of ``node``, its bodies aside.

    Args:
        node: the node.
        spec: the target (its op entry explains float and agnostic nodes).
        ignored_by: the decisions that keep it float, empty when none does.
        noted: decisions the phases noted on it (removals, propagations, requantization, int32 bias).
        quantizers: where it reads or writes quantized values.
        by_tensor: the plan's FakeQuantizes by tensor.
    """
    ports, outputs, upstream = quantizers.ports, quantizers.outputs, quantizers.upstream
    trail = list(noted)
    if ports or outputs or upstream:
        # A quantized node's record names the rules that placed its quantizers, also those moved up to a
        # producer or placed on its outputs.
        serving = [node.inputs[p] for p in ports if p < len(node.inputs)] + [upstream[p] for p in sorted(upstream)]
        present: set[tuple] | None = None  # the trail's decisions, by decision_key (built when first needed)
        # The same objects, by identity: points share decision objects, and an identity is cheaper to check.
        seen: set[int] = set()
        for tensor in [*serving, *outputs]:
            point = by_tensor.get(tensor)
            for d in point.trail if point is not None else ():
                if d.action in PLACING and id(d) not in seen:
                    seen.add(id(d))
                    if present is None:
                        present = {decision_key(x) for x in trail}
                    key = decision_key(d)
                    if key not in present:
                        present.add(key)
                        trail.append(d)
    if ignored_by:
        reverts = [d for d in ignored_by if d.action == "revert"]
        if reverts:
            return NodeDecision(node.name, node.op_type, "reverted", f"reverted to float by {reverts[0].source}",
                                (*reverts, *(d for d in ignored_by if d.action != "revert"), *trail))
        return NodeDecision(node.name, node.op_type, "ignored", f"kept float by {ignored_by[0].source}",
                            (*ignored_by, *trail))
    entry = spec.op(node.op_type)
    if ports or outputs or upstream:
        what = []
        if ports:
            what.append("inputs " + ",".join(map(str, ports)))
        if upstream:
            what.append("inputs " + ",".join(f"{p} (moved up to {t})" for p, t in sorted(upstream.items())))
        if outputs:
            what.append("outputs")
        status: NodeStatus = "agnostic" if entry is not None and entry.agnostic else "quantized"
        return NodeDecision(node.name, node.op_type, status, "FakeQuantize on " + " and ".join(what), tuple(trail))
    if entry is None:
        trail.append(_shared("float", f"spec:{spec.name}", spec.loc, f"no entry for {node.op_type}"))
        return NodeDecision(node.name, node.op_type, "float", f"{spec.name} spec has no entry for {node.op_type}",
                            tuple(trail))
    if entry.agnostic:
        trail.append(_shared("agnostic", f"spec:{spec.name}:{node.op_type}", entry.loc, ""))
        return NodeDecision(node.name, node.op_type, "agnostic",
                            "quantization-agnostic; no FakeQuantize passes through", tuple(trail))
    reason = "no rule placed a FakeQuantize here" if not trail else trail[-1].action.replace("-", " ")
    if not trail:
        trail.append(_shared("float", f"spec:{spec.name}:{node.op_type}", entry.loc,
                             "the spec allows quantizers here, but no rule placed one"))
    return NodeDecision(node.name, node.op_type, "float", reason, tuple(trail))


@lru_cache(maxsize=4096)
def _shared(action: str, source: str, loc: SourceLoc, detail: str) -> Decision:
    """One Decision object per distinct spec note: every float Relu of a large graph carries the same one,
    and the JSON writer finds a shared object by identity instead of by its fields."""
    return Decision(action, source, loc, detail)
