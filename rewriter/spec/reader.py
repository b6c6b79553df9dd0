"""Stage 1 of spec loading: read one spec file into an unresolved ``RawSpec``.

Every key, type and enum is checked here, with file:line:column, and named
configs are expanded (they reference nothing). What needs the other files of
an ``extends`` chain (config references, ``Op: null`` removals, cross-key
checks) is left to ``rewriter.spec.loader``, which is the public entry point.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rewriter.errors import SourceLoc
from rewriter.io_utils import cannot_look_up
from rewriter.ir.ops import closest_op_type, known_op_types
from rewriter.spec.model import MODEL_TYPES, PRESETS, SATURATION_FIX_MODES, PotNames, QuantizerConfig
from rewriter.spec.yaml_nodes import Problems, YamlFile

_TOP_KEYS = ("name", "description", "extends", "rules", "activation_storage", "saturation_fix", "model_types", "pot",
             "configs", "ops")
_POT_KEYS = ("preset_renames", "aliases")
ACTIVATION_STORAGE = ("unsigned", "signed")
_CONFIG_KEYS = ("bits", "mode", "granularity", "level_low", "level_high", "narrow_range", "signed",
                "unified_zeropoint")
CONFIG_LISTS = ("activations", "weights", "outputs")
_OP_KEYS = (*CONFIG_LISTS, "ports", "agnostic", "pass_through", "unified_scales", "variants", "note")
_VARIANT_KEYS = ("name", "when", *CONFIG_LISTS)
_MODES = ("symmetric", "asymmetric")
_GRANULARITIES = ("pertensor", "perchannel")
_PASS_THROUGH = ("first", "all", "non_const")
_MAX_BITS = 32

# People porting a POT hardware config write OpenVINO's op names; point them at ONNX's.
OPENVINO_OP_NAMES = {
    "Convolution": "Conv", "GroupConvolution": "Conv", "DepthWiseConvolution": "Conv",
    "ConvolutionBackpropData": "ConvTranspose", "GroupConvolutionBackpropData": "ConvTranspose",
    "Multiply": "Mul", "Subtract": "Sub", "Divide": "Div", "Maximum": "Max", "Minimum": "Min",
    "Power": "Pow", "FloorMod": "Mod", "LessEqual": "LessOrEqual", "GreaterEqual": "GreaterOrEqual",
    "LogicalAnd": "And", "LogicalOr": "Or", "LogicalXor": "Xor", "LogicalNot": "Not",
    "AvgPool": "AveragePool", "NormalizeL2": "LpNormalization", "Interpolate": "Resize",
    "MVN": "MeanVarianceNormalization", "LSTMSequence": "LSTM", "GRUSequence": "GRU",
    "StridedSlice": "Slice", "Crop": "Slice", "VariadicSplit": "Split", "Broadcast": "Expand",
    "ConvertLike": "CastLike", "Convert": "Cast", "Clamp": "Clip", "SoftSign": "Softsign",
}


# ---------------------------------------------------------------- what one file says, unresolved


@dataclass
class Ref:
    """A config name used by an op or variant, where it was written."""

    name: str
    loc: SourceLoc


@dataclass
class OpField:
    """One key of an op entry; ``value`` None means "reset to the default" (``key: null``)."""

    value: object
    loc: SourceLoc


@dataclass
class RawVariant:
    """One entry of an op's ``variants`` list."""

    name: str
    when: str
    when_loc: SourceLoc
    refs: dict[str, list[Ref]]  # only the config lists the variant names
    loc: SourceLoc


@dataclass
class RawOp:
    """One op entry; ``fields`` holds only the keys the file gives, so a child merges key by key."""

    op_type: str
    loc: SourceLoc
    fields: dict[str, OpField] = field(default_factory=dict)
    removed: bool = False


@dataclass
class RawConfig:
    """A named config, already expanded."""

    expansions: tuple[QuantizerConfig, ...] | None  # None: invalid, error already reported
    loc: SourceLoc


