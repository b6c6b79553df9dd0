"""Loading an emitted model in the runtime its format is for, and running it on samples.

QDQ output is for onnxruntime; FakeQuantize output (org.openvinotoolkit domain) is for OpenVINO, which
is optional (the ``openvino`` extra): onnxruntime has no FakeQuantize kernel and refuses such a model, so
without OpenVINO it cannot be run here, and ``runtime_for`` says so (None). OpenVINO runs on its CPU
plugin with float32 inference precision.

A model the runtime refuses, at load or at run, raises ``RuntimeRefused`` with the runtime's own message
and the node it names (onnxruntime writes 'In Node, ("name", ...', "Node (name)" or "node. Name:'name'").
"""
from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from rewriter.calibrate.session import session_options
from rewriter.errors import RuntimeRefused

__all__ = ["OPENVINO_PRECISION", "ModelRunner", "runtime_for"]

#: The inference precision the check asks OpenVINO for (its CPU default is bf16 where the CPU has it).
OPENVINO_PRECISION = "f32"

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
        runtime: "onnxruntime" or "openvino" (``runtime_for``).
        what: how messages name the model ("the quantized model").

    Raises:
        RuntimeRefused: the runtime cannot load the model.
    """

    def __init__(self, model: onnx.ModelProto, runtime: str, what: str) -> None:
        self.what = what
        self.runtime = runtime
        self.output_names = [o.name for o in model.graph.output]
        try:
            self._run = _onnxruntime(model) if runtime == "onnxruntime" else _openvino(model)
        except RuntimeRefused:
            raise
        except Exception as e:  # the runtimes' errors have no common public base class
            raise _refused(f"{runtime} cannot load {what}", e) from None

    def run(self, samples: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """The outputs for each sample, in order.

        Raises:
            RuntimeRefused: the runtime fails on a sample.
        """
        results = []
        for sample in samples:
            try:
                values = self._run(dict(sample))
            except Exception as e:  # see __init__
                raise _refused(f"{self.runtime} cannot run {self.what}", e) from None
            results.append(dict(zip(self.output_names, values)))
        return results


def _onnxruntime(model: onnx.ModelProto) -> Callable[[dict[str, np.ndarray]], list[Any]]:
    options = session_options()
    if model.ByteSize() < int(1.8 * 1024**3):
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    else:  # protobuf cannot serialize 2 GiB: through a file with its tensors beside it
        from rewriter.ir.load import save_model
        with tempfile.TemporaryDirectory(prefix="rewriter-check-") as tmp:
            path = os.path.join(tmp, "model.onnx")
            save_model(model, path)
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    return lambda feeds: session.run(names, feeds)


def _openvino(model: onnx.ModelProto) -> Callable[[dict[str, np.ndarray]], list[Any]]:
    import openvino

    core = openvino.Core()
    with tempfile.TemporaryDirectory(prefix="rewriter-check-") as tmp:
        from rewriter.ir.load import save_model
        path = os.path.join(tmp, "model.onnx")
        save_model(model, path)
        # f32: on CPUs with bf16 (or f16) arithmetic OpenVINO's default runs the float parts in it, and the check
        # would charge that rounding to the quantization (the float model it is compared with runs in float32).
        compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION})
    outputs = list(compiled.outputs)

    def run(feeds: dict[str, np.ndarray]) -> list[Any]:
        result = compiled(feeds)
        return [np.asarray(result[o]) for o in outputs]
    return run


def _refused(what: str, error: BaseException) -> RuntimeRefused:
    text = " ".join(str(error).split())
    if text.startswith("[ONNXRuntimeError]"):  # "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : message"
        text = text.split(" : ", 3)[-1]
    node = next((m.group(1) for p in _NODE_PATTERNS for m in [p.search(text)] if m), None)
    if len(text) > 600:
        text = text[:597] + "..."
    return RuntimeRefused(f"{what}: {text}", node)
