"""In-graph min/max reductions and limited raw samples: the same statistics as the numpy path, exactly."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rewriter.algorithms.minmax import SampleReducer, StatReducer
from rewriter.calibrate import session as calib_session
from rewriter.calibrate.collect import RAW, collect_statistics
from rewriter.calibrate.in_graph import InGraph, in_graph_nodes


# ----------------------------------------------------------------------------- reducers


def _stat(estimator: str, side: str, axis: int | None) -> StatReducer:
    return StatReducer(f"{side}:{estimator}:{axis}", estimator, side, axis, 1e-4)


EXTREMA = tuple(_stat(e, s, a) for e, s in (("min", "min"), ("max", "max"), ("abs_max", "max")) for a in (None, 1))


@dataclass(frozen=True)
class RawOnly:
    """The same reducer without ``from_extrema``: the collector must give it the tensor."""

    inner: object

    @property
    def name(self) -> str:
        return self.inner.name  # type: ignore[attr-defined]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.inner(x)  # type: ignore[operator]


@dataclass(frozen=True)
class Rows:
    """Records how many rows (samples) it was given."""

    seen: list
    max_samples: int | None = None
    name: str = "rows"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(x.shape[0])
        return np.zeros(x.shape[0])


def _numpy_path(model, tensors, reducers, samples, **kwargs):
    raw = {t: tuple(RawOnly(r) for r in rs) for t, rs in reducers.items()}
    got = collect_statistics(model, tensors, raw, samples, **kwargs)
    assert got.reduced_in_graph == ()
    return got


def _assert_exactly_equal(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for t in expected:
        assert got[t].keys() == expected[t].keys()
        for r in expected[t]:
            assert got[t][r].dtype == expected[t][r].dtype, f"{t}/{r}"
            np.testing.assert_array_equal(got[t][r], expected[t][r], err_msg=f"{t}/{r}")


# ----------------------------------------------------------------------------- models


def _model(nodes, inputs, outputs, inits=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _cnn(opset: int, batch: int | str = "N") -> onnx.ModelProto:
    """x [N, 3, 8, 8] -> Conv -> Relu -> Conv -> Add(conv1) -> y; conv1 is used twice."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((16, 16, 3, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["conv1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv1"], ["relu1"]),
             helper.make_node("Conv", ["relu1", "w2"], ["conv2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["conv2", "conv1"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 16, 8, 8])], inits, opset)


def _mlp(opset: int = 17) -> onnx.ModelProto:
    """x [N, 8] -> MatMul -> Relu -> y [N, 16]: rank-2 tensors."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Relu", ["mm"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], [w], opset)


def _samples(n: int, shape: tuple[int, ...], seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


CNN_TENSORS = ["conv1", "relu1", "conv2", "y"]


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("opset", [13, 17, 18])
@pytest.mark.parametrize("batch_size", [1, None])
def test_in_graph_extrema_equal_the_numpy_path_exactly(opset: int, batch_size: int | None) -> None:
    model = _cnn(opset)
    reducers = {t: EXTREMA for t in CNN_TENSORS}
    samples = _samples(11, (1, 3, 8, 8))
    got = collect_statistics(model, CNN_TENSORS, reducers, samples, batch_size=batch_size)
    expected = _numpy_path(model, CNN_TENSORS, reducers, samples, batch_size=batch_size)
    assert set(got.reduced_in_graph) == set(CNN_TENSORS)
    assert got.batch_size == (1 if batch_size == 1 else 8)
    _assert_exactly_equal(got.stats, expected.stats)
    assert got.stats["conv1"]["min:min:1"].shape == (11, 16) and got.stats["conv1"]["min:min:None"].shape == (11,)
    assert got.stats["relu1"]["max:abs_max:None"].dtype == np.float64


def test_per_tensor_only_and_per_channel_only_tensors() -> None:
    model = _cnn(17)
    reducers = {"conv1": (_stat("min", "min", None), _stat("max", "max", None)),
                "relu1": (_stat("abs_max", "max", 1),)}
    samples = _samples(6, (1, 3, 8, 8), seed=3)
    got = collect_statistics(model, list(reducers), reducers, samples)
    assert set(got.reduced_in_graph) == {"conv1", "relu1"}
    _assert_exactly_equal(got.stats, _numpy_path(model, list(reducers), reducers, samples).stats)


def test_samples_with_a_batch_of_two_give_one_row_per_example() -> None:
    model = _cnn(18, batch=2)
    reducers = {t: EXTREMA for t in CNN_TENSORS}
    samples = _samples(5, (2, 3, 8, 8), seed=4)
    got = collect_statistics(model, CNN_TENSORS, reducers, samples)
    assert set(got.reduced_in_graph) == set(CNN_TENSORS) and got.batch_size == 1
    assert got.stats["y"]["max:max:None"].shape == (10,)
    _assert_exactly_equal(got.stats, _numpy_path(model, CNN_TENSORS, reducers, samples).stats)


def test_rank_two_tensors_go_in_graph_per_tensor_and_raw_per_channel() -> None:
    """For (N, C) the reducer's per-channel statistic is per tensor; the collector does not second-guess it."""
    model = _mlp(18)
    per_tensor = {"mm": (_stat("min", "min", None), _stat("abs_max", "max", None))}
    per_channel = {"mm": (_stat("min", "min", 1),)}
    samples = _samples(9, (1, 8), seed=5)
    got = collect_statistics(model, ["mm"], per_tensor, samples)
    assert got.reduced_in_graph == ("mm",)
    _assert_exactly_equal(got.stats, _numpy_path(model, ["mm"], per_tensor, samples).stats)
    got = collect_statistics(model, ["mm"], per_channel, samples)
    assert got.reduced_in_graph == ()
    _assert_exactly_equal(got.stats, _numpy_path(model, ["mm"], per_channel, samples).stats)


def test_special_values_give_what_numpy_gives() -> None:
    """onnxruntime's ReduceMin/ReduceMax may skip a NaN; the NaN check sends such runs down the raw path.

    Inputs must be finite, so the model makes them: Log of a negative value is NaN, of 0 -inf; x * 1e10 overflows.
    """
    w = numpy_helper.from_array(np.random.default_rng(2).standard_normal((16, 3, 1, 1)).astype(np.float32), "w")
    big = numpy_helper.from_array(np.array(1e10, np.float32), "big")
    nodes = [helper.make_node("Log", ["x"], ["log"]), helper.make_node("Mul", ["x", "big"], ["huge"]),
             helper.make_node("Conv", ["log", "w"], ["conv"]), helper.make_node("Relu", ["conv"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 8, 8])], [w, big])
    samples = [{"x": np.abs(s["x"]) + 0.5} for s in _samples(20, (1, 3, 8, 8), seed=6)]
    samples[12]["x"][0, 1, 4, 5] = -1.0  # one NaN, not the first element: the kind onnxruntime skips
    samples[15]["x"][0, 0, 2, 2] = 0.0  # -inf
    samples[16]["x"][0, 2, 3, 3] = 1e30  # +inf after the Mul
    samples[17]["x"][0, 1, 1, 1] = -1.0  # NaN and -inf in one sample
    samples[17]["x"][0, 1, 1, 2] = 0.0
    tensors = ["log", "huge", "conv", "y"]
    reducers = {t: EXTREMA for t in tensors}
    got = collect_statistics(model, tensors, reducers, samples)
    expected = _numpy_path(model, tensors, reducers, samples)
    assert set(got.reduced_in_graph) == set(tensors)
    _assert_exactly_equal(got.stats, expected.stats)
    assert np.isnan(got.stats["log"]["min:min:None"][[12, 17]]).all()
    assert got.stats["log"]["min:min:None"][15] == -np.inf and got.stats["huge"]["max:max:None"][16] == np.inf
    finite = [i for i in range(20) if i not in (12, 15, 16, 17)]
    assert np.isfinite(got.stats["log"]["min:min:None"][finite]).all()


def test_float64_tensors_go_in_graph_too() -> None:
    nodes = [helper.make_node("Cast", ["x"], ["d"], to=TensorProto.DOUBLE), helper.make_node("Relu", ["d"], ["r"]),
             helper.make_node("Cast", ["r"], ["y"], to=TensorProto.FLOAT)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 5])])
    reducers = {"d": EXTREMA, "r": EXTREMA}
    samples = _samples(5, (1, 4, 5))
    got = collect_statistics(model, ["d", "r"], reducers, samples)
    assert set(got.reduced_in_graph) == {"d", "r"}
    _assert_exactly_equal(got.stats, _numpy_path(model, ["d", "r"], reducers, samples).stats)


