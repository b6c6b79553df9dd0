"""`rewriter quantize`: arguments -> QuantizeOptions -> quantize_file -> summary line and report."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable

from rewriter.choices import BIAS_CORRECTIONS, OPTIMIZE_FOR, OUTPUT_FORMATS
from rewriter.cli_search import add_search_arguments, run_search, search_settings
from rewriter.errors import UserError
from rewriter.io_utils import atomic_write_text, check_outputs


def print_warning(message: str) -> None:
    """``warning: MESSAGE`` on stderr, always one line (the CLI's promise for every warning).

    Logged at WARNING on the ``rewriter`` logger, which the CLI sends to stderr in that form
    (``--log-level ERROR`` silences it).
    """
    logging.getLogger("rewriter").warning(" ".join(message.split()))


def add_quantize_parser(sub: argparse._SubParsersAction, plan_arguments: Callable,
                        follow_symlinks: Callable) -> None:
    q = sub.add_parser("quantize", help="quantize a model with calibration data")
    q.add_argument("model", nargs="?", default=None,
                   help="the float .onnx model (default: the config file's model.model, when it names an .onnx)")
    q.add_argument("-o", "--output", required=True, help="where to write the quantized model")
    q.add_argument("--data", default=None,
                   help="calibration data: a folder of .npy/.npz/images or of one <input>.npy per input, a .npy/.npz "
                        "file (a stack's rows are samples), or a loader module:function (default: the config "
                        "file's engine.data_source); docs/calibration-data.md")
    q.add_argument("--config", metavar="FILE", default=None,
                   help="the original tool's configuration file (JSON with comments, or YAML); "
                        "command-line options override it (docs/config.md)")
    # Options a config file can set default to None, so that only explicit values override the file;
    # merge_cli fills the real defaults afterwards.
    plan_arguments(q, target_default=None,
                   target_help="(default: the config file's target_device, else ORT for QDQ output, ANY for "
                               "--format fakequantize)")
    q.add_argument("--subset-size", type=int, default=None, help="calibration samples to use (default 300)")
    q.add_argument("--seed", type=int, default=None, help="seed for the subset choice (default 0)")
    q.add_argument("--format", choices=OUTPUT_FORMATS, default="qdq",
                   help="qdq (default): QuantizeLinear/DequantizeLinear, for onnxruntime (OpenVINO reads it too); "
                        "fakequantize: OpenVINO FakeQuantize with int8 weights, for OpenVINO only (onnxruntime "
                        "cannot load it; the self-check needs pip install 'rewriter[openvino]')")
    q.add_argument("--range-estimator", choices=("default", "quantile"), default=None,
                   help="range estimator preset of the original tool (default: default)")
    q.add_argument("--report", metavar="FILE", help="write the JSON report here")
    q.add_argument("--html", metavar="FILE", help="write the report as one self-contained HTML page here "
                                                  "(graph, reasons and trails, SQNR, fidelity; `rewriter report`)")
    follow_symlinks(q)
    q.add_argument("--channel-alignment", action="store_true", default=None,
                   help="ActivationChannelAlignment before the ranges (a second statistics pass)")
    q.add_argument("--bias-correction", choices=BIAS_CORRECTIONS, default=None,
                   help="FastBiasCorrection (fast) or BiasCorrection (full) after the ranges; default none")
    q.add_argument("--smoothing", type=float, nargs="?", const=0.8, default=None, metavar="ALPHA",
                   help="activation smoothing (SmoothQuant) of MatMul inputs with outlier channels, strength "
                        "ALPHA in (0, 1) (default 0.8): their spread moves into the weights")
    q.add_argument("--layerwise-tuning", action="store_true", default=None,
                   help="layer-wise tuning of weight ranges and biases after the ranges (and bias correction): "
                        "per layer, the output MSE against the float model is minimised")
    q.add_argument("--batch-size", type=int, default=None, help="samples per inference during calibration")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    check = q.add_argument_group("self-check and fidelity guard (docs/fidelity.md)")
    check.add_argument("--no-self-check", action="store_true", default=None,
                       help="do not run the output against the float model (also turns the guard off)")
    check.add_argument("--check-samples", type=int, default=None, metavar="N",
                       help="held-out samples the self-check runs (default 32)")
    check.add_argument("--no-guard", action="store_true", default=None,
                       help="keep every planned quantizer even when the output falls below the threshold")
    check.add_argument("--guard-threshold", type=float, default=None, metavar="DB",
                       help="worst output SQNR (dB) below which the guard reverts quantized nodes to float "
                            "(default 12)")
    check.add_argument("--guard-budget", type=int, default=None, metavar="N",
                       help="re-measurements the guard may spend (default 12)")
    speed = q.add_argument_group("speed guard (docs/fidelity.md)")
    speed.add_argument("--no-speed-guard", action="store_true", default=None,
                       help="keep every planned quantizer even where onnxruntime runs it slower than float "
                            "(the guard runs by default for QDQ output on the ORT target)")
    speed.add_argument("--optimize-for", choices=OPTIMIZE_FOR, default=None,
                       help="latency (default): the speed guard returns to float any group that makes the model "
                            "slower; size: only groups without weights, so the file stays small")
    cache = speed.add_mutually_exclusive_group()
    cache.add_argument("--speed-cache", metavar="DIR", default=None,
                       help="where the guard keeps its measured decisions, so that the same run on this machine "
                            "gives the same output again (default: $REWRITER_CACHE_DIR/speed, else "
                            "~/.cache/rewriter/speed)")
    cache.add_argument("--no-speed-cache", action="store_true",
                       help="measure every time, and keep nothing (the output may then differ run to run)")
    add_search_arguments(q)
    images = q.add_argument_group("image folders")
    images.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    images.add_argument("--shorter-side", type=int)
    images.add_argument("--center-crop", type=int, nargs=2, metavar=("H", "W"))
    images.add_argument("--scale", type=float, default=1.0, help="multiply pixels first (1/255 gives 0..1)")
    images.add_argument("--mean", type=float, nargs="+", default=[0.0])
    images.add_argument("--std", type=float, nargs="+", default=[1.0])
    images.add_argument("--channel-order", choices=("RGB", "BGR"), default="RGB")
    images.add_argument("--layout", choices=("NCHW", "NHWC"), default=None)


def run_quantize(args: argparse.Namespace) -> int:
    # Lazy for start-up time: the pipeline loads onnx, onnxruntime and the numeric passes, which the
    # other subcommands (and --help) must not pay for; this module is imported by every `rewriter` run.
    from rewriter.calibrate.data import ImageOptions
    from rewriter.config import load_config, merge_cli, preset_notice
    from rewriter.match.planner import IgnoredOperation
    from rewriter.pipeline import quantize_file
    from rewriter.report.plan_report import branch_warning, control_flow_warning

    image_options = ImageOptions(
        size=tuple(args.image_size) if args.image_size else None, shorter_side=args.shorter_side,
        center_crop=tuple(args.center_crop) if args.center_crop else None, scale=args.scale,
        mean=tuple(args.mean), std=tuple(args.std), channel_order=args.channel_order, layout=args.layout)
    # Named by their options here; QuantizeOptions checks the same for the API, in its own words.
    for option, value, minimum in (("--subset-size", args.subset_size, 1), ("--batch-size", args.batch_size, 1),
                                   ("--seed", args.seed, 0), ("--check-samples", args.check_samples, 1),
                                   ("--guard-budget", args.guard_budget, 1)):
        if value is not None and value < minimum:
            raise UserError(f"{option} must be at least {minimum}, got {value}")
    loaded = load_config(args.config) if args.config else None
    search = search_settings(args, loaded, print_warning)
    model, data = loaded.model_and_data(args.model, args.data) if loaded else (args.model, args.data)
    if model is None:
        raise UserError("no model to quantize: give MODEL, or model.model (an .onnx path) in the --config file")
    # Before any work: an output that cannot be written must not cost a calibration run, nor leave a
    # model written without its report.
    outputs = check_outputs({"-o": args.output, "--report": args.report, "--html": args.html},
                            {"the input model": model, "the --config file": args.config,
                             **{f"the --rules file {path}": path for path in args.rules}},
                            args.follow_symlinks)
    if loaded is not None:
        for notice in (*loaded.warnings, *loaded.unsupported):
            print_warning(notice.render())
    overrides = {
        "target": args.target, "preset": args.preset, "subset_size": args.subset_size, "seed": args.seed,
        "model_type": args.model_type, "estimator_preset": args.range_estimator, "batch_size": args.batch_size,
        "ignore_scope": tuple(args.ignore_scope) or None,
        "ignore_ops": tuple(IgnoredOperation(t) for t in args.ignore_op) or None,
        "output_format": args.format, "rules": tuple(args.rules),
        "channel_alignment": args.channel_alignment, "layerwise_tuning": args.layerwise_tuning,
        "smoothing": args.smoothing, "saturation_fix": args.saturation_fix,
        "bias_correction": args.bias_correction,
        "self_check": False if args.no_self_check else None, "check_samples": args.check_samples,
        "guard": False if args.no_guard else None, "guard_threshold": args.guard_threshold,
        "guard_budget": args.guard_budget, "speed_guard": False if args.no_speed_guard else None,
        "speed_cache": False if args.no_speed_cache else args.speed_cache,
        "optimize_for": args.optimize_for,
        "progress": not args.quiet and sys.stderr.isatty(), "image_options": image_options}
    options = merge_cli(loaded, overrides)
    renamed = preset_notice(loaded, overrides, options)
    if renamed is not None:
        print_warning(renamed.render())
    if data is None:
        raise UserError("no calibration data: give --data, or engine.data_source in the config file")
    if search is not None:
        from rewriter.ir.load import save_model
        result = run_search(args, search, model, outputs["-o"], data, options, save_model)
    else:
        result = quantize_file(model, outputs["-o"], data, options)
    if "--report" in outputs:
        atomic_write_text(outputs["--report"], json.dumps(result.report, indent=2) + "\n", "the report")
    if "--html" in outputs:
        from rewriter.report.html_report import write_html
        write_html(result.report, outputs["--html"])
    notes = [n for n in (control_flow_warning(result.plan, data_hint=False),
                         branch_warning(result.report.get("control_flow", []))) if n]
    if notes:  # one line: what stays float inside control flow, and why
        print_warning("; ".join(notes))
    summary = result.report["summary"]
    fidelity = result.report.get("fidelity")
    checked = ""
    if fidelity is not None:
        checked = f"; {fidelity['skipped']}" if "skipped" in fidelity else f"; {fidelity['summary']}"
        reverts = (fidelity.get("guard") or {}).get("reverts") or ()
        if reverts:
            names = ", ".join(r["node"] for r in reverts[:3]) + (", ..." if len(reverts) > 3 else "")
            checked += f"; fidelity guard reverted {len(reverts)} node(s) to float ({names})"
    speed = result.report.get("speed")
    if speed is not None and "final_speedup" in speed:
        checked += f"; {speed['final_speedup']:.2f}x float speed in onnxruntime"
        overhead = speed.get("no_integer_kernel") or ()
        slower = speed.get("still_slower") or ()
        why_float = ("; no integer kernel was left, so the model is float" if overhead else
                     "; it stayed slower than float, so the model is float" if slower else "")
        if speed["reverts"] or overhead or slower:
            before = ("not timed" if speed["initial_speedup"] is None
                      else f"{speed['initial_speedup']:.2f}x before")
            checked += (f" (speed guard reverted {len(speed['reverts']) + len(overhead) + len(slower)} node(s), "
                        f"{before}{why_float})")
    print(f"wrote {args.output}: {summary['fakequantize']} FakeQuantize "
          f"({summary['fakequantize_weights']} weights, {summary['fakequantize_activations']} activations) "
          f"for {result.plan.target}, {result.report['calibration']['samples']} calibration samples{checked}")
    if fidelity is not None and fidelity.get("warning"):
        print_warning(fidelity["warning"])
    if "search" in result.report:
        print(f"  {result.report['search']['summary']}")
        if result.report["search"].get("message"):
            print_warning(result.report["search"]["message"])
    return 0
