"""magika_real: magika's shipped model (a jax2tf / tf2onnx export) on real files found on this machine.

The files are the ones installed packages and the system ship: Python sources
and stubs, JSON, text, shared libraries (ELF), PNG and JPEG images, fonts,
Markdown, YAML, HTML, CSS, JavaScript, C and C++ sources and headers, shell
scripts, TOML, XML, CSV, INI / cfg, reStructuredText, SVG, gzip and zip files,
labelled by their extension (``EXTENSION_LABELS``; only labels the model knows
are kept). They are gathered under ``ROOTS`` in sorted order, files of 128
bytes to 20 MB, and drawn per type with a seed: at most ``PER_TYPE_EVAL`` for
eval and ``PER_TYPE_CALIB`` others for calibration. The features are magika's
(tools/bench/models/filetypes.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

EXTENSION_LABELS = {
    ".py": "python", ".pyi": "python", ".json": "json", ".txt": "txt", ".so": "elf", ".png": "png",
    ".jpg": "jpeg", ".jpeg": "jpeg", ".ttf": "ttf", ".md": "markdown", ".yaml": "yaml", ".yml": "yaml",
    ".html": "html", ".htm": "html", ".css": "css", ".js": "javascript", ".c": "c", ".h": "c", ".cpp": "cpp",
    ".hpp": "cpp", ".cc": "cpp", ".sh": "shell", ".toml": "toml", ".xml": "xml", ".csv": "csv", ".ini": "ini",
    ".cfg": "ini", ".rst": "rst", ".svg": "svg", ".gz": "gzip", ".zip": "zip", ".pyx": "python",
}
PER_TYPE_EVAL = 16
PER_TYPE_CALIB = 10
MIN_BYTES, MAX_BYTES = 128, 20 * 1024 * 1024


def roots() -> list[Path]:
    """Where the files come from: this interpreter's installation and the system's shared data."""
    base = Path(sys.prefix)
    return [p for p in (base / "lib", Path(sys.base_prefix) / "lib", Path("/usr/share"), Path("/usr/include"),
                        Path("/usr/lib/x86_64-linux-gnu")) if p.is_dir()]


def candidates(labels: set[str]) -> dict[str, list[Path]]:
    """Files per label under roots(), sorted, links and unreadable files skipped."""
    found: dict[str, set[Path]] = {}
    for root in roots():
        for path in root.rglob("*"):
            label = EXTENSION_LABELS.get(path.suffix.lower())
            if label not in labels or path.is_symlink():
                continue
            try:
                if path.is_file() and MIN_BYTES <= path.stat().st_size <= MAX_BYTES:
                    found.setdefault(label, set()).add(path.resolve())
            except OSError:
                continue
    return {k: sorted(v) for k, v in sorted(found.items())}


def build(d: Path, seed: int, src_dir: Path, cfg: dict) -> dict:
    from models import filetypes

    labels = list(cfg["target_labels_space"])
    per_label = candidates(set(labels))
    rng = np.random.default_rng(seed)

    def feats(path: Path) -> dict[str, np.ndarray]:
        content = path.read_bytes()
        row = filetypes.magika_features(content, cfg["beg_size"], cfg["end_size"], cfg["padding_token"],
                                        cfg["block_size"])
        return {"bytes": row[None, :]}

    calib, evals, eval_labels, listing = [], [], [], {"calib": [], "eval": []}
    for label, paths in per_label.items():
        order = rng.permutation(len(paths))
        chosen = [paths[i] for i in order[: PER_TYPE_EVAL + PER_TYPE_CALIB]]
        n_eval = min(PER_TYPE_EVAL, max(1, len(chosen) * PER_TYPE_EVAL // (PER_TYPE_EVAL + PER_TYPE_CALIB)))
        for p in chosen[:n_eval]:
            evals.append(feats(p))
            eval_labels.append(labels.index(label))
            listing["eval"].append(f"{label}\t{p}")
        for p in chosen[n_eval:]:
            calib.append(feats(p))
            listing["calib"].append(f"{label}\t{p}")
    shuffle = rng.permutation(len(calib))
    calib = [calib[i] for i in shuffle]
    listing["calib"] = [listing["calib"][i] for i in shuffle]
    counts = {label: sum(1 for x in listing["eval"] if x.split("\t")[0] == label) for label in per_label}
    return {"_model": src_dir / "model.onnx", "_calib": calib, "_eval": evals,
            "_labels": np.asarray(eval_labels, np.int64), "texts": listing,
            "description": "Magika file-type classifier, the ONNX model shipped in the magika wheel, unchanged "
                           "(jax2tf / tf2onnx export; LayerNorm written out as elementary ops), on real files "
                           "found on this machine",
            "preprocessing": "magika's features v2 (tools/bench/models/filetypes.py) of each file; the files and "
                             "their labels are listed in texts.json",
            "labels": labels, "eval_per_type": counts,
            "metric": {"name": "top1_accuracy", "kind": "top1_accuracy", "output_index": 0,
                       "description": "argmax == the type its extension says; evaluate_all also gives "
                                      "top1_agreement with float and sqnr_db"}}
