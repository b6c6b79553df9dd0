"""The five built-in targets load and say what pot-facts.md says they should."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewriter.ir.ops import known_op_types
from rewriter.spec.loader import builtin_specs_dir, list_targets, load_spec, resolve_target, spec_to_dict

TARGETS = ["ANY", "CPU", "GNA", "GPU", "ORT", "VPU"]

# Ops every target treats as quantization-agnostic data movement.
DATA_MOVEMENT = ["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Split", "Slice", "Transpose", "Tile",
                 "Expand", "DepthToSpace", "SpaceToDepth", "Identity", "Dropout", "MaxPool", "ReduceMax"]


def spec(name: str):
    return load_spec(resolve_target(name))


def modes(configs) -> list[tuple[str, str, str]]:
    return [(c.name, c.mode, c.granularity) for c in configs]


@pytest.mark.parametrize("name", TARGETS)
def test_builtin_loads(name: str) -> None:
    loaded = spec(name)
    assert loaded.name == name
    assert loaded.description
    assert loaded.rules and all(Path(r).is_file() for r in loaded.rules)


@pytest.mark.parametrize("name", TARGETS)
def test_every_op_is_an_onnx_op(name: str) -> None:
    assert set(spec(name).ops) <= known_op_types()


@pytest.mark.parametrize("name", TARGETS)
def test_data_movement_is_agnostic(name: str) -> None:
    loaded = spec(name)
    for op_type in DATA_MOVEMENT:
        entry = loaded.op(op_type)
        assert entry is not None and entry.agnostic and not entry.quantizable, op_type
    assert loaded.op("Pad").pass_through == "non_const"
    assert loaded.op("CastLike").pass_through == "non_const"
    assert loaded.op("Concat").pass_through == "all"


def test_list_targets_sorted_with_descriptions() -> None:
    targets = list_targets()
    assert [name for name, _, _ in targets] == TARGETS
    assert all(path.parent == builtin_specs_dir() for _, path, _ in targets)
    assert all(desc for _, _, desc in targets)


def test_cpu_weighted_ops() -> None:
    cpu = spec("CPU")
    for op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
        entry = cpu.op(op_type)
        assert entry.ports == (0, 1)
        assert modes(entry.activations) == [("q8_a", "symmetric", "pertensor"), ("q8_a", "asymmetric", "pertensor")]
        assert modes(entry.weights) == [("q8_w_sym", "symmetric", "perchannel"),
                                        ("q8_w_asym", "asymmetric", "perchannel")]
    w_sym = cpu.configs["q8_w_sym"][0]
    assert (w_sym.level_low, w_sym.level_high, w_sym.signed) == (-127, 127, True)


def test_cpu_depthwise_variant() -> None:
    conv = spec("CPU").op("Conv")
    (depthwise,) = conv.variants
    assert depthwise.name == "depthwise"
    assert depthwise.when == "attr.group > 1 and shape(1)[1] == 1"
    assert modes(depthwise.activations) == [("q8_a_ch", "symmetric", "perchannel"),
                                            ("q8_a_ch", "asymmetric", "perchannel")]
    assert depthwise.weights == conv.weights  # not named by the variant: the op's own


def test_cpu_elementwise_take_every_input() -> None:
    cpu = spec("CPU")
    for op_type in ("Add", "Mul", "Sub", "Div", "Less", "LessOrEqual", "Greater", "GreaterOrEqual",
                    "Equal", "Mod", "And", "Or", "Xor", "Not"):
        entry = cpu.op(op_type)
        assert entry.quantizable and entry.ports is None, op_type
        assert entry.unified_scales is None, op_type
    assert cpu.op("NotEqual") is None


def test_cpu_input_only_ops() -> None:
    cpu = spec("CPU")
    for op_type in ("Pow", "LpNormalization", "ReduceMean", "Resize", "Upsample", "MeanVarianceNormalization"):
        assert cpu.op(op_type).ports == (0,), op_type
    assert cpu.op("AveragePool").quantizable and cpu.op("GlobalAveragePool").quantizable
    for op_type in ("LayerNormalization", "Softmax", "Sigmoid", "Relu"):
        assert cpu.op(op_type) is None, op_type


def test_cpu_max_min_are_agnostic_and_concat_unified() -> None:
    cpu = spec("CPU")
    for op_type in ("Max", "Min"):
        assert cpu.op(op_type).agnostic and cpu.op(op_type).pass_through == "first"
    assert cpu.op("Concat").unified_scales == "all"
    assert cpu.op("Gather").agnostic and cpu.op("Gather").pass_through == "first"


def test_cpu_recurrent_ports_mapped_to_onnx() -> None:
    cpu = spec("CPU")
    for op_type in ("LSTM", "GRU"):
        entry = cpu.op(op_type)
        assert entry.ports == (0, 1, 2, 5)
        assert entry.unified_scales == ((0, 5), (1, 2))
        assert modes(entry.weights) == [("q8_w_sym", "symmetric", "perchannel")]


def test_gpu_is_cpu_without_recurrent_ops() -> None:
    cpu, gpu = spec("CPU"), spec("GPU")
    assert gpu.extends == ("CPU",)
    assert gpu.op("LSTM") is None and gpu.op("GRU") is None
    assert list(gpu.ops) == [op for op in cpu.ops if op not in ("LSTM", "GRU")]
    assert all(gpu.ops[op] == cpu.ops[op] for op in gpu.ops)


def test_any_is_cpu() -> None:
    cpu, any_ = spec("CPU"), spec("ANY")
    assert any_.extends == ("CPU",)
    assert dict(any_.ops) == dict(cpu.ops)
    assert dict(any_.configs) == dict(cpu.configs)
    assert any_.rules == cpu.rules
    assert "portable" in any_.description.lower()


def test_vpu_configs() -> None:
    vpu = spec("VPU")
    assert {name: [(c.bits, c.mode, c.granularity, c.unified_zeropoint) for c in cs]
            for name, cs in vpu.configs.items()} == {
        "q8_tn": [(8, "asymmetric", "pertensor", False)],
        "q8_ch": [(8, "symmetric", "perchannel", False)],
        "q8_a_ch": [(8, "asymmetric", "perchannel", True)],
        "q4_tn": [(4, "symmetric", "pertensor", False)],
        "q4_ch": [(4, "symmetric", "perchannel", False)],
        "q2_ch": [(2, "symmetric", "perchannel", False)],
    }
    assert vpu.rules[0].endswith("vpu.rules")


def test_vpu_ops() -> None:
    vpu = spec("VPU")
    conv = vpu.op("Conv")
    assert [c.name for c in conv.activations] == ["q8_tn", "q4_tn"]
    assert [c.name for c in conv.weights] == ["q8_ch", "q4_ch", "q2_ch", "q8_a_ch"]
    assert [c.name for c in conv.variants[0].activations] == ["q8_ch"]
    for op_type in ("Add", "Mul", "Sub", "Div", "Less", "Equal", "Mod", "And", "Or", "Xor"):
        assert vpu.op(op_type).unified_scales == "all", op_type
    assert [c.name for c in vpu.op("AveragePool").activations] == ["q8_ch"]
    assert vpu.op("Concat").unified_scales is None
    for op_type in ("Gather", "LSTM", "GRU"):
        assert vpu.op(op_type) is None, op_type


def test_gna_sixteen_bit() -> None:
    gna = spec("GNA")
    conv = gna.op("Conv")
    assert [(c.name, c.bits) for c in conv.activations] == [("q16_a", 16)]
    assert [(c.name, c.bits) for c in conv.weights] == [("q16_w", 16)]
    assert [(c.name, c.bits) for c in conv.outputs] == [("q32_o", 32)]
    assert [c.name for c in gna.op("MatMul").weights] == ["q8_w", "q16_w"]
    assert gna.op("Sub").outputs == ()
    assert not gna.op("Conv").variants and gna.op("ConvTranspose") is None
    for op_type in ("Sigmoid", "Tanh", "Relu", "PRelu", "Clip"):
        entry = gna.op(op_type)
        assert [c.name for c in entry.activations] == ["q32_a"] and [c.name for c in entry.outputs] == ["q16_o"]
        assert entry.ports == (0,)
    assert gna.op("Concat").unified_scales is None
    assert gna.op("Gather") is None
    q32 = gna.configs["q32_a"][0]
    assert (q32.level_low, q32.level_high) == (-2 ** 31, 2 ** 31 - 1)


@pytest.mark.parametrize("name", TARGETS)
def test_spec_to_dict_is_json_and_stable(name: str) -> None:
    first = json.dumps(spec_to_dict(spec(name)), sort_keys=False)
    second = json.dumps(spec_to_dict(spec(name)), sort_keys=False)
    assert first == second
    data = json.loads(first)
    assert data["name"] == name
    assert list(data) == ["name", "path", "description", "extends", "rules", "activation_storage", "saturation_fix",
                          "configs", "ops"]
    assert data["activation_storage"] == "unsigned"


def test_spec_to_dict_content() -> None:
    data = spec_to_dict(spec("CPU"))
    assert data["ops"]["Conv"]["activations"] == ["q8_a(8b symmetric pertensor)", "q8_a(8b asymmetric pertensor)"]
    assert data["ops"]["Conv"]["variants"][0]["name"] == "depthwise"
    assert data["ops"]["LSTM"]["unified_scales"] == [[0, 5], [1, 2]]
    assert data["ops"]["Concat"]["unified_scales"] == "all"
    assert data["configs"]["q8_w_sym"] == [{"bits": 8, "mode": "symmetric", "granularity": "perchannel",
                                            "level_low": -127, "level_high": 127, "signed": True,
                                            "unified_zeropoint": False}]
