"""Calibration data as users hold it: stacked arrays, one .npy per input, bare arrays, generators."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import rewriter
from rewriter.calibrate.collect import collect_statistics
from rewriter.calibrate.inputs import InputSpec, model_inputs
from rewriter.calibrate.sources import CalibrationData, open_data
from rewriter.calibrate.stacks import StackLayout, stack_layout
from rewriter.errors import UserError

IMAGE = InputSpec("image", "float32", ("N", 3, 4, 6))
TOKENS = [InputSpec("ids", "int64", ("batch", "seq")), InputSpec("mask", "float32", ("batch", "seq"))]


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 4, 6)).astype(np.float32)


def _read(data: CalibrationData, ids: list[int] | None = None) -> list[dict[str, np.ndarray]]:
    return list(data.iter_samples(data.select(None, seed=0) if ids is None else ids))


def _conv_model(batch: int | str = "N") -> onnx.ModelProto:
    """input [batch, 3, 8, 8] -> conv (3->4, 3x3) -> relu -> output."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["conv"], ["output"], name="relu")], "conv_model",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 4, 8, 8])], [weight, bias])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# ----------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(("declared", "shape", "expected"), [
    (("N", 3, 4, 6), (3, 4, 6), StackLayout(1, "one")),          # one sample without its batch axis
    (("N", 3, 4, 6), (30, 3, 4, 6), StackLayout(30, "rows")),    # dynamic batch: one sample per row
    ((None, 3, 4, 6), (30, 3, 4, 6), StackLayout(30, "rows")),
    ((1, 3, 4, 6), (30, 3, 4, 6), StackLayout(30, "rows")),      # batch 1 declared: rows too
    ((1, 3, 4, 6), (1, 3, 4, 6), StackLayout(1, "rows")),
    ((2, 3), (2, 3), StackLayout(1, "one")),                     # fixed batch 2: the array is one sample
    ((2, 3), (5, 2, 3), StackLayout(5, "items")),                # rank + 1: a stack of batched samples
    (("N", 3, 4, 6), (7, 1, 3, 4, 6), StackLayout(7, "items")),
    ((), (), StackLayout(1, "one")),                             # a scalar input
    ((), (9,), StackLayout(9, "items")),
    (("N", 3, 4, 6), (3, 4), None),
])
def test_stack_layout_rule(declared: tuple, shape: tuple, expected: StackLayout | None) -> None:
    assert stack_layout(shape, InputSpec("x", "float32", declared)) == expected


# ----------------------------------------------------------------------------- files


def test_a_stacked_npy_in_a_folder_is_one_sample_per_row(tmp_path: Path) -> None:
    stack = _rows(30)
    np.save(tmp_path / "calib.npy", stack)
    data = open_data(tmp_path, [IMAGE])
    assert len(data) == 30  # the old reader counted the file as one sample of batch 30
    ids = data.select(10, seed=0)
    samples = _read(data, ids)
    assert len(samples) == 10
    for i, sample in zip(ids, samples):
        np.testing.assert_array_equal(sample["image"], stack[i:i + 1])
    assert samples[0].source == f"{tmp_path / 'calib.npy'}, sample {ids[0]}"
    assert data.sample_name(ids[1]) == f"{tmp_path / 'calib.npy'}, sample {ids[1]}"


def test_stacked_files_count_together_and_single_files_keep_their_name(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", _rows(4, seed=1))
    np.save(tmp_path / "b.npy", _rows(1, seed=2)[0])  # one sample saved without the batch axis
    np.save(tmp_path / "c.npy", _rows(3, seed=3))
    data = open_data(tmp_path, [IMAGE])
    assert len(data) == 8
    samples = _read(data)
    np.testing.assert_array_equal(samples[4]["image"], _rows(1, seed=2))
    np.testing.assert_array_equal(samples[7]["image"], _rows(3, seed=3)[2:3])
    assert samples[4].source == str(tmp_path / "b.npy")


def test_a_stack_for_a_static_batch_one_input(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", _rows(5))
    spec = InputSpec("image", "float32", (1, 3, 4, 6))
    samples = _read(open_data(tmp_path, [spec]))  # the old reader refused it: "axis 0 must be 1"
    assert [s["image"].shape for s in samples] == [(1, 3, 4, 6)] * 5


def test_a_single_npy_or_npz_file_is_a_source(tmp_path: Path) -> None:
    np.save(tmp_path / "calib.npy", _rows(6))
    assert len(open_data(tmp_path / "calib.npy", [IMAGE])) == 6
    np.savez(tmp_path / "tokens.npz", ids=np.arange(12).reshape(4, 3), mask=np.ones((4, 3), np.float32))
    samples = _read(open_data(tmp_path / "tokens.npz", TOKENS))
    assert [s["ids"].tolist() for s in samples] == [[[0, 1, 2]], [[3, 4, 5]], [[6, 7, 8]], [[9, 10, 11]]]
    with pytest.raises(UserError, match=r"calib\.npy: a \.npy file feeds a single-input model; this model has "
                                        r"inputs 'ids', 'mask'"):
        open_data(tmp_path / "calib.npy", TOKENS)


def test_a_folder_with_one_npy_per_input(tmp_path: Path) -> None:
    ids = np.arange(30).reshape(6, 5)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "mask.npy", np.ones((6, 5), np.float32))
    data = open_data(tmp_path, TOKENS)  # the old reader: "a folder of .npy files feeds single-input models"
    assert len(data) == 6
    samples = _read(data, [1, 4])
    assert [s["ids"].tolist() for s in samples] == [[ids[1].tolist()], [ids[4].tolist()]]
    assert samples[0]["mask"].shape == (1, 5)


def test_one_npy_per_input_errors_name_the_folder_and_inputs(tmp_path: Path) -> None:
    np.save(tmp_path / "ids.npy", np.zeros((6, 5), np.int64))
    with pytest.raises(UserError, match=r"missing model input 'mask'"):
        open_data(tmp_path, TOKENS)
    np.save(tmp_path / "mask.npy", np.ones((4, 5), np.float32))
    with pytest.raises(UserError, match=r"the inputs hold different numbers of samples \('ids' 6, 'mask' 4"):
        open_data(tmp_path, TOKENS)
    np.save(tmp_path / "mask.npy", np.ones((6, 5), np.float32))
    np.save(tmp_path / "labels.npy", np.zeros(6))
    with pytest.raises(UserError, match=r"'labels' is not a model input"):
        open_data(tmp_path, TOKENS)


def test_a_stacked_file_is_batched_by_the_statistics_pass(tmp_path: Path) -> None:
    model = _conv_model()
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((24, 3, 8, 8)).astype(np.float32))
    data = open_data(tmp_path, model_inputs(model))
    stats = collect_statistics(model, ["conv"], {},
                               data.iter_samples(data.select(16, seed=0)))
    assert stats.num_samples == 16
    assert stats.batch_size > 1  # the old reader ran the whole file as one sample of batch 24


