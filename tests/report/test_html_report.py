"""The HTML audit report, its inputs (the report's graph section), the target diff and the Model Explorer
node data, without a browser (tests/report/test_html_browser.py opens the page)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest

from rewriter.cli import main
from rewriter.pipeline import QuantizeOptions, quantize
from rewriter.report.html_report import PAGE_NODES, page_data, render_html
from rewriter.report.model_explorer import sqnr_node_data, status_node_data
from rewriter.report.node_status import display_status
from rewriter.report.plan_diff import diff_text, plan_diff

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny_cnn.onnx"
CALIB = ROOT / "examples" / "calib"


@pytest.fixture(scope="module")
def report() -> dict:
    # res_conv2 ignored: the page then shows quantized, agnostic, float by spec and float by rule nodes.
    return quantize(str(EXAMPLE), str(CALIB), QuantizeOptions(target="CPU", ignore_scope=("res_conv2",))).report


def test_the_report_holds_every_data_edge_between_its_nodes(report) -> None:
    names = [n["node"] for n in report["nodes"]]
    edges = {(None if a is None else names[a], None if b is None else names[b], t)
             for a, b, t in report["graph"]["edges"]}
    # The normalized model has the BatchNormalizations folded into the convolutions, so a convolution's
    # output tensor keeps the name of the BatchNormalization's output.
    assert (None, "stem_conv", "input") in edges
    assert ("output", None, "output") in edges
    assert any(a == "stem_conv" and b == "stem_relu" for a, b, _ in edges)
    assert any(a == "res_relu1" and b == "res_conv2" for a, b, _ in edges)
    assert any(a == "stem_relu" and b == "res_add" for a, b, _ in edges)  # the residual connection
    weights = {i.name for i in onnx.load(str(EXAMPLE)).graph.initializer}
    assert not any(t in weights for _, _, t in edges)
    assert {b for _, b, _ in edges if b is not None} == set(names)   # every node reads something drawn
    assert len(edges) == len(report["graph"]["edges"])               # no edge twice


def test_display_status_says_who_kept_a_node_float(report) -> None:
    statuses = {n["node"]: display_status(n) for n in report["nodes"]}
    assert statuses["stem_conv"] == "quantized"
    assert statuses["stem_relu"] == "float-spec"      # the CPU spec has no entry for Relu
    assert statuses["res_conv2"] == "float-rule"      # --ignore-scope
    assert statuses["pool"] == "agnostic"
    assert display_status({"status": "reverted", "trail": []}) == "reverted"


def test_the_page_is_self_contained_and_deterministic(report) -> None:
    page = render_html(report)
    assert page == render_html(json.loads(json.dumps(report)))
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", page)
    assert not re.search(r"url\(\s*['\"]?https?:", page)
    assert "dagre" in page and "Permission is hereby granted" in page   # the library with its licence
    assert page.count('<script type="application/json" id="report-data">') == 1


def test_a_node_name_cannot_end_the_data_script(report) -> None:
    hostile = json.loads(json.dumps(report))
    hostile["nodes"][0]["node"] = "</script><script>alert(1)</script>"
    page = render_html(hostile)
    data = page.split('id="report-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["nodes"][0][0] == "</script><script>alert(1)</script>"


def test_the_page_data_links_each_quantizer_to_the_nodes_that_read_it(report) -> None:
    data = page_data(report)
    names = [n[0] for n in data["nodes"]]
    point = next(p for p in data["points"] if p[0] == "stem_relu")
    assert {names[i] for i in point[3]} == {"res_conv1", "res_add"}
    assert point[2] == next(p["sqnr_db"] for p in report["fakequantize"] if p["tensor"] == "stem_relu")
    trail = [data["decisions"][i] for i in data["nodes"][names.index("stem_conv")][4]]
    assert any(d[2].startswith("rules/placement.rules:") for d in trail)
    assert data["page_nodes"] == PAGE_NODES


def test_a_report_without_the_graph_section_is_refused(tmp_path, capsys) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": "rewriter.pipeline/1", "nodes": []}))
    assert main(["report", str(old), "-o", str(tmp_path / "r.html")]) == 2
    assert "no graph section" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_report_refuses_what_is_not_json_with_its_position(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [\n  oops]}')
    assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) == 2
    assert f"{bad}:2:3: not JSON" in capsys.readouterr().err


def test_report_needs_an_output_and_diff_needs_the_model(tmp_path, capsys) -> None:
    path = tmp_path / "r.json"
    path.write_text("{}")
    assert main(["report", str(path)]) == 2
    assert "nothing to write" in capsys.readouterr().err
    assert main(["report", str(path), "-o", str(tmp_path / "x.html"), "--diff-target", "GNA"]) == 2
    assert "--diff-target needs --model" in capsys.readouterr().err


def test_quantize_html_and_report_command_write_the_same_page(tmp_path, capsys) -> None:
    out, json_report, html = tmp_path / "q.onnx", tmp_path / "r.json", tmp_path / "q.html"
    assert main(["quantize", str(EXAMPLE), "-o", str(out), "--data", str(CALIB), "--target", "CPU", "--quiet",
                 "--report", str(json_report), "--html", str(html)]) == 0
    again = tmp_path / "again.html"
    assert main(["report", str(json_report), "-o", str(again)]) == 0
    assert html.read_bytes() == again.read_bytes()
    assert html.stat().st_size > 50_000   # the layout library is inlined


def test_report_diff_target_puts_the_changes_in_the_page(tmp_path, capsys) -> None:
    out, json_report, html = tmp_path / "q.onnx", tmp_path / "r.json", tmp_path / "d.html"
    assert main(["quantize", str(EXAMPLE), "-o", str(out), "--data", str(CALIB), "--target", "CPU", "--quiet",
                 "--report", str(json_report)]) == 0
    assert main(["report", str(json_report), "-o", str(html), "--diff-target", "GNA", "--model", str(EXAMPLE)]) == 0
    data = json.loads(html.read_text().split('id="report-data">', 1)[1].split("</script>", 1)[0])
    changed = {n["node"]: n for n in data["diff"]["nodes"]}
    assert changed["stem_relu"]["a"]["status"] == "float-spec" and changed["stem_relu"]["b"]["status"] == "quantized"


def test_audit_diff_target_lists_the_nodes_that_change(capsys) -> None:
    code = main(["audit", str(EXAMPLE), "--target", "CPU", "--diff-target", "GNA"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("plan diff: CPU -> GNA\n")
    assert re.search(r"^  stem_relu +Relu +float-spec -> quantized$", out, re.M)
    assert "      CPU: CPU spec has no entry for Relu" in out
    assert main(["audit", str(EXAMPLE), "--target", "CPU", "--diff-target", "GNA", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["b"] == "GNA"


def test_a_plan_has_no_difference_with_itself(report) -> None:
    diff = plan_diff(report, report)
    assert diff["nodes"] == [] and diff["fakequantize"] == {"only_a": [], "only_b": [], "changed": []}
    assert "0 node(s) change" in diff_text(diff)


def test_model_explorer_node_data(report, tmp_path, capsys) -> None:
    status = status_node_data(report)
    assert set(status["results"]) == {n["node"] for n in report["nodes"]}
    assert status["results"]["stem_relu"]["value"] == "float-spec"
    sqnr = sqnr_node_data(report)
    readers = [p["sqnr_db"] for p in report["fakequantize"]
               if any(c["node"] == "res_add" for c in p["consumers"])]
    assert sqnr["results"]["res_add"]["value"] == min(readers) and len(readers) == 2
    assert "stem_relu" not in sqnr["results"]           # reads no FakeQuantize
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    assert main(["report", str(path), "--model-explorer", str(tmp_path / "me.json")]) == 0
    assert json.loads((tmp_path / "me.json").read_text()) == status
    assert json.loads((tmp_path / "me.sqnr.json").read_text()) == json.loads(json.dumps(sqnr))


def test_model_explorer_data_stays_json_when_a_quantizer_is_exact() -> None:
    report = {"nodes": [{"node": "a", "status": "quantized", "trail": []}, {"node": "b", "status": "quantized",
                                                                             "trail": []}],
              "fakequantize": [{"tensor": "w", "sqnr_db": float("inf"), "consumers": [{"node": "a", "port": 1}]},
                               {"tensor": "x", "sqnr_db": 30.0, "consumers": [{"node": "b", "port": 0}]},
                               {"tensor": "v", "sqnr_db": float("inf"), "consumers": [{"node": "b", "port": 1}]}]}
    data = sqnr_node_data(report)
    assert data["results"] == {"b": {"value": 30.0}}
    json.dumps(data, allow_nan=False)


def test_audit_html_writes_the_plan_as_a_page_and_still_prints_the_plan(tmp_path, capsys) -> None:
    page = tmp_path / "plan.html"
    assert main(["audit", str(EXAMPLE), "--target", "CPU", "--html", str(page)]) == 0
    assert "FakeQuantize" in capsys.readouterr().out
    data = json.loads(page.read_text().split('id="report-data">', 1)[1].split("</script>", 1)[0])
    assert data["diff"] is None and data["points"] and all(p[2] is None for p in data["points"])  # no SQNR
    assert {n[0] for n in data["nodes"]} >= {"stem_conv", "res_add"} and data["edges"]
    assert main(["audit", str(EXAMPLE), "--target", "CPU", "--diff-target", "GNA", "--html", str(page)]) == 0
    assert capsys.readouterr().out.startswith("plan diff: CPU -> GNA")
    assert '"b":"GNA"' in page.read_text()
