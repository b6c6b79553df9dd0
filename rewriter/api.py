"""The Python API: thin functions that chain the stages.

    >>> from rewriter import audit, quantize
    >>> plan = audit("examples/tiny_cnn.onnx", target="CPU")   # doctest: +SKIP
    >>> model, report = quantize("examples/tiny_cnn.onnx", target="CPU",
    ...                          data="examples/calib")         # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewriter.choices import DEFAULT_TARGETS
from rewriter.config import load_config, merge_cli
from rewriter.errors import UserError
from rewriter.ir.graph import GraphView
from rewriter.ir.load import load_model
from rewriter.ir.normalize import normalize
from rewriter.ir.view import graph_view
from rewriter.match.explain import NodeExplanation, explain_nodes
from rewriter.io_utils import read_utf8
from rewriter.match.planner import IgnoredOperation, PlanOptions, RevertRequest, build_plan
from rewriter.options import QuantizeOptions
from rewriter.match.saturation import fix_saturation
from rewriter.plan import QuantPlan
from rewriter.targets import PlanInputs, load_plan_inputs
from rewriter.tuning.guard import GUARD_SOURCE
from rewriter.tuning.speed_decisions import SPEED_SOURCE, speed_revert_companion

__all__ = ["PlanInputs", "audit", "load_plan_inputs", "plan_graph", "quantize", "reverts_in_report", "why"]


def plan_graph(graph: GraphView, inputs: PlanInputs, options: PlanOptions, model_name: str = "",
               saturation_fix: str | None = None) -> QuantPlan:
    """The plan for ``graph``: placement by the rules, then the target's (or the given) saturation fix."""
    return fix_saturation(build_plan(graph, inputs.spec, inputs.rules, options, model_name), graph, inputs.spec,
                          saturation_fix)


def audit(model: str | Path, target: str = DEFAULT_TARGETS["qdq"], rules: Sequence[str | Path] = (),
          ignore_scope: Sequence[str] = (), ignore_ops: Sequence[str | IgnoredOperation] = (),
          preset: str = "performance", model_type: str | None = None,
          saturation_fix: str | None = None, reverted: Sequence[RevertRequest] = ()) -> QuantPlan:
    """Plan where FakeQuantize goes in ``model`` for ``target``, without touching any data.

    Args:
        model: path to an .onnx file.
        target: a built-in target name (CPU, GPU, VPU, GNA, ANY, ORT) or a spec file path; default ORT, the
            placement of quantize's default QDQ output.
        rules: extra rule files, applied after the target's own.
        ignore_scope: node names to keep in float.
        ignore_ops: op types (or IgnoredOperation with attribute filters) to keep in float.
        preset: performance, mixed or accuracy.
        model_type: "transformer" adds the transformer rule set.
        saturation_fix: first_layer, all or no: which layers get 7-bit weights (default: the target's).
        reverted: nodes a measured search returned to float, with their reasons (``reverts_in_report``).
    """
    return _audit(model, target, rules, ignore_scope, ignore_ops, preset, model_type, saturation_fix, reverted)[2]


def reverts_in_report(path: str | Path, target: str | None = None) -> tuple[RevertRequest, ...]:
    """The fidelity and speed guards' reverts recorded in a quantize report (``--report``), with their measured
    reasons.

    Raises:
        UserError: the file is not JSON, or not a quantize report, or (``target`` given) it was made for
            another target: the reverts belong to that target's plan.
    """
    text = read_utf8(path)
    try:
        report = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{error.lineno}:{error.colno}: not JSON: {error.msg}") from None
    if not isinstance(report, dict) or report.get("schema") != "rewriter.pipeline/1":
        raise UserError(f"{path}: not a quantize report (schema rewriter.pipeline/1); write one with "
                        "`rewriter quantize ... --report FILE`")
    made_for = str((report.get("options") or {}).get("target", ""))
    if target is not None and made_for and not _same_target(made_for, target):
        raise UserError(f"{path}: the report was made for target {made_for}, not {target}; audit with "
                        f"--target {made_for} (and the quantize run's --rules) to see its plan")
    guard = (report.get("fidelity") or {}).get("guard") or {}
    reverts = guard.get("reverts") or []
    if not all(isinstance(r, dict) and isinstance(r.get("node"), str) for r in reverts):
        raise UserError(f"{path}: fidelity.guard.reverts must be a list of objects with a node name")
    found = [RevertRequest(r["node"], GUARD_SOURCE, str(r.get("reason", ""))) for r in reverts]
    speed = (report.get("speed") or {}).get("reverts") or []
    if not all(isinstance(r, dict) and isinstance(r.get("node"), str) and isinstance(r.get("with", []), list)
               for r in speed):
        raise UserError(f"{path}: speed.reverts must be a list of objects with a node name and a 'with' list")
    for r in speed:
        found.append(RevertRequest(r["node"], SPEED_SOURCE, str(r.get("reason", ""))))
        found.extend(RevertRequest(str(m), SPEED_SOURCE, speed_revert_companion(r["node"])) for m in r.get("with", []))
    unique = {request.node: request for request in reversed(found)}  # a node's first decision wins
    return tuple(unique[r.node] for r in dict.fromkeys(found) if unique[r.node] is r)