def test_integer_and_unbatched_tensors_stay_raw() -> None:
    """An int64 tensor, and a transposed one whose axis 0 is not the batch axis."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
             helper.make_node("Cast", ["r"], ["i"], to=TensorProto.INT64),
             helper.make_node("Transpose", ["t"], ["y"], perm=[1, 0])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    reducers = {name: (_stat("min", "min", None), _stat("max", "max", None)) for name in ("r", "t", "i")}
    samples = _samples(4, (1, 4))
    got = collect_statistics(model, list(reducers), reducers, samples)
    assert got.reduced_in_graph == ("r",) and got.batch_axis == {"r": 0, "t": None, "i": 0}
    _assert_exactly_equal(got.stats, _numpy_path(model, list(reducers), reducers, samples).stats)


def test_keep_outputs_and_graph_inputs_with_in_graph_reductions() -> None:
    model = _cnn(17)
    reducers = {t: EXTREMA for t in ("x", "relu1", "y")}
    samples = _samples(10, (1, 3, 8, 8), seed=7)
    got = collect_statistics(model, list(reducers), reducers, samples, keep_outputs=True)
    expected = _numpy_path(model, list(reducers), reducers, samples, keep_outputs=True)
    assert set(got.reduced_in_graph) == {"relu1", "y"}  # x comes from the feeds
    _assert_exactly_equal(got.stats, expected.stats)
    assert got.outputs is not None and expected.outputs is not None and len(got.outputs) == 10
    for a, b in zip(got.outputs, expected.outputs):
        np.testing.assert_allclose(a["y"], b["y"], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- raw samples only while wanted


def test_limited_reducers_see_the_first_samples_only_and_quantiles_see_all() -> None:
    model = _cnn(17)
    seen_limited: list = []
    seen_all: list = []
    quantile = _stat("quantile", "max", None)
    reducers = {"relu1": (_stat("max", "max", None), SampleReducer("sample", 16, max_samples=3),
                          Rows(seen_limited, max_samples=3, name="limited")),
                "conv2": (_stat("min", "min", None), quantile, Rows(seen_all))}
    samples = _samples(17, (1, 3, 8, 8), seed=8)
    got = collect_statistics(model, list(reducers), reducers, samples)
    assert got.reduced_in_graph == ("relu1",)  # conv2 has a quantile: it stays raw for every sample
    assert sum(seen_limited) == 3 and sum(seen_all) == 17
    assert got.stats["relu1"]["sample"].shape == (3, 16) and got.stats["relu1"]["limited"].shape == (3,)
    assert got.stats["conv2"]["max:quantile:None"].shape == (17,)
    unlimited = {"relu1": (SampleReducer("sample", 16, max_samples=None),)}
    full = collect_statistics(model, ["relu1"], unlimited, samples)
    np.testing.assert_array_equal(got.stats["relu1"]["sample"], full.stats["relu1"]["sample"][:3])
    plain = {t: tuple(r for r in rs if not isinstance(r, (Rows, SampleReducer))) for t, rs in reducers.items()}
    expected = _numpy_path(model, list(plain), plain, samples)
    for t in plain:
        for r in plain[t]:
            np.testing.assert_array_equal(got.stats[t][r.name], expected.stats[t][r.name])


def test_raw_runs_are_single_until_the_limited_reducers_are_served() -> None:
    model = _cnn(17)
    seen: list = []
    reducers = {"relu1": (_stat("max", "max", None), Rows(seen, max_samples=5))}
    got = collect_statistics(model, ["relu1"], reducers, _samples(30, (1, 3, 8, 8)), batch_size=4)
    assert seen == [1, 1, 1, 1, 1]
    assert got.batch_size == 4 and got.reduced_in_graph == ("relu1",)
    assert got.stats["relu1"]["rows"].shape == (5,) and got.stats["relu1"]["max:max:None"].shape == (30,)


def test_sample_reducer_limit_counts_batched_runs_of_unbatched_tensors() -> None:
    """Without a batch axis a batched run counts once per sample; the limit cuts inside it."""
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("one", [1]), ("two", [2]), ("zero_s", 0), ("one_s", 1))]
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Slice", ["shape", "one", "two"], ["l1"]),
             helper.make_node("Squeeze", ["l1"], ["len"]), helper.make_node("Range", ["zero_s", "len", "one_s"], ["p"]),
             helper.make_node("Cast", ["p"], ["pos"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "pos"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S"])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S"])], inits)
    reducers = {"pos": (SampleReducer("sample", 4, max_samples=3), _stat("quantile", "max", None)),
                "y": (_stat("max", "max", None),)}
    samples = [{"x": np.random.default_rng(i).standard_normal((1, 6)).astype(np.float32)} for i in range(9)]
    got = collect_statistics(model, ["pos", "y"], reducers, samples, batch_size=4)
    assert got.batch_axis["pos"] is None and got.batch_size == 4 and got.reduced_in_graph == ("y",)
    assert got.stats["pos"]["sample"].shape == (3, 4) and got.stats["pos"]["max:quantile:None"].shape == (9,)


# ----------------------------------------------------------------------------- guarantees kept


def test_batching_check_still_catches_a_model_mixing_samples() -> None:
    """The first batched run of the lean session is checked against single runs (on the extrema)."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[0], keepdims=1),
             helper.make_node("Sub", ["x", "mean"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3])], opset=13)
    reducers = {"y": EXTREMA}
    got = collect_statistics(model, ["y"], reducers, _samples(7, (1, 4, 3)), batch_size=4)
    assert got.batch_size == 1 and got.reduced_in_graph == ("y",)
    np.testing.assert_array_equal(got.stats["y"]["max:max:None"], np.zeros(7))


