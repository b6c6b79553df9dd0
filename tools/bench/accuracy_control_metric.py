"""The benchmark's metric for tools/bench/accuracy_control.py: top-1 accuracy of a model on a corpus
entry's eval split against its true labels (the entry folder in ACCURACY_CONTROL_ENTRY). An entry without
true labels (resnet50, mobilenetv2: random weights) is scored against the argmax of the float model's
stored outputs instead, which is its top-1 agreement with the float model."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort


def eval_labels(entry: Path) -> np.ndarray:
    """The entry's true labels, else the float model's top-1 class per eval sample."""
    if (entry / "eval_labels.npy").exists():
        return np.load(entry / "eval_labels.npy")
    return np.load(entry / "eval_reference.npy").reshape(len(list((entry / "eval").glob("*.npz"))), -1).argmax(1)


def _eval_items() -> list[tuple[dict[str, np.ndarray], int]]:
    entry = Path(os.environ["ACCURACY_CONTROL_ENTRY"])
    labels = eval_labels(entry)
    return [(dict(np.load(p)), int(y)) for p, y in zip(sorted((entry / "eval").glob("*.npz")), labels)]


def accuracy_of_session(session: ort.InferenceSession, items) -> tuple[float, list[float]]:
    """Top-1 accuracy and the per-sample hits (1.0 or 0.0)."""
    hits = [float(np.argmax(session.run(None, sample)[0]) == label) for sample, label in items]
    return float(np.mean(hits)), hits


def top1(model_path: str) -> tuple[float, list[float]]:
    return accuracy_of_session(ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]), _eval_items())
