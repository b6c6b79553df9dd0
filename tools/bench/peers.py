"""The quantizers compared by the benchmark: one function per tool, each run in its own process.

    python tools/bench/peers.py TOOL --model M.onnx --out Q.onnx --data DIR --samples N \
        --config JSON --result RESULT.json

TOOL is one of ``TOOLS``. Every tool reads the same calibration samples: the
sorted ``*.npz`` files of DIR (one sample each, keyed by input name, batch 1),
streamed from disk. The child writes RESULT.json: whether it worked (or the
error and traceback), the time of the quantization call itself (``quantize_s``,
imports excluded), the import time, the RSS after imports, and tool facts
(for onnxruntime: whether ``quant_pre_process`` worked). The parent
(tools/bench/run.py) measures the child's wall time and peak RSS.

Configurations (``config_for``):

- ``ours``: rewriter, CPU target, preset performance; mixed for transformers.
- ``ours_default``: the plain command line ``rewriter quantize MODEL -o OUT
  --data DIR`` (run in-process through ``rewriter.cli.main``, plus ``--report``
  and ``--quiet``, which change nothing in the model), so it follows whatever
  the tool's defaults are in the checkout measured.
- ``ours_ort``: rewriter with ``--target ORT`` (the README's pick for
  onnxruntime), other settings default.
- ``ours_dq``: rewriter's DefaultQuantization (ActivationChannelAlignment,
  MinMax, FastBiasCorrection) plus activation smoothing (a no-op without
  outlier channels), otherwise as ``ours``: issue 5's comparison.
- ``ours_ort_dq``: the same with ``--target ORT``.
- ``ours_nosat`` / ``ours_ort_nosat``: ``ours_default`` / ``ours_ort`` with
  ``--saturation-fix no``: full 8-bit weight grids instead of the targets'
  7-bit ones, to show what the 7-bit grid costs or saves on the CPU at hand.
- ``ort``: onnxruntime.quantization.quantize_static, QDQ, per-channel, MinMax,
  QUInt8 activations, QInt8 weights, after ``quant_pre_process`` when it works.
- ``nncf``: ``nncf.quantize`` on the ONNX model, default preset; MIXED and
  model_type TRANSFORMER for transformers.
- ``nncf_default``: ``nncf.quantize`` with default arguments (differs from
  ``nncf`` on transformers only).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
# A checkout that is not pip-installed still finds its own package (installed copies win).
if str(HERE.parents[1]) not in sys.path:
    sys.path.append(str(HERE.parents[1]))


@dataclass(frozen=True)
class Tool:
    name: str
    label: str
    packages: tuple[str, ...]  # import names the tool needs
    alias_of: str | None = None  # a variant that is run only where its config differs from this tool's


TOOLS: dict[str, Tool] = {
    "ours": Tool("ours", "rewriter (ours)", ("rewriter",)),
    "ours_default": Tool("ours_default", "rewriter, default settings", ("rewriter",)),
    "ours_ort": Tool("ours_ort", "rewriter, target ORT", ("rewriter",)),
    "ours_dq": Tool("ours_dq", "rewriter, DefaultQuantization", ("rewriter",)),
    "ours_ort_dq": Tool("ours_ort_dq", "rewriter, ORT + DefaultQuantization", ("rewriter",)),
    "ours_nosat": Tool("ours_nosat", "rewriter, default, 8-bit weights", ("rewriter",)),
    "ours_ort_nosat": Tool("ours_ort_nosat", "rewriter, target ORT, 8-bit weights", ("rewriter",)),
    "ort": Tool("ort", "onnxruntime quantize_static", ("onnxruntime.quantization",)),
    "nncf": Tool("nncf", "NNCF", ("nncf",)),
    "nncf_default": Tool("nncf_default", "NNCF, default settings", ("nncf",), alias_of="nncf"),
}


def available(tool: str) -> tuple[bool, str]:
    """Whether the tool's packages import here; the reason when not."""
    for pkg in TOOLS[tool].packages:
        try:
            if importlib.util.find_spec(pkg) is None:
                return False, f"package {pkg.split('.')[0]!r} is not installed"
        except (ImportError, ValueError) as error:
            return False, f"package {pkg!r} cannot be imported: {error}"
    return True, ""