def test_a_lean_session_onnxruntime_refuses_falls_back_to_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model, in_graph):
        return [helper.make_node("NoSuchOp", ["x"], g.outputs) for g in in_graph], []

    monkeypatch.setattr(calib_session, "in_graph_nodes", broken)
    model = _cnn(17)
    reducers = {t: EXTREMA for t in CNN_TENSORS}
    samples = _samples(6, (1, 3, 8, 8))
    got = collect_statistics(model, CNN_TENSORS, reducers, samples)
    assert got.reduced_in_graph == ()
    monkeypatch.undo()
    _assert_exactly_equal(got.stats, _numpy_path(model, CNN_TENSORS, reducers, samples).stats)


def test_a_lean_run_onnxruntime_rejects_is_redone_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _cnn(17)
    reducers = {t: EXTREMA for t in CNN_TENSORS}
    samples = _samples(9, (1, 3, 8, 8))
    real_run = calib_session.Session.run

    def flaky(self, feeds):
        if self.layout.in_graph and feeds["x"].shape[0] == 1:
            raise calib_session.RunFailed("lean runs of one sample fail")
        return real_run(self, feeds)

    monkeypatch.setattr(calib_session.Session, "run", flaky)
    got = collect_statistics(model, CNN_TENSORS, reducers, samples, batch_size=1)
    monkeypatch.undo()
    _assert_exactly_equal(got.stats, _numpy_path(model, CNN_TENSORS, reducers, samples, batch_size=1).stats)


