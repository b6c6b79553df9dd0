"""collect_statistics: per-sample reductions equal brute force, batched or not, without keeping activations."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from rewriter.calibrate import batching
from rewriter.calibrate import session as calib_session
from rewriter.calibrate.collect import CollectedStats, collect_statistics
from rewriter.calibrate.inputs import model_inputs
from rewriter.calibrate.sources import open_data
from rewriter.errors import UserError

OPSET = [helper.make_opsetid("", 17)]


# ----------------------------------------------------------------------------- reducers


@dataclass(frozen=True)
class Min:
    name: str = "min"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1).min(axis=1)


@dataclass(frozen=True)
class Max:
    name: str = "max"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1).max(axis=1)


@dataclass(frozen=True)
class ChannelMax:
    """Per-sample, per-channel max along ``axis`` of the batched tensor."""

    axis: int = 1
    name: str = "channel_max"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        moved = np.moveaxis(x, self.axis, 1)
        return moved.reshape(moved.shape[0], moved.shape[1], -1).max(axis=2)


@dataclass(frozen=True)
class Quantile:
    q: float = 0.99
    name: str = "q99"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.quantile(x.reshape(x.shape[0], -1).astype(np.float64), self.q, axis=1)


@dataclass(frozen=True)
class Spy:
    """Records the shapes of the batches it is given."""

    seen: list
    name: str = "spy"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(x.shape)
        return np.zeros(x.shape[0])


REDUCERS = (Min(), Max(), Quantile())


# ----------------------------------------------------------------------------- models


def _model(nodes, inputs, outputs, inits=(), value_info=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits), value_info=list(value_info))
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=8)
    onnx.checker.check_model(model)
    return model


def _mlp(batch: int | str = "N") -> onnx.ModelProto:
    """x [batch, 8] -> MatMul -> Add -> Relu -> MatMul -> y [batch, 4]."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["mm1"], name="mm1"),
             helper.make_node("Add", ["mm1", "b1"], ["add1"], name="add1"),
             helper.make_node("Relu", ["add1"], ["relu1"], name="relu1"),
             helper.make_node("MatMul", ["relu1", "w2"], ["y"], name="mm2")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])], inits)


def _cnn() -> onnx.ModelProto:
    """x [N, 3, 8, 8] -> Conv -> Relu -> Conv -> y, with no value_info at all."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((5, 4, 3, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["conv1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv1"], ["relu1"]),
             helper.make_node("Conv", ["relu1", "w2"], ["y"], strides=[2, 2])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, "H", "W"])], inits)


def _samples(n: int, shape: tuple[int, ...], seed: int = 0, name: str = "x") -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def _brute_force(model: onnx.ModelProto, tensors: list[str], samples, reducers) -> dict[str, dict[str, np.ndarray]]:
    """Run each sample alone with a plain onnxruntime session exposing every tensor; reduce by hand."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    graph_inputs = {i.name for i in exposed.graph.input}
    for t in tensors:
        if t not in present and t not in graph_inputs:
            exposed.graph.output.append(onnx.ValueInfoProto(name=t))
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    rows: dict[str, dict[str, list]] = {t: {r.name: [] for r in reducers} for t in tensors}
    for sample in samples:
        values = dict(zip(names, session.run(None, sample)))
        values.update(sample)
        for t in tensors:
            x = values[t]
            batch = next(iter(sample.values())).shape[0]
            # The collector's convention: a tensor without the batch on axis 0 is one row.
            whole = x.ndim == 0 or x.shape[0] != batch
            for r in reducers:
                rows[t][r.name].append(r(x[None] if whole else x))
    return {t: {r: np.concatenate(v) for r, v in by.items()} for t, by in rows.items()}


def _assert_stats_equal(got: dict, expected: dict, rtol: float = 1e-5) -> None:
    assert got.keys() == expected.keys()
    for t in expected:
        assert got[t].keys() == expected[t].keys()
        for r in expected[t]:
            np.testing.assert_allclose(got[t][r], expected[t][r], rtol=rtol, atol=1e-5, err_msg=f"{t}/{r}")


