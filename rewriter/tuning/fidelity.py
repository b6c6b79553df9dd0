"""How close a quantized model's outputs are to the float model's, on the same samples.

Per output tensor, over all compared samples together:

- ``sqnr_db``: 10 log10(sum f^2 / sum (f - q)^2), f the float values, q the quantized ones
  (inf when they are equal, -inf when the float output is all zeros and the quantized one is not);
- ``top1_agreement``: for rank-2 outputs whose last axis has more than one value (a batch of class
  scores, logits or probabilities), the share of rows whose arg-max is the same in both; not for rows
  the float model gives unit L2 norm (a normalized embedding, whose arg-max means nothing);
- ``cosine``: for outputs whose last axis has more than one value (embeddings, sequences of scores), the
  mean over rows of the last axis of the cosine similarity between float and quantized rows (a row that is
  zero in both counts as 1, in one only as 0; zero means 120 dB below the largest float row, so that a
  background of exact zeros in one model and of 1e-27 in the other agrees).

The score the fidelity guard keeps above its threshold is the worst output's SQNR (``worst_sqnr_db``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

__all__ = ["Fidelity", "OutputFidelity", "compare_outputs"]


@dataclass(frozen=True)
class OutputFidelity:
    """The figures of one output tensor (None where the measure does not apply to its shape)."""

    name: str
    shape: tuple[int, ...]
    sqnr_db: float
    top1_agreement: float | None = None
    cosine: float | None = None
    mismatched: int = 0  # samples left out: the two models gave this output different shapes

    def as_dict(self) -> dict:
        return {"output": self.name, "shape": list(self.shape),
                "sqnr_db": None if math.isnan(self.sqnr_db) else _round(self.sqnr_db),
                "top1_agreement": None if self.top1_agreement is None else round(self.top1_agreement, 6),
                "cosine": None if self.cosine is None else round(self.cosine, 6),
                "samples_with_other_shapes": self.mismatched}


@dataclass(frozen=True)
class Fidelity:
    """Every output's figures, in the model's output order."""

    outputs: tuple[OutputFidelity, ...]
    samples: int

    @property
    def worst_sqnr_db(self) -> float:
        """The lowest output SQNR; outputs with no comparable sample do not count (inf when none is left)."""
        return min((o.sqnr_db for o in self.outputs if not math.isnan(o.sqnr_db)), default=math.inf)

    def worst_output(self) -> OutputFidelity | None:
        return min((o for o in self.outputs if not math.isnan(o.sqnr_db)), key=lambda o: o.sqnr_db, default=None)

    def summary(self, held_out: bool = True) -> str:
        """One phrase for the summary line: the worst output's SQNR and, where measured, its agreement."""
        worst = self.worst_output()
        if worst is None:
            return "no outputs compared"
        parts = [f"output SQNR {_text(worst.sqnr_db)} dB"]
        if len(self.outputs) > 1:
            parts[0] += f" (worst of {len(self.outputs)}, {worst.name})"
        agreements = [o.top1_agreement for o in self.outputs if o.top1_agreement is not None]
        if agreements:
            parts.append(f"top-1 agreement {min(agreements):.3f}")
        cosines = [o.cosine for o in self.outputs if o.cosine is not None and o.top1_agreement is None]
        if cosines:
            parts.append(f"cosine {min(cosines):.4f}")
        kind = "held-out" if held_out else "calibration"
        return ", ".join(parts) + f" on {self.samples} {kind} samples"


