"""The audit as node data for Google's Model Explorer, which overlays such files on a model's graph.

Model Explorer's node-data file (one data series per file) is ``{"results": {KEY: {"value": V,
"bgColor": COLOUR}}, "thresholds": [{"value": V, "bgColor": COLOUR}]}``, where KEY is a node id (its
ONNX adapter uses the node's name) and ``thresholds`` colours a numeric value by the first threshold it
does not exceed. Two series: each node's display status (a string value, coloured as on the HTML page)
and each quantized node's worst input SQNR in dB (the lowest over the FakeQuantizes it reads).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from rewriter.report.node_status import display_status

__all__ = ["SQNR_THRESHOLDS", "STATUS_COLOURS", "sqnr_node_data", "status_node_data"]

#: The HTML page's colours (assets/report.css).
STATUS_COLOURS = {"quantized": "#b7e1b9", "agnostic": "#b9e3e0", "float-rule": "#ffd8a8",
                  "float-spec": "#dedede", "reverted": "#f4a3a3"}
#: dB: up to 10 red, up to 20 amber, above green (the HTML page's SQNR chart grades).
SQNR_THRESHOLDS = [{"value": 10, "bgColor": "#f28b82"}, {"value": 20, "bgColor": "#fdd663"},
                   {"value": 1e9, "bgColor": "#81c995"}]


def status_node_data(report: Mapping[str, Any]) -> dict[str, Any]:
    """Each node's display status, keyed by node name."""
    results = {}
    for node in report.get("nodes") or ():
        status = display_status(node)
        results[node["node"]] = {"value": status, "bgColor": STATUS_COLOURS[status]}
    return {"results": results}


def sqnr_node_data(report: Mapping[str, Any]) -> dict[str, Any]:
    """Per node, the lowest SQNR (dB) of the FakeQuantizes it reads; nodes reading none are left out, and so
    are nodes whose every quantizer is exact (an infinite SQNR, which JSON cannot hold)."""
    worst: dict[str, float] = {}
    for point in report.get("fakequantize") or ():
        value = point.get("sqnr_db")
        if value is None:
            continue
        for consumer in point.get("consumers") or ():
            name = consumer["node"]
            worst[name] = min(worst.get(name, value), value)
    order = [n["node"] for n in report.get("nodes") or () if n["node"] in worst and math.isfinite(worst[n["node"]])]
    return {"results": {name: {"value": worst[name]} for name in order}, "thresholds": SQNR_THRESHOLDS}