# ----------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("batch_size", [1, 3, None])
def test_reductions_equal_brute_force_on_dynamic_batch_model(batch_size: int | None) -> None:
    model, tensors = _mlp(), ["mm1", "add1", "relu1", "y"]
    samples = _samples(10, (1, 8))
    got = collect_statistics(model, tensors, {t: REDUCERS for t in tensors}, samples, batch_size=batch_size)
    _assert_stats_equal(got.stats, _brute_force(model, tensors, samples, REDUCERS))
    assert got.num_samples == 10
    assert got.batch_size == (1 if batch_size == 1 else min(batch_size or 8, 9))
    assert got.observed_shapes == {"mm1": (1, 16), "add1": (1, 16), "relu1": (1, 16), "y": (1, 4)}
    assert got.batch_axis == {t: 0 for t in tensors}
    assert got.seconds > 0


def test_batched_and_unbatched_give_the_same_statistics() -> None:
    model, tensors = _cnn(), ["x", "conv1", "relu1", "y"]
    reducers = {t: (*REDUCERS, ChannelMax()) for t in tensors}
    samples = _samples(9, (1, 3, 8, 8), seed=2)
    one = collect_statistics(model, tensors, reducers, samples, batch_size=1)
    many = collect_statistics(model, tensors, reducers, samples, batch_size=4)
    assert (one.batch_size, many.batch_size) == (1, 4)
    _assert_stats_equal(many.stats, one.stats)
    _assert_stats_equal(one.stats, _brute_force(model, tensors, samples, (*REDUCERS, ChannelMax())))
    assert one.stats["conv1"]["channel_max"].shape == (9, 4)
    assert one.observed_shapes["y"] == (1, 5, 3, 3)  # known only from running: the model has no value_info


def test_batches_are_cut_at_the_batch_size_and_at_shape_changes() -> None:
    """A dynamic sequence axis: consecutive samples of equal shape are batched together."""
    seen: list = []
    node = helper.make_node("Relu", ["x"], ["y"])
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 2])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", 2])])
    rng = np.random.default_rng(0)
    lengths = [3, 3, 3, 3, 5, 5, 3]
    samples = [{"x": rng.standard_normal((1, s, 2)).astype(np.float32)} for s in lengths]
    got = collect_statistics(model, ["y"], {"y": (Max(), Spy(seen))}, samples, batch_size=2)
    # The first sample always runs alone (it shows which tensors carry the batch axis).
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (1, 3), (2, 5), (1, 3)]
    _assert_stats_equal({"y": {"max": got.stats["y"]["max"]}}, _brute_force(model, ["y"], samples, (Max(),)))


def test_fixed_batch_model_runs_sample_by_sample() -> None:
    model, tensors = _mlp(batch=1), ["mm1", "relu1"]
    samples = _samples(5, (1, 8))
    got = collect_statistics(model, tensors, {t: REDUCERS for t in tensors}, samples, batch_size=4)
    assert got.batch_size == 1
    _assert_stats_equal(got.stats, _brute_force(model, tensors, samples, REDUCERS))


def test_fixed_batch_of_two_gives_one_row_per_example() -> None:
    model = _mlp(batch=2)
    samples = _samples(3, (2, 8))
    got = collect_statistics(model, ["relu1"], {"relu1": (Max(),)}, samples)
    assert got.num_samples == 3 and got.stats["relu1"]["max"].shape == (6,)
    _assert_stats_equal(got.stats, _brute_force(model, ["relu1"], samples, (Max(),)))


