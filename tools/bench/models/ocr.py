"""PaddleOCR models shipped in the rapidocr-onnxruntime wheel, and text images rendered here to score them.

Three entries share the rendering: ``ocr_cls`` (text-direction classifier,
0 or 180 degrees), ``ocr_rec`` (CRNN-style recognizer, CTC over the model's
own character list) and ``ocr_det`` (DB-style text detector, a probability map).
The models are the paddle2onnx exports exactly as shipped. Text lines are drawn
with PIL in the TrueType fonts found on the machine (DejaVu), dark on light
backgrounds with noise and blur; the words come from docstrings of Python's
standard library (recorded in the entry), so nothing is downloaded.
Preprocessing follows rapidocr's: BGR, ``(x / 255 - 0.5) / 0.5``, height 48
for cls / rec (zero padding on the right), sides multiple of 32 for det.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

FONT_DIRS = ("/usr/share/fonts/truetype", "/usr/share/fonts/opentype", "/usr/share/fonts")
# Word sources: the docstrings of these standard-library modules (deterministic for one Python version).
WORD_MODULES = ("json", "argparse", "collections", "textwrap", "string", "random", "math", "os", "re", "pathlib",
                "subprocess", "functools", "itertools", "datetime", "decimal", "csv", "logging", "shutil")


def package_dir() -> Path:
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).parent


def fonts() -> list[Path]:
    """Latin TrueType fonts on this machine, sorted; thin and math fonts left out (unlike printed text)."""
    found: set[Path] = set()
    for root in FONT_DIRS:
        if Path(root).is_dir():
            found.update(p for p in Path(root).rglob("*.ttf") if not re.search(r"Math|ExtraLight", p.name))
    if not found:
        raise RuntimeError(f"no TrueType fonts under {', '.join(FONT_DIRS)}; install fonts-dejavu-core")
    return sorted(found)


def vocabulary() -> list[str]:
    """Distinct words (3 to 12 letters) of the standard-library docstrings in WORD_MODULES."""
    import importlib

    words: set[str] = set()
    for name in WORD_MODULES:
        mod = importlib.import_module(name)
        texts = [mod.__doc__ or ""] + [getattr(getattr(mod, a, None), "__doc__", None) or "" for a in sorted(dir(mod))
                                       if not a.startswith("_")]
        for t in texts:
            words.update(re.findall(r"\b[A-Za-z]{3,12}\b", t))
    return sorted(words)


def text_line(rng: np.random.Generator, vocab: list[str], max_chars: int) -> str:
    """A short line: words, sometimes capitalised, sometimes with a number or punctuation."""
    while True:
        n = int(rng.integers(1, 4))
        parts = [vocab[int(rng.integers(len(vocab)))] for _ in range(n)]
        if rng.random() < 0.3:
            parts[0] = parts[0].capitalize()
        if rng.random() < 0.3:
            parts.insert(int(rng.integers(len(parts) + 1)),
                         str(int(rng.integers(0, 10000))) if rng.random() < 0.6 else f"{rng.random() * 100:.2f}")
        if rng.random() < 0.15:
            parts[-1] += str(rng.choice([".", ",", ":", "!", "?"]))
        line = " ".join(parts)
        if 2 <= len(line) <= max_chars:
            return line


def render_line(rng: np.random.Generator, text: str, font_path: Path, size: int):
    """The text drawn on a light, slightly noisy background, cropped to a margin around it (RGB uint8)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    font = ImageFont.truetype(str(font_path), size)
    x0, y0, x1, y1 = font.getbbox(text)
    margin = int(size * rng.uniform(0.15, 0.4))
    w, h = x1 - x0 + 2 * margin, y1 - y0 + 2 * margin
    bg = tuple(int(v) for v in rng.integers(185, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 80, 3))
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).text((margin - x0, margin - y0), text, font=font, fill=fg)
    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    arr = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(0, 8), (h, w, 1))
    return np.clip(arr, 0, 255).astype(np.uint8)


def _resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(arr).resize((width, height), Image.BILINEAR))


