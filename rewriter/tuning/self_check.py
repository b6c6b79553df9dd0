"""The self-check of every quantize run: the output, loaded in its runtime, against the float model.

The samples are held out from the ranges: ``held_out_ids`` draws them, seeded, from the samples of the
data source the calibration subset did not take. When the subset took every sample, the check reuses
calibration samples and says so (``HeldOut.held_out`` False): its figures then flatter the output, since
the ranges were fitted to exactly those values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from rewriter.emit.runtime_check import ModelRunner
from rewriter.tuning.fidelity import Fidelity, compare_outputs

__all__ = ["HeldOut", "SelfCheck", "held_out_ids"]


@dataclass(frozen=True)
class HeldOut:
    """The sample ids the check runs, and whether they were kept out of the ranges."""

    ids: tuple[int, ...]
    held_out: bool

    def describe(self) -> str:
        if self.held_out:
            return f"{len(self.ids)} samples not used for the ranges"
        return (f"{len(self.ids)} calibration samples: the subset took every sample of the source, so none "
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


class SelfCheck:
    """The float model's outputs on the check samples, computed once; ``measure`` compares a quantized model.

    Args:
        float_model: the float model (onnx.ModelProto), run in onnxruntime.
        samples: the check samples (input name -> array).
        runtime: the runtime of the quantized output ("onnxruntime" or "openvino").
        float_runs: the float model's outputs on ``samples`` when already computed (one mapping per
            sample, same order); else they are computed here.
    """

    def __init__(self, float_model: Any, samples: Sequence[Mapping[str, np.ndarray]], runtime: str,
                 float_runs: Sequence[Mapping[str, np.ndarray]] | None = None) -> None:
        self.samples = [dict(s) for s in samples]
        self.runtime = runtime
        self.output_names = [o.name for o in float_model.graph.output]
        if float_runs is not None and len(float_runs) == len(self.samples):
            # Calibration samples: the statistics pass ran the float model on them already.
            self.float_runs = [dict(r) for r in float_runs]
        else:
            self.float_runs = ModelRunner(float_model, "onnxruntime", "the float model").run(self.samples)
        self.measurements = 0

    def measure(self, quantized_model: Any) -> Fidelity:
        """Load and run ``quantized_model`` on the samples; its fidelity against the float runs.

        Raises:
            RuntimeRefused: the runtime cannot load or run it.
        """
        self.measurements += 1
        runs = ModelRunner(quantized_model, self.runtime, "the quantized model").run(self.samples)
        return compare_outputs(self.output_names, self.float_runs, runs)