def test_tensor_without_batch_axis_is_reduced_whole() -> None:
    """A Shape output and a transposed tensor: no batch on axis 0, so one row per run and no batching."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
             helper.make_node("Shape", ["t"], ["shape"]), helper.make_node("Transpose", ["t"], ["y"], perm=[1, 0])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    samples = _samples(4, (1, 4))
    seen: list = []
    reducers = {"t": (Max(), Spy(seen)), "shape": (Max(),), "r": (Max(),)}
    got = collect_statistics(model, ["t", "shape", "r"], reducers, samples)
    assert got.batch_axis == {"t": None, "shape": None, "r": 0}
    assert seen == [(1, 4, 1)] * 4  # whole tensor with a leading axis of 1
    assert got.batch_size == 1
    np.testing.assert_array_equal(got.stats["shape"]["max"], [4, 4, 4, 4])
    np.testing.assert_allclose(got.stats["t"]["max"], got.stats["r"]["max"])


def test_graph_inputs_and_integer_tensors_without_type_info() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Cast", ["r"], ["i"], to=TensorProto.INT64),
             helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])])
    samples = [{"x": np.array([[0.5, 1.5, -2.0, 3.7, 9.1, 0.0]], np.float32)}]
    got = collect_statistics(model, ["x", "i"], {"x": (Min(),), "i": (Max(),)}, samples)
    np.testing.assert_array_equal(got.stats["x"]["min"], [-2.0])
    assert got.stats["i"]["max"].dtype == np.int64 and got.stats["i"]["max"].tolist() == [9]


def test_samples_from_a_calibration_data_source(tmp_path: Path) -> None:
    for i in range(5):
        np.save(tmp_path / f"{i}.npy", np.random.default_rng(i).standard_normal(8).astype(np.float32))
    model = _mlp()
    data = open_data(tmp_path, model_inputs(model))
    ids = data.select(4, seed=0)
    got = collect_statistics(model, ["relu1"], {"relu1": REDUCERS}, data.iter_samples(ids), total=len(ids))
    expected = _brute_force(model, ["relu1"], list(data.iter_samples(ids)), REDUCERS)
    _assert_stats_equal(got.stats, expected)


def test_keep_outputs_returns_each_samples_outputs() -> None:
    model = _mlp()
    samples = _samples(6, (1, 8))
    got = collect_statistics(model, ["relu1"], {"relu1": (Max(),)}, samples, keep_outputs=True, batch_size=4)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert got.outputs is not None and len(got.outputs) == 6
    for sample, outputs in zip(samples, got.outputs):
        assert list(outputs) == ["y"] and outputs["y"].shape == (1, 4)
        np.testing.assert_allclose(outputs["y"], session.run(None, sample)[0], rtol=1e-5)
    assert collect_statistics(model, ["relu1"], {"relu1": (Max(),)}, samples).outputs is None


# ----------------------------------------------------------------------------- batching fallbacks


def test_model_with_batch_one_written_inside_falls_back_to_single_runs() -> None:
    """Declared dynamic, but a Reshape to [1, -1] merges the batch: batched runs would mix samples."""
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("Relu", ["flat"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["A", "B"])], [shape])
    samples = _samples(6, (1, 2, 3))
    got = collect_statistics(model, ["y"], {"y": REDUCERS}, samples, batch_size=3)
    assert got.batch_size == 1
    _assert_stats_equal(got.stats, _brute_force(model, ["y"], samples, REDUCERS))


def test_model_mixing_samples_along_the_batch_falls_back() -> None:
    """Same shapes batched or not, but values depend on the other samples: caught by the check run."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[0], keepdims=1),
             helper.make_node("Sub", ["x", "mean"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], ())
    model.opset_import[0].version = 13  # ReduceMean with an axes attribute
    samples = _samples(5, (1, 4))
    got = collect_statistics(model, ["y"], {"y": (Max(),)}, samples, batch_size=4)
    assert got.batch_size == 1
    np.testing.assert_array_equal(got.stats["y"]["max"], np.zeros(5))


# ----------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class Holder:
    """A bad reducer would keep activations; ours must not, so this one only counts."""

    name: str = "count"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.full(x.shape[0], x.size // x.shape[0])


def _arrays_in(obj: object) -> list[np.ndarray]:
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, dict):
        return [a for v in obj.values() for a in _arrays_in(v)]
    if isinstance(obj, (list, tuple)):
        return [a for v in obj for a in _arrays_in(v)]
    return []


