"""Render a QuantPlan as stable text (golden tests, terminal) or JSON (tools).

The audit's JSON is schema "rewriter.plan/2" (documented in docs/plan-schema.md): every distinct
decision once in a ``decisions`` table and every distinct quantizer config once in ``configs``;
trails are lists of decision ids and points name their config by id, so a graph of a million nodes,
whose trails repeat the same decisions (a quantized node repeats the ones that placed its quantizers),
does not become a gigabyte of JSON. It is written as a stream, one record per line.

``plan_dict`` is the expanded form "rewriter.plan/1" (each decision inline), which the quantize
report embeds.

Locations are shown relative to the project root when they lie inside it, so
the same plan renders the same on every machine.
"""
from __future__ import annotations

import io
import json
from collections import Counter
from typing import Callable, Iterable, Iterator, TextIO

from rewriter.errors import SourceLoc
from rewriter.plan import (Decision, FakeQuantizePoint, IntegerBias, NodeDecision, QuantPlan, Requantization,
                           decision_key)
from rewriter.sources import display_loc, display_path
from rewriter.spec.model import QuantizerConfig

SCHEMA = "rewriter.plan/2"
#: The expanded form, each decision written out in every trail that holds it.
EXPANDED_SCHEMA = "rewriter.plan/1"


class _LocTexts:
    """``display_loc`` once per distinct location: resolving a path is a file-system walk, and a large
    plan holds hundreds of thousands of decisions from a handful of rule and spec files."""

    def __init__(self) -> None:
        self._texts: dict[SourceLoc, str] = {}

    def __call__(self, loc: SourceLoc) -> str:
        text = self._texts.get(loc)
        if text is None:
            text = self._texts[loc] = display_loc(loc)
        return text


def config_dict(config: QuantizerConfig) -> dict:
    return {"name": config.name, "bits": config.bits, "mode": config.mode,
            "granularity": config.granularity, "level_low": config.level_low,
            "level_high": config.level_high, "signed": config.signed}


def decision_dict(decision: Decision, loc_text: _LocTexts | None = None) -> dict:
    return {"action": decision.action, "source": decision.source,
            "loc": (loc_text or display_loc)(decision.loc), "detail": decision.detail}


def point_dict(point: FakeQuantizePoint, loc_text: _LocTexts | None = None) -> dict:
    return {
        "tensor": point.tensor, "role": point.role, "config": config_dict(point.config),
        "candidates": [c.describe() for c in point.candidates],
        "consumers": [{"node": c.node, "port": c.port} for c in point.consumers],
        "at_output": point.at_output, "channel_axis": point.channel_axis,
        "unify_group": point.unify_group, "trail": [decision_dict(d, loc_text) for d in point.trail],
    }


def requantization_dict(item: Requantization, loc_text: _LocTexts | None = None) -> dict:
    return {"tensor": item.tensor, "node": item.node, "grid": item.grid,
            "trail": [decision_dict(d, loc_text) for d in item.trail]}


def int32_bias_dict(item: IntegerBias, loc_text: _LocTexts | None = None) -> dict:
    return {"node": item.node, "bias": item.bias or None, "activation": item.activation, "weight": item.weight,
            "trail": [decision_dict(d, loc_text) for d in item.trail]}


def summary(plan: QuantPlan) -> dict:
    statuses = Counter(n.status for n in plan.nodes)
    roles = Counter(p.role for p in plan.points)
    return {"nodes": len(plan.nodes), **{f"nodes_{k}": statuses.get(k, 0) for k in
                                          ("quantized", "float", "ignored", "agnostic", "reverted")},
            "fakequantize": len(plan.points), "fakequantize_activations": roles.get("activation", 0),
            "fakequantize_weights": roles.get("weight", 0), "requantized": len(plan.requantized),
            "int32_biases": len(plan.int32_biases), "nodes_in_bodies": sum(n.body_nodes for n in plan.nodes)}