def compare_outputs(names: Sequence[str], float_runs: Sequence[Mapping[str, np.ndarray]],
                    quantized_runs: Sequence[Mapping[str, np.ndarray]]) -> Fidelity:
    """The fidelity of ``quantized_runs`` against ``float_runs`` (one mapping per sample, same order).

    Samples are concatenated along their first axis per output, so shapes may differ between samples
    only in that axis (a dynamic batch); outputs of other dynamic shapes are flattened per sample.
    Samples on which an output's float and quantized shapes differ (a detector's count of boxes after
    non-maximum suppression) are left out of that output's figures, and ``mismatched`` counts them; an
    output that is not a numeric tensor (a sequence, a map) is not compared.
    """
    if len(float_runs) != len(quantized_runs):
        raise ValueError(f"{len(float_runs)} float runs against {len(quantized_runs)} quantized runs")
    outputs = []
    for name in names:
        pairs = [(np.asarray(a[name]), np.asarray(b[name])) for a, b in zip(float_runs, quantized_runs)]
        if not all(_numeric(a) and _numeric(b) for a, b in pairs):
            continue
        matched = [(a, b) for a, b in pairs if a.shape == b.shape]
        if not matched:
            outputs.append(OutputFidelity(name, pairs[0][0].shape if pairs else (), math.nan,
                                          mismatched=len(pairs)))
            continue
        shape = matched[0][0].shape
        same_tail = len(shape) >= 1 and all(a.shape[1:] == shape[1:] for a, _ in matched)
        layout = (-1, *shape[1:]) if same_tail else (-1,)
        result = _output_fidelity(name, tuple(shape), [(a.reshape(layout), b.reshape(layout)) for a, b in matched])
        outputs.append(replace(result, mismatched=len(pairs) - len(matched)))
    return Fidelity(tuple(outputs), len(float_runs))


def _output_fidelity(name: str, shape: tuple[int, ...], samples: list[tuple[np.ndarray, np.ndarray]]) -> OutputFidelity:
    """The figures over ``samples`` (float, quantized), each already shaped as its rows are compared.

    The sums run sample by sample in float64: the same figures as over the joined samples, without float64
    copies of them all (an output of a few million values per sample made the check cost more than the runs
    it compares)."""
    noise = power = 0.0
    ndim, last = samples[0][0].ndim, samples[0][0].shape[-1]
    by_rows = ndim >= 2 and last > 1
    float_norms: list[np.ndarray] = []
    quantized_norms: list[np.ndarray] = []
    dots: list[np.ndarray] = []
    same_top1: list[np.ndarray] = []
    for float_part, quantized_part in samples:
        f, q = float_part.astype(np.float64), quantized_part.astype(np.float64)
        flat_f, difference = f.reshape(-1), (f - q).reshape(-1)
        noise += float(difference @ difference)
        power += float(flat_f @ flat_f)
        if not by_rows:
            continue
        rows_f, rows_q = f.reshape(-1, last), q.reshape(-1, last)
        float_norms.append(np.sqrt(np.einsum("ij,ij->i", rows_f, rows_f)))
        quantized_norms.append(np.sqrt(np.einsum("ij,ij->i", rows_q, rows_q)))
        dots.append(np.einsum("ij,ij->i", rows_f, rows_q))
        if ndim == 2:
            same_top1.append(np.argmax(rows_f, axis=-1) == np.argmax(rows_q, axis=-1))
    sqnr = math.inf if noise == 0.0 else (-math.inf if power == 0.0 else 10.0 * math.log10(power / noise))
    top1 = cosine = None
    if by_rows:
        norm_f, norm_q, dot = np.concatenate(float_norms), np.concatenate(quantized_norms), np.concatenate(dots)
        # A normalized embedding's rows have unit norm: their arg-max means nothing.
        if ndim == 2 and not np.allclose(norm_f, 1.0, atol=1e-3):
            top1 = float(np.mean(np.concatenate(same_top1)))
        # A row counts as zero 120 dB below the output's largest float row: a probability map's background
        # is exactly 0 in one model and 1e-27 in the other, and those rows agree.
        floor = _ZERO_ROW * float(norm_f.max(initial=0.0))
        zero_f, zero_q = norm_f <= floor, norm_q <= floor
        norms = norm_f * norm_q
        per_row = np.where(zero_f | zero_q, np.where(zero_f & zero_q, 1.0, 0.0),
                           dot / np.where(norms > 0, norms, 1.0))
        cosine = float(np.mean(per_row))
    return OutputFidelity(name, shape, sqnr, top1, cosine)


#: A row whose norm is this far below the largest float row's is zero, for the cosine (120 dB).
_ZERO_ROW = 1e-6


def _numeric(values: np.ndarray) -> bool:
    """A tensor of numbers (an output that is a sequence or a map comes as objects, and is not compared)."""
    return values.dtype.kind in "biuf"


def _round(value: float) -> float:
    return value if math.isinf(value) else round(value, 3)


def _text(value: float) -> str:
    return "inf" if value == math.inf else ("-inf" if value == -math.inf else f"{value:.1f}")
