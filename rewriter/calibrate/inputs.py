"""Model inputs and the samples that feed them: signatures, shape and dtype checks.

``model_inputs`` reads the inputs a sample must feed from the graph;
``SampleChecker`` turns a raw sample (a dict of input name -> array) into a
``Sample`` that fits them: the batch axis added when missing, static sizes
checked, float<->float and lossless int<->int casts done (warned about once per
input), NaN and inf refused. Every error names the file, or the loader and
sample number, and the input at fault.
"""
from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from rewriter.calibrate.messages import did_you_mean, quoted_names, short_message
from rewriter.errors import SourceLoc, UserError

__all__ = ["Dim", "InputSpec", "Sample", "SampleChecker", "data_error", "is_array_like", "model_inputs"]

Dim = int | str | None



@dataclass(frozen=True)
class InputSpec:
    """One model input the calibration samples must feed.

    Attributes:
        name: the graph input name.
        dtype: numpy dtype name (``"float32"``, ``"int64"``, ...).
        shape: one entry per axis: an int for a static size, a str for a
            symbolic dimension (``"batch"``), None for an unnamed dynamic one.
    """

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        np.dtype(self.dtype)  # fails early on a dtype name numpy does not know

    @property
    def rank(self) -> int:
        return len(self.shape)

    def shape_text(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


def model_inputs(model: onnx.ModelProto) -> list[InputSpec]:
    """The inputs a sample must feed: graph inputs that are not initializers, in graph order.

    Raises:
        UserError: an input is not a tensor (sequences, maps, optionals).
    """
    constants = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in constants:
            continue  # an initializer listed as input is an overridable default, not data
        if value.type.WhichOneof("value") != "tensor_type":
            raise UserError(f"model input {value.name!r} is not a tensor; calibration feeds tensor inputs only.")
        tensor = value.type.tensor_type
        if tensor.elem_type == onnx.TensorProto.UNDEFINED:
            raise UserError(f"model input {value.name!r} has no element type; re-export the model.")
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        shape = tuple(_dim(d) for d in tensor.shape.dim) if tensor.HasField("shape") else ()
        specs.append(InputSpec(value.name, dtype, shape))
    return specs


def _dim(d: onnx.TensorShapeProto.Dimension) -> Dim:
    # A negative dim_value (paddle2onnx writes -1 for the batch) is dynamic, as onnxruntime reads it.
    if d.HasField("dim_value") and d.dim_value >= 0:
        return int(d.dim_value)
    if d.HasField("dim_param") and d.dim_param:
        return d.dim_param
    return None



# ----------------------------------------------------------------------------- samples and checks


class Sample(dict):
    """One checked sample: input name -> array (with batch axis), plus where it came from.

    ``source`` names the file, or the loader and sample number, for error messages.
    """

    source: str = ""


class SampleChecker:
    """Checks raw samples against the model inputs and converts them; warns about casts once.

    Used by every ``CalibrationData`` and by the collector for samples given directly.
    """

    def __init__(self, inputs: Sequence[InputSpec]) -> None:
        self.inputs = tuple(inputs)
        self.names = {spec.name for spec in self.inputs}
        self._warned: set[tuple[str, str]] = set()

    def check(self, raw: object, where: str, loc: SourceLoc | None = None) -> Sample:
        """The sample as a ``Sample`` of arrays matching the inputs (batch axis added, casts done).

        A bare array (not a dict) is the sample of a single-input model.

        Raises:
            UserError: naming ``loc`` (a file) or ``where`` and the input at fault.
        """
        if not isinstance(raw, Mapping) and len(self.inputs) == 1 and is_array_like(raw):
            raw = {self.inputs[0].name: raw}
        if not isinstance(raw, Mapping):
            raise data_error(f"a sample must be a dict of input name -> array{self._bare_hint()}, got "
                             f"{type(raw).__name__}", where, loc)
        self.check_names(raw, where, loc)
        sample = Sample((spec.name, self._array(raw[spec.name], spec, where, loc)) for spec in self.inputs)
        sample.source = where
        return sample

    def check_names(self, names: Mapping[str, object], where: str, loc: SourceLoc | None) -> None:
        """Every model input given and nothing else.

        Raises:
            UserError: a missing input (with the closest given name) or a name that is not an input.
        """
        missing = [spec.name for spec in self.inputs if spec.name not in names]
        if missing:
            have = ", ".join(map(repr, sorted(map(str, names)))) or "nothing"
            extra = [str(k) for k in names if k not in self.names]
            close = difflib.get_close_matches(missing[0], extra, n=1)
            hint = f"; is {close[0]!r} meant to be {missing[0]!r}?" if close else ""
            raise data_error(f"missing model input {quoted_names(missing)} (the sample has {have}){hint}", where, loc)
        extra = sorted(str(k) for k in names if k not in self.names)
        if extra:
            raise data_error(f"{quoted_names(extra)} is not a model input (the model takes "
                             f"{quoted_names([s.name for s in self.inputs])}){did_you_mean(extra, self.names)}",
                             where, loc)

    def _bare_hint(self) -> str:
        return " (or a bare array, for a single-input model)" if len(self.inputs) == 1 else ""

    def _array(self, value: object, spec: InputSpec, where: str, loc: SourceLoc | None) -> np.ndarray:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise data_error(f"input {spec.name!r}: not an array ({short_message(e)})", where, loc) from None
        arr = self._shape(arr, spec, where, loc)
        _check_finite(arr, spec, where, loc, "")
        cast = self._dtype(arr, spec, where, loc)
        if cast is not arr:
            _check_finite(cast, spec, where, loc, f" after the cast to {spec.dtype} (beyond its range)")
        return cast

    @staticmethod
    def _shape(arr: np.ndarray, spec: InputSpec, where: str, loc: SourceLoc | None) -> np.ndarray:
        if arr.ndim == spec.rank - 1:
            arr = arr[None]  # saved without the batch axis
        if arr.ndim != spec.rank:
            raise data_error(f"input {spec.name!r} expects rank {spec.rank} {spec.shape_text()} (or rank "
                         f"{spec.rank - 1} without the batch axis), got shape {tuple(arr.shape)}", where, loc)
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if isinstance(want, int) and want != got:
                raise data_error(f"input {spec.name!r} expects shape {spec.shape_text()}, got {tuple(arr.shape)} "
                             f"(axis {axis} must be {want})", where, loc)
        return arr

    def _dtype(self, arr: np.ndarray, spec: InputSpec, where: str, loc: SourceLoc | None) -> np.ndarray:
        want = np.dtype(spec.dtype)
        if arr.dtype == want:
            return arr
        if (_is_float(arr.dtype) and _is_float(want)) or (arr.dtype.kind in "iu" and want.kind in "iu"
                                                           and _fits(arr, want)):
            self._warn_cast(arr.dtype, want, spec, where)
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as inf just after
                return arr.astype(want)
        raise data_error(f"input {spec.name!r} has dtype {want.name} in the model, the sample has "
                     f"{arr.dtype.name}; convert the data (only float<->float and lossless int<->int "
                     "casts are done automatically)", where, loc)

    def _warn_cast(self, got: np.dtype, want: np.dtype, spec: InputSpec, where: str) -> None:
        key = (spec.name, got.name)
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(f"calibration input {spec.name!r}: casting {got.name} samples to the model's "
                      f"{want.name} (first seen in {where}); said once per input.", UserWarning, stacklevel=4)


def _check_finite(arr: np.ndarray, spec: InputSpec, where: str, loc: SourceLoc | None, when: str) -> None:
    if (_is_float(arr.dtype) or arr.dtype.kind == "c") and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise data_error(f"input {spec.name!r} has {bad} NaN or inf value(s){when}; the quantizer cannot "
                     "calibrate on them: fix the sample or leave it out.", where, loc)


def is_array_like(value: object) -> bool:
    """An array of any library that numpy can take (numpy, torch on the CPU, ...), not a plain list."""
    return isinstance(value, np.ndarray) or hasattr(value, "__array__")


def _is_float(dtype: np.dtype) -> bool:
    # ml_dtypes' bfloat16/float8 types (registered by onnx) have kind "V".
    return dtype.kind == "f" or (dtype.kind == "V" and dtype.name.startswith(("float", "bfloat")))


def _fits(arr: np.ndarray, want: np.dtype) -> bool:
    if arr.size == 0:
        return True
    info = np.iinfo(want)
    return bool(arr.min() >= info.min and arr.max() <= info.max)


def data_error(message: str, where: str, loc: SourceLoc | None) -> UserError:
    """A sample's error, located at its file (``loc``) or else prefixed by where it came from."""
    return UserError(message, loc) if loc is not None else UserError(f"{where}: {message}")