def control_flow_warning(plan: QuantPlan, data_hint: bool = True) -> str | None:
    """One line for a plan whose model holds If/Loop/Scan bodies (their nodes stay float), else None.

    ``data_hint``: say that calibration data can get a top-level If's branch quantized (a plan made without
    data, as ``audit`` makes it); a quantize run says instead what its data did.
    """
    holders = [n for n in plan.nodes if n.body_nodes]
    if not holders:
        return None
    inside = sum(n.body_nodes for n in holders)
    shown = ", ".join(f"{n.op_type} {n.node} ({n.body_nodes})" for n in holders[:3])
    shown += f", and {len(holders) - 3} more" if len(holders) > 3 else ""
    why = "the planner places quantizers in the main graph only"
    if data_hint and any(n.op_type == "If" for n in holders):
        why += ("; rewriter quantize quantizes inside a top-level If's branch when every calibration sample "
                "takes it")
    if not plan.points:
        return (f"nothing was quantized: {inside} of the model's {inside + len(plan.nodes)} nodes are inside "
                f"control-flow bodies ({shown}), which stay float ({why}); the output is the float model")
    return f"{inside} node(s) inside control-flow bodies ({shown}) stay float: {why}"


def _header(plan: QuantPlan, schema: str) -> dict:
    return {"schema": schema, "model": plan.model, "target": plan.target,
            "spec": display_path(plan.spec_path), "preset": plan.preset,
            "rules": [display_path(f) for f in plan.rule_files], "summary": summary(plan)}


def plan_dict(plan: QuantPlan) -> dict:
    """The expanded form ("rewriter.plan/1"): every trail spells out its decisions."""
    loc_text = _LocTexts()
    return {
        **_header(plan, EXPANDED_SCHEMA),
        "fakequantize": [point_dict(p, loc_text) for p in plan.points],
        "requantized": [requantization_dict(r, loc_text) for r in plan.requantized],
        "int32_biases": [int32_bias_dict(b, loc_text) for b in plan.int32_biases],
        "activation_storage": {"value": plan.activation_storage,
                               "trail": [decision_dict(d, loc_text) for d in plan.storage_trail]},
        "nodes": [_node_dict(n, loc_text) for n in plan.nodes],
    }


