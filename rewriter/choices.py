"""The names an option may take, each listed once, for the command line, the configuration file and the API.

Kept free of heavy imports: the command line builds its parsers from these
before it knows which command runs. Presets and model types are spec
vocabulary (a spec's config lists are ordered for the presets, and it names
the rule files of each model type), so they are defined with the spec model.
"""
from __future__ import annotations

from typing import Literal, get_args

from rewriter.spec.model import MODEL_TYPES, PRESETS, SATURATION_FIX_MODES, ModelType, Preset, SaturationFix

__all__ = ["BIAS_CORRECTIONS", "BiasCorrection", "DEFAULT_TARGETS", "MODEL_TYPES", "ModelType", "OUTPUT_FORMATS",
           "OPTIMIZE_FOR", "OptimizeFor", "OutputFormat", "PRESETS", "Preset", "SATURATION_FIX_MODES", "SaturationFix"]

#: "none" is an explicit choice (it overrides a configuration file); "fast" is FastBiasCorrection,
#: "full" BiasCorrection.
BiasCorrection = Literal["none", "fast", "full"]
BIAS_CORRECTIONS: tuple[str, ...] = get_args(BiasCorrection)

OutputFormat = Literal["qdq", "fakequantize"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)

#: What the speed guard may trade: "latency" reverts any group that makes onnxruntime slower than float,
#: "size" only groups without weights (the file stays as small, the model may stay slower).
OptimizeFor = Literal["latency", "size"]
OPTIMIZE_FOR: tuple[str, ...] = get_args(OptimizeFor)

# The target when none is given (no --target, no target_device in a configuration file): QDQ output runs in
# onnxruntime, so it gets onnxruntime's placement; FakeQuantize output runs in OpenVINO, so it gets the original
# tool's default device.
DEFAULT_TARGETS = {"qdq": "ORT", "fakequantize": "ANY"}