def normalize_bgr(arr: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> rapidocr's input: BGR, CHW, (x / 255 - 0.5) / 0.5, float32."""
    bgr = arr[:, :, ::-1].astype(np.float32)
    return ((bgr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def line_input(arr: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int]:
    """rapidocr's cls / rec input: height fixed, width by aspect ratio up to ``width``, zero padding right."""
    h, w = arr.shape[:2]
    resized_w = min(width, int(math.ceil(height * w / h)))
    x = np.zeros((3, height, width), np.float32)
    x[:, :, :resized_w] = normalize_bgr(_resize(arr, resized_w, height))
    return x[None], resized_w


def character_list(model_path: Path) -> list[str]:
    """The recognizer's classes: blank, the characters in the model's metadata, space (rapidocr's order)."""
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    chars = {p.key: p.value for p in m.metadata_props}.get("character")
    if not chars:
        raise RuntimeError(f"{model_path}: no 'character' list in the model's metadata")
    return ["blank", *chars.splitlines(), " "]


# ----------------------------------------------------------------------------- the three entries

def build_cls(d: Path, seed: int, n_calib: int, n_eval: int) -> dict:
    src = package_dir() / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    rng = np.random.default_rng(seed)
    vocab, font_list = vocabulary(), fonts()
    samples, labels, texts = [], [], []
    for _ in range(n_calib + n_eval):
        text = text_line(rng, vocab, 14)
        arr = render_line(rng, text, font_list[int(rng.integers(len(font_list)))], int(rng.integers(22, 40)))
        flipped = bool(rng.random() < 0.5)
        if flipped:
            arr = arr[::-1, ::-1].copy()
        x, _ = line_input(arr, 48, 192)
        samples.append({"x": x})
        labels.append(int(flipped))
        texts.append(text)
    return {"_model": src, "_calib": samples[:n_calib], "_eval": samples[n_calib:],
            "_labels": np.asarray(labels[n_calib:], np.int64),
            "texts": {"calib": texts[:n_calib], "eval": texts[n_calib:]},
            "description": "PaddleOCR text-direction classifier (MobileNetV3-style, 2 classes: 0 / 180 degrees), "
                           "paddle2onnx export shipped in rapidocr-onnxruntime (opset 11; batch declared as "
                           "dim_value -1)",
            "preprocessing": "rendered text line, half of them rotated 180 degrees; rapidocr's cls input: BGR, "
                             "height 48, width by aspect ratio up to 192, zero padding, (x/255-0.5)/0.5",
            "metric": {"name": "top1_accuracy", "kind": "top1_accuracy", "output_index": 0,
                       "description": "direction (0 = upright, 1 = rotated 180) against the rendering; "
                                      "evaluate_all also gives top1_agreement with float and sqnr_db"}}


def build_rec(d: Path, seed: int, n_calib: int, n_eval: int) -> dict:
    src = package_dir() / "models" / "ch_PP-OCRv4_rec_infer.onnx"
    chars = character_list(src)
    index = {c: i for i, c in enumerate(chars)}
    rng = np.random.default_rng(seed)
    vocab, font_list = vocabulary(), fonts()
    samples, labels, texts = [], [], []
    while len(samples) < n_calib + n_eval:
        text = text_line(rng, vocab, 24)
        if any(c not in index for c in text):
            continue
        arr = render_line(rng, text, font_list[int(rng.integers(len(font_list)))], int(rng.integers(24, 44)))
        if arr.shape[1] / arr.shape[0] > 320 / 48:  # would be squeezed: rapidocr widens the batch instead
            continue
        x, _ = line_input(arr, 48, 320)
        samples.append({"x": x})
        labels.append([index[c] for c in text])
        texts.append(text)
    return {"_model": src, "_calib": samples[:n_calib], "_eval": samples[n_calib:],
            "_labels_json": labels[n_calib:], "texts": {"calib": texts[:n_calib], "eval": texts[n_calib:]},
            "description": "PP-OCRv4 text recognizer (SVTR-LCNet: depthwise convs, a small attention block, CTC "
                           "head over 6625 classes), paddle2onnx export shipped in rapidocr-onnxruntime (opset 12)",
            "preprocessing": "rendered text line; rapidocr's rec input: BGR, height 48, width by aspect ratio "
                             "(at most 320, lines that would be squeezed are not drawn), zero padding to 320, "
                             "(x/255-0.5)/0.5",
            "metric": {"name": "char_accuracy", "kind": "ctc_text", "output_index": 0, "classes": len(chars),
                       "blank": 0, "float32_outputs": True,
                       "description": "greedy CTC decoding against the rendered string: 1 - edit distance / "
                                      "length; evaluate_all also gives exact_match, text_agreement with float "
                                      "and sqnr_db of the class probabilities"}}


def build_det(d: Path, seed: int, n_calib: int, n_eval: int, size: int = 320) -> dict:
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    src = package_dir() / "models" / "ch_PP-OCRv4_det_infer.onnx"
    rng = np.random.default_rng(seed)
    vocab, font_list = vocabulary(), fonts()
    samples, all_boxes = [], []
    for _ in range(n_calib + n_eval):
        base = rng.integers(170, 256, 3).astype(np.float32)
        ramp = np.linspace(-1, 1, size, dtype=np.float32)[None, :, None] * rng.uniform(-25, 25, 3)
        bg = np.clip(base + ramp + rng.normal(0, 4, (size, size, 1)), 0, 255).astype(np.uint8)
        bg = np.broadcast_to(bg, (size, size, 3)).copy()
        img = Image.fromarray(bg)
        draw = ImageDraw.Draw(img)
        boxes: list[list[float]] = []
        for _ in range(int(rng.integers(2, 6))):
            for _attempt in range(20):
                font = ImageFont.truetype(str(font_list[int(rng.integers(len(font_list)))]),
                                          int(rng.integers(9, 26)))
                text = text_line(rng, vocab, 22)
                x0, y0, x1, y1 = font.getbbox(text)
                w, h = x1 - x0, y1 - y0
                if w >= size - 8:
                    continue
                px, py = int(rng.integers(4, size - w - 4)), int(rng.integers(4, size - h - 4))
                box = [float(px), float(py), float(px + w), float(py + h)]
                if all(box[2] + 6 < b[0] or b[2] + 6 < box[0] or box[3] + 6 < b[1] or b[3] + 6 < box[1]
                       for b in boxes):
                    # Low contrast for some lines: ink from dark to mid grey on the light background.
                    ink = tuple(int(v) for v in rng.integers(0, 150, 3))
                    draw.text((px - x0, py - y0), text, font=font, fill=ink)
                    boxes.append(box)
                    break
        if rng.random() < 0.5:
            img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
        noisy = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(2, 12), (size, size, 1))
        samples.append({"x": normalize_bgr(np.clip(noisy, 0, 255).astype(np.uint8))[None]})
        all_boxes.append(boxes)
    return {"_model": src, "_calib": samples[:n_calib], "_eval": samples[n_calib:],
            "_boxes_json": all_boxes[n_calib:],
            "description": "PP-OCRv4 text detector (DB: MobileNetV3-style backbone, FPN, ConvTranspose head, "
                           "sigmoid probability map), paddle2onnx export shipped in rapidocr-onnxruntime (opset 12)",
            "preprocessing": f"{size}x{size} light backgrounds with a colour ramp and noise, 2-5 rendered text "
                             "lines that do not overlap, 9-25 px fonts, ink from dark to mid grey, half blurred, "
                             "pixel noise; BGR, (x/255-0.5)/0.5",
            "metric": {"name": "text_region_f1", "kind": "text_region_f1", "output_index": 0,
                       "map_shape": [size, size], "threshold": 0.3,
                       "description": "F1 of box recall (a drawn line is found when half of its inner part is "
                                      "above 0.3, rapidocr's threshold) and pixel precision (positive pixels "
                                      "inside a drawn line's box); evaluate_all also gives mask_iou_vs_float "
                                      "and sqnr_db of the map"}}
