"""Loading an emitted model in the runtime its format is for, and running it on samples.

QDQ output is for onnxruntime; FakeQuantize output (org.openvinotoolkit domain) is for OpenVINO, which
is optional (the ``openvino`` extra): onnxruntime has no FakeQuantize kernel and refuses such a model, so
without OpenVINO it cannot be run here, and ``runtime_for`` says so (None). OpenVINO runs on its CPU
plugin with float32 inference precision. The runtime "openvino-simulated" is OpenVINO with its
low-precision transformations off (``LP_TRANSFORMS_MODE``): every FakeQuantize is computed in float and no
layer runs on integers, which tells a fault of the plan from a fault of OpenVINO's integer execution.

A model the runtime refuses, at load or at run, raises ``RuntimeRefused`` with the runtime's own message
and the node it names (onnxruntime writes 'In Node, ("name", ...', "Node (name)" or "node. Name:'name'").

Samples run batched where the model allows it, as in the statistics pass: every input's first axis is
dynamic and consecutive samples have batch 1 and equal shapes. The first batched run is checked against
its first and last samples run alone; a model whose outputs do not agree (one that mixes samples, or has
an output without batch axis) runs one sample at a time. Quantized models gain most: onnxruntime's
integer kernels were measured 1.5x to 3x faster per sample at batch 8 than at batch 1 on the benchmark's
convolutional models, where the float ones gained little.
"""
from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx

from rewriter.calibrate.batching import batch_key, batch_rows_agree, dynamic_batch
from rewriter.calibrate.inputs import model_inputs
from rewriter.calibrate.session import open_session, session_options
from rewriter.errors import RuntimeRefused

__all__ = ["CHECK_BATCH_SIZE", "OPENVINO_PRECISION", "SIMULATED", "ModelRunner", "runtime_for"]

#: Samples per run when the model allows batching (see the module docstring).
CHECK_BATCH_SIZE = 8
#: The inference precision the check asks OpenVINO for (its CPU default is bf16 where the CPU has it).
OPENVINO_PRECISION = "f32"
#: OpenVINO computing every FakeQuantize in float (its low-precision transformations off).
SIMULATED = "openvino-simulated"

_NODE_PATTERNS = (re.compile(r"In Node, \(\"([^\"]+)\""), re.compile(r"[Nn]ode \(([^)]+)\)"),
                  re.compile(r"node\. Name:\s*'([^']*)'"), re.compile(r"[Nn]ode name:?\s*'?([^'\s,]+)"))


def runtime_for(output_format: str) -> str | None:
    """The runtime that runs ``output_format`` here: "onnxruntime", "openvino", or None (not installed)."""
    if output_format == "qdq":
        return "onnxruntime"
    return "openvino" if importlib.util.find_spec("openvino") is not None else None