# ----------------------------------------------------------------------------- Python objects


def test_a_bare_array_and_a_dict_of_stacks() -> None:
    stack = _rows(7)
    data = open_data(stack, [IMAGE])
    assert len(data) == 7
    np.testing.assert_array_equal(_read(data, [3])[0]["image"], stack[3:4])
    tokens = {"ids": np.arange(12).reshape(4, 3), "mask": np.ones((4, 3), np.float32)}
    assert len(open_data(tokens, TOKENS)) == 4
    with pytest.raises(UserError, match="is a bare array, which feeds a single-input model"):
        open_data(np.zeros((4, 3)), TOKENS)


def test_items_may_be_bare_arrays_for_a_single_input_model() -> None:
    samples = _read(open_data([_rows(1, seed=i) for i in range(3)], [IMAGE]))
    assert len(samples) == 3 and samples[2]["image"].shape == (1, 3, 4, 6)


def _counting_generator(n: int, pulled: list[int]) -> Iterator[dict[str, np.ndarray]]:
    for i in range(n):
        pulled.append(i)
        yield {"image": np.full((1, 3, 4, 6), i, np.float32)}


def test_a_generator_gives_its_first_subset_size_samples_and_no_more() -> None:
    pulled: list[int] = []
    data = open_data(_counting_generator(1000, pulled), [IMAGE])
    ids = data.select(5, seed=3)  # the old reader refused one-shot iterators here
    assert ids == [0, 1, 2, 3, 4]
    assert pulled == [0, 1, 2, 3, 4]  # nothing past the subset is read
    for _ in range(2):  # every pass of the pipeline reads the samples kept
        assert [float(s["image"].max()) for s in data.iter_samples(ids)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert pulled == [0, 1, 2, 3, 4]


def test_an_iterable_that_runs_short_on_a_later_pass_is_a_user_error() -> None:
    class ReadOnce:
        def __init__(self) -> None:
            self.stream = iter([{"image": np.zeros((1, 3, 4, 6), np.float32)}] * 4)

        def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
            return self.stream

    data = open_data(ReadOnce(), [IMAGE])
    ids = data.select(2, seed=0)
    with pytest.raises(UserError, match="fewer than on the first .* it can be read only once"):
        list(data.iter_samples(ids))


def test_the_api_takes_a_generator_and_a_bare_array() -> None:
    model = _conv_model()
    rng = np.random.default_rng(0)
    stack = rng.standard_normal((40, 3, 8, 8)).astype(np.float32)
    _, report = rewriter.quantize(model, data=stack, subset_size=12, self_check=False)
    assert report["calibration"]["samples"] == 12
    feeds = ({"input": stack[i:i + 1]} for i in range(40))
    _, report = rewriter.quantize(model, data=feeds, subset_size=9, self_check=False)
    assert report["calibration"]["samples"] == 9


@pytest.mark.parametrize("content", [b"\x93NUMPY", b"\x93NUMPY\x01\x00\xff", b"PK\x03\x04 not numpy", b""])
def test_a_broken_npy_header_names_the_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.npy").write_bytes(content)
    with pytest.raises(UserError, match=r"bad\.npy: cannot read the \.npy file"):
        open_data(tmp_path, [IMAGE])


def test_headers_of_both_npy_format_versions_give_the_shape(tmp_path: Path) -> None:
    for version in ((1, 0), (2, 0)):
        with open(tmp_path / "x.npy", "wb") as f:
            np.lib.format.write_array(f, _rows(3), version=version)
        assert len(open_data(tmp_path, [IMAGE])) == 3
