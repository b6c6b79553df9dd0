"""Every mistake in a config file is reported, all at once, with file:line:column, its path and a fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.config import load_config
from rewriter.errors import UserError, UserErrors

DATA = Path(__file__).parent / "data"


def errors(path: Path) -> list[tuple[int, int, str]]:
    with pytest.raises(UserErrors) as info:
        load_config(path)
    assert all(e.loc and e.loc.file == str(path) for e in info.value.errors)
    return [(e.loc.line, e.loc.column, e.message) for e in info.value.errors]


def only(path: Path) -> tuple[int, int, str]:
    found = errors(path)
    assert len(found) == 1, found
    return found[0]


P = "compression.algorithms[1].params"

MANY_JSON = [
    (2, 3, "unknown key 'compresion' in the top level; did you mean 'compression'?"),
    (4, 22, "unknown compression.target_device 'CPX'; did you mean 'CPU'?"),
    (5, 19, 'compression.model_type must be null, "None" or "transformer", got \'transformers\'; '
            "did you mean 'transformer'?"),
    (8, 17, "unknown algorithm 'DefaultQuantisation' in compression.algorithms[0].name; "
            "did you mean 'DefaultQuantization'?"),
    (13, 21, f"{P}.preset must be one of performance, mixed, accuracy, symmetric, asymmetric, got 'fast'"),
    (14, 31, f"{P}.stat_subset_size must be an integer, got the string '300'"),
    (15, 11, f"duplicate key 'stat_subset_size' in {P} (first given at line 14); remove one of them"),
    (17, 21, f"{P}.weights.bits must be at least 2, got 1"),
    (18, 26, f"{P}.weights: level_low (10) must be below level_high (5)"),
    (20, 41, f"unknown key 'outlier_porb' in {P}.weights.range_estimator.max; did you mean 'outlier_prob'?"),
    (20, 70, f"{P}.weights.range_estimator.max.type must be one of min, max, abs_max, quantile, abs_quantile, "
             "got 'abs'; did you mean 'abs_max'?"),
    (20, 86, f"unknown key 'aggregator' in {P}.weights.range_estimator.min; only the activations' range "
             "estimators take an aggregator"),
    (22, 42, f"{P}.activations.granularity must be one of pertensor, perchannel, got 'perchanel'; "
             "did you mean 'perchannel'?"),
    (22, 97, f"{P}.activations.range_estimator.max.aggregator must be one of mean, max, min, median, "
             "mean_no_outliers, median_no_outliers, hl_estimator, got 'avg'"),
    (22, 120, f"{P}.activations.range_estimator.max.outlier_prob must be in [0, 0.5), got 0.7"),
    (23, 47, f"unknown operation type 'Convolutoin' in {P}.ignored.operations[0].type (OpenVINO or ONNX names); "
             "did you mean 'Convolution'?"),
    (23, 102, f"unknown attribute 'pads_begin' in {P}.ignored.operations[1].attributes.pads_begin: ONNX operation "
              "Conv (Convolution in OpenVINO) has no such attribute; Conv has: auto_pad, dilations, group, "
              "kernel_shape, pads, strides"),
    (23, 167, f"{P}.ignored.operations[2].attributes.group must be an int (attribute 'group' of Conv), got 'x'"),
    (23, 174, f"{P}.ignored.operations[3] needs 'type'"),
    (24, 24, f"{P}.threshold must be greater than 0, got -1"),
    (25, 28, f"{P}.use_fast_bias must be true or false, got the string 'yes'"),
    (26, 11, f"unknown key 'target_device' in {P}; it belongs in compression"),
    (29, 7, "a second quantization algorithm (MinMaxQuantization); a file quantizes once, "
            "with DefaultQuantization here"),
]


def test_every_json_error_at_once_with_its_position() -> None:
    assert errors(DATA / "many_errors.json") == MANY_JSON


def test_yaml_errors_and_duplicate_keys() -> None:
    w = "compression.algorithms[0].params"
    assert errors(DATA / "many_errors.yaml") == [
        (4, 3, "duplicate key 'target_device' in compression (first given at line 3); remove one of them"),
        (10, 17, f"{w}.weights.bits must be an integer, got the string 'eight'"),
        (11, 24, f"{w}.weights.granularity must be one of pertensor, perchannel, got 'per_channel'; "
                 "did you mean 'perchannel'?"),
        (14, 35, f"unknown key 'outlier_porb' in {w}.activations.range_estimator.min; did you mean 'outlier_prob'?"),
        (16, 18, f"{w}.ignored.scope must be a list, e.g. [\"conv1\"]; got the string 'main_conv'"),
        (17, 13, "unknown algorithm 'FastBiasCorection' in compression.algorithms[1].name; "
                 "did you mean 'FastBiasCorrection'?"),
        (18, 7, "compression.algorithms[2] needs 'name', e.g. \"DefaultQuantization\""),
        (20, 16, "engine.data_source must be a string (a folder), got 42"),
    ]


def test_each_error_shows_its_source_line_with_a_caret() -> None:
    with pytest.raises(UserErrors) as info:
        load_config(DATA / "many_errors.json")
    first = info.value.errors[0].render().splitlines()
    assert first == [f"{DATA / 'many_errors.json'}:2:3: unknown key 'compresion' in the top level; "
                     "did you mean 'compression'?",
                     '      "compresion": {},',
                     "      ^"]


@pytest.mark.parametrize("text, line, column, message", [
    ('{\n  "compression": {\n    "target_device": "CPU"\n    "algorithms": []\n  }\n}\n', 3, 27,
     "missing ',' after the value of 'target_device'"),
    ('{"compression": {"algorithms": [\n  "name": "DefaultQuantization"\n]}}', 2, 9,
     "expected ',' or ']' after an item of 'algorithms', got ':'; a key inside a list: is the '{' of an object "
     "missing?"),
    ('"compression": {"algorithms": []}', 1, 14, "a config file is one JSON object: wrap its content in { }"),
    ('{\n  "compression": {\n    "algorithms": [{"name": "DefaultQuantization"}]\n}\n', 1, 1,
     "this '{' is never closed (the file ends at line 5)"),
    ('{compression: {}}', 1, 2, 'keys must be in double quotes: write "compression"'),
    ("{'compression': {}}", 1, 2, "JSON strings use double quotes"),
    ('{"compression": {"dump_intermediate_model": True}}', 1, 45, "JSON writes True as true"),
    ('{"compression": {"dump_intermediate_model": tru}}', 1, 45, "unexpected word 'tru'; strings need double quotes"),
    ('{"compression": }', 1, 17, "expected a value for 'compression', got '}'"),
    ('{"compression": {} /* open', 1, 20, "this /* comment is never closed"),
    ('{"compression": "abc\n}', 1, 17, "this string is never closed (a string must end on its own line)"),
    ('{"a": 01}', 1, 7, "'01' is not a JSON number"),
    ('{"a": "C\\qU"}', 1, 9, "invalid escape '\\q' in a string"),
    ('{"a": [1,, 2]}', 1, 10, "expected a value for an item of 'a', got ','"),
    ('{"compression": {}}}', 1, 20, "unexpected '}' after the end of the document"),
])
def test_json_syntax_errors(write_config, text: str, line: int, column: int, message: str) -> None:
    path = write_config(text)
    got = only(path)
    assert got == (line, column, f"JSON syntax error: {message}")


def test_json_syntax_error_has_a_caret_under_the_column(write_config) -> None:
    path = write_config('{\n  "compression": {\n    "target_device": "CPU"\n    "algorithms": []\n  }\n}\n')
    with pytest.raises(UserErrors) as info:
        load_config(path)
    assert info.value.errors[0].context == "        \"target_device\": \"CPU\"\n" + " " * (4 + 26) + "^"


def test_yaml_syntax_error(write_config) -> None:
    path = write_config("compression:\n  algorithms: [\n  - name: x\n", "c.yaml")
    line, column, message = only(path)
    assert (line, column) == (3, 3) and message.startswith("YAML syntax error: ")


@pytest.mark.parametrize("text, line, column, message", [
    ("", 1, 1, "the config file is empty; it needs a 'compression' section"),
    ('{"model": {}}', 1, 1, "the config file has no 'compression' section; it needs at least "
                            '"compression": {"algorithms": [{"name": "DefaultQuantization"}]}'),
    ('{"compression": {"algorithms": []}}', 1, 32, "compression.algorithms is empty; give at least one, "
                                                   'e.g. {"name": "DefaultQuantization"}'),
    ('{"compression": {"target_device": "CPU"}}', 1, 17,
     'compression needs \'algorithms\', e.g. [{"name": "DefaultQuantization"}]'),
    ('{"compression": {"algorithms": {"name": "MinMaxQuantization"}}}', 1, 32,
     "compression.algorithms must be a list, got a mapping"),
    ('{"compression": {"algorithms": ["MinMaxQuantization"]}}', 1, 33,
     "compression.algorithms[0] must be an object with 'name' and 'params', got the string 'MinMaxQuantization'"),
    ('{"compression": {"target_device": "GNA9", "algorithms": [{"name": "MinMaxQuantization"}]}}', 1, 35,
     "unknown compression.target_device 'GNA9'; did you mean 'GNA'?"),
    ('{"compression": {"target_device": "chips/x.yaml", "algorithms": [{"name": "MinMaxQuantization"}]}}', 1, 35,
     "compression.target_device: spec file 'chips/x.yaml' not found"),
    ('{"compression": {"algorithms": [{"name": "MinMaxQuantization", "parmas": {}}]}}', 1, 64,
     "unknown key 'parmas' in compression.algorithms[0]; did you mean 'params'?"),
    ('{"compression": {"algorithms": [{"name": "MinMaxQuantization", "params": {"weights": {"level_low": -8}}}]}}',
     1, 100, "compression.algorithms[0].params.weights: give both level_low and level_high, or neither"),
    ('{"compression": {"algorithms": [{"name": "MinMaxQuantization", "params": {"weights": '
     '{"bits": 4, "level_low": 0, "level_high": 255}}}]}}', 1, 111,
     "compression.algorithms[0].params.weights: levels 0..255 do not fit in 4 bits"),
    ('{"compression": {"algorithms": [{"name": "TPE", "params": {"trials": 5}}]}}', 1, 60,
     "unknown key 'trials' in compression.algorithms[0].params; did you mean 'max_trials'?"),
    ('{"compression": {"algorithms": [{"name": "AccuracyAwareQuantization", "params": {"drop_type": "percent"}}]}}',
     1, 95, "compression.algorithms[0].params.drop_type must be one of absolute, relative, got 'percent'"),
    ('{"optimizer": {"name": "Hyperopt"}, "compression": {"algorithms": [{"name": "MinMaxQuantization"}]}}',
     1, 24, "optimizer.name must be one of Tpe, TPE, got 'Hyperopt'"),
])
def test_structure_and_value_errors(write_config, text: str, line: int, column: int, message: str) -> None:
    assert only(write_config(text)) == (line, column, message)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config file '.*nope.json' not found"):
        load_config(tmp_path / "nope.json")
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"compression": "\xe9"}')
    with pytest.raises(UserError, match="latin1.json:1:18: byte 0xE9 is not UTF-8 text"):
        load_config(bad)