class ModelRunner:
    """One loaded model: ``run(samples)`` gives its outputs per sample, by output name.

    Args:
        model: the model to load (not modified).
        runtime: "onnxruntime", "openvino" (``runtime_for``) or "openvino-simulated" (module docstring).
        what: how messages name the model ("the quantized model").

    Raises:
        RuntimeRefused: the runtime cannot load the model.
    """

    def __init__(self, model: onnx.ModelProto, runtime: str, what: str,
                 batch_size: int = CHECK_BATCH_SIZE) -> None:
        self.what = what
        self.runtime = runtime
        self.output_names = [o.name for o in model.graph.output]
        self.batch_size = batch_size
        self.can_batch = batch_size > 1 and dynamic_batch(model_inputs(model))
        self.verified = False
        try:
            self._run = (_onnxruntime(model) if runtime == "onnxruntime"
                         else _openvino(model, low_precision=runtime != SIMULATED))
        except RuntimeRefused:
            raise
        except Exception as e:  # the runtimes' errors have no common public base class
            raise refused(f"{runtime} cannot load {what}", e) from None

    def run(self, samples: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """The outputs for each sample, in order.

        Raises:
            RuntimeRefused: the runtime fails on a sample.
        """
        results: list[dict[str, np.ndarray]] = []
        start = 0
        while start < len(samples):
            group = self._next_group(samples, start)
            batched = self._run_batched(group) if len(group) > 1 else None
            results.extend(batched if batched is not None else [self._run_one(s) for s in group])
            start += len(group)
        return results

    def _next_group(self, samples: Sequence[Mapping[str, np.ndarray]], start: int) -> list[Mapping[str, np.ndarray]]:
        """The samples from ``start`` that can share one run (just the first when none can)."""
        key = batch_key(samples[start]) if self.can_batch else None
        end = start + 1
        while key is not None and end < len(samples) and end - start < self.batch_size \
                and batch_key(samples[end]) == key:
            end += 1
        return list(samples[start:end])

    def _run_one(self, sample: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self._run(dict(sample))
        except Exception as e:  # see __init__
            raise refused(f"{self.runtime} cannot run {self.what}", e) from None
        return dict(zip(self.output_names, values))

    def _run_batched(self, group: list[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]] | None:
        """The outputs of ``group`` from one concatenated run, split per sample; None when the model cannot
        batch (it is then run one sample at a time from here on)."""
        feeds = {name: np.concatenate([s[name] for s in group], axis=0) for name in group[0]}
        try:
            values = dict(zip(self.output_names, self._run(feeds)))
        except Exception:  # a batch size written into the model: the single runs say whether it is refused
            self.can_batch = False
            return None
        n = len(group)
        if any(np.ndim(v) == 0 or np.shape(v)[0] != n for v in values.values()):
            self.can_batch = False
            return None
        rows = [{name: v[i:i + 1] for name, v in values.items()} for i in range(n)]
        if not self.verified:
            alone = (self._run_one(group[0]), self._run_one(group[-1]))
            if not all(batch_rows_agree(got[name], ref[name])
                       for got, ref in ((rows[0], alone[0]), (rows[-1], alone[1])) for name in self.output_names):
                self.can_batch = False
                return None
            self.verified = True
        return rows


def _onnxruntime(model: onnx.ModelProto) -> Callable[[dict[str, np.ndarray]], list[Any]]:
    session = open_session(model, session_options())
    names = [o.name for o in model.graph.output]
    return lambda feeds: session.run(names, feeds)


def _openvino(model: onnx.ModelProto, low_precision: bool = True) -> Callable[[dict[str, np.ndarray]], list[Any]]:
    import openvino

    core = openvino.Core()
    with tempfile.TemporaryDirectory(prefix="rewriter-check-") as tmp:
        from rewriter.ir.load import save_model
        path = os.path.join(tmp, "model.onnx")
        save_model(model, path)
        # f32: on CPUs with bf16 (or f16) arithmetic OpenVINO's default runs the float parts in it, and the check
        # would charge that rounding to the quantization (the float model it is compared with runs in float32).
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION}
        if not low_precision:
            config["LP_TRANSFORMS_MODE"] = False
        compiled = core.compile_model(core.read_model(path), "CPU", config)
    outputs = list(compiled.outputs)

    def run(feeds: dict[str, np.ndarray]) -> list[Any]:
        result = compiled(feeds)
        return [np.asarray(result[o]) for o in outputs]
    return run


def refused(what: str, error: BaseException) -> RuntimeRefused:
    """The ``RuntimeRefused`` for a runtime's ``error``: ``what`` failed, with the runtime's own message (its
    error code stripped) and the node it names, if any."""
    text = " ".join(str(error).split())
    if text.startswith("[ONNXRuntimeError]"):  # "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : message"
        text = text.split(" : ", 3)[-1]
    node = next((m.group(1) for p in _NODE_PATTERNS for m in [p.search(text)] if m), None)
    if len(text) > 600:
        text = text[:597] + "..."
    return RuntimeRefused(f"{what}: {text}", node)