def test_result_holds_only_reduced_arrays() -> None:
    model = _cnn()
    samples = _samples(12, (1, 3, 8, 8))
    reducers = {t: (Min(), ChannelMax(), Holder()) for t in ("conv1", "relu1")}
    got = collect_statistics(model, ["conv1", "relu1"], reducers, samples)
    held = [a for f in fields(CollectedStats) for a in _arrays_in(getattr(got, f.name))]
    assert sorted(a.shape for a in held) == sorted([(12,), (12, 4), (12,)] * 2)
    activation_bytes = 12 * 4 * 8 * 8 * 4
    assert sum(a.nbytes for a in held) < activation_bytes / 10
    assert got.stats["conv1"]["count"].tolist() == [4 * 8 * 8] * 12


def test_automatic_batch_size_respects_the_memory_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    per_sample = 2 * (4 * 8 * 8) * 4  # conv1 and relu1, float32
    monkeypatch.setattr(batching, "BATCH_MEMORY_BYTES", 3 * per_sample + 100)
    seen: list = []
    model = _cnn()
    reducers = {"conv1": (Spy(seen),), "relu1": (Max(),)}
    got = collect_statistics(model, ["conv1", "relu1"], reducers, _samples(8, (1, 3, 8, 8)))
    assert max(s[0] for s in seen) == got.batch_size == 3


# ----------------------------------------------------------------------------- errors


def test_unknown_tensor_name_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"tensor 'relu_1' is not in the model's main graph.*did you mean 'relu1'"):
        collect_statistics(_mlp(), ["relu_1"], {}, _samples(1, (1, 8)))
    with pytest.raises(UserError, match="'w1' is a constant"):
        collect_statistics(_mlp(), ["w1"], {}, _samples(1, (1, 8)))


@pytest.mark.parametrize(("sample", "pattern"), [
    ({"x": np.zeros((1, 9), np.float32)}, r"sample 0: input 'x' expects shape \[N, 8\], got \(1, 9\)"),
    ({"x": np.zeros((1, 8), np.int64)}, r"sample 0: input 'x' has dtype float32 in the model, the sample has int64"),
    ({"z": np.zeros((1, 8), np.float32)}, r"sample 0: missing model input 'x'"),
])
def test_bad_samples_name_the_sample_and_input(sample: dict, pattern: str) -> None:
    with pytest.raises(UserError, match=pattern):
        collect_statistics(_mlp(), ["relu1"], {"relu1": (Max(),)}, [sample])


def test_onnxruntime_rejection_is_a_user_error_naming_the_sample(tmp_path: Path) -> None:
    """Two inputs whose symbolic sizes must agree inside the model: only onnxruntime can tell."""
    node = helper.make_node("Add", ["a", "b"], ["y"])
    model = _model([node], [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", "S"]),
                            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", "T"])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S"])])
    np.savez(tmp_path / "bad.npz", a=np.zeros((1, 3), np.float32), b=np.zeros((1, 5), np.float32))
    data = open_data(tmp_path, model_inputs(model))
    with pytest.raises(UserError) as caught:
        collect_statistics(model, ["y"], {"y": (Max(),)}, data.iter_samples())
    message = str(caught.value)
    assert "bad.npz: onnxruntime rejected the sample" in message and "a (1, 3) float32, b (1, 5) float32" in message
    assert "[ONNXRuntimeError]" not in message


def test_no_samples_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no samples"):
        collect_statistics(_mlp(), ["relu1"], {"relu1": (Max(),)}, [])


def test_reducer_that_drops_the_sample_axis_is_reported() -> None:
    @dataclass(frozen=True)
    class Global:
        name: str = "global"

        def __call__(self, x: np.ndarray) -> np.ndarray:
            return np.asarray(x.max())

    with pytest.raises(ValueError, match="reducer 'global' on tensor 'relu1'.*must keep axis 0"):
        collect_statistics(_mlp(), ["relu1"], {"relu1": (Global(),)}, _samples(2, (1, 8)))


