"""What a quantization run is asked to do: ``QuantizeOptions`` and the names its fields take.

This module sits below the configuration reader (``rewriter.config``), the
pipeline and the API, so that each of them builds or reads options without
importing the others. The names its fields take are listed once, in
``rewriter.choices`` (re-exported here).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rewriter.algorithms.minmax import RangeOptions
from rewriter.calibrate.data import ImageOptions
from rewriter.choices import (BIAS_CORRECTIONS, DEFAULT_TARGETS, MODEL_TYPES, OPTIMIZE_FOR, OUTPUT_FORMATS, PRESETS,
                              SATURATION_FIX_MODES, BiasCorrection, ModelType, OptimizeFor, OutputFormat, Preset,
                              SaturationFix)
from rewriter.errors import SourceLoc, UserError
from rewriter.match.planner import IgnoredOperation

__all__ = ["DEFAULT_CHECK_SAMPLES", "DEFAULT_GUARD_BUDGET", "DEFAULT_GUARD_BATCH", "DEFAULT_GUARD_THRESHOLD_DB",
           "BIAS_CORRECTIONS", "BiasCorrection", "DEFAULT_TARGETS", "MODEL_TYPES", "ModelType", "OUTPUT_FORMATS",
           "OPTIMIZE_FOR", "OptimizeFor", "OutputFormat", "PRESETS", "Preset", "QuantizeOptions"]



#: The fidelity guard acts when the worst output SQNR (dB, on the self-check's held-out samples) is below
#: this. Chosen by measurement (docs/fidelity.md): every healthy test and benchmark model stays above it
#: with room, a quantized LayerNorm falls far below it.
DEFAULT_GUARD_THRESHOLD_DB = 12.0
#: Samples the self-check runs through both models. Each costs one float and one quantized inference (per
#: guard measurement), so few; but the output SQNR of 8 samples swung by 13 dB against 440 on magika, whose
#: per-sample errors are heavy-tailed, and 32 came within 2.5 dB (docs/fidelity.md).
DEFAULT_CHECK_SAMPLES = 32
#: Re-measurements the guard may spend, and candidates it reverts per growing step (rewriter.tuning.revert_search).
DEFAULT_GUARD_BUDGET = 12
DEFAULT_GUARD_BATCH = 8


@dataclass(frozen=True)
class QuantizeOptions:
    """Everything that decides the output besides the model and the data.

    ``bias_correction`` None means "not given", which runs none, as "none" does.
    """

    target: str = ""  # "" (not given): the default for the output format, DEFAULT_TARGETS
    preset: Preset = "performance"
    subset_size: int | None = 300
    seed: int = 0
    output_format: OutputFormat = "qdq"
    rules: tuple[str, ...] = ()
    ignore_scope: tuple[str, ...] = ()
    ignore_ops: tuple[IgnoredOperation, ...] = ()
    # Where a config file's ignored.scope wrote each of its names, for messages and trails.
    ignore_scope_sources: tuple[tuple[str, SourceLoc], ...] = ()
    model_type: ModelType | None = None
    ranges: RangeOptions = field(default_factory=RangeOptions)
    batch_size: int | None = None
    progress: bool = False
    image_options: ImageOptions | None = None
    channel_alignment: bool = False
    bias_correction: BiasCorrection | None = None
    bias_threshold: float | None = None
    quantizer_overrides: Any = None  # an object with .apply(config, role) (config file weights/activations)
    layerwise_tuning: bool = False
    layerwise_samples: int | None = None  # tuning samples (num_samples_for_tuning); None: 16
    smoothing: float | None = None  # activation smoothing (SmoothQuant) strength alpha; None: off
    saturation_fix: SaturationFix | None = None  # first_layer | all | no: layers with 7-bit weights; None: the target's
    # The self-check (the output run in its runtime against the float model on held-out samples) and the
    # fidelity guard (reverts to float while the worst output SQNR is below the threshold): docs/fidelity.md.
    self_check: bool = True
    check_samples: int = DEFAULT_CHECK_SAMPLES
    guard: bool = True
    guard_threshold: float = DEFAULT_GUARD_THRESHOLD_DB
    guard_budget: int = DEFAULT_GUARD_BUDGET
    guard_batch: int = DEFAULT_GUARD_BATCH
    # The speed guard (rewriter.tuning.speed_guard): None runs it for QDQ output on the ORT target. "size"
    # keeps reverts to groups without weights: a slower model is accepted to keep the file small.
    speed_guard: bool | None = None
    optimize_for: OptimizeFor = "latency"
    # Where the speed guard keeps its measured decisions, so that a run repeated on this machine gives the
    # same output (rewriter.tuning.speed_cache): True the user's cache folder, a path another, False none.
    speed_cache: bool | str = True

    def __post_init__(self) -> None:
        if not self.target and self.output_format in DEFAULT_TARGETS:
            object.__setattr__(self, "target", DEFAULT_TARGETS[self.output_format])
        if self.bias_correction not in (None, *BIAS_CORRECTIONS):
            raise UserError(f"unknown bias correction {self.bias_correction!r}; choose fast, full or none")
        if self.output_format not in OUTPUT_FORMATS:
            raise UserError(f"unknown output format {self.output_format!r}; choose qdq or fakequantize")
        if self.subset_size is not None and self.subset_size < 1:
            raise UserError(f"subset size must be at least 1, got {self.subset_size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {self.batch_size}")
        if self.seed < 0:
            # numpy's generators take only seeds >= 0; the original tool's config files say the same.
            raise UserError(f"seed must be 0 or more, got {self.seed}")
        if self.smoothing is not None and not 0.0 < self.smoothing < 1.0:
            raise UserError(f"activation smoothing alpha must be between 0 and 1, got {self.smoothing}")
        if self.saturation_fix is not None and self.saturation_fix not in SATURATION_FIX_MODES:
            raise UserError(f"unknown saturation fix {self.saturation_fix!r}; choose one of "
                            f"{', '.join(SATURATION_FIX_MODES)}")
        for name, value in (("self-check samples", self.check_samples), ("guard budget", self.guard_budget),
                            ("guard batch", self.guard_batch)):
            if value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        if not -1000.0 < self.guard_threshold < 1000.0:  # also refuses NaN
            raise UserError(f"the guard threshold is an output SQNR in dB, got {self.guard_threshold}")
        if not isinstance(self.speed_cache, (bool, str)) or self.speed_cache == "":
            raise UserError(f"speed_cache must be True, False or a folder, got {self.speed_cache!r}")
        if self.optimize_for not in OPTIMIZE_FOR:
            raise UserError(f"unknown optimization goal {self.optimize_for!r}; choose latency or size")
        if self.layerwise_samples is not None and self.layerwise_samples < 1:
            raise UserError(f"layer-wise tuning samples must be at least 1, got {self.layerwise_samples}")

    @property
    def bias_method(self) -> Literal["fast", "full"] | None:
        """The bias correction to run, None for none (not given, or "none")."""
        return None if self.bias_correction in (None, "none") else self.bias_correction  # type: ignore[return-value]