@dataclass
class RawSpec:
    """One spec file's content; ``rules`` are absolute paths, None when the file has no ``rules`` key.

    ``model_types`` holds the model types this file gives rule files for (absolute paths).
    """

    path: Path
    loc: SourceLoc
    name: str | None = None
    description: str = ""
    extends: tuple[str, SourceLoc] | None = None
    rules: list[str] | None = None
    model_types: dict[str, list[str]] = field(default_factory=dict)
    pot: PotNames | None = None
    activation_storage: tuple[str, SourceLoc] | None = None
    saturation_fix: tuple[str, SourceLoc] | None = None
    configs: dict[str, RawConfig] = field(default_factory=dict)
    ops: dict[str, RawOp] = field(default_factory=dict)


# ---------------------------------------------------------------- top level


def read_spec(path: Path, problems: Problems) -> RawSpec | None:
    """Read and check one spec file; None if it is not readable YAML (the error is recorded)."""
    f = YamlFile(path, problems)
    before = len(problems.items)
    root = f.compose()
    if root is None:
        if len(problems.items) == before:
            problems.add(SourceLoc(str(path), 1, 1), "the spec file is empty; it needs at least 'name'")
        return None
    spec = RawSpec(path=path, loc=f.loc(root))
    entries = f.pairs(root, "the spec", _TOP_KEYS, expected="a mapping with name, configs, ops, ...")
    for key, _key_node, value in entries:
        _TOP_READERS[key](f, spec, value)
    if isinstance(root, MappingNode) and "name" not in {key for key, _, _ in entries}:
        f.error(root, "missing required key 'name': every spec names its target, e.g. 'name: CPU'")
    return spec


def _read_name(f: YamlFile, spec: RawSpec, node: Node) -> None:
    name = f.get_str(node, "name")
    if name is not None and not name.strip():
        f.error(node, "name must not be empty")
    elif name is not None:
        spec.name = name


def _read_description(f: YamlFile, spec: RawSpec, node: Node) -> None:
    if not f.is_null(node):
        spec.description = f.get_str(node, "description") or ""


def _read_extends(f: YamlFile, spec: RawSpec, node: Node) -> None:
    target = f.get_path(node, "extends")
    if target is not None:
        spec.extends = (target, f.loc(node))


def _read_rules(f: YamlFile, spec: RawSpec, node: Node) -> None:
    spec.rules = _rule_files(f, node, "rules")


def _rule_files(f: YamlFile, node: Node, where: str) -> list[str] | None:
    """A list of rule files, relative to the spec file, as absolute paths (missing ones reported)."""
    items = f.get_list(node, where, f.get_path, "[../rules/cpu.rules]")
    if items is None:
        return None
    found = []
    for text, item in items:
        try:
            path = (f.path.parent / Path(text).expanduser()).resolve()
            is_file = path.is_file()
        except (OSError, RuntimeError) as exc:  # a name too long for the file system, a symlink loop
            f.error(item, f"rules file {cannot_look_up(text, exc)}; paths are relative to the spec file")
            continue
        if is_file:
            found.append(str(path))
        else:
            f.error(item, f"rules file '{text}' not found (looked for {path}); "
                          "paths are relative to the spec file")
    return found


def _read_model_types(f: YamlFile, spec: RawSpec, node: Node) -> None:
    for name, _key_node, value in f.pairs(node, "model_types", MODEL_TYPES,
                                          expected="a mapping of model types to rule files"):
        files = _rule_files(f, value, f"model_types.{name}")
        if files is not None:
            spec.model_types[name] = files


def _read_pot(f: YamlFile, spec: RawSpec, node: Node) -> None:
    spec.pot = read_pot_names(f, node)


def read_pot_names(f: YamlFile, node: Node) -> PotNames:
    """A ``pot`` section: ``preset_renames`` (preset -> preset) and ``aliases`` (device name -> what differs)."""
    entries = {key: value for key, _, value in f.pairs(node, "pot", _POT_KEYS,
                                                        expected="a mapping with preset_renames, aliases")}
    renames: dict[str, str] = {}
    if "preset_renames" in entries:
        for written, _key_node, value in f.pairs(entries["preset_renames"], "pot.preset_renames", PRESETS,
                                                expected="a mapping of preset to preset"):
            runs = f.get_enum(value, f"pot.preset_renames.{written}", PRESETS)
            if runs is not None:
                renames[written] = runs
    aliases: dict[str, str] = {}
    if "aliases" in entries:
        for device, _key_node, value in f.pairs(entries["aliases"], "pot.aliases",
                                                expected="a mapping of device names to what differs"):
            differs = f.get_str(value, f"pot.aliases.{device}")
            if differs is not None:
                aliases[device] = differs
    return PotNames(MappingProxyType(renames), MappingProxyType(aliases))


