"""Work bounded by the input's size: optional nodes capped, rule lookups by name, loaders read lazily."""
from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.cli import main
from rewriter.dsl import ast
from rewriter.dsl.check import MAX_OPTIONAL_NODES
from rewriter.dsl.parser import parse_rules
from rewriter.errors import UserError
from rewriter.match.matcher import compile_variants


def _chain_pattern(optional: int) -> str:
    names = ["head"] + [f"o{i}" for i in range(optional)] + ["tail"]
    lines = ["pattern long {", "    head : Conv"]
    lines += [f"    o{i} : Relu optional" for i in range(optional)]
    lines += ["    tail : Add", "    " + " -> ".join(names), "}", "rule r {", "    match long", "    ignore head", "}"]
    return "\n".join(lines) + "\n"


def test_a_pattern_with_too_many_optional_nodes_is_refused_at_its_ninth(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "long.rules"
    rules.write_text(_chain_pattern(30))
    assert main(["rules", "check", str(rules)]) == 2
    err = capsys.readouterr().err
    # The ninth optional node is declared on line 3 + 8 = 11.
    assert f"{rules}:{3 + MAX_OPTIONAL_NODES}:5" in err and "30 optional nodes" in err, err
    assert err.count("error:") == 1


def test_the_most_optional_nodes_allowed_still_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ruleset = parse_rules(_chain_pattern(MAX_OPTIONAL_NODES), "ok.rules")
    pattern = ruleset.pattern("long")
    assert pattern is not None and len(compile_variants(pattern)) == 2 ** MAX_OPTIONAL_NODES


def test_a_hand_built_pattern_with_too_many_optional_nodes_is_refused() -> None:
    nodes = (ast.PatternNode("head", ("Conv",)),) + tuple(
        ast.PatternNode(f"o{i}", ("Relu",), optional=True) for i in range(MAX_OPTIONAL_NODES + 1))
    names = [n.name for n in nodes]
    edges = tuple(ast.PatternEdge(a, b) for a, b in zip(names, names[1:]))
    with pytest.raises(UserError, match="optional nodes"):
        compile_variants(ast.Pattern("p", nodes, edges))


def test_pattern_lookup_returns_the_first_declaration() -> None:
    first = ast.Pattern("p", (ast.PatternNode("a", ("Conv",)),), ())
    second = ast.Pattern("p", (ast.PatternNode("b", ("Relu",)),), ())
    ruleset = ast.RuleSet((first, second), (), ())
    assert ruleset.pattern("p") is first and ruleset.pattern("q") is None


# ---------------------------------------------------------------- loaders that never end

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tiny_cnn.onnx"
ENDLESS = """
import itertools
import numpy as np

pulled = 0

def samples():
    global pulled
    for i in itertools.count():
        pulled += 1
        yield {"input": np.full((1, 3, 32, 32), i % 7, np.float32)}
"""


def _endless_loader(tmp_path: Path) -> str:
    loader = tmp_path / "endless.py"
    loader.write_text(ENDLESS)
    return f"{loader}:samples"


def test_an_endless_loader_with_a_subset_stops_at_the_subset(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["quantize", str(EXAMPLE), "-o", str(tmp_path / "out.onnx"), "--data", _endless_loader(tmp_path),
                 "--subset-size", "8", "--quiet", "--report", str(tmp_path / "report.json")])
    assert code == 0, capsys.readouterr().err
    import json

    assert json.loads((tmp_path / "report.json").read_text())["calibration"]["samples"] == 8


def test_an_endless_loader_without_a_subset_stops_at_the_stated_maximum(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The command line always has a subset (300 by default); the API can ask for every sample.
    from rewriter.calibrate import sources
    from rewriter.options import QuantizeOptions
    from rewriter.pipeline import quantize_file

    monkeypatch.setattr(sources, "MAX_UNSIZED_SAMPLES", 50)
    with pytest.raises(UserError, match="more than 50 samples without ending.*--subset-size"):
        quantize_file(EXAMPLE, tmp_path / "out.onnx", _endless_loader(tmp_path),
                      QuantizeOptions(subset_size=None, progress=False))
    assert not (tmp_path / "out.onnx").exists()


def test_a_short_generator_gives_all_its_samples_under_a_larger_subset(tmp_path: Path) -> None:
    import numpy as np

    from rewriter.calibrate.data import open_data
    from rewriter.calibrate.inputs import InputSpec

    spec = InputSpec("x", "float32", (1, 2))
    data = open_data(lambda: ({"x": np.full((1, 2), i, np.float32)} for i in range(3)), [spec])
    assert data.select(10, seed=0) == [0, 1, 2] and data.size == 3