def config_for(tool: str, kind: str) -> dict:
    """The settings each tool runs with on a model of ``kind`` ("transformer" or "cnn")."""
    transformer = kind == "transformer"
    if tool == "ours":
        return {"target": "CPU", "preset": "mixed" if transformer else "performance", "seed": 0}
    if tool == "ours_default":
        return {"cli_options": []}
    if tool == "ours_ort":
        return {"target": "ORT", "preset": "performance", "seed": 0}
    if tool == "ours_dq":
        return {**config_for("ours", kind), "channel_alignment": True, "bias_correction": "fast", "smoothing": 0.8}
    if tool == "ours_ort_dq":
        return {**config_for("ours_ort", kind), "channel_alignment": True, "bias_correction": "fast",
                "smoothing": 0.8}
    if tool == "ours_nosat":
        return {"target": "CPU", "preset": "performance", "seed": 0, "saturation_fix": "no"}
    if tool == "ours_ort_nosat":
        return {**config_for("ours_ort", kind), "saturation_fix": "no"}
    if tool == "ort":
        return {"quant_format": "QDQ", "per_channel": True, "calibrate_method": "MinMax",
                "activation_type": "QUInt8", "weight_type": "QInt8", "pre_process": True}
    if tool == "nncf":
        return {"preset": "MIXED", "model_type": "TRANSFORMER"} if transformer else {}
    if tool == "nncf_default":
        return {}
    raise KeyError(tool)


def sample_files(data_dir: os.PathLike) -> list[Path]:
    return sorted(Path(data_dir).glob("*.npz"))


# ----------------------------------------------------------------------------- the tools

def run_ours(model: str, out: str, data_dir: str, samples: int, config: dict) -> dict:
    from rewriter.pipeline import QuantizeOptions, quantize_file

    options = QuantizeOptions(target=config.get("target", "CPU"), preset=config.get("preset", "performance"),
                              subset_size=samples, seed=config.get("seed", 0),
                              channel_alignment=config.get("channel_alignment", False),
                              bias_correction=config.get("bias_correction"), smoothing=config.get("smoothing"),
                              saturation_fix=config.get("saturation_fix"))
    result = quantize_file(model, out, data_dir, options)
    report = result.report
    return {"timings_s": report.get("timings_s"), "calibration": report.get("calibration"),
            "planned_fakequantize": len(report.get("fakequantize", []))}


def run_ours_cli(model: str, out: str, data_dir: str, samples: int, config: dict) -> dict:
    """The command line a user types, with the checkout's defaults; exit status other than 0 is a failure."""
    import contextlib
    import io

    from rewriter.cli import main as rewriter_main

    report_path = Path(out).with_suffix(".report.json")
    argv = ["quantize", model, "-o", out, "--data", data_dir, "--report", str(report_path), "--quiet",
            *config.get("cli_options", [])]
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        code = rewriter_main(argv)
    sys.stderr.write(captured.getvalue())
    if code != 0:
        Path(out).unlink(missing_ok=True)
        raise RuntimeError(f"rewriter exited {code}: {captured.getvalue().strip()[-400:]}")
    facts: dict = {"argv": ["rewriter", *argv], "samples_in_folder": len(sample_files(data_dir))}
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        facts.update({"timings_s": report.get("timings_s"), "calibration": report.get("calibration"),
                      "planned_fakequantize": len(report.get("fakequantize", [])),
                      "fidelity": report.get("fidelity")})
    return facts


