"""The self-check of every quantize run: the output, loaded in its runtime, against the float model.

The samples are held out from the ranges: ``held_out_ids`` draws them, seeded, from the samples of the
data source the calibration subset did not take. When the subset took every sample, the check reuses
calibration samples and says so (``HeldOut.held_out`` False): its figures then flatter the output, since
the ranges were fitted to exactly those values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from rewriter.emit.runtime_check import ModelRunner
from rewriter.tuning.fidelity import Fidelity, compare_outputs

__all__ = ["CLEAR_MARGIN_DB", "EARLY_SAMPLES", "HeldOut", "SelfCheck", "held_out_ids"]


@dataclass(frozen=True)
class HeldOut:
    """The sample ids the check runs, and whether they were kept out of the ranges."""

    ids: tuple[int, ...]
    held_out: bool

    def describe(self, used: int | None = None) -> str:
        """What the check's samples are; ``used``: how many of them the figures come from (default all)."""
        count = len(self.ids) if used is None else used
        early = "" if count >= len(self.ids) else (
            f" (the first {count} of {len(self.ids)}: their worst output cleared the threshold by "
            f"{CLEAR_MARGIN_DB:g} dB or more, so the rest were not run)")
        if self.held_out:
            return f"{count} samples not used for the ranges{early}"
        return (f"{count} calibration samples{early}: the subset took every sample of the source, so none "
                "was held out and the figures flatter the output")


def held_out_ids(total: int, used: Sequence[int], count: int, seed: int) -> HeldOut:
    """Up to ``count`` sample ids in ``0..total-1`` outside ``used``, drawn with ``seed``; sorted.

    With fewer unused samples than ``count``, all of them; with none, ``count`` of the used ones.
    """
    if count < 1 or total < 1:
        return HeldOut((), False)
    taken = set(int(i) for i in used)
    unused = np.array([i for i in range(total) if i not in taken], dtype=np.int64)
    # Its own stream of the seed: the subset's draw (default_rng(seed)) and this one do not correlate.
    rng = np.random.default_rng((seed, 0x5E1F))
    if unused.size:
        chosen = rng.permutation(unused)[:count]
        return HeldOut(tuple(sorted(int(i) for i in chosen)), True)
    chosen = rng.permutation(np.array(sorted(taken), dtype=np.int64))[:count]
    return HeldOut(tuple(sorted(int(i) for i in chosen)), False)


#: The check's first stage: this many samples, and the rest only when they do not clear the threshold.
EARLY_SAMPLES = 8
#: How far above the threshold the first stage's worst output SQNR must be to stop there (dB: 10x in power).
CLEAR_MARGIN_DB = 10.0


class SelfCheck:
    """The float model's outputs on the check samples, computed once each; ``measure`` compares a quantized
    model.

    Args:
        float_model: the float model (onnx.ModelProto), run in onnxruntime.
        samples: the check samples (input name -> array).
        runtime: the runtime of the quantized output ("onnxruntime" or "openvino").
        float_runs: the float model's outputs on ``samples`` when already computed (one mapping per
            sample, same order); else they are computed here, as far as a measurement needs them.
        held_out: where ``samples`` come from, for the report (``HeldOut``), when known.
    """

    def __init__(self, float_model: Any, samples: Sequence[Mapping[str, np.ndarray]], runtime: str,
                 float_runs: Sequence[Mapping[str, np.ndarray]] | None = None,
                 held_out: HeldOut | None = None) -> None:
        self.samples = [dict(s) for s in samples]
        self.held_out = held_out
        self.runtime = runtime
        self.output_names = [o.name for o in float_model.graph.output]
        self._float_model: Any = float_model
        self._float_runner: ModelRunner | None = None
        self._float_runs: list[dict[str, np.ndarray]] = []
        if float_runs is not None and len(float_runs) == len(self.samples):
            # Calibration samples: the statistics pass ran the float model on them already.
            self._float_runs = [dict(r) for r in float_runs]
        self.measurements = 0

    def float_runs(self, count: int) -> list[dict[str, np.ndarray]]:
        """The float model's outputs on the first ``count`` samples (run here the first time they are asked)."""
        count = min(count, len(self.samples))
        if len(self._float_runs) < count:
            if self._float_runner is None:
                self._float_runner = ModelRunner(self._float_model, "onnxruntime", "the float model")
            self._float_runs.extend(self._float_runner.run(self.samples[len(self._float_runs):count]))
        return self._float_runs[:count]

    def measure(self, quantized_model: Any, clear_above_db: float | None = None,
                known_runs: Sequence[Mapping[str, np.ndarray]] = ()) -> Fidelity:
        """Load and run ``quantized_model`` on the samples; its fidelity against the float runs.

        With ``clear_above_db``, the first ``EARLY_SAMPLES`` samples run first, and when every output's SQNR
        on them is at least that (and every top-1 agreement whole) the figures of those samples are the
        result (``Fidelity.samples`` says how many): a model this far above the threshold needs no more
        evidence, and the check costs a quarter. Otherwise all samples are compared. ``known_runs``: the
        model's outputs on the first samples, already run in the same runtime (the speed guard's timed
        runs); only the samples past them are run here, and the model is loaded only if any are.

        Raises:
            RuntimeRefused: the runtime cannot load or run it.
        """
        self.measurements += 1
        known = [dict(r) for r in known_runs[:len(self.samples)]]
        runner: list[ModelRunner] = []

        def outputs(start: int, stop: int) -> list[dict[str, np.ndarray]]:
            have = known[start:stop]
            if start + len(have) < stop:
                if not runner:
                    runner.append(ModelRunner(quantized_model, self.runtime, "the quantized model"))
                have = have + runner[0].run(self.samples[start + len(have):stop])
            return have

        if clear_above_db is not None and len(self.samples) > EARLY_SAMPLES:
            early = outputs(0, EARLY_SAMPLES)
            fidelity = compare_outputs(self.output_names, self.float_runs(EARLY_SAMPLES), early)
            if _clears(fidelity, clear_above_db):
                return fidelity
            runs = early + outputs(EARLY_SAMPLES, len(self.samples))
        else:
            runs = outputs(0, len(self.samples))
        return compare_outputs(self.output_names, self.float_runs(len(self.samples)), runs)

    def in_runtime(self, runtime: str) -> SelfCheck:
        """The same check in another runtime (its float runs shared, not run again)."""
        other = object.__new__(SelfCheck)
        other.__dict__.update(self.__dict__)
        other.runtime, other.measurements = runtime, 0
        return other

    def first(self, count: int) -> SelfCheck:
        """The same check on its first ``count`` samples (float runs made so far are reused, not run again)."""
        if count >= len(self.samples):
            return self
        subset = object.__new__(SelfCheck)
        subset.samples, subset.runtime, subset.output_names = self.samples[:count], self.runtime, self.output_names
        subset._float_model, subset._float_runner = self._float_model, self._float_runner
        subset._float_runs, subset.measurements = self._float_runs[:count], 0
        subset.held_out = None if self.held_out is None else HeldOut(self.held_out.ids[:count], self.held_out.held_out)
        return subset


def _clears(fidelity: Fidelity, clear_above_db: float) -> bool:
    compared = [o for o in fidelity.outputs if not math.isnan(o.sqnr_db)]
    return bool(compared) and all(o.sqnr_db >= clear_above_db and o.top1_agreement in (None, 1.0)
                                  for o in compared)
