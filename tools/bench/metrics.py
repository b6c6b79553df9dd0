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


def batch_first(out: np.ndarray, metric: dict) -> np.ndarray:
    """An output with its batch axis first (``metric.batch_axis`` names it for time-major outputs)."""
    axis = metric.get("batch_axis", 0)
    return np.moveaxis(out, axis, 0) if axis else out


def stream_outputs(inputs: dict[str, np.ndarray], run_fn: RunFn, stream: dict, output_index: int) -> np.ndarray:
    """One utterance through a stateful model, chunk by chunk; (1, chunks) of output[output_index].

    ``inputs[stream["chunks"]]`` holds the chunks (K, L); every chunk runs as
    (1, L) under the same input name, the state output ``stream["state_output"]``
    becomes the next chunk's ``stream["state_input"]``; other inputs are passed
    as they are.
    """
    chunks = inputs[stream["chunks"]]
    feeds = {k: v for k, v in inputs.items() if k != stream["chunks"]}
    values = []
    for k in range(chunks.shape[0]):
        outs = run_fn({**feeds, stream["chunks"]: chunks[k : k + 1]})
        values.append(float(np.asarray(outs[output_index]).reshape(-1)[0]))
        feeds[stream["state_input"]] = np.asarray(outs[stream["state_output"]])
    return np.asarray(values, np.float64)[None, :]


def collect_outputs(
    name: str, run_fn: RunFn, output_index: int, batch_size: int = 1,
    cache: os.PathLike | None = None,
) -> np.ndarray:
    """Run `run_fn` over the eval split; stack output[output_index] over samples."""
    meta = load_meta(name, cache)
    stream = meta["metric"].get("stream")
    if stream:
        return np.concatenate([stream_outputs(load_sample(p), run_fn, stream, output_index)
                               for p in sample_paths(name, "eval", cache)], axis=0)
    # Large outputs (a recognizer's class probabilities per time step) stay float32 to halve the memory.
    dtype = np.float32 if meta["metric"].get("float32_outputs") else np.float64
    parts = []
    for inputs in iter_samples(name, "eval", batch_size, cache):
        outs = run_fn(inputs)
        out = batch_first(np.asarray(outs[output_index]), meta["metric"])
        parts.append(out.reshape(out.shape[0], -1).astype(dtype))
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
    elif kind in KIND_SCORERS:
        ref_path = d / "eval_reference.npy"
        dtype = np.float32 if meta["metric"].get("float32_outputs") else np.float64
        ref = np.load(ref_path).astype(dtype) if ref_path.is_file() else None
        res = KIND_SCORERS[kind](meta["metric"], outputs, ref, d)
        if ref is not None:
            res["sqnr_db"] = _sqnr(ref, outputs)
    else:
        raise ValueError(f"unknown metric kind {kind!r} in {d / 'meta.json'}")
    return res


# ----------------------------------------------------------------------------- real-model metrics

def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions, each 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def ctc_greedy_decode(scores: np.ndarray, blank: int = 0) -> list[int]:
    """Best path of a (T, classes) score matrix: argmax per step, repeats merged, blanks dropped."""
    best = np.where(np.isfinite(scores), scores, -np.inf).argmax(axis=1)
    out: list[int] = []
    last = -1
    for k in best.tolist():
        if k != last and k != blank:
            out.append(int(k))
        last = k
    return out


def text_scores(decoded: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]) -> dict[str, float]:
    """Character accuracy (1 - total edits / total label length, floored at 0) and exact match."""
    edits = sum(edit_distance(d, t) for d, t in zip(decoded, labels))
    chars = sum(len(t) for t in labels)
    return {"char_accuracy": max(0.0, 1.0 - edits / max(chars, 1)),
            "exact_match": float(np.mean([list(d) == list(t) for d, t in zip(decoded, labels)]))}


def _score_ctc_text(metric: dict, outputs: np.ndarray, ref: np.ndarray | None, d: Path) -> dict[str, float]:
    labels = json.loads((d / "eval_labels.json").read_text())
    classes, blank = metric["classes"], metric.get("blank", 0)
    decoded = [ctc_greedy_decode(row.reshape(-1, classes), blank) for row in outputs]
    res = text_scores(decoded, labels)
    if ref is not None:
        float_decoded = [ctc_greedy_decode(row.reshape(-1, classes), blank) for row in ref]
        res["text_agreement"] = float(np.mean([a == b for a, b in zip(decoded, float_decoded)]))
    return res