class _Tables:
    """Ids for distinct decisions and configs, in the order first met."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        # Decisions by their detail, the one field that tells them apart: a plan's details are all but unique
        # (each names its rule's match), and a str keeps its hash, so most lookups build no key at all (a
        # million-node plan has millions of distinct decisions). The value is the id of the one decision met
        # with that detail, or, for a detail that distinct decisions share, a dict of their ids by
        # ``decision_key`` (equal decisions share an id) and by identity (trails share objects).
        self._by_detail: dict[str, int | dict[object, int]] = {}
        self._keep_alive: list[Decision] = []  # the objects whose identity a shared detail's dict holds
        self.configs: dict[QuantizerConfig, int] = {}

    def trail(self, trail: Iterable[Decision]) -> list[int]:
        ids = []
        by_detail, decisions = self._by_detail, self.decisions
        for decision in trail:
            slot = by_detail.get(decision.detail)
            if type(slot) is int and decisions[slot] is decision:  # met before, as this very object
                ids.append(slot)
            else:
                ids.append(self._id(decision, slot))
        return ids

    def _id(self, decision: Decision, slot: int | dict[object, int] | None) -> int:
        if slot is None:
            new = self._by_detail[decision.detail] = len(self.decisions)
            self.decisions.append(decision)
            return new
        if type(slot) is int:
            first = self.decisions[slot]
            if decision_key(first) == decision_key(decision):
                return slot
            slot = self._by_detail[decision.detail] = {decision_key(first): slot, id(first): slot}
            self._keep_alive.append(first)
        assert isinstance(slot, dict)
        known = slot.get(id(decision))
        if known is None:
            key = decision_key(decision)
            known = slot.get(key)
            if known is None:
                known = slot[key] = len(self.decisions)
                self.decisions.append(decision)
            slot[id(decision)] = known
            self._keep_alive.append(decision)
        return known

    def config(self, config: QuantizerConfig) -> int:
        return self.configs.setdefault(config, len(self.configs))


# Strings as JSON text, quoted and ASCII-escaped, exactly as the json module writes them.
_quote: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring_ascii", None) or \
    json.encoder.encode_basestring_ascii


def _ids(ids: list[int]) -> str:
    return "[" + ",".join(map(str, ids)) + "]"


class _Numbered:
    """Every record's trail as its list of decision ids (JSON text), and each point's config id, in the order of
    the document: what numbering the plan leaves for writing its records."""

    def __init__(self, plan: QuantPlan, tables: _Tables) -> None:
        trail = tables.trail
        self.point_configs = [tables.config(p.config) for p in plan.points]
        self.trails = {"fakequantize": [_ids(trail(p.trail)) for p in plan.points],
                       "requantized": [_ids(trail(r.trail)) for r in plan.requantized],
                       "int32_biases": [_ids(trail(b.trail)) for b in plan.int32_biases],
                       "nodes": [_ids(trail(n.trail)) for n in plan.nodes]}


def _record_lines(plan: QuantPlan, numbered: _Numbered) -> dict[str, Iterator[str]]:
    """The plan's records in the compact form, each as JSON text, made as they are written.

    The decision table comes before the records in the document, and its ids are those the records' trails
    meet first: ``_Numbered`` numbers every trail first, and the records' text is made only when written, so
    a million-node plan's records (a few hundred MB of text) are never all in memory at once. The records
    are written as text directly, not built as dicts and encoded: the dicts cost more than the encoding. The
    text is what ``json.dumps(record, separators=(",", ":"))`` gives for the same record (the tests hold both
    to it).
    """
    q = _quote
    trails = numbered.trails
    # Points share their candidate tuples (one per spec entry and role): each list is written once.
    candidates: dict[int, str] = {}
    keep: list[object] = []

    def candidate_text(configs: tuple[QuantizerConfig, ...]) -> str:
        text = candidates.get(id(configs))
        if text is None:
            text = candidates[id(configs)] = "[" + ",".join(q(c.describe()) for c in configs) + "]"
            keep.append(configs)
        return text

    def points() -> Iterator[str]:
        for p, config, ids in zip(plan.points, numbered.point_configs, trails["fakequantize"]):
            consumers = ",".join(f"[{q(c.node)},{c.port}]" for c in p.consumers)
            yield (f'{{"tensor":{q(p.tensor)},"role":{q(p.role)},"config":{config},'
                   f'"candidates":{candidate_text(p.candidates)},"consumers":[{consumers}],'
                   f'"at_output":{_LITERALS[p.at_output]},"channel_axis":{_int_or_null(p.channel_axis)},'
                   f'"unify_group":{_int_or_null(p.unify_group)},"trail":{ids}}}')

    requantized = (f'{{"tensor":{q(r.tensor)},"node":{q(r.node)},"grid":{q(r.grid)},"trail":{ids}}}'
                   for r, ids in zip(plan.requantized, trails["requantized"]))
    biases = (f'{{"node":{q(b.node)},"bias":{q(b.bias) if b.bias else "null"},"activation":{q(b.activation)},'
              f'"weight":{q(b.weight)},"trail":{ids}}}' for b, ids in zip(plan.int32_biases, trails["int32_biases"]))
    # Most nodes share their op type, status and reason with many others: each is quoted once.
    quoted: dict[str, str] = {}

    def qc(text: str) -> str:
        out = quoted.get(text)
        if out is None:
            out = quoted[text] = q(text)
        return out

    def nodes() -> Iterator[str]:
        for n, ids in zip(plan.nodes, trails["nodes"]):
            bodies = f',"body_nodes":{n.body_nodes}' if n.body_nodes else ""
            yield (f'{{"node":{q(n.node)},"op_type":{qc(n.op_type)},"status":{qc(n.status)},'
                   f'"reason":{qc(n.reason)},"trail":{ids}{bodies}}}')

    return {"fakequantize": points(), "requantized": requantized, "int32_biases": biases, "nodes": nodes()}


_LITERALS = {True: "true", False: "false"}


def _int_or_null(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def plan_json_chunks(plan: QuantPlan) -> Iterator[str]:
    """The "rewriter.plan/2" document in pieces: header fields, then one line per table entry and record.

    Deterministic: ids follow the order in which decisions and configs are first met (points, then
    requantized outputs, int32 biases, nodes, the storage trail).
    """
    tables = _Tables()
    numbered = _Numbered(plan, tables)
    storage = {"value": plan.activation_storage, "trail": tables.trail(plan.storage_trail)}
    records = _record_lines(plan, numbered)
    loc_text = _LocTexts()
    dumps = _compact_dumps()
    header = _header(plan, SCHEMA)
    yield "{\n"
    for key, value in header.items():
        yield f"{dumps(key)}:{dumps(value)},\n"
    q = _quote
    yield from _array("decisions", (f"[{q(d.action)},{q(d.source)},{q(loc_text(d.loc))},{q(d.detail)}]"
                                    for d in tables.decisions))
    yield ",\n"
    yield from _array("configs", (dumps(config_dict(c)) for c in tables.configs))
    yield ",\n"
    for key in ("fakequantize", "requantized", "int32_biases"):
        yield from _array(key, records[key])
        yield ",\n"
    yield f'"activation_storage":{dumps(storage)},\n'
    yield from _array("nodes", records["nodes"])
    yield "\n}\n"


def _compact_dumps() -> Callable[[object], str]:
    """``json.dumps(obj, separators=(",", ":"))`` for many small objects.

    ``JSONEncoder.encode`` builds a new C encoder on every call, which costs more than encoding a small
    record; this builds it once. The plan holds no cycles, so the cycle check is off.
    """
    fallback = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return fallback
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys, allow_nan)
    encode = make(None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ":", ",",
                  False, False, True)

    def dumps(obj: object) -> str:
        return "".join(encode(obj, 0))
    return dumps


def _array(key: str, items: Iterable[str]) -> Iterator[str]:
    """``"key":[`` and the items (JSON text), one a line."""
    yield f'"{key}":['
    first = True
    for item in items:
        yield ("\n" if first else ",\n") + item
        first = False
    yield "\n]" if not first else "]"


def write_plan_json(plan: QuantPlan, stream: TextIO) -> None:
    """Write the "rewriter.plan/2" document to ``stream`` piece by piece (never the whole text in memory)."""
    write_chunks(plan_json_chunks(plan), stream)


def write_chunks(chunks: Iterable[str], stream: TextIO) -> None:
    """Write ``chunks`` to ``stream`` a few thousand at a time: one write per piece costs more than the
    pieces, and one string of all of them is a million-node plan's whole document in memory."""
    batch: list[str] = []
    for chunk in chunks:
        batch.append(chunk)
        if len(batch) >= 4096:
            stream.write("".join(batch))
            batch.clear()
    stream.write("".join(batch))


def branch_warning(entries: list[dict]) -> str | None:
    """One line on the top-level Ifs of a quantize run (the report's ``control_flow``), else None."""
    parts = []
    for e in entries:
        total = e["then_samples"] + e["else_samples"]
        if e["quantized"]:
            other = "else_branch" if e["quantized"] == "then_branch" else "then_branch"
            parts.append(f"If {e['node']}: all {total} calibration samples take {e['quantized']}, which is "
                         f"quantized; {other} ({e['float_nodes']} node(s)) stays float")
        elif e.get("problem"):
            parts.append(f"If {e['node']}: {e['problem']}, so neither branch is quantized")
        else:
            parts.append(f"If {e['node']}: calibration samples take both branches ({e['then_samples']} "
                         f"then_branch, {e['else_samples']} else_branch), so neither is quantized")
    if len(parts) > 3:
        parts = parts[:3] + [f"and {len(parts) - 3} more If(s) (the report's control_flow lists them)"]
    return "; ".join(parts) or None


def _node_dict(n: NodeDecision, loc_text: _LocTexts) -> dict:
    return _with_bodies({"node": n.node, "op_type": n.op_type, "status": n.status, "reason": n.reason,
                         "trail": [decision_dict(d, loc_text) for d in n.trail]}, n)


def _with_bodies(entry: dict, n: NodeDecision) -> dict:
    """A node record gains ``body_nodes`` only when it holds If/Loop/Scan bodies."""
    if n.body_nodes:
        entry["body_nodes"] = n.body_nodes
    return entry


def plan_json(plan: QuantPlan) -> str:
    """The "rewriter.plan/2" document as one string."""
    out = io.StringIO()
    write_plan_json(plan, out)
    return out.getvalue()


def plan_text(plan: QuantPlan, trails: bool = True) -> str:
    """A readable, diffable rendering: FakeQuantizes with their trails, then every node."""
    return "".join(plan_text_lines(plan, trails))


def write_plan_text(plan: QuantPlan, stream: TextIO, trails: bool = True) -> None:
    """Write ``plan_text`` to ``stream`` a few thousand lines at a time (never the whole text in memory)."""
    write_chunks(plan_text_lines(plan, trails), stream)


def plan_text_lines(plan: QuantPlan, trails: bool = True) -> Iterator[str]:
    """``plan_text``'s lines, each ending in a newline."""
    yield f"plan for {plan.model} on {plan.target} (preset {plan.preset})\n"
    yield f"spec  {display_path(plan.spec_path)}\n"
    yield "rules " + ", ".join(display_path(f) for f in plan.rule_files) + "\n"
    yield "\n"
    loc_text = _LocTexts()

    def trail_lines(trail: Iterable[Decision]) -> Iterator[str]:
        return (_trail_line(d, loc_text) + "\n" for d in trail)

    s = summary(plan)
    yield (f"{s['fakequantize']} FakeQuantize ({s['fakequantize_activations']} activations, "
           f"{s['fakequantize_weights']} weights); nodes: {s['nodes_quantized']} quantized, "
           f"{s['nodes_agnostic']} agnostic, {s['nodes_ignored']} ignored, {s['nodes_float']} float"
           f"{', ' + str(s['nodes_reverted']) + ' reverted' if s['nodes_reverted'] else ''}; "
           f"{s['requantized']} requantized outputs, {s['int32_biases']} int32 biases\n")
    note = control_flow_warning(plan)
    if note:
        yield f"warning: {note}\n"
    yield "\n"
    yield "FakeQuantize\n"
    for p in plan.points:
        readers = "output" if p.at_output else ", ".join(f"{c.node}:{c.port}" for c in p.consumers)
        extra = "" if p.channel_axis is None else f" axis={p.channel_axis}"
        group = "" if p.unify_group is None else f" unified#{p.unify_group}"
        yield f"  {p.tensor}  {p.role}  {p.config.describe()}{extra}{group}  -> {readers}\n"
        if trails:
            yield from trail_lines(p.trail)
    if plan.requantized:
        yield "\n"
        yield "Requantized outputs (the grid of their input, lossless)\n"
        for r in plan.requantized:
            yield f"  {r.tensor}  after {r.node}  grid of {r.grid}\n"
            if trails:
                yield from trail_lines(r.trail)
    if plan.int32_biases:
        yield "\n"
        yield "Int32 biases (scale = activation scale x weight scale)\n"
        for b in plan.int32_biases:
            yield f"  {b.node}  bias {b.bias or '(none yet)'}  = {b.activation} x {b.weight}\n"
            if trails:
                yield from trail_lines(b.trail)
    yield "\n"
    yield f"Activations stored {plan.activation_storage}\n"
    if trails:
        yield from trail_lines(plan.storage_trail)
    yield "\n"
    yield "Nodes\n"
    width = max((len(n.node) for n in plan.nodes), default=4)
    op_width = max((len(n.op_type) for n in plan.nodes), default=4)
    for n in plan.nodes:
        yield f"  {n.node:<{width}}  {n.op_type:<{op_width}}  {n.status:<9}  {n.reason}\n"
        if trails and n.status in ("ignored", "reverted"):
            yield from trail_lines(n.trail)


def _trail_line(decision: Decision, loc_text: _LocTexts) -> str:
    where = "" if decision.loc.file == "<builtin>" else f" @ {loc_text(decision.loc)}"
    detail = f"  ({decision.detail})" if decision.detail else ""
    return f"      {decision.action} by {decision.source}{where}{detail}"
