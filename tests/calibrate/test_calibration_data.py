"""Calibration data sources: each kind of source, subsets, and every validation error."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from rewriter.calibrate.images import ImageOptions
from rewriter.calibrate.inputs import InputSpec, model_inputs
from rewriter.calibrate.sources import CalibrationData, open_data
from rewriter.errors import UserError

IMAGE = InputSpec("image", "float32", ("N", 3, 4, 6))
TOKENS = [InputSpec("ids", "int64", ("batch", "seq")), InputSpec("mask", "float32", ("batch", "seq"))]


def _save_npy(folder: Path, name: str, arr: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    np.save(path, arr)
    return path


def _save_npz(folder: Path, name: str, **arrays: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    np.savez(path, **arrays)
    return path


def _images(n: int, h: int = 4, w: int = 6, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(n)]


def _save_png(folder: Path, name: str, pixels: np.ndarray) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(pixels).save(path)
    return path


def _tokens(seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"ids": rng.integers(0, 100, size=(1, seq)), "mask": np.ones((1, seq), np.float32)}


def _read_all(data: CalibrationData) -> list[dict[str, np.ndarray]]:
    return list(data.iter_samples(data.select(None, seed=0)))


# ----------------------------------------------------------------------------- model inputs


def test_model_inputs_skip_initializers_and_keep_symbolic_dims() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, None])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "seq"])
    init = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g", [x, w, ids],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [init])
    specs = model_inputs(helper.make_model(graph))
    assert specs == [InputSpec("x", "float32", ("batch", 3, None)), InputSpec("ids", "int64", (1, "seq"))]


# ----------------------------------------------------------------------------- each kind of source


def test_npy_folder_with_and_without_batch_dim(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((1, 3, 4, 6)).astype(np.float32) for _ in range(3)]
    _save_npy(tmp_path, "b.npy", arrays[1])
    _save_npy(tmp_path, "a.npy", arrays[0][0])  # saved without the batch axis
    _save_npy(tmp_path, "c.npy", arrays[2])
    data = open_data(tmp_path, [IMAGE])
    assert len(data) == 3
    samples = _read_all(data)
    for sample, expected in zip(samples, arrays):  # sorted by file name
        assert sample["image"].shape == (1, 3, 4, 6)
        np.testing.assert_array_equal(sample["image"], expected)
    assert [s.source for s in samples] == [str(tmp_path / n) for n in ("a.npy", "b.npy", "c.npy")]
    assert data.sample_name(1) == str(tmp_path / "b.npy")


def test_npz_folder_multi_input_with_symbolic_dims(tmp_path: Path) -> None:
    for i, seq in enumerate([5, 9]):
        _save_npz(tmp_path, f"s{i}.npz", **_tokens(seq, seed=i))
    samples = _read_all(open_data(tmp_path, TOKENS))
    assert [s["ids"].shape for s in samples] == [(1, 5), (1, 9)]
    np.testing.assert_array_equal(samples[1]["ids"], _tokens(9, seed=1)["ids"])
    assert samples[0]["mask"].dtype == np.float32


def test_folder_is_searched_recursively_in_sorted_order(tmp_path: Path) -> None:
    _save_npy(tmp_path / "dog", "1.npy", np.full((3, 4, 6), 2, np.float32))
    _save_npy(tmp_path / "cat", "9.npy", np.full((3, 4, 6), 1, np.float32))
    _save_npy(tmp_path / ".hidden", "0.npy", np.full((3, 4, 6), 0, np.float32))
    samples = _read_all(open_data(tmp_path, [IMAGE]))
    assert [float(s["image"].max()) for s in samples] == [1.0, 2.0]


def test_images_default_fit_the_static_input(tmp_path: Path) -> None:
    pixels = _images(2)
    for i, p in enumerate(pixels):
        _save_png(tmp_path, f"{i}.png", p)
    samples = _read_all(open_data(tmp_path, [IMAGE]))
    assert samples[0]["image"].shape == (1, 3, 4, 6) and samples[0]["image"].dtype == np.float32
    # Same size as the input: no resize, raw 0..255 values, HWC -> CHW.
    np.testing.assert_array_equal(samples[1]["image"][0], pixels[1].transpose(2, 0, 1).astype(np.float32))


def test_images_normalization_bgr_and_nhwc(tmp_path: Path) -> None:
    pixels = _images(1)[0]
    _save_png(tmp_path, "x.png", pixels)
    spec = InputSpec("image", "float32", (1, 4, 6, 3))
    options = ImageOptions(scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), channel_order="BGR")
    (sample,) = _read_all(open_data(tmp_path, [spec], image_options=options))
    bgr = pixels[:, :, ::-1].astype(np.float32) * np.float32(1 / 255)
    expected = (bgr - np.array([0.5, 0.4, 0.3], np.float32)) / np.array([0.2, 0.25, 0.5], np.float32)
    assert sample["image"].shape == (1, 4, 6, 3)  # layout derived from the shape: NHWC
    np.testing.assert_allclose(sample["image"][0], expected, rtol=1e-6)


def test_images_shorter_side_resize_then_center_crop_to_input(tmp_path: Path) -> None:
    from PIL import Image

    # Columns numbered 0..19 so the crop position can be read back.
    pixels = np.tile(np.arange(20, dtype=np.uint8)[None, :, None] * 10, (10, 1, 3))
    _save_png(tmp_path, "wide.png", pixels)
    spec = InputSpec("image", "float32", ("N", 3, 5, 5))
    (sample,) = _read_all(open_data(tmp_path, [spec], image_options=ImageOptions(shorter_side=5)))
    resized = np.asarray(Image.fromarray(pixels).resize((10, 5), Image.Resampling.BILINEAR))
    expected = resized[:, 2:7].transpose(2, 0, 1).astype(np.float32)  # center 5 of 10 columns
    np.testing.assert_array_equal(sample["image"][0], expected)


def test_images_explicit_size_grayscale_and_uint8_input(tmp_path: Path) -> None:
    _save_png(tmp_path, "a.png", _images(1, h=8, w=8)[0])
    spec = InputSpec("image", "uint8", (1, 1, 4, 4))
    (sample,) = _read_all(open_data(tmp_path, [spec], image_options=ImageOptions(size=(6, 6), center_crop=(4, 4))))
    assert sample["image"].shape == (1, 1, 4, 4) and sample["image"].dtype == np.uint8


def test_image_option_errors(tmp_path: Path) -> None:
    _save_png(tmp_path, "a.png", _images(1)[0])
    with pytest.raises(UserError, match="size and shorter_side"):
        ImageOptions(size=(4, 4), shorter_side=4)
    with pytest.raises(UserError, match="std"):
        ImageOptions(std=(0.0,))
    with pytest.raises(UserError, match="uint8"):
        open_data(tmp_path, [InputSpec("image", "uint8", (1, 3, 4, 6))], image_options=ImageOptions(scale=0.5))
    with pytest.raises(UserError, match="single-input"):
        open_data(tmp_path, TOKENS)
    spec = InputSpec("image", "float32", (1, 3, 8, 8))
    data = open_data(tmp_path, [spec], image_options=ImageOptions(center_crop=(8, 8)))
    with pytest.raises(UserError, match=r"a\.png.*smaller than the 8x8 center crop"):
        _read_all(data)


def test_images_without_pillow_say_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _save_png(tmp_path, "a.png", _images(1)[0])
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    with pytest.raises(UserError, match="pip install pillow"):
        open_data(tmp_path, [IMAGE])


def test_loader_from_file_path(tmp_path: Path) -> None:
    loader = tmp_path / "my_loader.py"
    loader.write_text(
        "import numpy as np\n"
        "def samples():\n"
        "    for i in range(4):\n"
        "        yield {'image': np.full((1, 3, 4, 6), i, np.float32)}\n"
    )
    data = open_data(f"{loader}:samples", [IMAGE])
    assert data.size is None  # a generator: unknown until counted
    ids = data.select(2, seed=1)
    assert ids == [0, 1] and data.size is None  # a subset of a generator is its first samples: not counted
    values = [float(s["image"][0, 0, 0, 0]) for s in data.iter_samples(ids)]
    assert values == ids  # sample i is filled with i
    # A generator loader is called again for each pass.
    assert [float(s["image"].max()) for s in data.iter_samples()] == [0.0, 1.0, 2.0, 3.0]


def test_loader_module_function_from_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "calib_loader_mod.py").write_text(
        "import numpy as np\n"
        "def load():\n"
        "    return [{'image': np.zeros((3, 4, 6), np.float32)} for _ in range(3)]\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "calib_loader_mod", raising=False)
    data = open_data("calib_loader_mod:load", [IMAGE])
    assert len(data) == 3
    assert _read_all(data)[0]["image"].shape == (1, 3, 4, 6)


def test_loader_errors_name_the_loader(tmp_path: Path) -> None:
    loader = tmp_path / "bad_loader.py"
    loader.write_text(
        "def sample():\n    return [{'image': 1}]\n"
        "def broken():\n    raise RuntimeError('disk on fire')\n"
        "def single():\n    return {'image': 1}\n"
        "def lazy():\n    yield 1 / 0\n"
    )
    with pytest.raises(UserError, match="no 'sampels'; did you mean 'sample'"):
        open_data(f"{loader}:sampels", [IMAGE])
    raised = r"bad_loader\.py:broken raised RuntimeError at .*bad_loader\.py:4: disk on fire"
    with pytest.raises(UserError, match=raised):
        open_data(f"{loader}:broken", [IMAGE])
    # A dict is a stack of samples now; {'image': 1} has rank 0 for a rank-4 input.
    with pytest.raises(UserError, match=r"loader .*:single: input 'image' expects rank 4"):
        open_data(f"{loader}:single", [IMAGE])
    with pytest.raises(UserError, match="ZeroDivisionError"):
        list(open_data(f"{loader}:lazy", [IMAGE]).iter_samples())
    with pytest.raises(UserError, match="cannot import 'no_such_module_xyz'"):
        open_data("no_such_module_xyz:load", [IMAGE])
    with pytest.raises(UserError, match="no such file"):
        open_data(f"{tmp_path / 'missing.py'}:load", [IMAGE])


def test_plain_list_callable_and_one_shot_iterator() -> None:
    items = [{"image": np.full((1, 3, 4, 6), i, np.float32)} for i in range(5)]
    data = open_data(items, [IMAGE])
    assert len(data) == 5
    assert [float(s["image"].max()) for s in data.iter_samples([1, 3])] == [1.0, 3.0]
    assert len(_read_all(open_data(lambda: iter(items), [IMAGE]))) == 5

    one_shot = open_data(iter(items), [IMAGE])
    assert len(list(one_shot.iter_samples())) == 5
    with pytest.raises(UserError, match="one-shot iterator and was already read"):
        list(one_shot.iter_samples())
    with pytest.raises(UserError, match="one-shot iterator: it is read once .* needs a subset size"):
        open_data(iter(items), [IMAGE]).select(None, seed=0)


def test_files_are_read_lazily_one_at_a_time(tmp_path: Path) -> None:
    for i in range(3):
        _save_npy(tmp_path, f"{i}.npy", np.zeros((1, 3, 4, 6), np.float32))
    samples = open_data(tmp_path, [IMAGE]).iter_samples()
    next(samples)
    (tmp_path / "2.npy").write_bytes(b"garbage")  # not read yet: only its turn fails
    next(samples)
    with pytest.raises(UserError, match=r"2\.npy: cannot read the \.npy file"):
        next(samples)


# ----------------------------------------------------------------------------- subsets


def _list_data(n: int) -> CalibrationData:
    return open_data([{"image": np.zeros((1, 3, 4, 6), np.float32)}] * n, [IMAGE])


def test_select_is_seeded_deterministic_and_sorted() -> None:
    data = _list_data(50)
    first = data.select(10, seed=3)
    assert first == data.select(10, seed=3)
    assert first != data.select(10, seed=4)
    assert first == sorted(first) and len(set(first)) == 10
    assert first == sorted(np.random.default_rng(3).choice(50, size=10, replace=False).tolist())
    assert data.select(None, seed=0) == list(range(50)) == data.select(50, seed=9) == data.select(80, seed=1)
    with pytest.raises(UserError, match="positive"):
        data.select(0, seed=0)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 60), seed=st.integers(0, 2**32 - 1))
def test_select_property(n: int, k: int, seed: int) -> None:
    ids = _list_data(n).select(k, seed)
    assert len(ids) == min(n, k)
    assert ids == sorted(set(ids)) and all(0 <= i < n for i in ids)
    assert ids == _list_data(n).select(k, seed)


def test_same_folder_gives_same_subset(tmp_path: Path) -> None:
    for name in ["c", "a", "e", "b", "d", "f"]:
        _save_npy(tmp_path, f"{name}.npy", np.zeros((3, 4, 6), np.float32))
    data = open_data(tmp_path, [IMAGE])
    picked = [Path(s.source).name for s in data.iter_samples(data.select(3, seed=7))]
    again = open_data(tmp_path, [IMAGE])
    assert picked == [Path(s.source).name for s in again.iter_samples(again.select(3, seed=7))]
    assert picked == sorted(picked)


# ----------------------------------------------------------------------------- validation errors


def _one_npz(tmp_path: Path, **arrays: np.ndarray) -> Path:
    _save_npz(tmp_path, "sample.npz", **arrays)
    return tmp_path


IDS, MASK = np.zeros((1, 4), np.int64), np.ones((1, 4), np.float32)


@pytest.mark.parametrize(("arrays", "pattern"), [
    ({"ids": IDS}, r"sample\.npz: missing model input 'mask'"),
    ({"ids": IDS, "mask": MASK, "tokens": IDS}, r"sample\.npz: 'tokens' is not a model input"),
    ({"ids": IDS, "msk": MASK}, r"missing model input 'mask'.*is 'msk' meant to be 'mask'"),
    ({"ids": IDS[None, None], "mask": MASK}, r"sample\.npz: input 'ids' expects rank 2"),
    ({"ids": MASK, "mask": MASK}, r"sample\.npz: input 'ids' has dtype int64 in the model, the sample has float32"),
    ({"ids": IDS, "mask": np.array([[1, np.nan, 1, 1]], np.float32)}, r"sample\.npz: input 'mask' has 1 NaN or inf"),
    ({"ids": IDS, "mask": np.array([[1, np.inf, -np.inf, 1]], np.float32)}, r"input 'mask' has 2 NaN or inf"),
])
def test_sample_errors_name_file_and_input(tmp_path: Path, arrays: dict[str, np.ndarray], pattern: str) -> None:
    folder = _one_npz(tmp_path, **arrays)
    with pytest.raises(UserError, match=pattern):  # names and ranks when the folder is opened, values when read
        _read_all(open_data(folder, TOKENS))


def test_static_dim_mismatch_names_file_input_and_axis(tmp_path: Path) -> None:
    _save_npy(tmp_path, "x.npy", np.zeros((1, 3, 5, 6), np.float32))
    expected = r"x\.npy: input 'image' expects shape \[N, 3, 4, 6\], got \(1, 3, 5, 6\) \(axis 2 must be 4\)"
    with pytest.raises(UserError, match=expected):
        _read_all(open_data(tmp_path, [IMAGE]))


def test_symbolic_dims_accept_any_size() -> None:
    spec = InputSpec("x", "float32", ("batch", None, 2))
    items = [{"x": np.zeros((3, 7, 2), np.float32)}, {"x": np.zeros((9, 2), np.float32)}]
    samples = _read_all(open_data(items, [spec]))
    assert [s["x"].shape for s in samples] == [(3, 7, 2), (1, 9, 2)]


def test_float_casts_warn_once_and_int_casts_are_lossless(tmp_path: Path) -> None:
    for i in range(3):
        _save_npy(tmp_path, f"{i}.npy", np.zeros((1, 3, 4, 6), np.float64))
    with pytest.warns(UserWarning, match=r"casting float64 samples to the model's float32") as caught:
        samples = _read_all(open_data(tmp_path, [IMAGE]))
    assert len([w for w in caught if "casting" in str(w.message)]) == 1
    assert all(s["image"].dtype == np.float32 for s in samples)

    spec = InputSpec("ids", "int32", ("batch", "seq"))
    with pytest.warns(UserWarning, match="casting int64"):
        (ok,) = _read_all(open_data([{"ids": np.array([[1, 2]], np.int64)}], [spec]))
    assert ok["ids"].dtype == np.int32
    with pytest.raises(UserError, match="input 'ids' has dtype int32"):
        _read_all(open_data([{"ids": np.array([[2**40]], np.int64)}], [spec]))


def test_non_dict_sample_is_an_error() -> None:
    bare = r"calibration data, sample 1: a sample must be a dict .* \(or a bare array, for a single-input model\)"
    with pytest.raises(UserError, match=bare):
        _read_all(open_data([{"image": np.zeros((1, 3, 4, 6), np.float32)}, "x"], [IMAGE]))
    with pytest.raises(UserError, match=r"sample 0: a sample must be a dict of input name -> array, got ndarray"):
        _read_all(open_data([np.zeros((1, 4))], TOKENS))


def test_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="empty: the folder has no calibration files"):
        open_data(empty, [IMAGE])
    mixed = tmp_path / "mixed"
    _save_npy(mixed, "a.npy", np.zeros((3, 4, 6), np.float32))
    _save_npz(mixed, "b.npz", image=np.zeros((3, 4, 6), np.float32))
    with pytest.raises(UserError, match=r"mixed: the folder mixes kinds of calibration files \(npy: a\.npy; npz: b"):
        open_data(mixed, [IMAGE])
    with pytest.raises(UserError, match="no such calibration data folder"):
        open_data(tmp_path / "nope", [IMAGE])
    (mixed / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"must be a folder \(of \.npy, \.npz or image files\), a \.npy or \.npz file"):
        open_data(mixed / "notes.txt", [IMAGE])
    with pytest.raises(UserError, match=r"a folder of \.npy files feeds a multi-input model when it holds one "
                                        r"<input>\.npy per input \(ids\.npy, mask\.npy\); it has a\.npy"):
        open_data(_only_npy(tmp_path), TOKENS)


def _only_npy(tmp_path: Path) -> Path:
    folder = tmp_path / "npy_only"
    _save_npy(folder, "a.npy", np.zeros((1, 4), np.int64))
    return folder


def test_other_files_are_ignored_with_a_warning(tmp_path: Path) -> None:
    _save_npy(tmp_path, "a.npy", np.zeros((3, 4, 6), np.float32))
    (tmp_path / "labels.txt").write_text("cat\n")
    with pytest.warns(UserWarning, match=r"ignoring 1 file\(s\) .*labels\.txt"):
        data = open_data(tmp_path, [IMAGE])
    assert len(data) == 1


@pytest.mark.parametrize("name", ["bad.npz", "bad.png"])
def test_corrupt_files_name_the_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"this is not the file you are looking for")
    with pytest.raises(UserError, match=rf"{name.replace('.', chr(92) + '.')}: cannot read"):
        _read_all(open_data(tmp_path, [IMAGE]))


def test_truncated_npy_names_the_file(tmp_path: Path) -> None:
    path = _save_npy(tmp_path, "cut.npy", np.zeros((1, 3, 4, 6), np.float32))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match=r"cut\.npy: cannot read the \.npy file"):
        _read_all(open_data(tmp_path, [IMAGE]))


def test_no_warnings_for_clean_data(tmp_path: Path) -> None:
    _save_npy(tmp_path, "a.npy", np.zeros((1, 3, 4, 6), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _read_all(open_data(tmp_path, [IMAGE]))


def test_model_input_that_is_not_a_tensor_is_an_error() -> None:
    seq_type = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, None))
    value = helper.make_value_info("s", seq_type)
    graph = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"])], "g", [value],
                              [helper.make_tensor_value_info("n", TensorProto.INT64, [])])
    with pytest.raises(UserError, match="'s' is not a tensor"):
        model_inputs(helper.make_model(graph))



def test_bfloat16_input_takes_float32_samples_with_a_warning() -> None:
    spec = InputSpec("x", "bfloat16", ("N", 2))
    with pytest.warns(UserWarning, match="casting float32 samples to the model's bfloat16"):
        (sample,) = _read_all(open_data([{"x": np.array([[1.5, -2.0]], np.float32)}], [spec]))
    assert sample["x"].dtype.name == "bfloat16"
    assert sample["x"].astype(np.float32).tolist() == [[1.5, -2.0]]
    overflow = r"1 NaN or inf value\(s\) after the cast to bfloat16"
    with pytest.raises(UserError, match=overflow), pytest.warns(UserWarning):
        _read_all(open_data([{"x": np.array([[1e39, 0]], np.float64)}], [spec]))