# ----------------------------------------------------------------------------- session details


def test_callers_model_is_not_modified() -> None:
    model = _mlp()
    before = model.SerializeToString()
    collect_statistics(model, ["mm1", "relu1"], {"mm1": (Max(),)}, _samples(2, (1, 8)))
    assert model.SerializeToString() == before


def test_large_model_path_builds_the_session_from_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calib_session, "LARGE_MODEL_BYTES", 0)  # every model counts as large
    made: list[str] = []
    real = tempfile.TemporaryDirectory

    def spy(*args, **kwargs):
        tmp = real(*args, **kwargs)
        made.append(tmp.name)
        return tmp

    monkeypatch.setattr(calib_session.tempfile, "TemporaryDirectory", spy)
    model, samples = _mlp(), _samples(4, (1, 8))
    got = collect_statistics(model, ["relu1"], {"relu1": REDUCERS}, samples)
    _assert_stats_equal(got.stats, _brute_force(model, ["relu1"], samples, REDUCERS))
    assert len(made) == 1 and not os.path.exists(made[0])  # cleaned up after the loop


def test_thread_count_option_and_progress_off_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    got = collect_statistics(_mlp(), ["relu1"], {"relu1": (Max(),)}, _samples(3, (1, 8)),
                             intra_op_threads=1, progress=True)
    assert got.num_samples == 3
    assert capsys.readouterr().err == ""  # stderr is not a TTY under pytest
    with pytest.raises(ValueError, match="intra_op_threads"):
        collect_statistics(_mlp(), ["relu1"], {}, _samples(1, (1, 8)), intra_op_threads=0)


def _position_model() -> onnx.ModelProto:
    """y = x + position(S): the position vector depends on the sequence length only (no batch axis)."""
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("one", [1]), ("two", [2]), ("zero_s", 0), ("one_s", 1))]
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Slice", ["shape", "one", "two"], ["len1"]),
             helper.make_node("Squeeze", ["len1"], ["len"]),
             helper.make_node("Range", ["zero_s", "len", "one_s"], ["pos_i"]),
             helper.make_node("Cast", ["pos_i"], ["pos"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "pos"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S"])], inits)


def test_shape_only_tensor_without_batch_axis_keeps_batching() -> None:
    model = _position_model()
    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((1, s)).astype(np.float32)} for s in (4, 4, 4, 4, 6, 6, 6)]
    got = collect_statistics(model, ["pos", "y"], {"pos": REDUCERS, "y": REDUCERS}, samples,
                             batch_size=3, keep_outputs=True)
    assert got.batch_axis == {"pos": None, "y": 0} and got.batch_size == 3
    single = collect_statistics(model, ["pos", "y"], {"pos": REDUCERS, "y": REDUCERS}, samples, batch_size=1)
    _assert_stats_equal(got.stats, single.stats)
    _assert_stats_equal(got.stats, _brute_force(model, ["pos", "y"], samples, REDUCERS))
    assert got.stats["pos"]["max"].tolist() == [3, 3, 3, 3, 5, 5, 5]
    assert got.observed_shapes == {"pos": (6,), "y": (1, 6)}


def test_model_picking_one_sample_out_of_the_batch_falls_back() -> None:
    """Gather(x, 0) drops the batch axis assuming batch 1: a batched run would only see sample 0."""
    index = numpy_helper.from_array(np.array(0, np.int64), "zero")
    nodes = [helper.make_node("Gather", ["x", "zero"], ["first"], axis=0),
             helper.make_node("Relu", ["first"], ["r"]),
             helper.make_node("Unsqueeze", ["r", "axes"], ["y"])]
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [index, axes])
    samples = _samples(6, (1, 4))
    got = collect_statistics(model, ["r"], {"r": REDUCERS}, samples, batch_size=3)
    assert got.batch_axis == {"r": None} and got.batch_size == 1
    _assert_stats_equal(got.stats, _brute_force(model, ["r"], samples, REDUCERS))