def _same_target(a: str, b: str) -> bool:
    """Two ways of naming one target: the same built-in name (any case) or the same spec file."""
    if Path(a).is_file() and Path(b).is_file():
        return Path(a).resolve() == Path(b).resolve()
    return a.upper() == b.upper()


def why(model: str | Path, nodes: Sequence[str], target: str = DEFAULT_TARGETS["qdq"], rules: Sequence[str | Path] = (),
        ignore_scope: Sequence[str] = (), ignore_ops: Sequence[str | IgnoredOperation] = (),
        preset: str = "performance", model_type: str | None = None, saturation_fix: str | None = None,
        reverted: Sequence[RevertRequest] = ()) -> tuple[QuantPlan, tuple[NodeExplanation, ...]]:
    """Plan as ``audit`` does, and explain the named nodes: rules tried, how far each got, spec entry.

    Raises:
        UserError: a node name the (normalized) model does not have, with the closest names.
    """
    graph, inputs, plan = _audit(model, target, rules, ignore_scope, ignore_ops, preset, model_type, saturation_fix,
                                 reverted)
    return plan, explain_nodes(graph, inputs.spec, inputs.rules, plan, nodes)


def _audit(model: str | Path, target: str, rules: Sequence[str | Path], ignore_scope: Sequence[str],
           ignore_ops: Sequence[str | IgnoredOperation], preset: str,
           model_type: str | None, saturation_fix: str | None,
           reverted: Sequence[RevertRequest]) -> tuple[GraphView, PlanInputs, QuantPlan]:
    inputs = load_plan_inputs(target, rules, model_type)
    normalized = normalize(load_model(model))
    graph = graph_view(normalized.model)
    options = PlanOptions(preset=preset, ignore_scope=tuple(ignore_scope),
                          ignore_ops=tuple(o if isinstance(o, IgnoredOperation) else IgnoredOperation(o)
                                           for o in ignore_ops), reverted=tuple(reverted))
    known = {n.name for n in graph.nodes}
    missing = [r.node for r in reverted if r.node not in known]
    if missing:
        raise UserError(f"the report's reverts name node(s) {', '.join(missing)}, which {model} does not have: "
                        "audit the float model the report was made from")
    return graph, inputs, plan_graph(graph, inputs, options, Path(model).name, saturation_fix)


def quantize(model: Any, data: Any = None, target: str | None = None, config: str | Path | None = None,
             **options: Any) -> Any:
    """Quantize ``model`` (a path or an onnx.ModelProto) for ``target`` with calibration ``data``.

    Returns a ``QuantizeResult``: ``.model`` (the quantized onnx.ModelProto),
    ``.report`` (the report dict the CLI writes), ``.plan`` and ``.ranges``;
    it unpacks as ``model, report = quantize(...)``.

    Args:
        model: path to an .onnx file, or an onnx.ModelProto (not modified).
        data: a folder of .npy/.npz/images, a loader "module:function", or any
            iterable of input dicts; default: the config file's engine.data_source.
        target: CPU, GPU, VPU, GNA, ANY, ORT or a spec file path (default: the config file's target_device,
            else ORT for QDQ output and ANY for output_format="fakequantize").
        config: the original tool's configuration file; keyword options override it.
        **options: any ``QuantizeOptions`` field (preset, subset_size, seed,
            output_format, rules, ignore_scope, ignore_ops, model_type,
            channel_alignment, bias_correction, bias_threshold, layerwise_tuning,
            layerwise_samples, smoothing, batch_size,
            progress, image_options, ranges, self_check, check_samples, guard,
            guard_threshold, guard_budget, guard_batch, speed_guard, optimize_for), plus estimator_preset
            ("default" or "quantile").

    Raises:
        UserError: bad input.
        RuntimeRefused: onnxruntime (or OpenVINO) cannot load or run the quantized model (the self-check,
            docs/fidelity.md); its message names the node.
    """
    # Imported here so that audit and why, which never calibrate, do not pay for loading onnxruntime
    # and the numeric passes.
    from rewriter.pipeline import quantize as run_pipeline

    known = {f.name for f in dataclasses.fields(QuantizeOptions)} | {"estimator_preset"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"rewriter.quantize: unknown option(s) {', '.join(unknown)}; "
                        f"valid: {', '.join(sorted(known))}")
    for key in ("rules", "ignore_scope"):
        if isinstance(options.get(key), (list, str)):
            value = options[key]
            options[key] = (value,) if isinstance(value, str) else tuple(value)
    if options.get("ignore_ops") is not None:
        options["ignore_ops"] = tuple(o if isinstance(o, IgnoredOperation) else IgnoredOperation(o)
                                      for o in options["ignore_ops"])
    if options.get("bias_correction") is False:  # the API's spelling of "none" before BiasCorrection had one
        options["bias_correction"] = "none"
    loaded = load_config(config) if config is not None else None
    for notice in (*loaded.warnings, *loaded.unsupported) if loaded else ():
        warnings.warn(notice.render(), stacklevel=2)
    merged = merge_cli(loaded, {**options, "target": target})
    data = data if data is not None else (loaded.data_source if loaded else None)
    if data is None:
        raise UserError("rewriter.quantize: no calibration data; pass data=..., or engine.data_source in the config")
    return run_pipeline(model, data, merged)
