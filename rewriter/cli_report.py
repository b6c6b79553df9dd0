"""`rewriter report` (a quantize report as an HTML page and Model Explorer node data) and the target diff of
`rewriter audit --diff-target`."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from rewriter.errors import UserError
from rewriter.io_utils import atomic_write_text, check_outputs


def add_report_parser(sub: argparse._SubParsersAction, follow_symlinks: Callable) -> None:
    report = sub.add_parser("report", help="a quantize report as one self-contained HTML page "
                                           "(and node data for Model Explorer)")
    report.add_argument("report", help="the JSON report of `rewriter quantize --report`")
    report.add_argument("-o", "--output", metavar="FILE.html", help="write the HTML page here")
    report.add_argument("--model-explorer", metavar="FILE.json",
                        help="write Model Explorer node data: each node's status to FILE.json and its worst input "
                             "SQNR to FILE.sqnr.json")
    report.add_argument("--diff-target", metavar="TARGET",
                        help="add what changes on this target, node by node (needs --model)")
    report.add_argument("--model", help="the float .onnx model the report was made from (for --diff-target)")
    follow_symlinks(report)


def model_explorer_paths(path: str) -> tuple[str, str]:
    """The status file and the SQNR file of ``--model-explorer FILE.json``."""
    stem = path[:-len(".json")] if path.endswith(".json") else path
    return path, f"{stem}.sqnr.json"


def run_report(args: argparse.Namespace) -> int:
    from rewriter.report.html_report import load_report, write_html
    from rewriter.report.model_explorer import sqnr_node_data, status_node_data

    if not args.output and not args.model_explorer:
        raise UserError("nothing to write: give -o FILE.html and/or --model-explorer FILE.json")
    if args.diff_target and not args.model:
        raise UserError("--diff-target needs --model: the float .onnx model the report was made from")
    status_path, sqnr_path = model_explorer_paths(args.model_explorer) if args.model_explorer else (None, None)
    outputs = check_outputs({"-o": args.output, "--model-explorer": status_path, "--model-explorer (SQNR)": sqnr_path},
                            {"the report": args.report, "the model": args.model}, args.follow_symlinks)
    report = load_report(args.report)
    diff = report_diff(report, args.model, args.diff_target) if args.diff_target else None
    if "-o" in outputs:
        write_html(report, outputs["-o"], diff)
        print(f"wrote {args.output}")
    if status_path is not None:
        atomic_write_text(outputs["--model-explorer"], _json(status_node_data(report)), "the node data")
        atomic_write_text(outputs["--model-explorer (SQNR)"], _json(sqnr_node_data(report)), "the node data")
        print(f"wrote {status_path} and {sqnr_path} (Model Explorer node data)")
    return 0


def report_diff(report: dict[str, Any], model: str, target: str) -> dict[str, Any]:
    """The report's plan against the plan of ``model`` for ``target``, with the report's rules and preset."""
    from rewriter.api import audit
    from rewriter.report.plan_diff import plan_diff
    from rewriter.report.plan_report import plan_dict

    options = report.get("options") or {}
    if report.get("model") and Path(model).name != report["model"]:
        raise UserError(f"--model {model} is not the model the report was made from ({report['model']})")
    other = audit(model, target=target, preset=str(options.get("preset") or report.get("preset") or "performance"))
    return plan_diff(report, plan_dict(other))


def run_audit_extras(args: argparse.Namespace, html: Path | None) -> str | None:
    """`rewriter audit --diff-target` and/or `--html`: the text to print (the diff), or None.

    One model load: both targets are planned on the same graph view, which also gives the page its edges.
    """
    from rewriter.api import plan_graph, reverts_in_report
    from rewriter.ir.load import load_model
    from rewriter.ir.normalize import normalize_taken
    from rewriter.ir.view import graph_view
    from rewriter.match.planner import IgnoredOperation, PlanOptions
    from rewriter.report.html_report import write_html
    from rewriter.report.plan_diff import diff_text, plan_diff
    from rewriter.report.plan_report import plan_dict
    from rewriter.report.quantize_report import graph_section
    from rewriter.targets import load_plan_inputs

    normalized = normalize_taken([load_model(args.model)])
    # As the audit takes it: normalize's rows and node order, not read and checked again.
    graph = graph_view(normalized.model, normalized.rows, in_order=True)
    del normalized  # planning reads the view only
    reverted = reverts_in_report(args.report, args.target) if args.report else ()
    missing = [r.node for r in reverted if r.node not in graph.by_name]
    if missing:
        raise UserError(f"the report's reverts name node(s) {', '.join(missing)}, which {args.model} does not "
                        "have: audit the float model the report was made from")
    options = PlanOptions(preset=args.preset or "performance", ignore_scope=tuple(args.ignore_scope),
                          ignore_ops=tuple(IgnoredOperation(o) for o in args.ignore_op), reverted=reverted)

    def plan_for(target: str, plan_options: PlanOptions) -> dict[str, Any]:
        inputs = load_plan_inputs(target, args.rules, args.model_type)
        return plan_dict(plan_graph(graph, inputs, plan_options, Path(args.model).name, args.saturation_fix))

    plan = plan_for(args.target, options)
    # The reverts belong to the report's target, not to the other one.
    diff = plan_diff(plan, plan_for(args.diff_target, replace(options, reverted=()))) if args.diff_target else None
    if html is not None:
        plan["graph"] = graph_section(graph, [n["node"] for n in plan["nodes"]])
        write_html(plan, html, diff)
    if diff is None:
        return None
    return json.dumps(diff, indent=2) + "\n" if args.format == "json" else diff_text(diff)


def _json(data: object) -> str:
    return json.dumps(data, indent=1) + "\n"
