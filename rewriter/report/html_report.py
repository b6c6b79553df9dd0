"""The audit as one self-contained HTML page: the graph coloured by status, each node's reason and trail,
per-tensor SQNR worst first, the output fidelity, each pass's results and, when given, a target diff.

The input is a quantize report (``rewriter.pipeline/1``, whose ``graph`` section has the edges) or a
plan document (``rewriter.plan/1``) with a ``graph`` section, as ``rewriter audit --html`` makes it.
Everything the page needs is inlined: the data as JSON, the page's own script and style, and the
vendored layout library (dagre, in ``assets/`` with its licence), so the file opens offline in any
browser. The browser lays the graph out, one page of ``PAGE_NODES`` nodes (in graph order) at a time:
dagre's time grows faster than linearly and its recursion overflows the stack near 4,000 nodes, so a
large model is shown in pages, with the neighbours on other pages drawn as links to them.

The page is a function of the report alone: the same report gives the same bytes.
"""
from __future__ import annotations

import html
import json
import math
import os
from importlib import resources
from typing import Any, Mapping

from rewriter.errors import UserError
from rewriter.io_utils import atomic_write_text, read_utf8
from rewriter.report.node_status import DISPLAY_STATUSES, display_status

__all__ = ["PAGE_NODES", "load_report", "page_data", "render_html", "write_html"]

#: Nodes laid out and drawn at once: dagre lays out 300 nodes of a transformer/CNN graph in about half a
#: second of a shared 2-core machine's CPU, and a page of that size stays readable when zoomed out.
PAGE_NODES = 300
ASSETS = "assets"
LAYOUT_LIBRARY = "dagre.min.js"
LAYOUT_LICENCE = "dagre.LICENSE.txt"


def page_data(report: Mapping[str, Any], diff: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The data the page's script reads: compact lists, every distinct trail decision once.

    Raises:
        UserError: ``report`` has no ``nodes`` list, or no ``graph`` section (a report written before the
            section existed: quantize again to get one).
    """
    nodes = report.get("nodes")
    if not isinstance(nodes, list):
        raise UserError("the report has no nodes list: give a quantize report (--report of `rewriter quantize`)")
    graph = report.get("graph")
    if not isinstance(graph, Mapping) or not isinstance(graph.get("edges"), list):
        raise UserError("the report has no graph section (reports written before it existed lack it): "
                        "quantize again with --report, or use --html on the quantize run")
    decisions: dict[tuple[str, str, str, str], int] = {}

    def decision_ids(trail: list[Mapping[str, Any]]) -> list[int]:
        ids = []
        for d in trail:
            key = (str(d.get("action", "")), str(d.get("source", "")), str(d.get("loc", "")), str(d.get("detail", "")))
            ids.append(decisions.setdefault(key, len(decisions)))
        return ids

    position = {n["node"]: i for i, n in enumerate(nodes)}
    node_rows = [[n["node"], n.get("op_type", ""), display_status(n), n.get("reason", ""),
                  decision_ids(n.get("trail") or [])] for n in nodes]
    points = []
    for p in report.get("fakequantize") or ():
        readers = [position[c["node"]] for c in p.get("consumers") or () if c.get("node") in position]
        config = p.get("config") or {}
        points.append([p["tensor"], p.get("role", ""), _finite_or_text(p.get("sqnr_db")), readers,
                       f"{config.get('bits')}b {config.get('mode')} {config.get('granularity')}",
                       decision_ids(p.get("trail") or [])])
    return {
        "title": f"{report.get('model', 'model')} on {report.get('target', '?')}",
        "schema": report.get("schema"),
        "header": {key: report[key] for key in ("model", "target", "spec", "preset", "rules", "options",
                                                "calibration", "activation_storage") if key in report},
        "summary": report.get("summary") or {},
        "statuses": DISPLAY_STATUSES,
        "decisions": [list(key) for key in decisions],
        "nodes": node_rows,
        "edges": graph["edges"],
        "points": points,
        "fidelity": report.get("fidelity"),
        "passes": report.get("passes") or {},
        "control_flow": report.get("control_flow") or [],
        "diff": diff,
        "page_nodes": PAGE_NODES,
    }


def render_html(report: Mapping[str, Any], diff: Mapping[str, Any] | None = None) -> str:
    """The whole page as text (module docstring)."""
    data = page_data(report, diff)
    library = _asset(LAYOUT_LIBRARY)
    # The library's last lines point at a source map and a licence file that are not beside the page; the
    # licence is inlined above the library instead.
    library = "\n".join(line for line in library.splitlines()
                        if not line.startswith(("//# sourceMappingURL", "/*! For license information")))
    licence = _asset(LAYOUT_LICENCE).replace("*/", "* /")
    payload = json.dumps(_json_safe(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # Inside <script>, "</" would end the element: every "<" goes as its JSON escape.
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return _TEMPLATE.format(
        title=html.escape(f"rewriter audit: {data['title']}"),
        style=_asset("report.css"),
        payload=payload,
        licence=licence,
        library=library,
        script=_asset("report.js"),
    )


def write_html(report: Mapping[str, Any], path: str | os.PathLike[str],
               diff: Mapping[str, Any] | None = None) -> None:
    """Write the page atomically (checked before anything is written: a bad report leaves no file)."""
    atomic_write_text(path, render_html(report, diff), "the HTML report")


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A quantize report (``--report``) or a plan document read from ``path``.

    Raises:
        UserError: not JSON (with line:column), or not a JSON object with a ``nodes`` list.
    """
    text = read_utf8(path)
    try:
        report = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{error.lineno}:{error.colno}: not JSON: {error.msg}") from None
    if not isinstance(report, dict) or not isinstance(report.get("nodes"), list):
        raise UserError(f"{path}: not a quantize report (no nodes list); write one with "
                        "`rewriter quantize ... --report FILE`")
    return report


def _finite_or_text(value: Any) -> Any:
    """A number JSON can hold, or its text: an exactly representable weight has an infinite SQNR, which
    Python writes as ``Infinity``, a word no JSON parser of a browser accepts."""
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as its text (the report's passes and fidelity may hold some)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return _finite_or_text(value)


def _asset(name: str) -> str:
    return resources.files("rewriter.report").joinpath(ASSETS).joinpath(name).read_text(encoding="utf-8")


# Doubled braces: str.format fields are only the single-braced names.
_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{style}
</style>
</head>
<body>
<header><h1 id="title"></h1><div id="header"></div></header>
<nav id="legend"></nav>
<main>
<section id="graph-section">
<div id="graph-tools">
<label>page <select id="page"></select></label>
<label>find node <input id="find" list="node-names" size="28"></label><datalist id="node-names"></datalist>
<button id="zoom-out" type="button">&minus;</button><button id="zoom-in" type="button">+</button>
<span id="page-note"></span>
</div>
<div id="graph"></div>
</section>
<aside id="panel"><p class="hint">Point at or click a node to see its reason and trail.</p></aside>
</main>
<section id="sqnr-section"><h2>Per-tensor SQNR, worst first</h2><div id="sqnr"></div></section>
<section id="fidelity-section"><h2>Output fidelity</h2><div id="fidelity"></div></section>
<section id="passes-section"><h2>Passes</h2><div id="passes"></div></section>
<section id="diff-section" hidden><h2 id="diff-title"></h2><div id="diff"></div></section>
<script type="application/json" id="report-data">{payload}</script>
<script>
/* dagre (graph layout), vendored unchanged from the npm package @dagrejs/dagre, which bundles
   @dagrejs/graphlib under the same licence:
{licence}
*/
{library}
</script>
<script>
{script}
</script>
</body>
</html>
"""