def test_the_callers_model_is_not_modified_by_either_session() -> None:
    model = _cnn(18)
    before = model.SerializeToString()
    got = collect_statistics(model, CNN_TENSORS, {t: EXTREMA for t in CNN_TENSORS}, _samples(4, (1, 3, 8, 8)))
    assert got.reduced_in_graph and model.SerializeToString() == before


def test_large_model_path_with_a_lean_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calib_session, "LARGE_MODEL_BYTES", 0)
    made: list[str] = []
    real = tempfile.TemporaryDirectory

    def spy(*args, **kwargs):
        tmp = real(*args, **kwargs)
        made.append(tmp.name)
        return tmp

    monkeypatch.setattr(calib_session.tempfile, "TemporaryDirectory", spy)
    model = _cnn(17)
    before = model.SerializeToString()
    reducers = {t: EXTREMA for t in CNN_TENSORS}
    samples = _samples(5, (1, 3, 8, 8))
    got = collect_statistics(model, CNN_TENSORS, reducers, samples)
    assert set(got.reduced_in_graph) == set(CNN_TENSORS)
    assert len(made) == 2 and not any(os.path.exists(d) for d in made)  # raw and lean, both cleaned up
    assert model.SerializeToString() == before
    monkeypatch.undo()
    _assert_exactly_equal(got.stats, _numpy_path(model, CNN_TENSORS, reducers, samples).stats)


