"""Metrics of the benchmark corpus: score any tool's model on an entry's eval set.

Only numpy is needed here, so the benchmark runner can import this module from
the project venv as well as from the bench venv (no torch, no onnxruntime).

    from tools.bench.metrics import evaluate, evaluate_all, load_entry
    score = evaluate("cnn_digits", run_fn)      # run_fn(inputs: dict) -> list of outputs

`run_fn` receives a dict {input name: numpy array} with a leading batch dim
(1 by default, `batch_size` samples if asked) and returns the model's outputs
in the model's output order (what `InferenceSession.run(None, inputs)` returns).

Each entry's meta.json names its metric ("metric": {"name", "kind", "output_index",
"float_value", ...}); the kinds are:

- ``top1_accuracy``: argmax of output[output_index] against eval_labels.npy.
- ``top1_agreement``: argmax of output[output_index] against the argmax of the
  float model's output stored in eval_reference.npy (the float model scores 1.0).
  evaluate_all also gives ``sqnr_db`` = 10*log10(sum(ref^2) / sum((out-ref)^2))
  over all eval outputs.
- ``mean_cosine``: mean over eval samples of the cosine similarity between
  output[output_index] and the float model's output in eval_reference.npy
  (float = 1.0). evaluate_all also gives ``retrieval_agreement``: the share of
  eval sentences whose nearest other eval sentence (by cosine) is the same as
  under the float model's embeddings, and ``min_cosine``.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".bench-cache" / "corpus"

RunFn = Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]]


def cache_dir(cache: os.PathLike | None = None) -> Path:
    """The corpus folder: `cache`, else $REWRITER_BENCH_CORPUS, else <repo>/.bench-cache/corpus."""
    if cache is not None:
        return Path(cache)
    env = os.environ.get("REWRITER_BENCH_CORPUS")
    return Path(env) if env else DEFAULT_CACHE


def entry_dir(name: str, cache: os.PathLike | None = None) -> Path:
    d = cache_dir(cache) / name
    if not (d / "meta.json").is_file():
        raise FileNotFoundError(
            f"corpus entry {name!r} is not built under {d.parent} "
            f"(run: python tools/bench/corpus.py --only {name})"
        )
    return d


def load_meta(name: str, cache: os.PathLike | None = None) -> dict:
    return json.loads((entry_dir(name, cache) / "meta.json").read_text())


def list_entries(cache: os.PathLike | None = None) -> list[str]:
    root = cache_dir(cache)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "meta.json").is_file())


def load_sample(path: os.PathLike) -> dict[str, np.ndarray]:
    """One .npz sample: {input name: array with batch dim 1}."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def sample_paths(name: str, split: str, cache: os.PathLike | None = None) -> list[Path]:
    """Sorted .npz paths of an entry's `calib` or `eval` split."""
    if split not in ("calib", "eval"):
        raise ValueError("split must be 'calib' or 'eval'")
    return sorted((entry_dir(name, cache) / split).glob("*.npz"))


