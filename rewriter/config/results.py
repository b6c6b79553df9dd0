"""What ``load_config`` returns: the checked configuration file as frozen values.

``LoadedConfig`` holds what the file sets (None / empty = not set), the
algorithms in file order, the quantizer overrides of the ``weights`` and
``activations`` sections, the pipeline settings, and the notices the user
should read.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

from rewriter.algorithms.minmax import RangeOptions
from rewriter.calibrate.loaders import LOADER_PATTERN
from rewriter.errors import SourceLoc, UserError, UserErrors
from rewriter.match.planner import IgnoredOperation
from rewriter.spec.model import Granularity, Mode, QuantizerConfig
from rewriter.tuning.accuracy_aware import AccuracyAwareSettings
from rewriter.tuning.tpe_settings import TpeSettings

__all__ = ["AlgorithmConfig", "LoadedConfig", "Notice", "PipelineSettings", "QuantizerOverride",
           "QuantizerOverrides"]


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


_MODES: tuple[str, ...] = get_args(Mode)
_GRANULARITIES: tuple[str, ...] = get_args(Granularity)


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
    bias_correction: Literal["fast", "full"] | None = None
    bias_threshold: float | None = None
    bias_apply_for_all_nodes: bool = False
    layerwise_tuning: bool = False
    saturation_fix: str | None = None
    smoothing: float | None = None  # activation smoothing alpha (``smoothing_alpha``, this tool's extension)
    # The self-check and the fidelity guard (this tool's extension; None: not set by the file).
    self_check: bool | None = None
    check_samples: int | None = None
    guard: bool | None = None
    guard_threshold: float | None = None
    guard_budget: int | None = None


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
    preset_loc: SourceLoc | None = None  # where the file's preset is written
    device: str | None = None  # target_device as the original tool named it (CPU_SPR), for preset renames
    subset_size: int | None = None
    seed: int | None = None
    batch_size: int | None = None
    ignore_scope: tuple[str, ...] = ()
    ignore_scope_sources: tuple[tuple[str, SourceLoc], ...] = ()  # where each ignore_scope name is written
    ignore_ops: tuple[IgnoredOperation, ...] = ()
    model_type: str | None = None
    model_type_loc: SourceLoc | None = None
    ranges: RangeOptions | None = None
    quantizers: QuantizerOverrides = QuantizerOverrides()
    algorithms: tuple[AlgorithmConfig, ...] = ()
    pipeline: PipelineSettings = PipelineSettings()
    # AccuracyAwareQuantization's parameters when the file names it (it runs when a metric is given).
    accuracy_aware: AccuracyAwareSettings | None = None
    tpe: TpeSettings | None = None  # the TPE entry's settings (it runs when a metric is given)
    data_source: str | None = None
    data_source_loc: SourceLoc | None = None
    model: str | None = None  # model.model, resolved like data_source
    model_loc: SourceLoc | None = None
    unsupported: tuple[Notice, ...] = ()
    warnings: tuple[Notice, ...] = ()

    def option_fields(self) -> dict[str, Any]:
        """The QuantizeOptions fields this file sets (and only those)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in ("target", "preset", "subset_size", "seed",
                                                              "batch_size", "model_type", "ranges")
                               if getattr(self, k) is not None}
        if self.ignore_scope:
            out["ignore_scope"] = self.ignore_scope
            out["ignore_scope_sources"] = self.ignore_scope_sources
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
        for key in ("self_check", "check_samples", "guard", "guard_threshold", "guard_budget"):
            if getattr(self.pipeline, key) is not None:
                out[key] = getattr(self.pipeline, key)
        if self.pipeline.layerwise_tuning:
            out["layerwise_tuning"] = True
            samples = self._layerwise_samples()
            if samples is not None:
                out["layerwise_samples"] = samples
        if not self.quantizers.is_empty():
            out["quantizer_overrides"] = self.quantizers
        return out

    def model_and_data(self, model: str | None, data: object) -> tuple[str | None, object]:
        """The model and the calibration data to use: those given (not None), else the file's.

        Raises:
            UserErrors: every problem with the file's ``model.model`` and ``engine.data_source`` that is used.
        """
        problems: list[UserError] = []
        if model is None:
            try:
                model = self.onnx_model()
            except UserError as error:
                problems.append(error)
        if data is None:
            try:
                data = self.checked_data_source()
            except UserError as error:
                problems.append(error)
        if problems:
            raise problems[0] if len(problems) == 1 else UserErrors(problems)
        return model, data

    def checked_data_source(self) -> str | None:
        """``engine.data_source`` (the calibration data when the command line gives none).

        Raises:
            UserError: at its position, when it names neither an existing path nor a loader.
        """
        source = self.data_source
        if source is None or Path(source).exists() or LOADER_PATTERN.match(source):
            return source
        raise UserError(f"engine.data_source names '{source}', which does not exist (a relative path is tried from "
                        "the working directory, then from the config file's folder); give --data, or fix the path",
                        self.data_source_loc)

    def onnx_model(self) -> str | None:
        """``model.model`` when it names an .onnx file (the model when the command line gives none).

        Raises:
            UserError: it names another kind of file (the original tool's OpenVINO IR .xml) or none at all.
        """
        if self.model is None:
            return None
        if Path(self.model).suffix.lower() != ".onnx":
            raise UserError(f"model.model names '{self.model}', not an .onnx file: rewriter quantizes ONNX models; "
                            "give the .onnx model on the command line (MODEL)", self.model_loc)
        if not Path(self.model).is_file():
            raise UserError(f"model.model names '{self.model}', which does not exist (a relative path is tried "
                            "from the working directory, then from the config file's folder)", self.model_loc)
        return self.model

    def _layerwise_samples(self) -> int | None:
        """num_samples_for_tuning of the entry that turns layer-wise tuning on (kept in its params)."""
        for algo in self.algorithms:
            if algo.params.get("use_layerwise_tuning"):
                return algo.params.get("num_samples_for_tuning")
        return None