def rewriter_checkout() -> dict:
    """Which rewriter this process imports: its folder and, in a git checkout, the commit (and local edits)."""
    import subprocess

    try:
        import rewriter
    except ImportError as error:
        return {"error": f"rewriter cannot be imported: {error}"}
    package = Path(rewriter.__file__).resolve().parent
    info: dict = {"path": str(package.parent), "version": getattr(rewriter, "__version__", None)}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(package.parent), *args], capture_output=True, text=True,
                                  timeout=20, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    info["commit"] = git("rev-parse", "HEAD")
    info["branch"] = git("rev-parse", "--abbrev-ref", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", "rewriter", "rules", "hw_specs")
    info["local_changes"] = None if status is None else bool(status)
    return info


def run_ort(model: str, out: str, data_dir: str, samples: int, config: dict) -> dict:
    from metrics import load_sample
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    paths = sample_files(data_dir)[:samples]

    class Reader(CalibrationDataReader):
        """Streams the samples from disk, one per call."""

        def __init__(self) -> None:
            self._it = iter(paths)

        def get_next(self):
            p = next(self._it, None)
            return None if p is None else load_sample(p)

    facts: dict = {}
    source = model
    if config.get("pre_process", True):
        t0 = time.perf_counter()
        pre = str(Path(out).with_suffix(".pre.onnx"))
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(model, pre)
            source = pre
            facts["pre_process"] = "ok"
        except Exception as error:  # noqa: BLE001 - recorded, then quantize the model as given
            facts["pre_process"] = f"failed: {type(error).__name__}: {str(error)[:200]}"
        facts["pre_process_s"] = round(time.perf_counter() - t0, 3)
    quantize_static(source, out, Reader(),
                    quant_format=getattr(QuantFormat, config.get("quant_format", "QDQ")),
                    per_channel=config.get("per_channel", True),
                    activation_type=getattr(QuantType, config.get("activation_type", "QUInt8")),
                    weight_type=getattr(QuantType, config.get("weight_type", "QInt8")),
                    calibrate_method=getattr(CalibrationMethod, config.get("calibrate_method", "MinMax")))
    if source != model:
        Path(source).unlink(missing_ok=True)
    return facts


def run_nncf(model: str, out: str, data_dir: str, samples: int, config: dict) -> dict:
    import nncf
    import onnx
    from metrics import load_sample

    paths = sample_files(data_dir)[:samples]
    kwargs = {}
    if config.get("preset"):
        kwargs["preset"] = getattr(nncf.QuantizationPreset, config["preset"])
    if config.get("model_type"):
        kwargs["model_type"] = getattr(nncf.ModelType, config["model_type"])
    dataset = nncf.Dataset(paths, load_sample)
    quantized = nncf.quantize(onnx.load(model), dataset, subset_size=len(paths), **kwargs)
    onnx.save(quantized, out)
    return {"nncf_version": nncf.__version__}


RUNNERS: dict[str, Callable[[str, str, str, int, dict], dict]] = {
    "ours": run_ours, "ours_default": run_ours_cli, "ours_ort": run_ours, "ours_dq": run_ours, "ours_ort_dq": run_ours,
    "ours_nosat": run_ours, "ours_ort_nosat": run_ours,
    "ort": run_ort, "nncf": run_nncf, "nncf_default": run_nncf,
}

# What each tool imports before its clock starts (so that import time is not quantization time).
PRELOAD = {
    **{tool: ("rewriter.pipeline", "rewriter.cli") for tool in TOOLS if tool.startswith("ours")},
    "ort": ("onnxruntime.quantization",), "nncf": ("nncf", "onnx"), "nncf_default": ("nncf", "onnx"),
}


def _rss_mb(key: str = "VmRSS") -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run one quantizer once (in its own process)")
    ap.add_argument("tool", choices=sorted(TOOLS))
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", required=True, help="folder of .npz samples")
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--config", default="{}", help="JSON settings (see config_for)")
    ap.add_argument("--result", required=True)
    a = ap.parse_args(argv)
    result: dict = {"tool": a.tool, "ok": False}
    try:
        t0 = time.perf_counter()
        for mod in PRELOAD[a.tool]:
            __import__(mod)
        result["import_s"] = round(time.perf_counter() - t0, 3)
        result["rss_after_import_mb"] = _rss_mb()
        if a.tool.startswith("ours"):
            result["rewriter"] = rewriter_checkout()
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).unlink(missing_ok=True)
        t1 = time.perf_counter()
        result["facts"] = RUNNERS[a.tool](a.model, a.out, a.data, a.samples, json.loads(a.config))
        result["quantize_s"] = round(time.perf_counter() - t1, 3)
        if not Path(a.out).is_file():
            raise RuntimeError(f"the tool returned but wrote no model at {a.out}")
        result["ok"] = True
    except BaseException as error:  # noqa: BLE001 - every failure becomes a recorded result
        result["error"] = f"{type(error).__name__}: {str(error)[:500]}"
        result["traceback"] = traceback.format_exc()[-4000:]
    result["rss_end_mb"] = _rss_mb()
    # This process's own high-water mark: the parent's ru_maxrss of a child starts from the parent's own peak
    # (Linux keeps it across fork and exec), so a parent grown large while scoring would hide the tool's.
    result["vm_hwm_mb"] = _rss_mb("VmHWM")
    Path(a.result).write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
