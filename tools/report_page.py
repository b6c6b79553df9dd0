"""How long the HTML report takes to open, and a screenshot of it.

Quantizes the synthetic conv/attention graph of tools/bench_match.py (``--nodes``, default 1200) on
random calibration data, writes its HTML report, opens it in headless Chromium and prints: the time from
navigation to the first page drawn, the page script's own time, dagre's layout time of the first page,
then each other page's layout and drawing time when selected. Or measures a given report (``--report``).

    python tools/report_page.py [--nodes 1200] [--workdir DIR] [--screenshot docs/report.png] [--node NAME]
    python tools/report_page.py --report REPORT.json [--screenshot FILE] [--node NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tools")]

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from bench_match import synthetic_model  # noqa: E402
from browser import browser_problem, start_browser  # noqa: E402


def quantized_report(nodes: int, workdir: Path) -> Path:
    """Quantize the synthetic model of ``nodes`` nodes; its JSON report's path."""
    model_path, calib, report = workdir / f"synthetic_{nodes}.onnx", workdir / "calib", workdir / "report.json"
    model = synthetic_model(nodes)
    onnx.save(model, str(model_path))
    calib.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    for k in range(8):
        np.savez(calib / f"{k:03d}.npz", **{name: rng.standard_normal(shape).astype(np.float32)
                                            for name, shape in shapes.items()})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rewriter.cli", "quantize", str(model_path), "-o",
                    str(workdir / "q.onnx"), "--data", str(calib), "--target", "CPU", "--quiet",
                    "--report", str(report)], check=True, env=env)
    print(f"quantized {len(model.graph.node)} nodes in {time.perf_counter() - start:.1f} s")
    return report


def measure(report_path: Path, screenshot: Path | None, node: str | None) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    from rewriter.report.html_report import write_html

    report = json.loads(report_path.read_text())
    page = report_path.with_suffix(".html")
    write_html(report, page)
    print(f"{page}: {page.stat().st_size / 1e6:.2f} MB, {len(report['nodes'])} nodes, "
          f"{len(report['fakequantize'])} FakeQuantize")
    driver = start_browser()
    try:
        start = time.perf_counter()
        driver.get(page.as_uri())
        WebDriverWait(driver, 300).until(lambda d: d.execute_script(
            "return document.body.dataset.ready || document.body.dataset.error"))
        error = driver.execute_script("return document.body.dataset.error")
        if error:
            raise SystemExit(f"the page failed: {error}")
        opened = time.perf_counter() - start
        script_ms, layout_ms = driver.execute_script(
            "return [document.body.dataset.renderMs, document.body.dataset.firstLayoutMs]")
        print(f"opened (first page drawn) in {opened:.2f} s: page script {script_ms} ms, of which dagre "
              f"laid out the first page in {layout_ms} ms")
        pages = driver.execute_script("return document.getElementById('page').options.length")
        for index in range(1, pages):
            start = time.perf_counter()
            drawn = driver.execute_script(
                "const s = document.getElementById('page'); s.value = arguments[0];"
                "s.dispatchEvent(new Event('change')); return document.querySelectorAll('[data-node]').length",
                str(index))
            print(f"page {index + 1}/{pages}: {drawn} nodes laid out and drawn in "
                  f"{time.perf_counter() - start:.2f} s")
        if screenshot is not None:
            if node:
                driver.execute_script("document.getElementById('find').value = arguments[0];"
                                      "document.getElementById('find').dispatchEvent(new Event('change'))", node)
            driver.save_screenshot(str(screenshot))
            print(f"wrote {screenshot}")
    finally:
        driver.quit()
    print(f"load average {os.getloadavg()[0]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1200)
    parser.add_argument("--report", type=Path, help="measure this quantize report instead")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--node", help="select this node before the screenshot")
    args = parser.parse_args()
    problem = browser_problem()
    if problem:
        raise SystemExit(f"no headless browser: {problem}")
    if args.report:
        measure(args.report, args.screenshot, args.node)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        measure(quantized_report(args.nodes, workdir), args.screenshot, args.node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
