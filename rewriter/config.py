"""The original tool's configuration file (JSON with comments, or YAML), read as it is.

``load_config(path)`` reads a POT-style file, checks every key and value
against the schema below (collecting all errors, each with file:line:column,
the key's path in the file and the closest valid key), and returns a frozen
``LoadedConfig``: the ``QuantizeOptions`` fields the file sets, the
algorithms in file order with their parameters, the weights/activations
quantizer overrides, the pipeline settings (bias correction, channel
alignment, layer-wise tuning) and what the file asks for that this version
does not run (``unsupported``, printed as warnings by the CLI).

``merge_cli(loaded, overrides)`` builds ``QuantizeOptions``: a command-line
value (not None) beats the file, the file beats the defaults.

Positions: JSON is read by a small parser here (comments and trailing commas
allowed) that builds the same ruamel.yaml node tree as a YAML file, so both
formats go through the same checks (``rewriter.spec.yaml_nodes``) and every
key and value keeps its exact line and column in the original text.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "c.json").write_text('''{ "compression": { // comments are fine
    ...   "target_device": "CPU",
    ...   "algorithms": [{"name": "DefaultQuantization",
    ...                   "params": {"preset": "accuracy", "stat_subset_size": 64,},}]}}''')
    >>> cfg = load_config(folder / "c.json")
    >>> cfg.target, cfg.preset, cfg.subset_size   # accuracy runs as mixed on CPU, as in the original tool
    ('CPU', 'mixed', 64)
    >>> merge_cli(cfg, {"preset": "performance"}).preset
    'performance'

The format and what differs from the original tool: docs/config.md.
"""
from __future__ import annotations

import bisect
import dataclasses
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ruamel.yaml.error import MarkedYAMLError, StreamMark
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rewriter.algorithms.minmax import RangeOptions
from rewriter.algorithms.smoothing import DEFAULT_ALPHA as DEFAULT_SMOOTHING
from rewriter.calibrate.aggregators import AGGREGATORS
from rewriter.calibrate.estimators import ESTIMATORS
from rewriter.errors import SourceLoc, UserError, source_excerpt
from rewriter.match.planner import IgnoredOperation
from rewriter.spec.model import QuantizerConfig
from rewriter.spec.yaml_nodes import Problems, YamlFile, suggest

__all__ = [
    "AlgorithmConfig", "LoadedConfig", "Notice", "PipelineSettings", "QuantizerOverride", "QuantizerOverrides",
    "ALGORITHMS", "NOT_RUN_YET", "load_config", "merge_cli", "preset_for_target",
]

# ====================================================================== results


@dataclass(frozen=True)
class Notice:
    """Something the user should read: a warning or a feature this version does not run."""

    loc: SourceLoc
    message: str

    def render(self) -> str:
        return f"{self.loc}: {self.message}"


@dataclass(frozen=True)
class AlgorithmConfig:
    """One entry of ``compression.algorithms``: its name and params as written (validated, read-only)."""

    name: str
    params: Mapping[str, Any]
    loc: SourceLoc = field(default=SourceLoc("<config>"), compare=False)
    where: str = field(default="", compare=False)  # its path in the file, "compression.algorithms[0]"


_MODES = ("symmetric", "asymmetric")
_GRANULARITIES = ("pertensor", "perchannel")


