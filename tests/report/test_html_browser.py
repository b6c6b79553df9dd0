"""The HTML report in a real browser (headless Chromium through selenium): every node is drawn, clicking a
node shows its trail, the SQNR chart leads to the graph, a large model is shown in pages.

Skipped, with the reason, only when no browser can run here; .ci/run installs Debian's chromium and
chromium-driver, so CI runs these, and under CI (the CI variable set) a missing browser fails them instead.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from browser import browser_problem, start_browser
from rewriter.pipeline import QuantizeOptions, quantize
from rewriter.report.html_report import PAGE_NODES, write_html

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny_cnn.onnx"
CALIB = ROOT / "examples" / "calib"

PROBLEM = browser_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None and not os.environ.get("CI"),
                                reason=f"no headless browser: {PROBLEM}")


@pytest.fixture(scope="module")
def browser():
    if PROBLEM is not None:
        pytest.fail(f"CI is set but no headless browser can run: {PROBLEM}")
    driver = start_browser()
    yield driver
    driver.quit()


def open_page(driver, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.as_uri())
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return document.body.dataset.ready || document.body.dataset.error"))
    assert driver.execute_script("return document.body.dataset.error") is None, \
        driver.execute_script("return document.body.dataset.error")


def click(driver, css: str) -> None:
    # A synthetic click: the element may lie outside the scrolled graph view, where selenium's own click
    # would refuse it.
    driver.execute_script("document.querySelector(arguments[0]).dispatchEvent(new MouseEvent('click', "
                          "{bubbles: true}))", css)


def panel(driver) -> str:
    return driver.find_element("id", "panel").text


def test_every_node_is_drawn_and_clicking_one_shows_its_trail(browser, tmp_path) -> None:
    report = quantize(str(EXAMPLE), str(CALIB), QuantizeOptions(target="CPU", ignore_scope=("res_conv2",))).report
    page = tmp_path / "report.html"
    write_html(report, page)
    open_page(browser, page)
    drawn = browser.execute_script("return [...document.querySelectorAll('[data-node]')].map(e => e.dataset.node)")
    assert sorted(drawn) == sorted(n["node"] for n in report["nodes"])
    statuses = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('[data-node]')].map(e => "
        "[e.dataset.node, getComputedStyle(e.querySelector('rect')).fill]))")
    # Coloured by status: a quantized, a float-by-spec and a float-by-rule node each have their own fill.
    assert len({statuses["stem_conv"], statuses["stem_relu"], statuses["res_conv2"]}) == 3

    click(browser, '[data-node="stem_conv"]')
    text = panel(browser)
    assert text.startswith("stem_conv\nConv quantized")
    assert "insert by quantize_inputs @ rules/placement.rules:7:6" in text
    assert "spec by CPU:Conv @ hw_specs/cpu.yaml:" in text
    click(browser, '[data-node="res_conv2"]')
    assert "ignore by cli @ --ignore-scope" in panel(browser)
    assert browser.find_elements("css selector", '.node.selected[data-node="res_conv2"]')
    # Pointing at another node shows it; leaving it goes back to the clicked one.
    browser.execute_script("document.querySelector('[data-node=\"stem_relu\"] rect').dispatchEvent("
                           "new MouseEvent('mouseover', {bubbles: true}))")
    assert panel(browser).startswith("stem_relu\nRelu float by spec")
    assert "float by spec:CPU @ hw_specs/cpu.yaml:" in panel(browser)
    browser.execute_script("document.querySelector('[data-node=\"stem_relu\"] rect').dispatchEvent("
                           "new MouseEvent('mouseout', {bubbles: true, relatedTarget: document.body}))")
    assert panel(browser).startswith("res_conv2\n")

    # The worst SQNR comes first and leads to the node that reads that quantizer.
    rows = browser.execute_script("return [...document.querySelectorAll('.sqnr-row')].map(r => r.dataset.tensor)")
    measured = sorted((p["sqnr_db"], p["tensor"]) for p in report["fakequantize"] if p["sqnr_db"] is not None)
    assert rows[0] == measured[0][1]
    click(browser, ".sqnr-row")
    worst = next(p for p in report["fakequantize"] if p["tensor"] == rows[0])
    assert panel(browser).startswith(worst["consumers"][0]["node"] + "\n")

    assert "output SQNR" in browser.find_element("id", "fidelity").text
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def chain_report(count: int) -> dict:
    """A plan document of ``count`` nodes: a chain with a skip connection every fourth node."""
    nodes, edges = [], []
    for i in range(count):
        nodes.append({"node": f"n{i}", "op_type": "Add" if i % 4 == 3 else "Relu", "status": "float",
                      "reason": f"reason {i}", "trail": [{"action": "float", "source": "spec:CPU",
                                                          "loc": "hw_specs/cpu.yaml:4:1",
                                                          "detail": "no entry for Relu"}]})
        edges.append([i - 1, i, f"t{i - 1}"] if i else [None, 0, "x"])
        if i % 4 == 3:
            edges.append([i - 3, i, f"t{i - 3}"])
    edges.append([count - 1, None, f"t{count - 1}"])
    return {"schema": "rewriter.plan/1", "model": "chain.onnx", "target": "CPU", "nodes": nodes,
            "fakequantize": [], "graph": {"edges": edges}}


def test_a_large_model_is_shown_in_pages(browser, tmp_path) -> None:
    count = PAGE_NODES * 2 + 17
    page = tmp_path / "chain.html"
    write_html(chain_report(count), page)
    open_page(browser, page)
    assert len(browser.find_elements("css selector", "[data-node]")) == PAGE_NODES
    # The first page's last node feeds the second page's first: drawn as a link to it.
    assert browser.find_elements("css selector", f'.ghost[data-goto="{PAGE_NODES}"]')
    find = browser.find_element("id", "find")
    find.send_keys(f"n{count - 1}")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", find)
    drawn = browser.execute_script("return [...document.querySelectorAll('[data-node]')].map(e => e.dataset.node)")
    assert drawn == [f"n{i}" for i in range(2 * PAGE_NODES, count)]
    assert panel(browser).startswith(f"n{count - 1}\n")
    assert json.loads(browser.execute_script("return JSON.stringify(document.getElementById('page').value)")) == "2"


def test_an_exact_quantizer_shows_as_exact_not_as_a_broken_page(browser, tmp_path) -> None:
    # An exactly representable weight has an infinite SQNR, which the report's JSON writes as Infinity: the
    # page's JSON must stay parseable (it was not, and the page stayed blank).
    report = chain_report(3)
    report["fakequantize"] = [
        {"tensor": "w", "role": "weight", "sqnr_db": float("inf"), "consumers": [{"node": "n1", "port": 1}],
         "config": {"bits": 8, "mode": "symmetric", "granularity": "perchannel"}, "trail": []},
        {"tensor": "t0", "role": "activation", "sqnr_db": 21.5, "consumers": [{"node": "n1", "port": 0}],
         "config": {"bits": 8, "mode": "asymmetric", "granularity": "pertensor"}, "trail": []}]
    page = tmp_path / "exact.html"
    write_html(report, page)
    open_page(browser, page)
    rows = browser.execute_script("return [...document.querySelectorAll('.sqnr-row')].map(r => r.innerText)")
    assert [r.split("\n")[-1].split("\t")[-1].strip() for r in rows] == ["21.5 dB", "exact"]


def test_a_reverted_node_is_red_and_the_guard_section_leads_to_it(browser, tmp_path) -> None:
    report = chain_report(4)
    report["nodes"][2].update(status="reverted", reason="reverted to float by fidelity-guard", trail=[
        {"action": "revert", "source": "fidelity-guard", "loc": "<fidelity-guard>",
         "detail": "output SQNR 9.1 dB -> 14.2 dB when quantized again alone"}])
    report["fidelity"] = {"summary": "output SQNR 14.2 dB", "warning": None, "note": None,
                          "outputs": [{"output": "y", "sqnr_db": 14.2}],
                          "guard": {"met": True, "reverts": [{"node": "n2", "reason": "output SQNR +5.1 dB"}]}}
    page = tmp_path / "guard.html"
    write_html(report, page)
    open_page(browser, page)
    fills = browser.execute_script("return [...document.querySelectorAll('[data-node] rect')].map(r => "
                                   "getComputedStyle(r).fill)")
    assert fills[2] != fills[1] and fills[0] == fills[1] == fills[3]
    click(browser, '#fidelity a.goto[data-goto="2"]')
    text = panel(browser)
    assert text.startswith("n2\n") and "revert by fidelity-guard" in text and "9.1 dB -> 14.2 dB" in text