def _inner(box: Sequence[float], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The middle of a box: a quarter of its height off top and bottom, and as much off each end."""
    x0, y0, x1, y1 = box
    m = (y1 - y0) / 4.0
    h, w = shape
    return (int(max(0, round(x0 + m))), int(max(0, round(y0 + m))),
            int(min(w, round(x1 - m))), int(min(h, round(y1 - m))))


def text_region_counts(prob: np.ndarray, boxes: Sequence[Sequence[float]], threshold: float) -> dict[str, float]:
    """One map's counts: true boxes found, true boxes, positive pixels inside a true box, positive pixels."""
    pos = prob > threshold
    inside = np.zeros(pos.shape, bool)
    found = 0
    for box in boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        inside[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
        ix0, iy0, ix1, iy1 = _inner(box, pos.shape)
        core = pos[iy0:iy1, ix0:ix1]
        found += bool(core.size) and core.mean() >= 0.5
    n_pos = int(pos.sum())
    return {"found": float(found), "boxes": float(len(boxes)), "pos_inside": float((pos & inside).sum()),
            "pos": float(n_pos)}


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _score_text_region(metric: dict, outputs: np.ndarray, ref: np.ndarray | None, d: Path) -> dict[str, float]:
    boxes = json.loads((d / "eval_boxes.json").read_text())
    h, w = metric["map_shape"]
    thr = metric.get("threshold", 0.3)
    tot = {"found": 0.0, "boxes": 0.0, "pos_inside": 0.0, "pos": 0.0}
    for row, bx in zip(outputs, boxes):
        for k, v in text_region_counts(np.nan_to_num(row.reshape(h, w), nan=1.0), bx, thr).items():
            tot[k] += v
    recall = tot["found"] / max(tot["boxes"], 1.0)
    precision = tot["pos_inside"] / tot["pos"] if tot["pos"] else 0.0
    res = {"text_region_f1": _f1(precision, recall), "box_recall": recall, "pixel_precision": precision}
    if ref is not None:
        a, b = np.nan_to_num(outputs, nan=1.0) > thr, ref > thr
        union = float((a | b).sum())
        res["mask_iou_vs_float"] = float((a & b).sum()) / union if union else 1.0
    return res


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a (n, 4) with every box of b (m, 4), corners x0 y0 x1 y1."""
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def yolox_boxes(rows: np.ndarray, input_size: int, strides: Sequence[int], score_threshold: float,
                nms_iou: float) -> np.ndarray:
    """Decode YOLOX head rows (cx, cy, w, h in grid units, objectness, class scores...) to corner boxes, then NMS."""
    grids, steps = [], []
    for s in strides:
        n = input_size // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], 1))
        steps.append(np.full((n * n, 1), s))
    grid, step = np.concatenate(grids).astype(np.float64), np.concatenate(steps).astype(np.float64)
    rows = np.nan_to_num(rows.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    centre = (rows[:, :2] + grid) * step
    size = np.exp(np.clip(rows[:, 2:4], -20, 20)) * step
    score = rows[:, 4] * rows[:, 5:].max(axis=1)
    keep = score > score_threshold
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)[keep]
    score = score[keep]
    order = np.argsort(-score, kind="stable")
    chosen: list[int] = []
    while order.size:
        i = order[0]
        chosen.append(int(i))
        iou = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][iou <= nms_iou]
    return boxes[chosen]


def match_count(pred: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> int:
    """Greedy one-to-one matches at IoU >= iou (each prediction, best first, takes its best free truth)."""
    if len(pred) == 0 or len(truth) == 0:
        return 0
    m = box_iou(pred, truth)
    used: set[int] = set()
    hits = 0
    for i in range(len(pred)):
        for j in np.argsort(-m[i], kind="stable"):
            if m[i, j] < iou:
                break
            if int(j) not in used:
                used.add(int(j))
                hits += 1
                break
    return hits


def _det_f1(preds: list[np.ndarray], truths: list[np.ndarray]) -> float:
    hits = sum(match_count(p, t) for p, t in zip(preds, truths))
    n_pred, n_true = sum(len(p) for p in preds), sum(len(t) for t in truths)
    return _f1(hits / n_pred if n_pred else 0.0, hits / n_true if n_true else 0.0)


def _score_det(metric: dict, outputs: np.ndarray, ref: np.ndarray | None, d: Path) -> dict[str, float]:
    truths = [np.asarray(b, np.float64).reshape(-1, 4) for b in json.loads((d / "eval_boxes.json").read_text())]
    width = metric["row_width"]

    def decode(rows: np.ndarray) -> np.ndarray:
        return yolox_boxes(rows.reshape(-1, width), metric["input_size"], metric["strides"],
                           metric["score_threshold"], metric["nms_iou"])

    preds = [decode(r) for r in outputs]
    res = {"det_f1": _det_f1(preds, truths)}
    if ref is not None:
        res["f1_vs_float"] = _det_f1(preds, [decode(r) for r in ref])
    return res


def _score_vad(metric: dict, outputs: np.ndarray, ref: np.ndarray | None, d: Path) -> dict[str, float]:
    labels = np.load(d / "eval_labels.npy").astype(bool)
    thr = metric.get("threshold", 0.5)
    speech = np.nan_to_num(outputs, nan=0.0) > thr
    res = {"frame_accuracy": float((speech == labels).mean())}
    if ref is not None:
        res["agreement_with_float"] = float((speech == (ref > thr)).mean())
    return res


ScoreFn = Callable[[dict, np.ndarray, "np.ndarray | None", Path], dict[str, float]]
KIND_SCORERS: dict[str, ScoreFn] = {
    "ctc_text": _score_ctc_text, "text_region_f1": _score_text_region, "det_f1": _score_det,
    "vad_frames": _score_vad,
}


def _sqnr(ref: np.ndarray, out: np.ndarray) -> float:
    noise = float(np.square(out - ref).sum(dtype=np.float64))
    if not math.isfinite(noise):
        return float("-inf")
    signal = float(np.square(ref).sum(dtype=np.float64))
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
                # Not np.ascontiguousarray: it turns a 0-d array (a scalar input such as a sample rate) into (1,).
                array = np.asarray(arrays[key])
                np.lib.format.write_array(fh, array if array.flags.c_contiguous else array.copy(order="C"),
                                          allow_pickle=False)


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
