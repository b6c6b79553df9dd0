"""The original tool's config files load unchanged: the seed's example, aliases, sections, merging."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, SequenceNode

from rewriter.algorithms.minmax import RangeOptions
from rewriter.calibrate.aggregators import range_estimator_for
from rewriter.config import (AlgorithmConfig, LoadedConfig, PipelineSettings, QuantizerOverride,
                             load_config, merge_cli, preset_for_target, preset_notice)
from rewriter.config.jsonc import JsonReader
from rewriter.errors import UserErrors
from rewriter.match.planner import IgnoredOperation
from rewriter.pipeline import QuantizeOptions
from rewriter.spec.model import QuantizerConfig
from rewriter.tuning.accuracy_aware import AccuracyAwareSettings

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]
SEED_JSON, SEED_YAML = DATA / "seed_example.json", DATA / "seed_example.yaml"

QUANTILE = {"type": "quantile", "outlier_prob": 0.0001}


def minimal(params: str = "{}", compression: str = "", name: str = "DefaultQuantization") -> str:
    return f'{{"compression": {{{compression} "algorithms": [{{"name": "{name}", "params": {params}}}]}}}}'


# ---------------------------------------------------------------- the seed's example


def test_seed_example_loads_with_the_documented_values() -> None:
    cfg = load_config(SEED_JSON)
    assert (cfg.target, cfg.preset, cfg.subset_size, cfg.model_type) == (None, "mixed", 300, None)
    assert cfg.ignore_scope == () and cfg.ignore_ops == ()  # the template's <NODE_NAME> placeholders
    assert [w.message.split("'")[1] for w in cfg.warnings] == ["<NODE_NAME>", "<NODE_TYPE>"]
    assert cfg.ranges == RangeOptions("quantile", weights={"min": QUANTILE, "max": QUANTILE},
                                      activations={"min": {"aggregator": "mean", **QUANTILE},
                                                   "max": {"aggregator": "mean", **QUANTILE}})
    w, a = cfg.quantizers.weights, cfg.quantizers.activations
    assert (w.bits, w.mode, w.level_low, w.level_high, w.granularity) == (8, "symmetric", 0, 255, "perchannel")
    assert (a.bits, a.mode, a.level_low, a.level_high, a.granularity) == (8, "symmetric", None, None, "pertensor")
    assert [a.name for a in cfg.algorithms] == ["DefaultQuantization"]
    assert cfg.algorithms[0].params["use_layerwise_tuning"] is False
    assert cfg.pipeline == PipelineSettings(channel_alignment=True, bias_correction="fast", smoothing=0.8)


def test_seed_example_positions(tmp_path: Path) -> None:
    cfg = load_config(SEED_JSON)
    assert (cfg.algorithms[0].loc.line, cfg.algorithms[0].loc.column) == (12, 9)
    assert (cfg.quantizers.weights.loc.line, cfg.quantizers.activations.loc.line) == (34, 52)
    assert [(w.loc.line, w.loc.column) for w in cfg.warnings] == [(21, 21), (25, 33)]


def test_yaml_version_gives_the_same_config() -> None:
    as_json, as_yaml = load_config(SEED_JSON), load_config(SEED_YAML)
    assert as_json.option_fields() == as_yaml.option_fields()
    assert (as_json.algorithms, as_json.quantizers, as_json.pipeline) == \
           (as_yaml.algorithms, as_yaml.quantizers, as_yaml.pipeline)
    assert [n.message for n in as_json.unsupported] == [n.message for n in as_yaml.unsupported]


def test_seed_ranges_are_accepted_by_the_range_estimators() -> None:
    ranges = load_config(SEED_JSON).ranges
    weights = range_estimator_for("weight", "perchannel", "symmetric", ranges.estimator_preset, ranges.weights)
    acts = range_estimator_for("activation", "pertensor", "symmetric", ranges.estimator_preset, ranges.activations)
    assert (weights.min.estimator, weights.max.estimator, weights.max.outlier_prob) == ("quantile", "quantile", 1e-4)
    assert (acts.max.estimator, acts.max.aggregator, acts.min.estimator) == ("quantile", "mean", "quantile")


def _strip_comments(text: str) -> str:
    """Comments to spaces (newlines kept), outside strings: the JSON that ruamel.yaml can compose."""
    out, i, in_string = list(text), 0, False
    while i < len(text):
        c = text[i]
        if in_string:
            i += 2 if c == "\\" else 1
            in_string = c != '"'
            continue
        if c == '"':
            in_string = True
        elif text.startswith("//", i) or text.startswith("/*", i):
            end = text.find("\n", i) if text[i + 1] == "/" else text.find("*/", i) + 2
            for j in range(i, end):
                if out[j] != "\n":
                    out[j] = " "
            i = end
            continue
        i += 1
    return "".join(out)


def _marks(node) -> list[tuple[str, int, int]]:
    out = [(type(node).__name__, node.start_mark.line, node.start_mark.column)]
    if isinstance(node, MappingNode):
        for key, value in node.value:
            out += _marks(key) + _marks(value)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            out += _marks(item)
    return out


def test_json_positions_match_ruamel_on_the_comment_free_text() -> None:
    """Every key and value of the seed sits where ruamel.yaml (an independent reader) puts it."""
    text = SEED_JSON.read_text(encoding="utf-8")
    ours = _marks(JsonReader(text, "seed").document())
    theirs = _marks(YAML(typ="rt").compose(_strip_comments(text)))
    assert len(ours) > 80 and ours == theirs


# ---------------------------------------------------------------- presets and targets


@pytest.mark.parametrize("written, device, expected", [
    ("symmetric", "CPU", "performance"), ("asymmetric", "CPU", "mixed"), ("accuracy", "ANY", "mixed"),
    ("accuracy", "GPU", "mixed"), ("accuracy", None, "mixed"), ("mixed", "GNA", "accuracy"),
    ("accuracy", "VPU", "accuracy"), ("accuracy", "ORT", "accuracy"), ("mixed", "CPU", "mixed"),
])
def test_preset_aliases_and_device_renames(written: str, device: str | None, expected: str) -> None:
    assert preset_for_target(written, device) == expected


def test_target_device_names_stand_ins_and_spec_paths(write_config) -> None:
    cfg = load_config(write_config(minimal('{"preset": "accuracy"}', '"target_device": "CPU_SPR",')))
    assert (cfg.target, cfg.preset, cfg.preset_written) == ("CPU", "mixed", "accuracy")
    assert [w.message[:40] for w in cfg.warnings] == ["target_device CPU_SPR has no spec here; "]
    # The preset rename is said once the target is known (the command line may change it).
    renamed = preset_notice(cfg, {}, merge_cli(cfg, {}))
    assert renamed is not None and renamed.message == "preset 'accuracy' runs as 'mixed' on CPU_SPR, as in the " \
                                                      "original tool"
    assert load_config(write_config(minimal(compression='"target_device": "ort",'))).target == "ORT"
    assert load_config(write_config(minimal(compression='"target_device": "VPU",'))).target == "VPU"
    spec = write_config("name: MINE\nextends: cpu\n", "mine.yaml")
    cfg = load_config(write_config(minimal(compression='"target_device": "mine.yaml",')))
    assert Path(cfg.target).resolve() == spec.resolve()


@pytest.mark.parametrize("written, expected", [('"None"', None), ("null", None), ('"Transformer"', "transformer")])
def test_model_type(write_config, written: str, expected: str | None) -> None:
    assert load_config(write_config(minimal(compression=f'"model_type": {written},'))).model_type == expected


# ---------------------------------------------------------------- sections and algorithms


def test_model_engine_and_optimizer_sections(write_config, tmp_path: Path) -> None:
    (tmp_path / "calib").mkdir()
    path = write_config("""
        {
          "model": {"model_name": "m", "model": "m.xml", "weights": "m.bin"},
          "engine": {"type": "simplified", "data_source": "calib", "device": "CPU"},
          "optimizer": {"name": "Tpe", "params": {"max_trials": 10, "trials_load_method": "cold_start",
                                                   "benchmark": {"nthreads": 4}}},
          "compression": {"algorithms": [{"name": "MinMaxQuantization"}]}
        }""")
    cfg = load_config(path)
    assert Path(cfg.data_source) == tmp_path / "calib"  # not in the working directory: beside the file
    assert [n.message[:25] for n in cfg.unsupported] == ["the 'optimizer' section ("]
    assert cfg.pipeline == PipelineSettings()


def test_algorithms_in_file_order_and_pipeline_settings(write_config) -> None:
    cfg = load_config(write_config("""
        {"compression": {"algorithms": [
            {"name": "ActivationChannelAlignment", "params": {"stat_subset_size": 100}},
            {"name": "MinMaxQuantization", "params": {"preset": "performance", "saturation_fix": "no",
                                                      "stat_batch_size": 4, "seed": 3}},
            {"name": "BiasCorrection", "params": {"threshold": 500, "apply_for_all_nodes": true}},
        ]}}"""))
    assert [a.name for a in cfg.algorithms] == ["ActivationChannelAlignment", "MinMaxQuantization", "BiasCorrection"]
    assert cfg.algorithms[0].params == {"stat_subset_size": 100}
    assert cfg.algorithms[2].where == "compression.algorithms[2]"
    assert (cfg.subset_size, cfg.batch_size, cfg.seed) == (None, 4, 3)  # MinMax's own, not ACA's
    assert cfg.pipeline == PipelineSettings(channel_alignment=True, bias_correction="full", bias_threshold=500.0,
                                            bias_apply_for_all_nodes=True, saturation_fix="no")


def test_default_quantization_switches(write_config) -> None:
    cfg = load_config(write_config(minimal(
        '{"use_fast_bias": false, "use_layerwise_tuning": true, "threshold": 3, "saturation_fix": "all",'
        ' "shuffle_data": false, "inplace_statistics": true, "num_samples_for_tuning": 50}')))
    assert cfg.pipeline == PipelineSettings(channel_alignment=True, bias_correction="full", bias_threshold=3.0,
                                            layerwise_tuning=True, saturation_fix="all", smoothing=0.8)
    said = " | ".join(n.message for n in cfg.unsupported)
    assert "saturation_fix" not in said and "shuffle_data: false is not honoured" in said


def test_accuracy_aware_takes_its_base_algorithm_params(write_config) -> None:
    cfg = load_config(write_config(minimal(
        '{"base_algorithm": "MinMaxQuantization", "preset": "performance", "maximal_drop": 0.01,'
        ' "drop_type": "relative", "max_iter_num": 5, "tune_hyperparams": true, "metrics": '
        '[{"name": "accuracy", "baseline_value": 0.7}], "stat_subset_size": 30}', name="AccuracyAwareQuantization")))
    assert (cfg.preset, cfg.subset_size) == ("performance", 30)
    assert cfg.accuracy_aware == AccuracyAwareSettings(maximal_drop=0.01, drop_type="relative", max_iter_num=5,
                                                       base_algorithm="MinMaxQuantization", tune_hyperparams=True)
    # What it accepts but does not run is said, each at its key.
    assert [n.message.split(" is ")[0] for n in cfg.unsupported] == ["tune_hyperparams", "metrics"]
    assert cfg.pipeline == PipelineSettings()  # MinMax as base: no alignment, no bias correction


def test_tpe_settings_are_read_and_the_original_tools_other_algorithms_listed_not_run(write_config) -> None:
    cfg = load_config(write_config("""
        {"compression": {"algorithms": [
            {"name": "TunableQuantization", "params": {"outlier_prob_choices": [1e-3, 1e-4], "anything": 1}},
            {"name": "TPE", "params": {"max_trials": 200, "max_minutes": 10, "eval_subset_size": 2000}}]}}"""))
    assert (cfg.tpe.max_trials, cfg.tpe.max_minutes) == (200, 10)
    assert [n.message.split(" is ")[0] for n in cfg.unsupported] == ["TunableQuantization",
                                                                     "TPE's eval_subset_size"]
    assert cfg.algorithms[0].params["outlier_prob_choices"] == (1e-3, 1e-4)


def test_ignored_operations_map_openvino_names_and_check_attributes(write_config) -> None:
    cfg = load_config(write_config(minimal("""{"ignored": {"scope": ["stem_conv"], "operations": [
        {"type": "Convolution", "attributes": {"group": "1", "kernel_shape": [3, 3]}},
        {"type": "Multiply"}, {"type": "ReLU"}, {"type": "MatMul"}]}}""")))
    assert cfg.ignore_scope == ("stem_conv",)
    assert cfg.ignore_ops == (IgnoredOperation("Conv", (("group", 1), ("kernel_shape", [3, 3]))),
                              IgnoredOperation("Mul"), IgnoredOperation("Relu"), IgnoredOperation("MatMul"))


def test_ignored_operations_with_attributes_keep_only_matching_nodes_float(write_config) -> None:
    from rewriter.api import audit

    model = ROOT / "examples" / "tiny_cnn.onnx"
    plain = audit(model)
    ops = load_config(write_config(minimal("""{"ignored": {"operations": [
        {"type": "Convolution", "attributes": {"kernel_shape": [1, 1]}}]}}"""))).ignore_ops
    plan = audit(model, ignore_ops=ops)
    statuses = {n.node: n.status for n in plan.nodes}
    before = {n.node: n.status for n in plain.nodes}
    changed = {name for name in statuses if statuses[name] != before[name]}
    assert changed and all(statuses[name] == "ignored" for name in changed)
    import onnx
    kernels = {n.name: [a.ints for a in n.attribute if a.name == "kernel_shape"]
               for n in onnx.load(str(model)).graph.node if n.op_type == "Conv"}
    assert changed == {name for name, k in kernels.items() if k and list(k[0]) == [1, 1]}


def test_comments_trailing_commas_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('\ufeff/* head */ {"compression": {"algorithms": [{"name": "MinMaxQuantization", // x\n'
                    '"params": {"preset": "accuracy",},},],},}', encoding="utf-8")
    assert load_config(path).preset == "mixed"


# ---------------------------------------------------------------- overrides and merging


def test_quantizer_override_applies_to_the_spec_config() -> None:
    q8_w = QuantizerConfig("q8_w_sym", 8, "symmetric", "perchannel", -127, 127)
    q8_a = QuantizerConfig("q8_a", 8, "asymmetric", "pertensor")
    assert QuantizerOverride(mode="asymmetric").apply(q8_w, "weight").level_low is None
    assert QuantizerOverride(granularity="pertensor").apply(q8_w, "weight").level_low == -127
    assert QuantizerOverride(level_low=0, level_high=255).apply(q8_a, "activation") == q8_a  # 2^8 levels: default
    assert QuantizerOverride(level_low=-8, level_high=7).apply(q8_a, "activation").level_low == -8
    assert QuantizerOverride(bits=4, level_low=0, level_high=14).apply(q8_w, "weight").key[:5] == \
        (4, "symmetric", "perchannel", -7, 7)
    with pytest.raises(ValueError, match="do not fit in 4 bits"):
        QuantizerOverride(bits=4, level_low=0, level_high=255)


def test_merge_cli_command_line_beats_file_beats_defaults() -> None:
    cfg = load_config(SEED_JSON)
    opts = merge_cli(cfg, {"target": None, "preset": None, "subset_size": 16, "estimator_preset": None,
                           "ignore_scope": ("stem_conv",), "output_format": "fakequantize"})
    assert isinstance(opts, QuantizeOptions)
    # No target_device and no --target: FakeQuantize output gets the original tool's default device.
    assert (opts.target, opts.preset, opts.subset_size, opts.seed) == ("ANY", "mixed", 16, 0)
    assert opts.ranges == cfg.ranges and opts.output_format == "fakequantize"
    assert opts.ignore_scope == ("stem_conv",)
    assert merge_cli(cfg, {"preset": "accuracy"}).preset == "accuracy"  # the command line is not renamed
    quantile_off = merge_cli(cfg, {"estimator_preset": "default"}).ranges
    assert quantile_off.estimator_preset == "default" and quantile_off.activations == cfg.ranges.activations
    assert merge_cli(None, {}) == QuantizeOptions()


def test_the_default_target_is_the_one_for_the_output_format(write_config) -> None:
    """No --target and no target_device: QDQ output runs in onnxruntime (ORT), FakeQuantize in OpenVINO (ANY)."""
    assert QuantizeOptions().target == "ORT" and merge_cli(None, {"target": None}).target == "ORT"
    assert QuantizeOptions(output_format="fakequantize").target == "ANY"
    assert QuantizeOptions(target="CPU").target == "CPU"
    named = load_config(write_config(minimal('{"preset": "performance"}', '"target_device": "GPU",')))
    assert merge_cli(named, {"target": None}).target == "GPU"
    assert merge_cli(named, {"target": "CPU"}).target == "CPU"


def test_merge_cli_renames_the_file_preset_for_a_command_line_target(write_config) -> None:
    cfg = load_config(write_config(minimal('{"preset": "accuracy", "ignored": {"scope": ["a"]}}',
                                           '"target_device": "CPU",')))
    assert cfg.preset == "mixed"
    assert merge_cli(cfg, {"target": "VPU"}).preset == "accuracy"
    assert merge_cli(cfg, {"ignore_scope": ("b", "a")}).ignore_scope == ("a", "b")
    with pytest.raises(TypeError, match="not QuantizeOptions fields: colour"):
        merge_cli(cfg, {"colour": "red"})


def test_loaded_config_is_frozen() -> None:
    cfg = load_config(SEED_JSON)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.preset = "accuracy"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.algorithms[0].params["preset"] = "accuracy"  # type: ignore[index]
    assert isinstance(cfg, LoadedConfig) and isinstance(cfg.algorithms[0], AlgorithmConfig)
    assert re.match(r".*seed_example\.json$", cfg.path)


def test_a_spec_file_target_keeps_the_preset(write_config) -> None:
    write_config("name: MINE\nextends: cpu\n", "mine.yaml")
    cfg = load_config(write_config(minimal('{"preset": "accuracy"}', '"target_device": "mine.yaml",')))
    assert cfg.preset == "accuracy" and not cfg.warnings


def test_different_range_presets_per_role_are_reported(write_config) -> None:
    path = write_config("""
        {"compression": {"algorithms": [{"name": "MinMaxQuantization", "params": {
          "activations": {"range_estimator": {"preset": "quantile"}}}}]}}""")
    cfg = load_config(path)
    assert cfg.ranges == RangeOptions("quantile")
    [notice] = cfg.unsupported
    assert (notice.loc.line, notice.loc.column) == (2, 49)
    assert notice.message.startswith("the range_estimator presets of activations ('quantile') and weights "
                                     "('default') differ")
    params = '{"range_estimator": {"preset": "quantile", "max": {"clipping_value": 6}}}'
    same = load_config(write_config(minimal(params), "same.json"))
    assert same.ranges == RangeOptions("quantile", weights={"max": {"clipping_value": 6.0}},
                                       activations={"max": {"clipping_value": 6.0}})
    assert all("range_estimator" not in n.message for n in same.unsupported)


def test_activation_smoothing_is_on_in_default_quantization_and_asked_for_in_minmax(write_config) -> None:
    default = load_config(write_config(minimal()))
    assert default.pipeline.smoothing == 0.8 and default.option_fields()["smoothing"] == 0.8
    off = load_config(write_config(minimal('{"smoothing_alpha": 0}')))
    assert off.pipeline.smoothing is None and "smoothing" not in off.option_fields()
    minmax = load_config(write_config(minimal(name="MinMaxQuantization")))
    assert minmax.pipeline.smoothing is None
    asked = load_config(write_config(minimal('{"smoothing_alpha": 0.6}', name="MinMaxQuantization")))
    assert asked.pipeline.smoothing == 0.6


def test_smoothing_alpha_must_be_below_one(write_config) -> None:
    with pytest.raises(UserErrors, match="smoothing_alpha"):
        load_config(write_config(minimal('{"smoothing_alpha": 1.0}')))


@pytest.mark.parametrize("entry, at, needle", [
    ('{"type": "Convolution", "attributes": "x"}', "operations[0].attributes", "must map attribute names"),
    ('{"type": 7}', "operations[0].type", "must be a string"),
])
def test_an_ignored_operation_of_the_wrong_shape_is_a_located_error(write_config, entry: str, at: str,
                                                                    needle: str) -> None:
    # Found by the 30-minute config fuzz run: an attributes string was an AttributeError from inside the loader.
    with pytest.raises(UserErrors) as info:
        load_config(write_config(minimal('{"ignored": {"operations": [' + entry + ']}}')))
    (error,) = info.value.errors
    assert at in error.message and needle in error.message and "config.json:1:" in error.render()


@pytest.mark.parametrize("compression, top, at", [
    ("", ', "engine": {"data_source": "' + "d[" * 200 + '"}', "engine.data_source"),
    ("", ', "model": {"model": "' + "m" * 300 + '.onnx"}', "model.model"),
    ('"target_device": "' + "s" * 300 + '.yaml",', "", "compression.target_device"),
])
def test_a_path_the_file_system_cannot_look_up_is_a_located_error(write_config, compression: str, top: str,
                                                                 at: str) -> None:
    # Found by the 30-minute config fuzz run: a data_source name too long for the file system was an
    # OSError (ENAMETOOLONG) from inside pathlib, exit 1.
    text = minimal(compression=compression)
    with pytest.raises(UserErrors) as info:
        load_config(write_config(text[:-1] + top + "}"))
    (error,) = info.value.errors
    assert at in error.message and "cannot be looked up" in error.message and "config.json:1:" in error.render()
