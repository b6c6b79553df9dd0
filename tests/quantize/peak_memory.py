"""Run `rewriter quantize` in a child process and read its peak memory (Linux: /proc/self/status)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Mapping

_CHILD = textwrap.dedent("""
    import json, sys

    def status():
        fields = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if value.strip().endswith("kB"):
                    fields[key] = int(value.split()[0]) * 1024
        return fields

    import numpy, onnx, onnxruntime  # noqa: F401
    import rewriter.calibrate.session as session
    import rewriter.ir.load as load
    import rewriter.pipeline  # noqa: F401
    from rewriter.cli import main

    shrink = int(sys.argv[1])
    if shrink:  # a model over 2 GB's paths on a smaller one
        load.LARGE_MODEL_BYTES = load.KEEP_IN_FILE_BYTES = session.LARGE_MODEL_BYTES = shrink
        session.SAVED_FIRST_BYTES = shrink
    imported = status()["VmRSS"]
    code = main(sys.argv[2:])
    print(json.dumps({"code": code, "imported": imported, "peak": status()["VmHWM"]}))
""")

MEASURABLE = os.path.exists("/proc/self/status")


def measured_quantize(args: list[str], shrink: int = 0, env: Mapping[str, str] | None = None,
                      timeout: float = 600) -> dict[str, int]:
    """``rewriter quantize ARGS`` in a child process: its exit code, its resident bytes once everything is
    imported, and its peak resident bytes (VmHWM). ``shrink``: the large-model size thresholds, 0 to keep."""
    root = Path(__file__).resolve().parents[2]
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join([str(root), child_env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", _CHILD, str(shrink), "quantize", *args], capture_output=True,
                          text=True, env=child_env, timeout=timeout, check=False)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    figures: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["code"] == 0, done.stderr
    return figures
