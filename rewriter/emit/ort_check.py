"""What onnxruntime makes of a model: its optimized graph, and counts of the fused integer ops.

A quantized model is only worth having if onnxruntime turns its
QuantizeLinear/DequantizeLinear pairs into integer kernels. This helper asks
onnxruntime to save the graph it will actually run
(``SessionOptions.optimized_model_filepath``) and counts node types, for tests
and benchmarks.

Example:
    >>> counts = fused_counts(emit_qdq(model, plan, ranges).model)   # doctest: +SKIP
    >>> counts["QLinearConv"]                                         # doctest: +SKIP
    2
"""
from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Literal

import onnx
import onnxruntime as ort

from rewriter.emit.runtime_check import refused
from rewriter.ir.external import EXTERNAL_FOLDER_KEY, runtime_payload

__all__ = ["INTEGER_OPS", "OPTIMIZED_GRAPH_FILE", "ModelSource", "fused_counts", "integer_kernel_count",
           "integer_kernels", "op_counts", "optimized_model", "save_optimized_graph"]

ModelSource = onnx.ModelProto | bytes | str | os.PathLike
Level = Literal["basic", "extended", "all"]

# Node types that mean onnxruntime runs integer arithmetic (com.microsoft or default domain).
INTEGER_OPS = (
    "QLinearConv", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QGemm", "QLinearAdd",
    "QLinearMul", "QLinearConcat", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearSigmoid",
    "QLinearLeakyRelu", "QLinearSoftmax", "QLinearWhere", "QLinearReduceMean", "QAttention", "ConvInteger",
    "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulNBits",
)

_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def optimized_model(model: ModelSource, level: Level = "extended", threads: int = 1) -> onnx.ModelProto:
    """The graph onnxruntime's CPU provider runs after its optimizations, without initializer data.

    The QDQ fusions happen at the "extended" level; "all" adds layout changes
    (NCHWc) specific to this machine's CPU, which onnxruntime warns about when
    saving, and fuses nothing more that matters here.

    Args:
        model: a ModelProto, serialized bytes or a path (use a path for models over 2 GB).
        level: onnxruntime's graph optimization level.
        threads: intra-op threads of the session (1 keeps tests light).

    Returns:
        The optimized graph; initializers are saved to a side file and not loaded.
    """
    with tempfile.TemporaryDirectory(prefix="rewriter_ort_") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = _LEVELS[level]
        options.intra_op_num_threads = threads
        options.log_severity_level = 4  # fatal only: the NCHWc warning at level "all" is expected, not news
        path = save_optimized_graph(options, Path(tmp))
        source, folder = _source(model)
        if folder is not None:
            options.add_session_config_entry(EXTERNAL_FOLDER_KEY, folder)
        ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        return onnx.load(str(path), load_external_data=False)


#: The file name ``save_optimized_graph`` gives the graph in its folder.
OPTIMIZED_GRAPH_FILE = "optimized.onnx"


def save_optimized_graph(options: ort.SessionOptions, folder: Path) -> Path:
    """Ask a session made with ``options`` to save the graph it runs in ``folder``; the path it will be at.

    Weights go to a side file so that large models save too; read the graph back with
    ``onnx.load(path, load_external_data=False)``. A session that times the model can count its kernels
    this way, with no session of its own for the count."""
    path = folder / OPTIMIZED_GRAPH_FILE
    options.optimized_model_filepath = str(path)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "weights.bin")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    return path


def integer_kernel_count(optimized: onnx.ModelProto) -> int:
    """How many of the nodes of an optimized graph (``optimized_model``) are integer kernels (``INTEGER_OPS``)."""
    counts = op_counts(optimized)
    return sum(counts[op] for op in INTEGER_OPS)


def op_counts(model: onnx.ModelProto) -> Counter[str]:
    """Node count per op type in the main graph."""
    return Counter(n.op_type for n in model.graph.node)


def fused_counts(model: ModelSource, level: Level = "extended") -> Counter[str]:
    """Node counts per op type of the model onnxruntime would run (see ``optimized_model``).

    Look at ``INTEGER_OPS`` entries for fusion and at leftover
    ``QuantizeLinear``/``DequantizeLinear`` for pairs that only add work.
    """
    return op_counts(optimized_model(model, level))


def integer_kernels(model: onnx.ModelProto) -> int | None:
    """How many integer kernels (``INTEGER_OPS``) onnxruntime runs for ``model``; None for a model too large
    to hand to onnxruntime in memory (not looked at).

    Raises:
        RuntimeRefused: onnxruntime cannot load the model.
    """
    from rewriter.ir.load import is_large

    if is_large(model):
        return None
    try:
        optimized = optimized_model(model)
    except Exception as e:  # onnxruntime's errors have no common public base class
        raise refused("onnxruntime cannot load the model", e) from None
    return integer_kernel_count(optimized)


def _source(model: ModelSource) -> tuple[bytes | str, str | None]:
    """What onnxruntime loads, and the folder of the tensors a ModelProto keeps in their file."""
    if isinstance(model, onnx.ModelProto):
        return runtime_payload(model)
    if isinstance(model, bytes):
        return model, None
    return os.fspath(model), None
