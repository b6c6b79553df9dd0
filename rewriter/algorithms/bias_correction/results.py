"""What bias correction decided per layer, and the new bias values (both methods)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from rewriter.algorithms.bias_correction.targets import BiasTarget

__all__ = ["BiasCorrectionResult", "CorrectionLog", "LayerCorrection", "effective_bias"]


@dataclass(frozen=True)
class LayerCorrection:
    """What happened to one layer's bias.

    ``shift`` is per output channel (new bias - old bias, in the op's terms:
    Gemm's ``beta * C``); ``magnitude`` is what the threshold was compared
    with (``max |shift / old|``, or ``max |shift| / max |float output mean|``
    for a created bias; inf when skipped for a zero bias element).
    ``mean_input_error`` (FastBiasCorrection only): the largest difference, over
    channels, between the float output mean and the float layer's output on the
    constant mean input -- what evaluating at the mean costs on this layer.
    """

    node: str
    op_type: str
    bias: str | None
    created: bool
    accepted: bool
    reason: str
    channels: int = 0
    shift_max_abs: float | None = None
    shift_mean_abs: float | None = None
    magnitude: float | None = None
    mean_input_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True, eq=False)
class BiasCorrectionResult:
    """New bias values, to apply with ``rewriter.ir.edit.apply_weight_updates(model, updates, new_biases)``.

    Attributes:
        method: "FastBiasCorrection" or "BiasCorrection".
        updates: existing bias initializer -> corrected value (same shape and dtype).
        new_biases: node -> (initializer name, bias vector) for layers that had none.
        layers: one entry per target, in graph order (BiasCorrection: topological order).
        threshold: the acceptance threshold used.
        samples: calibration samples the shifts were measured on (FastBiasCorrection:
            the rows of the statistics).
        estimate: FastBiasCorrection's mode ("weights" or "original"); "" for BiasCorrection.
    """

    method: str
    updates: Mapping[str, np.ndarray]
    new_biases: Mapping[str, tuple[str, np.ndarray]]
    layers: tuple[LayerCorrection, ...]
    threshold: float
    samples: int
    estimate: str = ""

    def report(self) -> dict[str, Any]:
        """For the report JSON."""
        return {"method": self.method, **({"estimate": self.estimate} if self.estimate else {}),
                "threshold": self.threshold, "samples": self.samples,
                "corrected": sum(1 for layer in self.layers if layer.accepted),
                "created": sorted(self.new_biases),
                "layers": [layer.to_dict() for layer in self.layers]}


@dataclass
class CorrectionLog:
    method: str
    threshold: float
    estimate: str = ""
    updates: dict[str, np.ndarray] = field(default_factory=dict)
    new_biases: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    layers: list[LayerCorrection] = field(default_factory=list)

    def skip(self, t: BiasTarget, reason: str) -> None:
        self.layers.append(LayerCorrection(t.node, t.op_type, t.bias or t.new_bias_name, t.create, False, reason,
                                           t.channels))

    def decide(self, t: BiasTarget, old: np.ndarray, shift: np.ndarray, float_mean: np.ndarray,
               old_value: np.ndarray | None, mean_input_error: float | None = None) -> bool:
        """Accept or reject ``shift`` (per channel, effective units); record the new value if accepted."""
        magnitude, reason = _magnitude(t, old, shift, float_mean)
        accepted = reason == "" and magnitude < self.threshold
        if reason == "":
            reason = "corrected" if accepted else f"shift magnitude {magnitude:.4g} >= threshold {self.threshold:g}"
        self.layers.append(LayerCorrection(
            t.node, t.op_type, t.bias or t.new_bias_name, t.create, accepted, reason, t.channels,
            float(np.max(np.abs(shift))) if np.all(np.isfinite(shift)) else None,
            float(np.mean(np.abs(shift))) if np.all(np.isfinite(shift)) else None,
            magnitude, mean_input_error))
        if accepted:
            value = ((old + shift) / t.bias_scale).astype(np.float32)
            if t.create:
                assert t.new_bias_name is not None
                self.new_biases[t.node] = (t.new_bias_name, value)
            else:
                assert t.bias is not None and old_value is not None
                self.updates[t.bias] = value.reshape(old_value.shape).astype(old_value.dtype)
        return accepted

    def result(self, samples: int) -> BiasCorrectionResult:
        return BiasCorrectionResult(self.method, dict(self.updates), dict(self.new_biases), tuple(self.layers),
                                    self.threshold, samples, self.estimate)


def _magnitude(t: BiasTarget, old: np.ndarray, shift: np.ndarray, float_mean: np.ndarray) -> tuple[float, str]:
    if not np.all(np.isfinite(shift)):
        return float("inf"), "the shift is not finite"
    if t.create:
        reference = float(np.max(np.abs(float_mean))) if float_mean.size else 0.0
        if reference == 0.0:
            return (0.0, "") if not np.any(shift) else (float("inf"), "the float output mean is 0 in every channel")
        return float(np.max(np.abs(shift)) / reference), ""
    if np.any(old == 0):
        return float("inf"), "the bias has a zero element (the original tool skips such layers)"
    return float(np.max(np.abs(shift / old))), ""


def effective_bias(t: BiasTarget, weights: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """The bias in effective units (per channel, times Gemm's beta) and the stored value."""
    if t.bias is None:
        return np.zeros(t.channels, np.float64), None
    try:
        stored = np.asarray(weights[t.bias])
    except KeyError:
        raise ValueError(f"weights has no value for bias {t.bias!r} (pass bias_constants(targets) too)") from None
    return stored.astype(np.float64).reshape(t.channels) * t.bias_scale, stored