def test_reductions_run_right_after_their_tensor() -> None:
    """onnxruntime's reverse DFS starts at the highest-index leaf: the latest tensor's reductions come first."""
    model = _cnn(18)
    in_graph = [InGraph(t, True, None, f"{t}.min", f"{t}.max", f"{t}.sum") for t in CNN_TENSORS]
    nodes, constants = in_graph_nodes(model, in_graph)
    order = [n.input[0] for n in nodes if n.op_type == "Flatten"]
    assert order == ["y", "conv2", "relu1", "conv1"]
    assert [c.name for c in constants] == ["rewriter_calib/const_1"]
    assert all(len(n.input) == 2 and len(n.attribute) == 1 for n in nodes if n.op_type.startswith("Reduce"))


def test_reduction_nodes_use_the_axes_form_of_the_opset() -> None:
    in_graph = [InGraph("relu1", True, 1, "a", "b", "c")]
    for opset, with_input in ((13, {"ReduceSum"}), (17, {"ReduceSum"}), (18, {"ReduceMin", "ReduceMax", "ReduceSum"})):
        nodes, _ = in_graph_nodes(_cnn(opset), in_graph)
        inputs = {n.op_type for n in nodes if n.op_type.startswith("Reduce") and len(n.input) == 2}
        attrs = {n.op_type for n in nodes if any(a.name == "axes" for a in n.attribute)}
        assert inputs == with_input and attrs == {"ReduceMin", "ReduceMax", "ReduceSum"} - with_input
        assert nodes[0].op_type == "Reshape"


def test_generated_names_do_not_clash_with_the_model() -> None:
    model = _cnn(17)
    model.graph.node[1].output[0] = "rewriter_calib/relu1/min"  # a tensor named like the collector's output
    model.graph.node[2].input[0] = "rewriter_calib/relu1/min"
    tensors = ["rewriter_calib/relu1/min", "conv2"]
    reducers = {t: EXTREMA for t in tensors}
    samples = _samples(4, (1, 3, 8, 8))
    got = collect_statistics(model, tensors, reducers, samples)
    assert set(got.reduced_in_graph) == set(tensors)
    _assert_exactly_equal(got.stats, _numpy_path(model, tensors, reducers, samples).stats)


# ----------------------------------------------------------------------------- the reducers' side


def test_stat_reducer_from_extrema_equals_its_call() -> None:
    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 4, 3, 2)).astype(np.float32)
    x[1] = -np.abs(x[1])
    x[2] = np.abs(x[2])
    x[3] = 0.0
    x[3, :, 0] = -0.0
    for reducer in EXTREMA:
        axis = reducer.extrema_axis
        flat = x.reshape(5, 4, -1) if axis == 1 else x.reshape(5, -1)
        got = reducer.from_extrema(flat.min(axis=-1), flat.max(axis=-1))
        want = reducer(x)
        assert got.dtype == want.dtype == np.float64
        np.testing.assert_array_equal(got, want)
        if reducer.estimator == "abs_max":
            assert not np.signbit(got).any()  # + 0.0, not -0.0, for an all-zero sample, as np.abs gives
    for estimator in ("quantile", "abs_quantile"):
        reducer = _stat(estimator, "max", None)
        assert reducer.extrema_axis == RAW
        with pytest.raises(ValueError, match="needs the tensor's values"):
            reducer.from_extrema(np.zeros(1), np.zeros(1))
    assert _stat("min", "min", 2).extrema_axis == 2  # the collector feeds axis 1 only; 2 goes raw