@dataclass(frozen=True)
class QuantizerOverride:
    """The ``weights`` or ``activations`` section's quantizer fields: None = keep the hardware spec's.

    The original tool let these replace what its hardware config chose; the
    pipeline applies them with ``apply`` to the config the preset picked.
    """

    bits: int | None = None
    mode: str | None = None
    granularity: str | None = None
    level_low: int | None = None
    level_high: int | None = None
    loc: SourceLoc | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.bits is not None and not 2 <= self.bits <= 32:
            raise ValueError(f"bits must be between 2 and 32, got {self.bits}")
        if self.mode not in (None, *_MODES):
            raise ValueError(f"mode must be symmetric or asymmetric, got {self.mode!r}")
        if self.granularity not in (None, *_GRANULARITIES):
            raise ValueError(f"granularity must be pertensor or perchannel, got {self.granularity!r}")
        if (self.level_low is None) != (self.level_high is None):
            raise ValueError("give both level_low and level_high, or neither")
        if self.level_low is not None:
            if self.level_low >= self.level_high:  # type: ignore[operator]
                raise ValueError(f"level_low ({self.level_low}) must be below level_high ({self.level_high})")
            if self.bits is not None and self.level_high - self.level_low >= 2 ** self.bits:  # type: ignore[operator]
                raise ValueError(f"levels {self.level_low}..{self.level_high} do not fit in {self.bits} bits")

    def is_empty(self) -> bool:
        return all(getattr(self, f) is None for f in ("bits", "mode", "granularity", "level_low", "level_high"))

    def apply(self, config: QuantizerConfig, role: str) -> QuantizerConfig:
        """``config`` (of a ``role`` "weight" or "activation" quantizer) with the given fields replaced.

        In the original tool ``level_low``/``level_high`` only set the number
        of levels (high - low + 1); mode and data place the range. So: a
        negative ``level_low`` is a signed grid, taken as written; otherwise
        weights get that many levels on a signed grid, and activations with
        2^bits levels keep the default grid (its sign decided from the data);
        any other count is taken as written. Explicit bounds of the spec's
        config belong to its bits and mode: they are dropped when either
        changes and the override gives none.

        >>> q8 = QuantizerConfig("q8_w", 8, "symmetric", "perchannel", -127, 127)
        >>> QuantizerOverride(bits=4).apply(q8, "weight").describe()
        'q8_w(4b symmetric perchannel)'
        >>> QuantizerOverride(8, "symmetric", "perchannel", 0, 255).apply(q8, "weight").describe()
        'q8_w(8b symmetric perchannel [-128,127])'
        """
        changes: dict[str, Any] = {k: getattr(self, k) for k in ("bits", "mode", "granularity")
                                   if getattr(self, k) is not None}
        if self.level_low is not None:
            changes.update(self._grid(changes.get("bits", config.bits), role))
        elif any(changes.get(k, getattr(config, k)) != getattr(config, k) for k in ("bits", "mode")):
            changes.update(level_low=None, level_high=None)
        if not changes:
            return config
        if self.loc is not None:
            changes["loc"] = self.loc
        return replace(config, **changes)

    def _grid(self, bits: int, role: str) -> dict[str, int | None]:
        low, high = self.level_low, self.level_high
        assert low is not None and high is not None
        count = high - low + 1
        if low < 0:
            return {"level_low": low, "level_high": high}
        if role.startswith("weight"):
            return {"level_low": -(count // 2), "level_high": count - 1 - count // 2}
        if count == 2 ** bits:
            return {"level_low": None, "level_high": None}
        return {"level_low": low, "level_high": high}


@dataclass(frozen=True)
class QuantizerOverrides:
    """Per role, what the config file's weights/activations sections override."""

    weights: QuantizerOverride = QuantizerOverride()
    activations: QuantizerOverride = QuantizerOverride()

    def is_empty(self) -> bool:
        return self.weights.is_empty() and self.activations.is_empty()

    def apply(self, config: QuantizerConfig, role: str) -> QuantizerConfig:
        """Apply the override for ``role`` ("weight(s)" or "activation(s)"; outputs are left alone)."""
        if role.startswith("weight"):
            return self.weights.apply(config, "weight")
        if role.startswith("activation"):
            return self.activations.apply(config, "activation")
        return config


@dataclass(frozen=True)
class PipelineSettings:
    """What the pipeline runs besides MinMax, as the file's algorithms say.

    ``bias_correction``: "fast" (FastBiasCorrection), "full" (BiasCorrection)
    or None; ``bias_threshold`` None = the method's default (2.0 fast, 1000 full).
    """

    channel_alignment: bool = False
    bias_correction: str | None = None
    bias_threshold: float | None = None
    bias_apply_for_all_nodes: bool = False
    layerwise_tuning: bool = False
    saturation_fix: str | None = None
    smoothing: float | None = None  # activation smoothing alpha (``smoothing_alpha``, this tool's extension)


@dataclass(frozen=True)
class LoadedConfig:
    """A config file, checked. None / empty = the file does not set it.

    ``preset`` is what runs on the file's target (the original tool renamed
    accuracy to mixed on CPU/GPU/ANY); ``preset_written`` is the file's value
    with only the symmetric/asymmetric aliases resolved, for another target.
    """

    path: str
    target: str | None = None
    preset: str | None = None
    preset_written: str | None = None
    subset_size: int | None = None
    seed: int | None = None
    batch_size: int | None = None
    ignore_scope: tuple[str, ...] = ()
    ignore_ops: tuple[IgnoredOperation, ...] = ()
    model_type: str | None = None
    ranges: RangeOptions | None = None
    quantizers: QuantizerOverrides = QuantizerOverrides()
    algorithms: tuple[AlgorithmConfig, ...] = ()
    pipeline: PipelineSettings = PipelineSettings()
    data_source: str | None = None
    unsupported: tuple[Notice, ...] = ()
    warnings: tuple[Notice, ...] = ()

    def option_fields(self) -> dict[str, Any]:
        """The QuantizeOptions fields this file sets (and only those)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in ("target", "preset", "subset_size", "seed",
                                                              "batch_size", "model_type", "ranges")
                               if getattr(self, k) is not None}
        if self.ignore_scope:
            out["ignore_scope"] = self.ignore_scope
        if self.ignore_ops:
            out["ignore_ops"] = self.ignore_ops
        if self.pipeline.channel_alignment:
            out["channel_alignment"] = True
        if self.pipeline.bias_correction:
            out["bias_correction"] = self.pipeline.bias_correction
        if self.pipeline.bias_threshold is not None:
            out["bias_threshold"] = self.pipeline.bias_threshold
        if self.pipeline.smoothing is not None:
            out["smoothing"] = self.pipeline.smoothing
        if self.pipeline.saturation_fix is not None:
            out["saturation_fix"] = self.pipeline.saturation_fix
        if self.pipeline.layerwise_tuning:
            out["layerwise_tuning"] = True
            samples = self._layerwise_samples()
            if samples is not None:
                out["layerwise_samples"] = samples
        if not self.quantizers.is_empty():
            out["quantizer_overrides"] = self.quantizers
        return out

    def _layerwise_samples(self) -> int | None:
        """num_samples_for_tuning of the entry that turns layer-wise tuning on (kept in its params)."""
        for algo in self.algorithms:
            if algo.params.get("use_layerwise_tuning"):
                return algo.params.get("num_samples_for_tuning")
        return None


# ====================================================================== what the pipeline runs

#: Algorithms that quantize (one per file); their params set QuantizeOptions.
QUANTIZING = ("DefaultQuantization", "MinMaxQuantization", "AccuracyAwareQuantization")
#: Algorithm names checked in full.
ALGORITHMS = ("DefaultQuantization", "MinMaxQuantization", "FastBiasCorrection", "BiasCorrection",
              "ActivationChannelAlignment", "AccuracyAwareQuantization", "TPE")
#: The original tool's other algorithms: accepted (params unchecked) and reported as not implemented.
OTHER_POT_ALGORITHMS = ("TunableQuantization", "DataFreeQuantization", "OverflowCorrection", "RangeOptimization",
                        "ParamsTuningSearch", "Ranger", "RangeSupervision", "MagnitudeSparsity", "BaseWeightSparsity",
                        "WeightSparsity")

#: Features the quantize pipeline does not run yet, with what the user is told. Remove an entry
#: when the pipeline wires the feature; the loader reports the rest in ``LoadedConfig.unsupported``.
NOT_RUN_YET: dict[str, str] = {}

#: What this tool does not implement at all.
_NOT_IMPLEMENTED = {
    "AccuracyAwareQuantization": "AccuracyAwareQuantization is not implemented (it needs an accuracy metric); "
                                 "only its base algorithm's quantization ({base}) runs",
    "TPE": "TPE is not implemented; the entry is ignored",
    "optimizer": "the 'optimizer' section (TPE) is not implemented; it is ignored",
    "other": "{name} is not implemented; the entry is ignored (its params are not checked)",
}

# ====================================================================== presets and targets

_PRESETS = ("performance", "mixed", "accuracy")
_PRESET_ALIASES = {"symmetric": "performance", "asymmetric": "accuracy"}
# The original tool's config-file path (configs/config.py:_configure_algo_params), pot-facts c.
_DEVICE_PRESET_RENAMES: dict[str, dict[str, str]] = {
    **{d: {"accuracy": "mixed"} for d in ("CPU", "ANY", "GPU", "CPU_SPR")},
    **{d: {"mixed": "accuracy"} for d in ("GNA", "GNA3", "GNA3.5")},
    "VPU": {}, "NPU": {},
}
# Devices of the original tool that have no spec here, and the spec that stands in.
_STAND_INS = {
    "CPU_SPR": ("CPU", "the CPU spec is used: CPU_SPR's own ignored patterns and its removal of one of "
                          "an Add's two input FakeQuantize are not reproduced"),
    "GNA3": ("GNA", "the GNA spec is used: GNA3's 8-bit weight options are not available"),
    "GNA3.5": ("GNA", "the GNA spec is used: GNA3.5's 8-bit weight options are not available"),
}
_POT_DEFAULT_TARGET = "ANY"


def preset_for_target(preset: str, target: str | None) -> str:
    """The preset the original tool ran for a config-file ``preset`` on ``target`` (aliases, device renames).

    Only the original tool's device names rename; our ORT target and spec files keep the preset.

    >>> preset_for_target("asymmetric", "CPU"), preset_for_target("mixed", "GNA"), preset_for_target("accuracy", "ORT")
    ('mixed', 'accuracy', 'accuracy')
    """
    preset = _PRESET_ALIASES.get(preset, preset)
    device = (target or _POT_DEFAULT_TARGET).upper()
    return _DEVICE_PRESET_RENAMES.get(device, {}).get(preset, preset)


# ====================================================================== the schema, as data


@dataclass(frozen=True)
class _F:
    """What one key's value must be."""

    kind: str  # int | number | bool | str | enum | list | section | free
    choices: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    keys: Mapping[str, "_F"] = field(default_factory=dict)
    item: "_F | None" = None
    required: tuple[str, ...] = ()
    example: str = "[...]"  # for "must be a list, e.g. ..."


def _int(low: int | None = None) -> _F:
    return _F("int", low=low)


def _num(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False) -> _F:
    return _F("number", low=low, high=high, low_open=low_open, high_open=high_open)


def _enum(*choices: str, aliases: Mapping[str, str] | None = None) -> _F:
    return _F("enum", choices=choices, aliases=MappingProxyType(dict(aliases or {})))


def _section(required: tuple[str, ...] = (), **keys: _F) -> _F:
    return _F("section", keys=MappingProxyType(keys), required=required)


_BOOL, _STR, _FREE = _F("bool"), _F("str"), _F("free")

_SIDE = dict(type=_enum(*ESTIMATORS), outlier_prob=_num(0, 0.5, high_open=True),
             granularity=_enum(*_GRANULARITIES), clipping_value=_num())
_RANGE_W = _section(preset=_enum("default", "quantile"), min=_section(**_SIDE), max=_section(**_SIDE))
_SIDE_A = _section(**_SIDE, aggregator=_enum(*AGGREGATORS))
_RANGE_A = _section(preset=_enum("default", "quantile"), min=_SIDE_A, max=_SIDE_A)
_QUANT = dict(bits=_int(2), mode=_enum(*_MODES), level_low=_int(), level_high=_int(),
              granularity=_enum(*_GRANULARITIES))
_IGNORED = _section(scope=_F("list", item=_STR, example='["conv1"]'),
                    operations=_F("list", item=_section(("type",), type=_STR, attributes=_FREE),
                                  example='[{"type": "Convolution"}]'),
                    skip_model=_BOOL)
_DATA = dict(stat_subset_size=_int(1), stat_batch_size=_int(1), shuffle_data=_BOOL, seed=_int(0), ignored=_IGNORED)
_MINMAX = dict(_DATA, preset=_enum(*_PRESETS, aliases=_PRESET_ALIASES), range_estimator=_RANGE_W,
               weights=_section(**_QUANT, range_estimator=_RANGE_W),
               activations=_section(**_QUANT, range_estimator=_RANGE_A),
               inplace_statistics=_BOOL, saturation_fix=_enum("first_layer", "all", "no"),
               smoothing_alpha=_num(0, 1, high_open=True))
_BIAS = dict(_DATA, apply_for_all_nodes=_BOOL, threshold=_num(0, low_open=True))
_LAYERWISE = dict(num_samples_for_tuning=_int(1), batch_size=_int(1), optimizer=_STR, loss=_STR,
                  tuning_iterations=_int(1), random_seed=_int(0), use_ranking_subset=_BOOL,
                  calibration_indices_pool=_int(1), calculate_grads_on_loss_increase_only=_BOOL,
                  weight_decay=_num(0))
#: The layer-wise tuning keys the grid search honours; the others (POT's torch optimizer settings) are reported.
_LAYERWISE_HONOURED = ("num_samples_for_tuning",)
_DEFAULT = dict(_MINMAX, **_BIAS, use_fast_bias=_BOOL, use_layerwise_tuning=_BOOL, **_LAYERWISE)
_METRICS = _F("list", item=_section(("name",), name=_STR, baseline_value=_num()),
              example='[{"name": "accuracy", "baseline_value": 0.72}]')
_AAQ = dict(maximal_drop=_num(0), drop_type=_enum("absolute", "relative"), max_iter_num=_int(1),
            ranking_subset_size=_int(1), metric_subset_ratio=_num(0, 1, low_open=True), tune_hyperparams=_BOOL,
            convert_to_mixed_preset=_BOOL, use_prev_if_drop_increase=_BOOL, annotation_free=_BOOL,
            annotation_conf_threshold=_num(0, 1), metrics=_METRICS,
            base_algorithm=_enum("DefaultQuantization", "MinMaxQuantization"))
_TPE = dict(max_trials=_int(1), max_minutes=_num(0, low_open=True), stop_on_target=_BOOL, eval_subset_size=_int(1),
            trials_load_method=_enum("cold_start", "warm_start", "fine_tune", "eval"), accuracy_loss=_num(0),
            latency_reduce=_num(0), accuracy_weight=_num(0), latency_weight=_num(0), metrics=_METRICS,
            benchmark=_FREE, multinode=_FREE)
_PARAMS: dict[str, Mapping[str, _F]] = {
    "DefaultQuantization": _DEFAULT, "MinMaxQuantization": _MINMAX, "FastBiasCorrection": _BIAS,
    "BiasCorrection": _BIAS, "ActivationChannelAlignment": _DATA, "TPE": _TPE,
}
_TOP_KEYS = ("model", "engine", "compression", "optimizer")
_COMPRESSION_KEYS = ("target_device", "model_type", "algorithms", "dump_intermediate_model", "inplace_statistics")
# Keys people put one level off: where they belong.
_MISPLACED = {"target_device": "compression", "model_type": "compression", "algorithms": "compression",
              "preset": "compression.algorithms[].params", "stat_subset_size": "compression.algorithms[].params",
              "ignored": "compression.algorithms[].params", "weights": "compression.algorithms[].params",
              "activations": "compression.algorithms[].params"}
_PLACEHOLDER = re.compile(r"^<[^<>]+>$")  # "<NODE_NAME>" left from the documentation's template

# ====================================================================== JSON with comments -> ruamel nodes

_TAG = "tag:yaml.org,2002:"
_STRING_CHUNK = re.compile(r'[^"\\\x00-\x1f]+')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.+-]*")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class _JsonSyntaxError(Exception):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


class _JsonReader:
    """JSON plus // and /* */ comments and trailing commas, into ruamel.yaml nodes with exact marks.

    A hand-written reader rather than ruamel.yaml on comment-stripped text:
    YAML accepts much that is not JSON (unquoted keys, ``tru`` as a string,
    ``{"a": }`` as null) and reports a missing comma at the next ':'.
    """

    def __init__(self, text: str, name: str) -> None:
        self.text, self.name, self.pos = text, name, 0
        self._line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def mark(self, pos: int) -> StreamMark:
        line = bisect.bisect_right(self._line_starts, pos) - 1
        return StreamMark(self.name, pos, line, pos - self._line_starts[line])

    def line_col(self, pos: int) -> tuple[int, int]:
        mark = self.mark(pos)
        return mark.line + 1, mark.column + 1

    def document(self) -> Node | None:
        self._skip()
        if self.pos == len(self.text):
            return None
        node = self._value("the document")
        self._skip()
        if self.pos < len(self.text):
            if self.text[self.pos] == ":" and isinstance(node, ScalarNode):
                raise _JsonSyntaxError(self.pos, "a config file is one JSON object: wrap its content in { }")
            raise _JsonSyntaxError(self.pos, f"unexpected {self._show()} after the end of the document")
        return node

    # ---------------------------------------------------------------- tokens

    def _show(self) -> str:
        if self.pos >= len(self.text):
            return "end of file"
        word = _WORD.match(self.text, self.pos)
        return f"'{word.group()}'" if word else repr(self.text[self.pos])

    def _skip(self) -> None:
        text, end = self.text, len(self.text)
        while self.pos < end:
            c = text[self.pos]
            if c in " \t\r\n\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                newline = text.find("\n", self.pos)
                self.pos = end if newline < 0 else newline
            elif text.startswith("/*", self.pos):
                close = text.find("*/", self.pos + 2)
                if close < 0:
                    raise _JsonSyntaxError(self.pos, "this /* comment is never closed")
                self.pos = close + 2
            else:
                return

    def _unclosed(self, start: int) -> _JsonSyntaxError:
        line = self.text.count("\n") + 1
        return _JsonSyntaxError(start, f"this '{self.text[start]}' is never closed (the file ends at line {line})")

    def _value(self, what: str) -> Node:
        if self.pos >= len(self.text):
            raise _JsonSyntaxError(self.pos, f"the file ends where a value for {what} should be")
        c = self.text[self.pos]
        if c == "{":
            return self._object()
        if c == "[":
            return self._array(what)
        if c == '"':
            return self._string()
        if c == "-" or c.isdigit():
            return self._number()
        if c == "'":
            raise _JsonSyntaxError(self.pos, "JSON strings use double quotes")
        word = _WORD.match(self.text, self.pos)
        if word:
            return self._word(word.group())
        raise _JsonSyntaxError(self.pos, f"expected a value for {what}, got {self._show()}")

    def _object(self) -> MappingNode:
        start = self.pos
        self.pos += 1
        pairs: list[tuple[Node, Node]] = []
        while True:
            self._skip()
            if self.pos >= len(self.text):
                raise self._unclosed(start)
            c = self.text[self.pos]
            if c == "}":
                break
            if c != '"':
                word = _WORD.match(self.text, self.pos)
                if word:
                    message = f"keys must be in double quotes: write \"{word.group()}\""
                elif c == "'":
                    message = "JSON strings use double quotes"
                else:
                    message = f"expected a key in double quotes or '}}', got {self._show()}"
                raise _JsonSyntaxError(self.pos, message)
            key = self._string()
            self._skip()
            if self.pos >= len(self.text) or self.text[self.pos] != ":":
                raise _JsonSyntaxError(self.pos, f"expected ':' after the key '{key.value}', got {self._show()}")
            self.pos += 1
            self._skip()
            pairs.append((key, self._value(f"'{key.value}'")))
            if not self._separator(start, "}", f"the value of '{key.value}'"):
                break
        self.pos += 1
        return MappingNode(_TAG + "map", pairs, self.mark(start), self.mark(self.pos), flow_style=True)

    def _array(self, what: str) -> SequenceNode:
        start = self.pos
        self.pos += 1
        items: list[Node] = []
        while True:
            self._skip()
            if self.pos >= len(self.text):
                raise self._unclosed(start)
            if self.text[self.pos] == "]":
                break
            items.append(self._value(f"an item of {what}"))
            if not self._separator(start, "]", f"an item of {what}"):
                break
        self.pos += 1
        return SequenceNode(_TAG + "seq", items, self.mark(start), self.mark(self.pos), flow_style=True)

    def _separator(self, start: int, close: str, after: str) -> bool:
        """After an item: True on ',' (more may follow), False on the closing bracket (left for the caller)."""
        end_of_value = self.pos
        self._skip()
        if self.pos >= len(self.text):
            raise self._unclosed(start)
        c = self.text[self.pos]
        if c == ",":
            self.pos += 1
            return True
        if c == close:
            return False
        if c in '"{[-' or c.isdigit() or _WORD.match(self.text, self.pos):
            raise _JsonSyntaxError(end_of_value, f"missing ',' after {after}")
        hint = "; a key inside a list: is the '{' of an object missing?" if close == "]" and c == ":" else ""
        raise _JsonSyntaxError(self.pos, f"expected ',' or '{close}' after {after}, got {self._show()}{hint}")

    def _string(self) -> ScalarNode:
        start, text = self.pos, self.text
        self.pos += 1
        parts: list[str] = []
        while True:
            chunk = _STRING_CHUNK.match(text, self.pos)
            if chunk:
                parts.append(chunk.group())
                self.pos = chunk.end()
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise _JsonSyntaxError(start, "this string is never closed (a string must end on its own line)")
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                break
            if c == "\\":
                parts.append(self._escape())
            else:
                raise _JsonSyntaxError(self.pos, "control character in a string; write it as an escape such as \\t")
        return ScalarNode(_TAG + "str", "".join(parts), self.mark(start), self.mark(self.pos), style='"')

    def _escape(self) -> str:
        text, at = self.text, self.pos
        code = text[at + 1: at + 2]
        if code in _ESCAPES:
            self.pos += 2
            return _ESCAPES[code]
        if code == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[at + 2: at + 6]):
            value = int(text[at + 2: at + 6], 16)
            self.pos += 6
            low = text[self.pos: self.pos + 6]
            if 0xD800 <= value < 0xDC00 and re.fullmatch(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}", low):
                self.pos += 6
                return chr(0x10000 + ((value - 0xD800) << 10) + (int(low[2:], 16) - 0xDC00))
            return chr(value)
        raise _JsonSyntaxError(at, f"invalid escape '\\{code}' in a string")

    def _number(self) -> ScalarNode:
        start = self.pos
        match = _NUMBER.match(self.text, start)
        end = match.end() if match else start
        if not match or (end < len(self.text) and (self.text[end].isalnum() or self.text[end] in "._")):
            token = re.match(r"[-+.\w]+", self.text[start:])
            shown = token.group() if token else self.text[start]
            raise _JsonSyntaxError(start, f"'{shown}' is not a JSON number")
        self.pos = end
        tag = "float" if match.group(1) or match.group(2) else "int"
        return ScalarNode(_TAG + tag, match.group(), self.mark(start), self.mark(end))

    def _word(self, word: str) -> ScalarNode:
        start = self.pos
        tags = {"true": "bool", "false": "bool", "null": "null"}
        if word in tags:
            self.pos += len(word)
            return ScalarNode(_TAG + tags[word], word, self.mark(start), self.mark(self.pos))
        fix = {"True": "true", "False": "false", "None": "null", "Null": "null", "NULL": "null"}.get(word)
        if fix:
            raise _JsonSyntaxError(start, f"JSON writes {word} as {fix}")
        raise _JsonSyntaxError(start, f"unexpected word '{word}'; strings need double quotes")