def _read_activation_storage(f: YamlFile, spec: RawSpec, node: Node) -> None:
    value = f.get_str(node, "activation_storage")
    if value is None:
        return
    if value not in ACTIVATION_STORAGE:
        f.error(node, f"activation_storage must be one of {', '.join(ACTIVATION_STORAGE)}, not '{value}'")
        return
    spec.activation_storage = (value, f.loc(node))


def _read_saturation_fix(f: YamlFile, spec: RawSpec, node: Node) -> None:
    mode = f.get_enum(node, "saturation_fix", SATURATION_FIX_MODES)
    if mode is not None:
        spec.saturation_fix = (mode, f.loc(node))


def _read_configs(f: YamlFile, spec: RawSpec, node: Node) -> None:
    for name, key_node, value in f.pairs(node, "configs", expected="a mapping of config names to configs"):
        spec.configs[name] = _read_config(f, name, key_node, value)


def _read_ops(f: YamlFile, spec: RawSpec, node: Node) -> None:
    for op_type, key_node, value in f.pairs(node, "ops", expected="a mapping of ONNX op types to entries"):
        op = _read_op(f, op_type, key_node, value)
        if op is not None:
            spec.ops[op_type] = op


_TOP_READERS: dict[str, Callable[[YamlFile, RawSpec, Node], None]] = {
    "name": _read_name, "description": _read_description, "extends": _read_extends,
    "rules": _read_rules, "activation_storage": _read_activation_storage, "model_types": _read_model_types,
    "saturation_fix": _read_saturation_fix, "pot": _read_pot, "configs": _read_configs, "ops": _read_ops,
}


# ---------------------------------------------------------------- named configs


def _read_config(f: YamlFile, name: str, key_node: Node, node: Node) -> RawConfig:
    """Validate one named config and expand its mode x granularity lists."""
    where = f"configs.{name}"
    before = len(f.problems.items)
    nodes = {key: value for key, _, value in f.pairs(node, where, _CONFIG_KEYS)}
    if not isinstance(node, MappingNode):
        return RawConfig(None, f.loc(key_node))
    for key, example in (("bits", "bits: 8"), ("mode", "mode: symmetric"), ("granularity", "granularity: pertensor")):
        if key not in nodes:
            f.error(key_node, f"config '{name}' needs '{key}' (e.g. {example})")

    def get(key: str, getter: Callable[[Node, str], object]) -> object:
        return getter(nodes[key], f"{where}.{key}") if key in nodes else None

    bits = get("bits", lambda n, w: _read_bits(f, n, w))
    modes = get("mode", lambda n, w: _read_choices(f, n, w, _MODES))
    grans = get("granularity", lambda n, w: _read_choices(f, n, w, _GRANULARITIES))
    low = get("level_low", f.get_int)
    high = get("level_high", f.get_int)
    narrow = get("narrow_range", f.get_bool)
    signed = get("signed", f.get_bool)
    unified_zp = get("unified_zeropoint", f.get_bool)
    if len(f.problems.items) != before:
        return RawConfig(None, f.loc(key_node))
    levels = _config_levels(f, where, nodes, bits, low, high, narrow, signed)  # type: ignore[arg-type]
    if levels is None:
        return RawConfig(None, f.loc(key_node))
    low, high, signed = levels
    loc = f.loc(key_node)
    expansions = tuple(
        QuantizerConfig(name=name, bits=bits, mode=mode, granularity=gran, level_low=low,  # type: ignore[arg-type]
                        level_high=high, signed=signed, unified_zeropoint=bool(unified_zp), loc=loc)
        # modes and grans are lists once no problem was recorded; get() types them as object.
        for mode in modes for gran in grans)  # type: ignore[attr-defined]
    return RawConfig(expansions, loc)