def iter_samples(
    name: str, split: str, batch_size: int = 1, cache: os.PathLike | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Yield input dicts of `batch_size` samples (the last batch may be smaller)."""
    paths = sample_paths(name, split, cache)
    for i in range(0, len(paths), batch_size):
        group = [load_sample(p) for p in paths[i : i + batch_size]]
        if len(group) == 1:
            yield group[0]
        else:
            yield {k: np.concatenate([g[k] for g in group], axis=0) for k in group[0]}


def collect_outputs(
    name: str, run_fn: RunFn, output_index: int, batch_size: int = 1,
    cache: os.PathLike | None = None,
) -> np.ndarray:
    """Run `run_fn` over the eval split; stack output[output_index] over samples."""
    parts = []
    for inputs in iter_samples(name, "eval", batch_size, cache):
        outs = run_fn(inputs)
        out = np.asarray(outs[output_index])
        parts.append(out.reshape(out.shape[0], -1).astype(np.float64))
    return np.concatenate(parts, axis=0)


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    cos = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-30)
    # NaN or inf outputs count as the worst score, not as a crash.
    return np.where(np.isfinite(cos), cos, -1.0)


def _nearest_other(e: np.ndarray) -> np.ndarray:
    n = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-30)
    sim = n @ n.T
    sim = np.where(np.isfinite(sim), sim, -np.inf)
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(axis=1)


def scores_from_outputs(meta: dict, outputs: np.ndarray, d: Path) -> dict[str, float]:
    """Every metric of an entry from the stacked eval outputs (see module doc)."""
    kind = meta["metric"]["kind"]
    res: dict[str, float] = {}
    if kind == "top1_accuracy":
        labels = np.load(d / "eval_labels.npy")
        pred = np.where(np.isfinite(outputs), outputs, -np.inf).argmax(axis=1)
        res["top1_accuracy"] = float((pred == labels).mean())
        if (d / "eval_reference.npy").is_file():
            ref = np.load(d / "eval_reference.npy").astype(np.float64)
            res["top1_agreement"] = float((pred == ref.argmax(axis=1)).mean())
            res["sqnr_db"] = _sqnr(ref, outputs)
    elif kind == "top1_agreement":
        ref = np.load(d / "eval_reference.npy").astype(np.float64)
        pred = np.where(np.isfinite(outputs), outputs, -np.inf).argmax(axis=1)
        res["top1_agreement"] = float((pred == ref.argmax(axis=1)).mean())
        res["sqnr_db"] = _sqnr(ref, outputs)
    elif kind == "mean_cosine":
        ref = np.load(d / "eval_reference.npy").astype(np.float64)
        cos = _cosine_rows(outputs, ref)
        res["mean_cosine"] = float(cos.mean())
        res["min_cosine"] = float(cos.min())
        res["retrieval_agreement"] = float((_nearest_other(outputs) == _nearest_other(ref)).mean())
        res["sqnr_db"] = _sqnr(ref, outputs)
    else:
        raise ValueError(f"unknown metric kind {kind!r} in {d / 'meta.json'}")
    return res


def _sqnr(ref: np.ndarray, out: np.ndarray) -> float:
    noise = float(((out - ref) ** 2).sum())
    if not math.isfinite(noise):
        return float("-inf")
    signal = float((ref ** 2).sum())
    if noise == 0.0:
        return float("inf")
    return 10.0 * math.log10(signal / noise)


def evaluate_all(
    name: str, run_fn: RunFn, batch_size: int = 1, cache: os.PathLike | None = None
) -> dict[str, float]:
    """All metrics of entry `name` for the model behind `run_fn`; the main one under its name."""
    d = entry_dir(name, cache)
    meta = json.loads((d / "meta.json").read_text())
    outputs = collect_outputs(name, run_fn, meta["metric"]["output_index"], batch_size, cache)
    return scores_from_outputs(meta, outputs, d)


def evaluate(
    name: str, run_fn: RunFn, batch_size: int = 1, cache: os.PathLike | None = None
) -> float:
    """The entry's main metric (meta.json "metric"."name") on its eval split."""
    meta = load_meta(name, cache)
    return evaluate_all(name, run_fn, batch_size, cache)[meta["metric"]["name"]]


def ort_run_fn(model_path: os.PathLike, threads: int = 0):
    """A run_fn over an onnxruntime session (imports onnxruntime only when called)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    return lambda inputs: sess.run(None, inputs)


def write_npz(path: os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez (uncompressed) but byte-reproducible: fixed zip timestamps, sorted keys."""
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arrays[key]), allow_pickle=False)


def main(argv: Sequence[str] | None = None) -> int:
    """`python tools/bench/metrics.py NAME MODEL.onnx`: score a model file on an entry."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("name")
    ap.add_argument("model")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--batch-size", type=int, default=1)
    a = ap.parse_args(argv)
    res = evaluate_all(a.name, ort_run_fn(a.model), a.batch_size, a.cache)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
