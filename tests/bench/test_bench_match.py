"""tools/bench_match.py on a tiny graph, so that the scale benchmark cannot rot: its model is a valid ONNX
model that onnxruntime runs, it is the same graph as the in-memory view the planner-only mode uses, and
one audit in a child process reports its CPU time and peak RSS and writes the plan."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))

import bench_match  # noqa: E402


def test_synthetic_model_runs_and_matches_the_view() -> None:
    model = bench_match.synthetic_model(60)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
             for i in session.get_inputs()}
    outputs = session.run(None, feeds)
    assert all(np.isfinite(o).all() for o in outputs)
    view = bench_match.synthetic_graph(60)
    assert [n.op_type for n in view.nodes] == [n.op_type for n in model.graph.node]
    assert [n.inputs for n in view.nodes] == [tuple(n.input) for n in model.graph.node]


def test_audit_once_reports_usage_and_writes_the_plan(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    onnx.save(bench_match.synthetic_model(60), str(path))
    run = bench_match.audit_once(path, tmp_path / "plan.json", "CPU")
    assert run.seconds > 0 and run.cpu > 0 and run.rss_kb > 10_000  # a process with onnx loaded is over 10 MB
    assert 0 < run.user <= run.cpu  # user time is part of the CPU time
    # onnx's checker and shape inference were called through the names the child times, and their time is
    # part of the audit's.
    assert run.onnx_calls >= 1
    assert 0 <= run.onnx_user <= run.onnx_cpu <= run.cpu and run.onnx_user <= run.user
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["schema"] == "rewriter.plan/2" and doc["summary"]["nodes"] == len(onnx.load(str(path)).graph.node)


def test_stages_mode_times_every_stage(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bench_match.run_stages([60], "CPU", tmp_path)
    table = capsys.readouterr().out
    for stage in ("imports", "load", "normalize", "graph view", "plan", "JSON", "total"):
        assert stage in table
    # The system part and the page faults of each stage, on rows of their own.
    assert "system s" in table and "page faults" in table
    # onnx's checker and shape inference apart from the package's own work (run_stages stops if either was
    # never called through the names it times).
    assert "onnx checker" in table and "onnx inference" in table and "the package's own work" in table


def _marked_copy(folder: Path, mark: str) -> Path:
    """A copy of this checkout's package, specs and rules in ``folder`` whose plans say schema
    "rewriter.plan/<mark>": a plan written by it is told apart from this checkout's."""
    import shutil

    for name in ("rewriter", "hw_specs", "rules"):
        shutil.copytree(bench_match.ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    report = folder / "rewriter" / "report" / "plan_report.py"
    report.write_text(report.read_text().replace('SCHEMA = "rewriter.plan/2"', f'SCHEMA = "rewriter.plan/{mark}"'))
    return folder


def test_against_mode_runs_the_other_code_in_turns(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """--against audits with the package in another folder, not this checkout's: a copy whose plan schema is
    renamed shows up in its own plan, while this checkout's plans keep theirs."""
    other = _marked_copy(tmp_path / "other", "other")
    work = tmp_path / "work"
    work.mkdir()
    bench_match.run_against([60], "CPU", work, other, rounds=2)
    table = capsys.readouterr().out
    assert "other / this:" in table and table.count(" / ") >= 3  # two rounds listed for each code
    assert json.loads((work / "synthetic_60.this.plan.json").read_text())["schema"] == "rewriter.plan/2"
    assert json.loads((work / "synthetic_60.other.plan.json").read_text())["schema"] == "rewriter.plan/other"


def test_bars_mode_judges_each_bar_against_the_issues_code(tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                                          monkeypatch) -> None:
    """--bars runs the issue's code (here a copy whose plans are marked) at the small size and this code at both,
    and judges each bar as a ratio to the issue's code: with bars set far above or below what any audit takes,
    the verdicts must follow."""
    issue = _marked_copy(tmp_path / "issue", "issue")
    work = tmp_path / "work"
    work.mkdir()
    # The small bar far above any ratio, the large one far below.
    monkeypatch.setattr(bench_match, "_BAR_SECONDS", {60: 1e6, 120: 1e-6})
    bench_match.run_bars(issue, "CPU", work, rounds=1)
    out = capsys.readouterr().out
    assert "this 60: " in out and "this 120: " in out and "issue 60" in out
    assert out.split("this 60: ")[-1].split("\n")[0].endswith(": met")
    assert out.split("this 120: ")[-1].split("\n")[0].endswith(": not met")
    assert "growth 60 -> 120" in out
    assert json.loads((work / "bars.issue_60.plan.json").read_text())["schema"] == "rewriter.plan/issue"
    assert json.loads((work / "bars.this_120.plan.json").read_text())["schema"] == "rewriter.plan/2"


def test_floor_counts_the_model_it_parses(tmp_path: Path) -> None:
    """The floor parses the model it is given: its node count is the model's, its CPU time and RSS are a
    real process's."""
    path = tmp_path / "tiny.onnx"
    model = bench_match.synthetic_model(60)
    onnx.save(model, str(path))
    nodes, cpu, rss_kb, user = bench_match.floor_once(path)
    assert nodes == len(model.graph.node) and cpu > 0 and rss_kb > 10_000 and 0 < user <= cpu


def test_peak_rss_is_the_childs_own(tmp_path: Path) -> None:
    """A child's ru_maxrss starts from its parent's size (Linux keeps the high-water mark across fork and
    exec), so a parent grown large, say by writing a big synthetic model, would hide the audit's own peak:
    the children report their own high-water mark instead."""
    path = tmp_path / "tiny.onnx"
    onnx.save(bench_match.synthetic_model(60), str(path))
    ballast = bytearray(b"\x01") * (600 << 20)  # 600 MB, every page touched
    try:
        audit_kb = bench_match.audit_once(path, tmp_path / "plan.json", "CPU").rss_kb
        floor_kb = bench_match.floor_once(path)[2]
    finally:
        del ballast
    # A tiny model's audit or floor needs about a hundred MB (the interpreter, onnx, numpy).
    assert 10_000 < audit_kb < 400_000 and 10_000 < floor_kb < 400_000


def test_floor_mode_compares_growth(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bench_match.run_floor([200, 400], "CPU", tmp_path, rounds=2)
    table = capsys.readouterr().out
    # One row of each code per size, and one for the fixed cost.
    assert table.count("audit  ") == 3 and table.count("floor  ") == 3
    growth = [line for line in table.splitlines() if " -> " in line]
    # CPU time, then user time alone; then both without onnx's checker and shape inference. Models this small
    # may not rise above the fixed cost's noise; the line then says so.
    assert len(growth) == 4 and "user time" in growth[1] and "user time" in growth[3]
    assert "without onnx's passes" not in growth[0] + growth[1]
    assert "without onnx's passes" in growth[2] and "without onnx's passes" in growth[3]
    assert all("audit / floor" in line or "no growth to tell" in line for line in growth)
    assert "(fixed cost)" in table and (tmp_path / "synthetic_400.plan.json").exists()


def test_model_files_are_audited_as_given(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """--models: the audit and the stage table of model files a user names, not the synthetic graphs."""
    path = tmp_path / "given.onnx"
    model = bench_match.synthetic_model(40)
    onnx.save(model, str(path))
    bench_match.run_audits([path], "CPU", tmp_path)
    assert json.loads((tmp_path / "given.plan.json").read_text())["summary"]["nodes"] == len(model.graph.node)
    bench_match.run_stages([path], "CPU", tmp_path)
    assert "the package's own work on the model" in capsys.readouterr().out
    assert not list(tmp_path.glob("synthetic_*"))


# A callgrind output file in the shape valgrind 3.19 writes: objects and functions named once with an id, then
# by the id alone (an object may be named first as a callee, by "cob="); a cost line after "calls=" is the
# call's inclusive cost, counted where the callee's own lines are, and the caller's own lines go on after it.
_CALLGRIND_OUT = """# callgrind format
version: 1
positions: line
events: Ir
summary: 1123

ob=(1) /usr/lib/libc.so.6
fl=(1) memcpy.S
fn=(1) memcpy
10 100
+2 10

ob=(2) /opt/lib/libpython3.11.so.1.0
fl=(2) ceval.c
fn=(2) eval
5 1000
cob=(1)
cfi=(1)
cfn=(1)
calls=3 10
* 110
* 5
cob=(3) /opt/lib/onnx_cpp2py_export.so
cfi=(3) infer.cc
cfn=(3) infer
calls=1 7
-2 7
ob=(1)
fl=(1)
fn=(1)
* 1
ob=(3)
fl=(3)
fn=(3)
7 7
"""


def test_callgrind_objects_counts_each_objects_own_instructions(tmp_path: Path) -> None:
    path = tmp_path / "callgrind.out"
    path.write_text(_CALLGRIND_OUT)
    own = {"/usr/lib/libc.so.6": 111, "/opt/lib/libpython3.11.so.1.0": 1005, "/opt/lib/onnx_cpp2py_export.so": 7}
    assert bench_match._callgrind_objects(path) == own
    # A file whose lines do not add up to its summary is a format the reader does not know: it says so.
    path.write_text(_CALLGRIND_OUT.replace("summary: 1123", "summary: 1240"))
    with pytest.raises(SystemExit, match="add up to 1123"):
        bench_match._callgrind_objects(path)
    # Instruction positions beside the lines (--dump-instr=yes): the cost is the field after both.
    lines = _CALLGRIND_OUT.replace("positions: line", "positions: instr line").splitlines()
    with_instr = "\n".join(f"0x1 {line}" if line and (line[0].isdigit() or line[0] in "+-*") else line
                           for line in lines)
    path.write_text(with_instr)
    assert bench_match._callgrind_objects(path) == own


def test_instructions_mode_gives_the_growth_of_the_per_node_part(tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                                                 capsys) -> None:
    # Counts made up so that the growth is known: the fixed model 1000 + 10 per node in the interpreter and
    # 5 per node in onnx; the larger model 20 per node in the interpreter (twice the per-node cost).
    nodes_of = {bench_match._FIXED_NODES: 116, 200: 203, 400: 417}
    per_node = {116: (10, 5), 203: (10, 5), 417: (20, 5)}

    def counted(model: Path, output: Path, target: str, root: Path = bench_match.ROOT) -> dict[str, int]:
        nodes = nodes_of[int(model.stem.split("_")[1])]
        output.write_text(json.dumps({"summary": {"nodes": nodes}}))
        interpreter = 1000 + per_node[nodes][0] * (nodes - 116)
        onnx_cpp = per_node[nodes][1] * (nodes - 116)
        return {"total": interpreter + onnx_cpp, "interpreter": interpreter, "onnx C++": onnx_cpp, "other": 0}

    monkeypatch.setattr(bench_match, "instructions_once", counted)
    monkeypatch.setattr(bench_match.shutil, "which", lambda name: "/usr/bin/valgrind")
    bench_match.run_instructions([200, 400], "CPU", tmp_path, other=None)
    out = capsys.readouterr().out
    # Per-node parts: 87 and 301 nodes beyond the fixed model's, so a linear cost grows 301 / 87 = 3.46x; the
    # interpreter's part grows twice that, onnx's as a linear cost, the total (15 -> 25 per node) 5.77x.
    growth = next(line for line in out.splitlines() if "203 -> 417" in line)
    assert "grows 3.46x" in growth
    assert "interpreter 6.92x" in growth and "onnx C++ 3.46x" in growth and "total 5.77x" in growth
    assert "other" not in growth  # no per-node part to grow from
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:2] in
            (["203", "this"], ["417", "this"])}
    assert rows["203"][-1] == "15" and rows["417"][-1] == "25"  # instructions per node beyond the fixed model


def test_instructions_mode_compares_the_other_code(tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                                   capsys) -> None:
    # The other code spends twice this one's interpreter instructions per node (20 and 40 against 10 and 20),
    # the same in onnx (5) and the same fixed cost (1000).
    other = tmp_path / "other"
    nodes_of = {bench_match._FIXED_NODES: 116, 200: 203, 400: 417}
    per_node = {116: 10, 203: 10, 417: 20}

    def counted(model: Path, output: Path, target: str, root: Path = bench_match.ROOT) -> dict[str, int]:
        nodes = nodes_of[int(model.stem.split("_")[1])]
        output.write_text(json.dumps({"summary": {"nodes": nodes}}))
        interpreter = 1000 + per_node[nodes] * (2 if root == other else 1) * (nodes - 116)
        onnx_cpp = 5 * (nodes - 116)
        return {"total": interpreter + onnx_cpp, "interpreter": interpreter, "onnx C++": onnx_cpp, "other": 0}

    monkeypatch.setattr(bench_match, "instructions_once", counted)
    monkeypatch.setattr(bench_match.shutil, "which", lambda name: "/usr/bin/valgrind")
    bench_match.run_instructions([200, 400], "CPU", tmp_path, other=other)
    lines = capsys.readouterr().out.splitlines()
    # At 203 nodes: 1000 + 15 * 87 = 2305 against 1000 + 25 * 87 = 3175 in all, 25 / 15 per node; at 417:
    # 1000 + 25 * 301 = 8525 against 1000 + 45 * 301 = 14545, 45 / 25 per node.
    ratios = [line for line in lines if "other / this" in line]
    assert len(ratios) == 2
    assert "1.3774x the instructions, 1.6667x their per-node parts" in ratios[0]
    assert "1.7062x the instructions, 1.8000x their per-node parts" in ratios[1]
    rows = {tuple(line.split()[:2]): line.split()[-1] for line in lines
            if line.split()[:1] in (["203"], ["417"]) and "other / this" not in line}
    assert rows["203", "this"] == "15" and rows["203", "other"] == "25" and rows["417", "other"] == "45"
    # Each code's own growth: this one's per-node total 15 -> 25 (5.77x), the other's 25 -> 45 (6.23x).
    growth = {line.split("(")[1].split(")")[0]: line for line in lines if "203 -> 417" in line}
    assert "total 5.77x" in growth["this"] and "total 6.23x" in growth["other"]
    assert "interpreter 6.92x" in growth["this"] and "interpreter 6.92x" in growth["other"]


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_once_counts_a_real_audit(tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    onnx.save(bench_match.synthetic_model(60), str(model))
    counts = bench_match.instructions_once(model, tmp_path / "plan.json", "CPU")
    assert json.loads((tmp_path / "plan.json").read_text())["summary"]["nodes"] > 50
    # The interpreter's start, the imports and the spec and rules alone take over a billion instructions, most
    # in the interpreter; onnx's checker and inference run too.
    assert counts["total"] > 1e9 and counts["interpreter"] > counts["total"] / 2 and counts["onnx C++"] > 0


def test_last_level_cache_is_the_highest_level_linux_reports(tmp_path: Path) -> None:
    for index, (level, size) in enumerate([(1, "48K"), (1, "64K"), (2, "2048K"), (3, "491520K")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "size").write_text(f"{size}\n")
    assert bench_match._last_level_cache_bytes(tmp_path) == 480 << 20
    assert bench_match._last_level_cache_bytes(tmp_path / "missing") is None


def test_cache_note_warns_where_growth_leaves_the_cache() -> None:
    cache = 480 << 20
    note = bench_match.cache_note([(100021, 441 << 10), (1000007, 3670 << 10)], cache)
    assert note is not None and "100021-node" in note and "441 MB" in note and "480 MB" in note
    # Both inside, both outside, or no cache size known: nothing to warn of.
    assert bench_match.cache_note([(10005, 120 << 10), (100021, 441 << 10)], cache) is None
    assert bench_match.cache_note([(100021, 900 << 10), (1000007, 3670 << 10)], cache) is None
    assert bench_match.cache_note([(100021, 441 << 10), (1000007, 3670 << 10)], None) is None


def test_instruction_stages_mode_gives_each_stages_growth(tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                                          capsys) -> None:
    # Made up: the imports cost about the same at every size (a few instructions either way, as real counts
    # differ between runs); load 100 and 10 per node, plan 30 per node but 60 at the largest size.
    nodes_of = {bench_match._FIXED_NODES: 116, 200: 203, 400: 417}

    def counted(model: Path, target: str, root: Path = bench_match.ROOT) -> dict[str, int]:
        nodes = nodes_of[int(model.stem.split("_")[1])]
        beyond = nodes - 116
        return {"nodes": nodes, "imports": 5000 + nodes % 5, "load": 100 + 10 * beyond,
                "plan": (60 if nodes == 417 else 30) * beyond, "exit": 7}

    monkeypatch.setattr(bench_match, "instruction_stages_once", counted)
    monkeypatch.setattr(bench_match.shutil, "which", lambda name: "/usr/bin/valgrind")
    bench_match.run_instruction_stages([200, 400], "CPU", tmp_path, other=None)
    lines = capsys.readouterr().out.splitlines()
    growth = next(line for line in lines if "203 -> 417" in line)
    # 301 / 87 = 3.46x nodes beyond the fixed model; the plan's per-node cost doubles, so 6.92x; in all
    # (10 + 30 -> 10 + 60 per node, and the imports 2 and 1 over the fixed count: 21071 / 3482) 6.05x.
    # The imports and the exit have no per-node part worth a ratio.
    assert "grows 3.46x" in growth and "load 3.46x" in growth and "plan 6.92x" in growth and "total 6.05x" in growth
    assert "imports" not in growth and "exit" not in growth
    header = next(line for line in lines if line.split()[:2] == ["nodes", "code"])
    assert header.split()[2:] == ["imports", "load", "plan", "exit", "total"]


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instruction_stages_once_counts_each_stage_of_a_real_audit(tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    onnx.save(bench_match.synthetic_model(60), str(model))
    counts = bench_match.instruction_stages_once(model, "CPU")
    # One count per stage, in the order run, then the exit: the mark ended each stage.
    assert list(counts) == ["nodes", "imports", "spec and rules", "load", "normalize", "graph view", "plan", "JSON",
                            "exit"]
    assert counts["nodes"] > 50
    # Starting the interpreter and importing onnx, numpy and the package is most of a tiny model's audit.
    assert counts["imports"] > 1e9 and all(counts[stage] > 0 for stage in counts)
    assert counts["imports"] > max(counts[stage] for stage in counts if stage not in ("imports", "nodes"))