class _ConfigFile(YamlFile):
    """A config file: YAML by extension (.yaml/.yml), JSON with comments otherwise."""

    def __init__(self, path: Path, problems: Problems, text: str) -> None:
        super().__init__(path, problems)
        self.text = text

    def compose(self) -> Node | None:
        if self.path.suffix.lower() in (".yaml", ".yml"):
            try:
                return self._yaml.compose(self.text)
            except MarkedYAMLError as exc:
                self._syntax_error(exc)
                return None
        reader = _JsonReader(self.text, str(self.path))
        try:
            return reader.document()
        except _JsonSyntaxError as exc:
            self.problems.add(SourceLoc(str(self.path), *reader.line_col(exc.pos)), f"JSON syntax error: {exc.message}")
            return None


# ====================================================================== loading


def load_config(path: str | Path) -> LoadedConfig:
    """Read and check a config file of the original tool (JSON with comments, or YAML).

    Raises:
        UserErrors: every problem in the file, each with file:line:column and the source line.
        UserError: the file is missing or unreadable.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"config file '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the config file '{path}': {exc}") from None
    problems = Problems()
    f = _ConfigFile(path, problems, text)
    root = f.compose()
    result = None
    if root is None and not problems:
        problems.add(SourceLoc(str(path), 1, 1), "the config file is empty; it needs a 'compression' section")
    elif root is not None:
        result = _Loader(f).load(root)
    if problems:
        # Every error gets its source line with a caret under the column.
        problems.items = [e if e.context or not e.loc or not e.loc.line else
                          UserError(e.message, e.loc, source_excerpt(text, e.loc.line, e.loc.column or 1))
                          for e in problems.items]
        problems.raise_if_any()
    assert result is not None
    return result


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _join(where: str, key: str) -> str:
    return key if where == "the top level" else f"{where}.{key}"


class _Loader:
    """Walks the node tree once, checking against the schema; then builds the LoadedConfig."""

    def __init__(self, f: _ConfigFile) -> None:
        self.f = f
        self.locs: dict[str, SourceLoc] = {}      # path in the file -> where its value starts
        self.key_locs: dict[str, SourceLoc] = {}  # path in the file -> where its key starts
        self.warnings: list[Notice] = []
        self.unsupported: list[Notice] = []

    def error(self, where: str, message: str, key: bool = False) -> None:
        loc = (self.key_locs if key else self.locs).get(where) or self.locs.get(where)
        self.f.problems.add(loc or SourceLoc(str(self.f.path)), message)

    def loc(self, where: str, key: bool = False) -> SourceLoc:
        """Where the value at ``where`` starts (its key with ``key``)."""
        first, second = (self.key_locs, self.locs) if key else (self.locs, self.key_locs)
        return first.get(where) or second.get(where) or SourceLoc(str(self.f.path))

    # ---------------------------------------------------------------- generic checks

    def _entries(self, node: Node, where: str, allowed: Any) -> list[tuple[str, Node]]:
        """A mapping's (key, value node) pairs; duplicates and unknown keys reported and left out."""
        out = []
        for key, key_node, value_node in self.f.pairs(node, where):
            path = _join(where, key)
            self.key_locs[path] = self.f.loc(key_node)
            self.locs[path] = self.f.loc(value_node)
            if allowed is not None and key not in allowed:
                hint = suggest(key, allowed)
                if not hint and key in _MISPLACED:
                    hint = f"; it belongs in {_MISPLACED[key]}"
                if not hint and key == "aggregator":
                    hint = "; only the activations' range estimators take an aggregator"
                if not hint:
                    hint = f"; expected one of: {', '.join(allowed)}"
                self.f.error(key_node, f"unknown key '{key}' in {where}{hint}")
                continue
            out.append((key, value_node))
        return out

    def walk(self, node: Node, spec: _F, where: str) -> Any:
        """The value of ``node`` as plain Python, checked against ``spec``; None if null or wrong."""
        f = self.f
        self.locs.setdefault(where, f.loc(node))
        if f.is_null(node):
            return None
        if spec.kind == "section":
            out = {}
            entries = self._entries(node, where, tuple(spec.keys))
            for key, child in entries:
                value = self.walk(child, spec.keys[key], _join(where, key))
                if value is not None:
                    out[key] = value
            for key in spec.required:
                if isinstance(node, MappingNode) and key not in dict(entries):
                    f.error(node, f"{where} needs '{key}'")
            return out
        if spec.kind == "list":
            assert spec.item is not None
            items = f.get_list(node, where, lambda child, w: self.walk(child, spec.item, w), spec.example)
            return None if items is None else [value for value, _ in items]
        if spec.kind == "free":
            return self.plain(node, where)
        if spec.kind == "enum":
            value = f.value(node)
            if isinstance(value, str) and value in spec.aliases:
                return spec.aliases[value]
            return f.get_enum(node, where, spec.choices + tuple(spec.aliases))
        if spec.kind == "int":
            value = f.get_int(node, where, None if spec.low is None else int(spec.low))
            return value
        if spec.kind == "number":
            return self._number(node, spec, where)
        return f.get_bool(node, where) if spec.kind == "bool" else f.get_str(node, where)

    def _number(self, node: Node, spec: _F, where: str) -> float | None:
        value = self.f.value(node)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.f.error(node, f"{where} must be a number, got {self.f.kind(node)}")
            return None
        value = float(value)
        low_bad = spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low)
        high_bad = spec.high is not None and (value >= spec.high if spec.high_open else value > spec.high)
        if low_bad or high_bad:
            lo = "" if spec.low is None else f"{'(' if spec.low_open else '['}{spec.low:g}"
            hi = "" if spec.high is None else f"{spec.high:g}{')' if spec.high_open else ']'}"
            wanted = f"in {lo}, {hi}" if lo and hi else (f"greater than {spec.low:g}" if spec.low_open else
                                                         f"at least {spec.low:g}") if lo else f"at most {spec.high:g}"
            self.f.error(node, f"{where} must be {wanted}, got {node.value}")
            return None
        return value

    def plain(self, node: Node, where: str) -> Any:
        """Any value as plain Python (mappings still checked for duplicate keys)."""
        if isinstance(node, MappingNode):
            return {k: self.plain(v, _join(where, k)) for k, v in self._entries(node, where, None)}
        if isinstance(node, SequenceNode):
            return [self.plain(v, f"{where}[{i}]") for i, v in enumerate(node.value)]
        self.locs.setdefault(where, self.f.loc(node))
        return self.f.value(node)

    # ---------------------------------------------------------------- sections

    def load(self, root: Node) -> LoadedConfig:
        top = dict(self._entries(root, "the top level", _TOP_KEYS))
        if isinstance(root, MappingNode) and "compression" not in top:
            self.f.error(root, "the config file has no 'compression' section; it needs at least "
                               "\"compression\": {\"algorithms\": [{\"name\": \"DefaultQuantization\"}]}")
        if "model" in top:
            self.plain(top["model"], "model")  # the original tool's model paths: the CLI names the model
        data_source = self._engine(top["engine"]) if "engine" in top else None
        if "optimizer" in top:
            self._optimizer(top["optimizer"])
        settings: dict[str, Any] = {}
        if "compression" in top:
            settings = self._compression(top["compression"])
        return LoadedConfig(path=str(self.f.path), data_source=data_source, warnings=tuple(self.warnings),
                            unsupported=tuple(self.unsupported), **settings)

    def _engine(self, node: Node) -> str | None:
        """Only ``data_source`` is read (the calibration folder when --data is not given)."""
        engine = self.plain(node, "engine")
        if not isinstance(engine, dict):
            self.f.error(node, f"engine must be a mapping, got {self.f.kind(node)}")
            return None
        source = engine.get("data_source")
        if source is not None and not isinstance(source, str):
            self.error("engine.data_source", f"engine.data_source must be a string (a folder), got {source!r}")
            return None
        if engine.get("type") == "data_free":
            self.unsupported.append(Notice(self.loc("engine.type"), "the data_free engine (generated calibration "
                                           "data) is not implemented; engine.data_source is read as a data folder"))
        if source is None:
            return None
        return self._path(source)

    def _path(self, text: str) -> str:
        """A relative path: from the working directory (the original tool's rule) if it exists there,
        else from the config file's folder if it exists there, else as written."""
        path = Path(text).expanduser()
        if path.is_absolute() or path.exists():
            return str(path)
        beside = self.f.path.parent / path
        return str(beside) if beside.exists() else text

    def _optimizer(self, node: Node) -> None:
        entries = dict(self._entries(node, "optimizer", ("name", "params")))
        if "name" in entries:
            self.walk(entries["name"], _enum("Tpe", "TPE"), "optimizer.name")
        if "params" in entries:
            self.walk(entries["params"], _section(**_TPE), "optimizer.params")
        self.unsupported.append(Notice(self.loc("optimizer", key=True), _NOT_IMPLEMENTED["optimizer"]))

    def _compression(self, node: Node) -> dict[str, Any]:
        entries = dict(self._entries(node, "compression", _COMPRESSION_KEYS))
        target, device = self._target(entries.get("target_device"))
        model_type = self._model_type(entries["model_type"]) if "model_type" in entries else None
        if "inplace_statistics" in entries:  # no effect here: statistics are always computed per sample
            self.walk(entries["inplace_statistics"], _BOOL, "compression.inplace_statistics")
        if "dump_intermediate_model" in entries and \
                self.walk(entries["dump_intermediate_model"], _BOOL, "compression.dump_intermediate_model"):
            self.unsupported.append(Notice(self.loc("compression.dump_intermediate_model", key=True),
                                           "dump_intermediate_model is not implemented; `rewriter audit` "
                                           "shows the plan"))
        algorithms: list[AlgorithmConfig] = []
        if "algorithms" not in entries:
            if isinstance(node, MappingNode):
                self.f.error(node, "compression needs 'algorithms', e.g. [{\"name\": \"DefaultQuantization\"}]")
        elif not isinstance(entries["algorithms"], SequenceNode):
            self.f.error(entries["algorithms"], f"compression.algorithms must be a list, got "
                                                f"{self.f.kind(entries['algorithms'])}")
        else:
            if not entries["algorithms"].value:
                self.f.error(entries["algorithms"], "compression.algorithms is empty; give at least one, "
                                                    "e.g. {\"name\": \"DefaultQuantization\"}")
            for i, item in enumerate(entries["algorithms"].value):
                algo = self._algorithm(item, f"compression.algorithms[{i}]")
                if algo is not None:
                    algorithms.append(algo)
        settings = self._settings(algorithms, device)
        return dict(target=target, model_type=model_type, algorithms=tuple(algorithms), **settings)

    def _target(self, node: Node | None) -> tuple[str | None, str | None]:
        """(target for QuantizeOptions, the original tool's device name for preset renames)."""
        if node is None or self.f.is_null(node):
            return None, None
        where = "compression.target_device"
        text = self.f.get_str(node, where)
        if text is None:
            return None, None
        from rewriter.spec.loader import _looks_like_path, list_targets

        if _looks_like_path(text):
            path = self._path(text)
            if not Path(path).is_file():
                self.f.error(node, f"{where}: spec file '{text}' not found")
                return None, None
            return path, text  # not a device of the original tool: presets are not renamed
        device = text.upper()
        names = [name for name, _, _ in list_targets()]
        for name in names:
            if name.upper() == device:
                return name, device
        if device in _STAND_INS:
            stand_in, why = _STAND_INS[device]
            self.warnings.append(Notice(self.f.loc(node), f"target_device {text} has no spec here; {why}"))
            return stand_in, device
        hint = suggest(text, names) or f"; available: {', '.join(names)} (or a spec file path)"
        self.f.error(node, f"unknown {where} '{text}'{hint}")
        return None, None

    def _model_type(self, node: Node) -> str | None:
        value = self.f.value(node)
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        if isinstance(value, str) and value.lower() == "transformer":
            return "transformer"
        shown = f"'{value}'" if isinstance(value, str) else self.f.kind(node)
        hint = suggest(value, ["transformer"]) if isinstance(value, str) else ""
        self.f.error(node, f"compression.model_type must be null, \"None\" or \"transformer\", got {shown}{hint}")
        return None

    def _algorithm(self, node: Node, where: str) -> AlgorithmConfig | None:
        if not isinstance(node, MappingNode):
            self.f.error(node, f"{where} must be an object with 'name' and 'params', got {self.f.kind(node)}")
            return None
        entries = dict(self._entries(node, where, ("name", "params")))
        if "name" not in entries:
            self.f.error(node, f"{where} needs 'name', e.g. \"DefaultQuantization\"")
            return None
        name = self.f.get_str(entries["name"], f"{where}.name")
        if name is None:
            return None
        if name not in ALGORITHMS + OTHER_POT_ALGORITHMS:
            hint = suggest(name, ALGORITHMS + OTHER_POT_ALGORITHMS) or f"; known: {', '.join(ALGORITHMS)}"
            self.f.error(entries["name"], f"unknown algorithm '{name}' in {where}.name{hint}")
            return None
        params_node = entries.get("params")
        where_params = f"{where}.params"
        if name in OTHER_POT_ALGORITHMS:
            params = self.plain(params_node, where_params) if params_node is not None else {}
            if params is not None and not isinstance(params, dict):
                self.f.error(params_node, f"{where_params} must be a mapping, got {self.f.kind(params_node)}")
                return None
        else:
            params = self.walk(params_node, _section(**self._schema(name, params_node)), where_params) \
                if params_node is not None else {}
        return AlgorithmConfig(name, _freeze(params or {}), self.f.loc(node), where)

    def _schema(self, name: str, params: Node) -> Mapping[str, _F]:
        if name != "AccuracyAwareQuantization":
            return _PARAMS[name]
        base = "DefaultQuantization"
        if isinstance(params, MappingNode):
            for key_node, value_node in params.value:
                if getattr(key_node, "value", None) == "base_algorithm" and self.f.value(value_node) in _PARAMS:
                    base = str(self.f.value(value_node))
        return {**_PARAMS[base], **_AAQ}

    # ---------------------------------------------------------------- meaning

    def _settings(self, algorithms: list[AlgorithmConfig], device: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        quantizing = [a for a in algorithms if a.name in QUANTIZING]
        for extra in quantizing[1:]:
            self.f.problems.add(extra.loc, f"a second quantization algorithm ({extra.name}); a file quantizes "
                                           f"once, with {quantizing[0].name} here")
        pipeline: dict[str, Any] = {}
        for algo in algorithms:
            where = algo.where
            self._pipeline(algo, where, pipeline)
            if algo is (quantizing[0] if quantizing else None):
                out.update(self._quantization(algo.params, f"{where}.params", device))
        out["pipeline"] = PipelineSettings(**pipeline)
        return out

    def _not_run(self, key: str, loc: SourceLoc, what: str = "") -> None:
        if key in NOT_RUN_YET:
            self.unsupported.append(Notice(loc, f"{what}{NOT_RUN_YET[key]}"))

    def _pipeline(self, algo: AlgorithmConfig, where: str, out: dict[str, Any]) -> None:
        p, name, loc = algo.params, algo.name, algo.loc
        if name == "AccuracyAwareQuantization":
            base = p.get("base_algorithm", "DefaultQuantization")
            self.unsupported.append(Notice(loc, _NOT_IMPLEMENTED[name].format(base=base)))
            name = base
        elif name == "TPE":
            self.unsupported.append(Notice(loc, _NOT_IMPLEMENTED["TPE"]))
            return
        elif name in OTHER_POT_ALGORITHMS:
            self.unsupported.append(Notice(loc, _NOT_IMPLEMENTED["other"].format(name=name)))
            return
        steps = {"DefaultQuantization": ["ActivationChannelAlignment",
                                         "FastBiasCorrection" if p.get("use_fast_bias", True) else "BiasCorrection"],
                 "ActivationChannelAlignment": [name], "FastBiasCorrection": [name], "BiasCorrection": [name]}
        for step in steps.get(name, []):
            if step == "ActivationChannelAlignment":
                out["channel_alignment"] = True
            else:
                out["bias_correction"] = "fast" if step == "FastBiasCorrection" else "full"
                if "threshold" in p:
                    out["bias_threshold"] = p["threshold"]
                out["bias_apply_for_all_nodes"] = p.get("apply_for_all_nodes", False)
            self._not_run(step, loc, f"{name}: " if step != name else "")
        # This tool's extension: activation smoothing before the ranges. DefaultQuantization runs it unless
        # smoothing_alpha is 0 (it only touches MatMul inputs with outlier channels); MinMax only when asked.
        alpha = p.get("smoothing_alpha", DEFAULT_SMOOTHING if name == "DefaultQuantization" else 0)
        if alpha:
            out["smoothing"] = alpha
        if p.get("use_layerwise_tuning"):
            out["layerwise_tuning"] = True
            for key in sorted(set(_LAYERWISE) & set(p) - set(_LAYERWISE_HONOURED)):
                self.unsupported.append(Notice(self.loc(f"{where}.params.{key}", key=True),
                                               f"{key} is ignored: layer-wise tuning here is a gradient-free "
                                               "grid search (no optimizer, loss or iterations to set)"))
        if p.get("saturation_fix") is not None:
            out["saturation_fix"] = p["saturation_fix"]
        if p.get("shuffle_data") is False:
            self.unsupported.append(Notice(self.loc(f"{where}.params.shuffle_data", key=True),
                                           "shuffle_data: false is not honoured: the calibration subset is always "
                                           "a seeded random choice"))
        if p.get("ignored", {}).get("skip_model"):
            self.unsupported.append(Notice(self.loc(f"{where}.params.ignored.skip_model", key=True),
                                           "ignored.skip_model (model cascades) is not implemented"))

    def _quantization(self, params: Mapping[str, Any], where: str, device: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "preset" in params:
            out["preset_written"] = params["preset"]
            out["preset"] = preset_for_target(params["preset"], device)
            if out["preset"] != params["preset"]:
                self.warnings.append(Notice(self.loc(f"{where}.preset"), f"preset '{params['preset']}' runs as "
                                            f"'{out['preset']}' on {device or _POT_DEFAULT_TARGET}, as in the "
                                            "original tool"))
        for key, field_name in (("stat_subset_size", "subset_size"), ("seed", "seed"),
                                ("stat_batch_size", "batch_size")):
            if key in params:
                out[field_name] = params[key]
        scope, ops = self._ignored(params.get("ignored", {}), f"{where}.ignored")
        out.update(ignore_scope=scope, ignore_ops=ops)
        overrides = QuantizerOverrides(self._quantizer(params.get("weights", {}), f"{where}.weights"),
                                       self._quantizer(params.get("activations", {}), f"{where}.activations"))
        if not overrides.is_empty():
            out["quantizers"] = overrides
            self._not_run("quantizer_overrides", self.loc(f"{where}.weights" if not overrides.weights.is_empty()
                                                          else f"{where}.activations", key=True))
        ranges = self._ranges(params, where)
        if ranges is not None:
            out["ranges"] = ranges
        return out

    def _ignored(self, ignored: Mapping[str, Any], where: str) -> tuple[tuple[str, ...], tuple[IgnoredOperation, ...]]:
        scope = []
        for i, name in enumerate(ignored.get("scope", ())):
            if _PLACEHOLDER.match(name):
                self.warnings.append(Notice(self.loc(f"{where}.scope[{i}]"), f"'{name}' is the documentation's "
                                            "placeholder, not a node name; ignored"))
            else:
                scope.append(name)
        ops = []
        for i, entry in enumerate(ignored.get("operations", ())):
            op = self._ignored_op(entry, f"{where}.operations[{i}]")
            if op is not None:
                ops.append(op)
        return tuple(scope), tuple(ops)

    def _ignored_op(self, entry: Mapping[str, Any], where: str) -> IgnoredOperation | None:
        """OpenVINO type names mapped to ONNX ones; attributes checked against the ONNX op's schema."""
        written = entry.get("type")
        if written is None:
            return None
        if _PLACEHOLDER.match(written):
            self.warnings.append(Notice(self.loc(f"{where}.type"), f"'{written}' is the documentation's "
                                        "placeholder, not an operation type; this entry is ignored"))
            return None
        op_type = _onnx_op_type(written)
        if op_type is None:
            from rewriter.ir.ops import known_op_types
            from rewriter.spec.reader import _OPENVINO_NAMES  # the spec reader's OpenVINO -> ONNX names

            hint = suggest(written, [*_OPENVINO_NAMES, *known_op_types()])
            self.error(f"{where}.type", f"unknown operation type '{written}' in {where}.type (OpenVINO or "
                                        f"ONNX names){hint}")
            return None
        attributes = []
        for name, value in entry.get("attributes", {}).items():
            if _PLACEHOLDER.match(name):
                self.warnings.append(Notice(self.loc(f"{where}.attributes.{name}", key=True),
                                            f"'{name}' is the documentation's placeholder; attribute ignored"))
                continue
            checked = self._attribute(op_type, written, name, value, f"{where}.attributes.{name}")
            if checked is not None:
                attributes.append((name, checked))
        return IgnoredOperation(op_type, tuple(attributes))

    def _attribute(self, op_type: str, written: str, name: str, value: Any, where: str) -> Any:
        import onnx

        try:
            schema = onnx.defs.get_schema(op_type)
        except onnx.defs.SchemaError:
            return value  # a contrib op: nothing to check against
        known = schema.attributes
        shown = op_type if op_type == written else f"{op_type} ({written} in OpenVINO)"
        if name not in known:
            hint = suggest(name, known) or f"; {op_type} has: {', '.join(sorted(known)) or 'no attributes'}"
            self.error(where, f"unknown attribute '{name}' in {where}: ONNX operation {shown} has no such "
                              f"attribute{hint}", key=True)
            return None
        kind = known[name].type
        A = onnx.defs.OpSchema.AttrType
        scalar = {A.INT: int, A.FLOAT: float, A.STRING: str, A.INTS: int, A.FLOATS: float, A.STRINGS: str}.get(kind)
        if scalar is None:
            self.error(where, f"{where}: attribute '{name}' of {op_type} cannot be used as a filter "
                              f"(it is a {kind.name})")
            return None
        many = kind in (A.INTS, A.FLOATS, A.STRINGS)
        is_list = isinstance(value, (list, tuple))
        items = list(value) if many and is_list else [value]
        converted = [_coerce(item, scalar) for item in items]
        if (is_list and not many) or any(c is None for c in converted):
            wanted = f"a list of {scalar.__name__}s" if many else f"an {scalar.__name__}" if scalar is int \
                else f"a {scalar.__name__}"
            self.error(where, f"{where} must be {wanted} (attribute '{name}' of {op_type}), got {value!r}")
            return None
        return converted if many else converted[0]

    def _quantizer(self, section: Mapping[str, Any], where: str) -> QuantizerOverride:
        fields = {k: section.get(k) for k in ("bits", "mode", "granularity", "level_low", "level_high")}
        try:
            return QuantizerOverride(**fields, loc=self.loc(where, key=True))
        except ValueError as exc:
            at = next((f"{where}.{k}" for k in ("level_low", "level_high") if fields[k] is not None), where)
            self.error(at, f"{where}: {exc}")
            return QuantizerOverride()

    def _ranges(self, params: Mapping[str, Any], where: str) -> RangeOptions | None:
        """Global and per-role range_estimator sections -> RangeOptions (per role: the role's keys win)."""
        glob = params.get("range_estimator", {})
        presets, overrides = {}, {}
        for role in ("weights", "activations"):
            own = params.get(role, {}).get("range_estimator", {})
            presets[role] = own.get("preset", glob.get("preset", "default"))
            sides = {side: MappingProxyType({**glob.get(side, {}), **own.get(side, {})})
                     for side in ("min", "max") if side in glob or side in own}
            overrides[role] = MappingProxyType(sides) if sides else None
        if not glob and not params.get("weights", {}).get("range_estimator") \
                and not params.get("activations", {}).get("range_estimator"):
            return None
        if presets["weights"] != presets["activations"]:
            # RangeOptions has one preset for both roles: activations' is used. It does not matter
            # for weights when their min and max both name their estimator type.
            sides = overrides["weights"] or {}
            if not all("type" in sides.get(s, {}) for s in ("min", "max")):
                at = next(p for p in (f"{where}.{r}range_estimator.preset" for r in ("activations.", "", "weights."))
                          if p in self.locs)
                self.unsupported.append(Notice(self.loc(at), f"the range_estimator presets of activations "
                                               f"('{presets['activations']}') and weights ('{presets['weights']}') "
                                               "differ; one preset serves both here, so the activations' is used "
                                               "for the weights too"))
        return RangeOptions(estimator_preset=presets["activations"], weights=overrides["weights"],
                            activations=overrides["activations"])


def _onnx_op_type(name: str) -> str | None:
    """ONNX op type for an ONNX or OpenVINO name (exact, then the OpenVINO table, then case-insensitive)."""
    from rewriter.ir.ops import known_op_types
    from rewriter.spec.reader import _OPENVINO_NAMES

    known = known_op_types()
    if name in known:
        return name
    if name in _OPENVINO_NAMES:
        return _OPENVINO_NAMES[name]
    folded = [op for op in known if op.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def _coerce(value: Any, scalar: Callable[[Any], Any]) -> Any:
    """A config value as an ONNX attribute value: numbers may be written as strings ("1"), as POT allowed."""
    if isinstance(value, bool):
        return None
    if scalar is str:
        return value if isinstance(value, str) else None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    if scalar is int:
        return int(value) if float(value).is_integer() else None
    return float(value)


# ====================================================================== merging with the command line


def merge_cli(loaded: LoadedConfig | None, overrides: Mapping[str, Any] | None = None) -> Any:
    """QuantizeOptions from the config file and the command line: CLI > file > defaults.

    ``overrides`` holds QuantizeOptions field names; None means "not given on
    the command line". ``ignore_scope``/``ignore_ops`` add to the file's
    lists; ``estimator_preset`` (the --range-estimator flag) replaces the
    file's preset and keeps its min/max overrides. When the command line
    changes the target, the file's preset is renamed for that target.

    >>> merge_cli(None, {"target": None, "subset_size": 8}).subset_size
    8
    """
    from rewriter.pipeline import QuantizeOptions

    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    estimator_preset = given.pop("estimator_preset", None)
    names = {f.name for f in dataclasses.fields(QuantizeOptions)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"merge_cli: not QuantizeOptions fields: {', '.join(unknown)}")
    values: dict[str, Any] = dict(loaded.option_fields()) if loaded else {}
    if loaded and loaded.preset_written and "target" in given and "preset" not in given:
        values["preset"] = preset_for_target(loaded.preset_written, given["target"])
    for key in ("ignore_scope", "ignore_ops"):
        if key in given:
            merged = list(values.get(key, ()))
            merged += [item for item in given[key] if item not in merged]  # equality: attributes hold lists
            given[key] = tuple(merged)
    values.update(given)
    if estimator_preset is not None:
        values["ranges"] = replace(values.get("ranges") or RangeOptions(), estimator_preset=estimator_preset)
    return QuantizeOptions(**values)
