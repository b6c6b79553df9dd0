"""The quantize report: the plan's JSON plus ranges, emitted scales, SQNR, timings and the passes' entries.

Schema ``rewriter.pipeline/1``: ``plan_dict`` (``rewriter.plan/1``) with, per
FakeQuantize, its ``range``, the emitted ``scale``/``zero_point``/
``storage_dtype``, its ``sqnr_db`` and, for an activation whose range covers
the whole calibration population instead of the preset's mean of per-sample
extremes, ``aggregation`` (the reason); plus ``options``, ``calibration``,
``timings_s``, ``emitted_extra`` (biases and other tensors the emitter stored),
``passes`` (each enabled pass's report, by pass name) and ``graph`` (the data edges between the
report's nodes, which ``rewriter report`` draws: ``graph_section``). The pipeline adds ``fidelity``, the self-check
and the fidelity guard (``rewriter.tuning.check_run``, documented in docs/fidelity.md).
Every field is listed in docs/report-schema.md (a test checks the list against real reports); a new
field is added there, and a renamed or removed one makes ``rewriter.pipeline/2``.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

import numpy as np

from rewriter.algorithms.fq_math import fake_quantize
from rewriter.algorithms.minmax import SAMPLE_REDUCER, RangeOptions, sqnr_db
from rewriter.algorithms.types import TensorRange
from rewriter.emit.qdq import EmitResult
from rewriter.ir.graph import GraphView
from rewriter.ir.tensors import slicing_axis
from rewriter.plan import QuantPlan
from rewriter.report.plan_report import plan_dict

__all__ = ["ERROR_SAMPLE_VALUES", "REPORT_SCHEMA", "ReportOptions", "graph_section", "quantization_errors",
           "quantize_report", "weight_sample"]

REPORT_SCHEMA = "rewriter.pipeline/1"
#: Weights larger than this have their SQNR measured on evenly spaced slices.
ERROR_SAMPLE_VALUES = 1 << 20


class ReportOptions(Protocol):
    """The options the report repeats (``rewriter.pipeline.QuantizeOptions`` has them all)."""

    @property
    def target(self) -> str: ...

    @property
    def preset(self) -> str: ...

    @property
    def subset_size(self) -> int | None: ...

    @property
    def seed(self) -> int: ...

    @property
    def output_format(self) -> str: ...

    @property
    def ranges(self) -> RangeOptions: ...


def quantization_errors(plan: QuantPlan, ranges: Mapping[str, TensorRange], weights: Mapping[str, np.ndarray],
                        stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Per tensor, the SQNR (dB) of its FakeQuantize on the weights or on the calibration subsample."""
    result = {}
    for point in plan.points:
        rng = ranges[point.tensor]
        if point.role == "weight":
            values, axis = weight_sample(np.asarray(weights[point.tensor]), rng.axis), rng.axis
        else:
            sampled = stats.get(point.tensor, {}).get(SAMPLE_REDUCER)
            if sampled is None:
                continue
            values = sampled
            axis = 1 if rng.axis is not None and values.ndim == 3 else None
        fq = fake_quantize(np.asarray(values, np.float32), rng.input_low, rng.input_high, rng.levels,
                           axis=axis if np.ndim(rng.input_low) else None)
        result[point.tensor] = round(sqnr_db(values, fq), 3)
    return result


def weight_sample(values: np.ndarray, channel_axis: int | None, limit: int = ERROR_SAMPLE_VALUES) -> np.ndarray:
    """Evenly spaced slices of a large weight, along an axis that is not its channel axis.

    The SQNR of an embedding table (MiniLM: 11.7M values) measured whole cost 250 MB of float64
    temporaries; a million values estimate it as well, and every channel keeps its values.
    """
    along = slicing_axis(values, channel_axis, limit)
    if along is None:
        return values
    step = -(-values.size // limit)
    return np.take(values, np.arange(0, values.shape[along], step), axis=along)


def quantize_report(plan: QuantPlan, ranges: Mapping[str, TensorRange], emitted: EmitResult,
                    errors: Mapping[str, float], timings: Mapping[str, float], samples: int,
                    options: ReportOptions, passes: Mapping[str, dict[str, Any]],
                    population: Mapping[str, str] | None = None, graph: GraphView | None = None) -> dict[str, Any]:
    """The report of one quantize run (module docstring).

    ``population``: tensor -> why its range covers the calibration population
    (``rewriter.algorithms.minmax.population_ranges``). ``graph``: the model the plan's nodes are in, for
    the ``graph`` section (left out without it).
    """
    report = plan_dict(plan)
    report["schema"] = REPORT_SCHEMA
    report["options"] = {"target": options.target, "preset": options.preset, "subset_size": options.subset_size,
                         "seed": options.seed, "format": options.output_format,
                         "estimator_preset": options.ranges.estimator_preset}
    report["calibration"] = {"samples": samples}
    report["timings_s"] = dict(timings)
    emitted_by_tensor = {t.tensor: t for t in emitted.tensors if t.role in ("activation", "weight")}
    for entry in report["fakequantize"]:
        rng = ranges[entry["tensor"]]
        done = emitted_by_tensor.get(entry["tensor"])
        entry["range"] = {"input_low": _list(rng.input_low), "input_high": _list(rng.input_high),
                          "level_low": rng.level_low, "level_high": rng.level_high, "levels": rng.levels}
        if done is not None:
            entry["scale"] = list(done.scale)
            entry["zero_point"] = list(done.zero_point)
            entry["storage_dtype"] = done.storage_dtype
        entry["sqnr_db"] = errors.get(entry["tensor"])
        if entry["tensor"] in (population or {}):
            entry["aggregation"] = (population or {})[entry["tensor"]]
    report["emitted_extra"] = [{"tensor": t.tensor, "role": t.role, "storage_dtype": t.storage_dtype}
                               for t in emitted.tensors if t.role not in ("activation", "weight")]
    report["passes"] = dict(passes)
    if graph is not None:
        report["graph"] = graph_section(graph, [n.node for n in plan.nodes])
    return report


def graph_section(graph: GraphView, node_names: list[str]) -> dict[str, Any]:
    """The data edges between the named nodes, so that a reader of the report can draw the graph.

    ``edges``: ``[from, to, tensor]`` with ``from``/``to`` positions in ``node_names`` (the report's
    ``nodes``), ``from`` null for a graph input and ``to`` null for a graph output; constants (weights)
    are left out, since their quantizers are listed under ``fakequantize`` with their consumers. In graph
    order, each node's inputs by port, then the graph outputs.
    """
    position = {name: i for i, name in enumerate(node_names)}
    edges: list[list[Any]] = []
    for node in graph.nodes:
        to = position.get(node.name)
        if to is None:
            continue
        for tensor in dict.fromkeys(t for t in node.inputs if t and not graph.is_constant(t)):
            producer = graph.producer_of(tensor)
            if producer is None:
                if graph.tensor(tensor).is_graph_input:
                    edges.append([None, to, tensor])
            elif producer.name in position:
                edges.append([position[producer.name], to, tensor])
    for tensor, info in graph.tensors.items():
        producer = graph.producer_of(tensor) if info.is_graph_output else None
        if producer is not None and producer.name in position:
            edges.append([position[producer.name], None, tensor])
    return {"edges": edges}


def _list(array: np.ndarray) -> list[float] | float:
    values = np.asarray(array, dtype=np.float64)
    return float(values) if values.ndim == 0 else [float(v) for v in values]