def test_sample_reducer_takes_every_sample_by_default() -> None:
    assert SampleReducer("s", 64).max_samples is None and SampleReducer("s", 64, 1).subsample_axis == 1
    with pytest.raises(ValueError, match="max_samples must be at least 1"):
        collect_statistics(_mlp(), ["mm"], {"mm": (SampleReducer("s", 4, max_samples=0),)}, _samples(2, (1, 8)))


# ----------------------------------------------------------------------------- in-graph subsamples


def _sequence_model(opset: int = 17) -> onnx.ModelProto:
    """x [N, 6, S] -> Relu -> Sigmoid -> y: a sequence length that changes from sample to sample."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["r"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, "S"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, "S"])], opset=opset)


@pytest.mark.parametrize("opset", [13, 18])
def test_in_graph_subsamples_equal_the_numpy_path_exactly(opset: int) -> None:
    """Per tensor and per channel, with a step that changes with the length (the count fits every length)."""
    model = _sequence_model(opset)
    rng = np.random.default_rng(10)
    lengths = [40, 40, 40, 11, 13, 64, 65, 200, 200, 200, 12]
    samples = [{"x": rng.standard_normal((1, 6, n)).astype(np.float32)} for n in lengths]
    reducers = {t: (SampleReducer("s16", 16), SampleReducer("s5c", 5, 1), SampleReducer("s64", 64),
                    *EXTREMA) for t in ("r", "y")}
    got = collect_statistics(model, ["r", "y"], reducers, samples, batch_size=3)
    expected = _numpy_path(model, ["r", "y"], reducers, samples, batch_size=3)
    assert set(got.reduced_in_graph) == {"r", "y"} and got.batch_size == 3
    assert got.stats["y"]["s5c"].shape == (11, 6, 5)
    _assert_exactly_equal(got.stats, expected.stats)


def test_subsample_only_tensors_and_old_opsets() -> None:
    """A tensor with only a subsample reducer goes in-graph too; before opset 10 (no Slice steps input) it stays raw."""
    samples = _samples(6, (1, 6, 30))
    reducers = {"r": (SampleReducer("s", 8), SampleReducer("all", 40, 1))}  # 40 > 30: every value of a channel
    got = collect_statistics(_sequence_model(13), ["r"], reducers, samples)
    assert got.reduced_in_graph == ("r",) and got.stats["r"]["all"].shape == (6, 6, 30)
    _assert_exactly_equal(got.stats, _numpy_path(_sequence_model(13), ["r"], reducers, samples).stats)
    old = collect_statistics(_sequence_model(9), ["r"], reducers, samples)
    assert old.reduced_in_graph == ()
    _assert_exactly_equal(old.stats, got.stats)


def test_quantize_reducers_go_in_graph_and_give_the_same_statistics() -> None:
    """The reducers rewriter.pipeline asks for on a small CNN: everything in-graph, nothing changed."""
    from rewriter.algorithms.minmax import activation_reducers
    from rewriter.api import load_plan_inputs
    from rewriter.ir.view import graph_view
    from rewriter.match.planner import PlanOptions, build_plan

    model = _cnn(17)
    inputs = load_plan_inputs("ORT", (), None)
    plan = build_plan(graph_view(model), inputs.spec, inputs.rules, PlanOptions("performance", (), ()), "m")
    reducers = activation_reducers(plan)
    assert reducers
    samples = _samples(12, (1, 3, 8, 8), seed=11)
    got = collect_statistics(model, sorted(reducers), reducers, samples)
    expected = _numpy_path(model, sorted(reducers), reducers, samples)
    assert set(got.reduced_in_graph) == set(reducers) - {"x"}
    _assert_exactly_equal(got.stats, expected.stats)