def _read_bits(f: YamlFile, node: Node, where: str) -> int | None:
    bits = f.get_int(node, where)
    if bits is not None and not 2 <= bits <= _MAX_BITS:
        f.error(node, f"{where} must be between 2 and {_MAX_BITS}, got {bits}")
        return None
    return bits


def _read_choices(f: YamlFile, node: Node, where: str, choices: tuple[str, ...]) -> list[str] | None:
    """One choice or a non-empty list of distinct choices (listed order = priority)."""
    if not isinstance(node, SequenceNode):
        one = f.get_enum(node, where, choices)
        return None if one is None else [one]
    items = f.get_list(node, where, lambda n, w: f.get_enum(n, w, choices), f"[{', '.join(choices)}]")
    if items is None or len(items) != len(node.value):
        return None
    if not items:
        f.error(node, f"{where} must not be an empty list")
        return None
    values = [value for value, _ in items]
    for i, (value, item) in enumerate(items):
        if value in values[:i]:
            f.error(item, f"{where} lists '{value}' twice; remove the repeat")
            return None
    return values


def _config_levels(f: YamlFile, where: str, nodes: dict[str, Node], bits: int, low: int | None,
                   high: int | None, narrow: bool | None, signed: bool | None
                   ) -> tuple[int | None, int | None, bool | None] | None:
    """Check level_low/level_high/narrow_range/signed together; None if inconsistent."""
    if (low is None) != (high is None):
        given, missing = ("level_low", "level_high") if low is not None else ("level_high", "level_low")
        f.error(nodes[given], f"{where}.{given} is given without {missing}; give both, or neither")
        return None
    if narrow and low is not None:
        f.error(nodes["narrow_range"], f"{where}.narrow_range sets level_low and level_high itself; "
                                       "remove narrow_range or the levels")
        return None
    if narrow:
        low, high = -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    if low is None or high is None:
        return None, None, signed
    if low >= high:
        f.error(nodes["level_low"], f"{where}.level_low ({low}) must be below level_high ({high})")
        return None
    if high - low + 1 > 2 ** bits:
        f.error(nodes["level_high"], f"{where}: levels {low}..{high} are {high - low + 1} values; "
                                     f"{bits} bits hold at most {2 ** bits}")
        return None
    # As the original tool did: a config whose range goes below zero is signed.
    if signed is not None and signed != (low < 0):
        f.error(nodes["signed"], f"{where}.signed is {str(signed).lower()} but the levels {low}..{high} "
                                 f"are {'signed' if low < 0 else 'unsigned'}; remove 'signed' or fix the levels")
        return None
    return low, high, low < 0


# ---------------------------------------------------------------- op entries


def _read_op(f: YamlFile, op_type: str, key_node: Node, node: Node) -> RawOp | None:
    if not _check_op_type(f, op_type, key_node):
        return None
    op = RawOp(op_type, f.loc(key_node))
    if f.is_null(node):
        op.removed = True
        return op
    where = f"ops.{op_type}"
    expected = "a mapping of activations, weights, ... (or null to remove an inherited entry)"
    for key, k_node, value in f.pairs(node, where, _OP_KEYS, expected=expected):
        if f.is_null(value):
            op.fields[key] = OpField(None, f.loc(k_node))
            continue
        parsed = _OP_FIELD_READERS[key](f, value, f"{where}.{key}")
        if parsed is not None:
            op.fields[key] = OpField(parsed, f.loc(k_node))
    return op


def _check_op_type(f: YamlFile, op_type: str, key_node: Node) -> bool:
    if op_type in known_op_types():
        return True
    if op_type == "NotEqual":
        hint = "; ONNX writes it as Not(Equal): give Equal and Not entries instead"
    elif op_type in OPENVINO_OP_NAMES:
        onnx_name = OPENVINO_OP_NAMES[op_type]
        hint = f"; did you mean '{onnx_name}'? (OpenVINO's {op_type} is ONNX's {onnx_name})"
    else:
        close = closest_op_type(op_type)
        hint = f"; did you mean '{close}'?" if close else ""
    f.error(key_node, f"unknown op type '{op_type}' in ops: ONNX defines no such operator{hint}")
    return False


