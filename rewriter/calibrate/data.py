"""Calibration data: the public names of the data side, gathered in one place.

Where the code lives: ``inputs`` (model input signatures and the checks a
sample must pass), ``images`` (image files to tensors), ``loaders``
(``"module:function"`` loaders), ``stacks`` (how many samples an array holds),
``sources`` (``open_data`` and the kinds of ``CalibrationData``: folders,
files, stacks, loaders, sequences, iterables; seeded subsets or an iterable's
first samples). docs/calibration-data.md describes them for users.

Example:
    >>> data = open_data("calib/", model_inputs(model))          # doctest: +SKIP
    >>> ids = data.select(300, seed=0)                           # doctest: +SKIP
    >>> for sample in data.iter_samples(ids): ...                # doctest: +SKIP
"""
from __future__ import annotations

from rewriter.calibrate.images import IMAGE_EXTENSIONS, ImageOptions
from rewriter.calibrate.inputs import InputSpec, Sample, SampleChecker, model_inputs
from rewriter.calibrate.sources import CalibrationData, open_data

__all__ = [
    "IMAGE_EXTENSIONS",
    "CalibrationData",
    "ImageOptions",
    "InputSpec",
    "Sample",
    "SampleChecker",
    "model_inputs",
    "open_data",
]
