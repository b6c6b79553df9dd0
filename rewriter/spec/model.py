"""The validated, immutable form of a hardware spec file (hw_specs/*.yaml).

Produced by ``rewriter.spec.loader.load_spec``; read by the matcher and the
numeric passes. Nothing here parses YAML.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, Mapping, get_args

from rewriter.errors import SourceLoc

if TYPE_CHECKING:
    # For the annotation only: importing rewriter.dsl runs its package, which loads the parser (lark)
    # and the checker (onnx); the spec model must stay cheap to import for the command line.
    from rewriter.dsl.ast import Expr

Mode = Literal["symmetric", "asymmetric"]
Granularity = Literal["pertensor", "perchannel"]
#: How a plan picks from an op's config list: the fastest end, the most accurate, or per role.
Preset = Literal["performance", "mixed", "accuracy"]
PRESETS: tuple[str, ...] = get_args(Preset)
#: Model types a spec may give extra rule files for (``model_types``).
ModelType = Literal["transformer"]
MODEL_TYPES: tuple[str, ...] = get_args(ModelType)
# Which layers get 7-bit weights so integer kernels that add two uint8 x int8 products in int16 cannot
# saturate (rewriter.match.saturation): none, the first weighted layers after the model inputs, or all.
SaturationFix = Literal["no", "first_layer", "all"]
SATURATION_FIX_MODES: tuple[SaturationFix, ...] = ("no", "first_layer", "all")


@dataclass(frozen=True)
class QuantizerConfig:
    """One concrete way to quantize a tensor.

    A named config in a spec whose ``mode`` or ``granularity`` is a list expands
    to several QuantizerConfigs with the same ``name``, in listed order
    (first = fastest, last = most accurate), as the original tool did.

    ``level_low``/``level_high`` None means "the default for bits/mode/signedness"
    (the narrow symmetric weight range, the full range otherwise); ``signed``
    None means decided from the data (activations).
    """

    name: str
    bits: int
    mode: Mode
    granularity: Granularity
    level_low: int | None = None
    level_high: int | None = None
    signed: bool | None = None
    unified_zeropoint: bool = False
    loc: SourceLoc = field(default=SourceLoc("<builtin>"), compare=False)

    def __post_init__(self) -> None:
        if self.bits < 2:
            raise ValueError(f"config {self.name}: bits must be >= 2, got {self.bits}")
        if self.mode not in ("symmetric", "asymmetric"):
            raise ValueError(f"config {self.name}: unknown mode {self.mode!r}")
        if self.granularity not in ("pertensor", "perchannel"):
            raise ValueError(f"config {self.name}: unknown granularity {self.granularity!r}")
        if (self.level_low is None) != (self.level_high is None):
            raise ValueError(f"config {self.name}: give both level_low and level_high, or neither")
        if self.level_low is not None and self.level_low >= self.level_high:  # type: ignore[operator]
            raise ValueError(f"config {self.name}: level_low must be below level_high")

    @property
    def key(self) -> tuple:
        """Identity for intersecting configs across consumers (ignores name and location)."""
        return (self.bits, self.mode, self.granularity, self.level_low, self.level_high,
                self.signed, self.unified_zeropoint)

    def describe(self) -> str:
        levels = "" if self.level_low is None else f" [{self.level_low},{self.level_high}]"
        return f"{self.name}({self.bits}b {self.mode} {self.granularity}{levels})"


@dataclass(frozen=True)
class OpVariant:
    """A refinement of an op's entry that applies when a predicate holds.

    ``when`` is a predicate in the rule DSL's predicate syntax (e.g.
    ``attr.group > 1 and shape(1)[1] == 1`` for a depthwise Conv), already
    parsed by the loader into ``when_ast`` (None when it did not parse).
    The first variant whose predicate holds replaces the op's configs.
    """

    name: str
    when: str
    when_ast: Expr | None
    activations: tuple[QuantizerConfig, ...] = ()
    weights: tuple[QuantizerConfig, ...] = ()
    outputs: tuple[QuantizerConfig, ...] = ()
    loc: SourceLoc = field(default=SourceLoc("<builtin>"), compare=False)


PassThrough = Literal["first", "all", "non_const"]


@dataclass(frozen=True)
class OpSpec:
    """What a target does with one ONNX op type.

    - quantizable op: ``activations``/``weights``/``outputs`` name the configs
      allowed on non-constant inputs, constant inputs and outputs; ``ports``
      lists which inputs may be quantized at all (None = every input).
    - agnostic op (MaxPool, Reshape, Concat, ...): never quantized itself; a
      FakeQuantize on its output may move up onto the inputs named by
      ``pass_through`` ("first" = input 0, "all", "non_const").
    - ``unified_scales``: input groups that must share one scale ("all" =
      every input in one group).
    """

    op_type: str
    activations: tuple[QuantizerConfig, ...] = ()
    weights: tuple[QuantizerConfig, ...] = ()
    outputs: tuple[QuantizerConfig, ...] = ()
    ports: tuple[int, ...] | None = None
    agnostic: bool = False
    pass_through: PassThrough = "first"
    unified_scales: tuple[tuple[int, ...], ...] | Literal["all"] | None = None
    variants: tuple[OpVariant, ...] = ()
    note: str = ""
    loc: SourceLoc = field(default=SourceLoc("<builtin>"), compare=False)

    @property
    def quantizable(self) -> bool:
        return bool(self.activations or self.weights or self.outputs) and not self.agnostic


@dataclass(frozen=True)
class PotNames:
    """How the original tool's configuration files named a target (a spec's ``pot`` section).

    ``preset_renames``: the presets that tool's configuration path replaced on
    this device (``{"accuracy": "mixed"}``); ``aliases``: other device names
    this target stands in for, each with what it does not reproduce.
    """

    preset_renames: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class PotDevice:
    """A device name of the original tool's configuration files and the built-in target that serves it.

    ``differs``: None when the target is that device, else what the target
    does not reproduce of it (it only stands in).
    """

    target: str
    preset_renames: Mapping[str, str]
    differs: str | None = None


@dataclass(frozen=True)
class HardwareSpec:
    """A validated hardware target.

    ``rules`` are the rule files (absolute paths) this target's placement uses,
    in order; ``model_types`` the rule files each model type adds;
    ``extends`` is the chain of parent spec names, nearest first; ``pot`` is
    the file's own ``pot`` section (not inherited).
    ``saturation_fix`` is the target's default for which layers get 7-bit
    weights, declared at ``saturation_fix_loc``.
    """

    name: str
    path: str
    description: str = ""
    extends: tuple[str, ...] = ()
    configs: Mapping[str, tuple[QuantizerConfig, ...]] = field(default_factory=lambda: MappingProxyType({}))
    ops: Mapping[str, OpSpec] = field(default_factory=lambda: MappingProxyType({}))
    rules: tuple[str, ...] = ()
    model_types: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    pot: PotNames | None = None
    saturation_fix: SaturationFix = "no"
    saturation_fix_loc: SourceLoc = field(default=SourceLoc("<builtin>"), compare=False)
    loc: SourceLoc = field(default=SourceLoc("<builtin>"), compare=False)
    # The integer type of activations in the QDQ output: "unsigned" (uint8/uint16) or "signed" (int8/int16),
    # and where a spec file of the extends chain says so (the spec's own location when none does).
    activation_storage: str = "unsigned"
    activation_storage_loc: SourceLoc = field(default=SourceLoc("<builtin>"), compare=False)

    def op(self, op_type: str) -> OpSpec | None:
        return self.ops.get(op_type)