def _read_refs(f: YamlFile, node: Node, where: str) -> list[Ref] | None:
    items = f.get_list(node, where, f.get_str, "[q8_a]")
    if items is None:
        return None
    refs: list[Ref] = []
    for name, item in items:
        if any(r.name == name for r in refs):
            f.error(item, f"{where} lists '{name}' twice; a config counts once, at its first position")
            continue
        refs.append(Ref(name, f.loc(item)))
    return refs


def _read_ports(f: YamlFile, node: Node, where: str) -> tuple[int, ...] | None:
    items = f.get_list(node, where, lambda n, w: f.get_int(n, w, minimum=0), "[0, 1]")
    if items is None:
        return None
    ports: list[int] = []
    for port, item in items:
        if port in ports:
            f.error(item, f"{where} lists input {port} twice")
        else:
            ports.append(port)
    return tuple(ports)


def _read_unified(f: YamlFile, node: Node, where: str) -> str | tuple[tuple[int, ...], ...] | None:
    """``all`` or a list of input groups such as ``[[0, 5], [1, 2]]``."""
    example = "'all' or a list of input groups, e.g. [[0, 5], [1, 2]]"
    if isinstance(node, ScalarNode):
        if f.value(node) == "all":
            return "all"
        f.error(node, f"{where} must be {example}; got {f.kind(node)}")
        return None
    groups = f.get_list(node, where, lambda n, w: _read_group(f, n, w), "[[0, 5], [1, 2]]")
    if groups is None:
        return None
    used: set[int] = set()
    for group, item in groups:
        if used & set(group):
            f.error(item, f"{where}: input {min(used & set(group))} is in two groups; merge them")
        used |= set(group)
    return tuple(group for group, _ in groups)


def _read_group(f: YamlFile, node: Node, where: str) -> tuple[int, ...] | None:
    ports = _read_ports(f, node, where)
    if ports is not None and len(ports) < 2:
        f.error(node, f"{where} must name at least two inputs to share a scale")
        return None
    return ports


def _read_variants(f: YamlFile, node: Node, where: str) -> list[RawVariant] | None:
    items = f.get_list(node, where, lambda n, w: _read_variant(f, n, w),
                       "[{name: depthwise, when: \"attr.group > 1\", activations: [q8_a_ch]}]")
    if items is None:
        return None
    variants: list[RawVariant] = []
    for variant, _item in items:
        if any(v.name == variant.name for v in variants):
            f.problems.add(variant.loc, f"{where}: two variants are named '{variant.name}'; rename one")
            continue
        variants.append(variant)
    return variants


def _read_variant(f: YamlFile, node: Node, where: str) -> RawVariant | None:
    before = len(f.problems.items)
    nodes = {key: value for key, _, value in f.pairs(node, where, _VARIANT_KEYS)}
    if not isinstance(node, MappingNode):
        return None
    for key in ("name", "when"):
        if key not in nodes:
            f.error(node, f"{where} needs '{key}'")
    name = f.get_str(nodes["name"], f"{where}.name") if "name" in nodes else None
    when = f.get_str(nodes["when"], f"{where}.when") if "when" in nodes else None
    refs: dict[str, list[Ref]] = {}
    for key in CONFIG_LISTS:
        if key in nodes:
            got = [] if f.is_null(nodes[key]) else _read_refs(f, nodes[key], f"{where}.{key}")
            if got is not None:
                refs[key] = got
    if not any(key in nodes for key in CONFIG_LISTS):
        f.error(node, f"{where} changes nothing; give activations, weights or outputs")
    if len(f.problems.items) != before or name is None or when is None:
        return None
    return RawVariant(name, when, f.content_loc(nodes["when"]), refs, f.loc(node))


_OP_FIELD_READERS: dict[str, Callable[[YamlFile, Node, str], object]] = {
    "activations": _read_refs, "weights": _read_refs, "outputs": _read_refs,
    "ports": _read_ports,
    "agnostic": lambda f, n, w: f.get_bool(n, w),
    "pass_through": lambda f, n, w: f.get_enum(n, w, _PASS_THROUGH),
    "unified_scales": _read_unified,
    "variants": _read_variants,
    "note": lambda f, n, w: f.get_str(n, w),
}
