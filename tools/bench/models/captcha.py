"""ddddocr's captcha models (PyTorch exports shipped in the wheel), and captchas rendered here to score them.

- ``captcha_ocr``: ``common.onnx``, a CNN + CTC recognizer over 8210 classes;
  grey image of height 64, output (time, batch, classes). The captchas are 4 to
  6 letters and digits, each rotated and shifted, over noise, arcs and dots,
  drawn with the machine's DejaVu fonts.
- ``captcha_det``: ``common_det.onnx``, a YOLOX-style detector (416x416,
  anchor-free head at strides 8/16/32, rows cx, cy, w, h, objectness, class)
  for click captchas. The scenes are crops of scikit-learn's two sample photos
  with 3 to 6 large outlined glyphs; the truth is each glyph's box.

Preprocessing follows ddddocr: grey / 255 for ocr; raw 0-255 BGR pixels, CHW,
for det.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.ocr import fonts

ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # letters and digits that cannot be told apart are left out


def package_dir() -> Path:
    import ddddocr

    return Path(ddddocr.__file__).parent


def charset() -> list[str]:
    """common.onnx's classes (ddddocr's beta model) from ddddocr's charset manager; index 0 is the CTC blank."""
    import ddddocr

    return list(ddddocr.DdddOcr(show_ad=False, beta=True).ocr_engine.charset_manager.get_charset())


def render_captcha(rng: np.random.Generator, text: str, font_list: list[Path], width: int = 160,
                   height: int = 64) -> np.ndarray:
    """A captcha: rotated, jittered glyphs on a noisy tinted background with arcs and dots (grey uint8)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    bg = tuple(int(v) for v in rng.integers(200, 256, 3))
    img = Image.new("RGB", (width, height), bg)
    step = (width - 16) / len(text)
    for i, ch in enumerate(text):
        font = ImageFont.truetype(str(font_list[int(rng.integers(len(font_list)))]), int(rng.integers(34, 46)))
        glyph = Image.new("RGBA", (60, 64), (0, 0, 0, 0))
        colour = tuple(int(v) for v in rng.integers(0, 140, 3)) + (255,)
        ImageDraw.Draw(glyph).text((8, 2), ch, font=font, fill=colour)
        glyph = glyph.rotate(float(rng.uniform(-25, 25)), resample=Image.BILINEAR, expand=False)
        x = int(8 + i * step + rng.uniform(-3, 3) - 10)
        y = int(rng.uniform(-8, 6))
        img.paste(glyph, (x, y), glyph)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = int(rng.integers(-40, width // 2)), int(rng.integers(-20, height // 2))
        draw.arc((x0, y0, x0 + int(rng.integers(60, 200)), y0 + int(rng.integers(30, 90))),
                 float(rng.uniform(0, 180)), float(rng.uniform(180, 360)),
                 fill=tuple(int(v) for v in rng.integers(0, 160, 3)), width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(30, 120))):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        draw.point((x, y), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(0.6))
    return np.asarray(img.convert("L"))


def build_ocr(d: Path, seed: int, n_calib: int, n_eval: int) -> dict:
    chars = charset()
    index = {c: i for i, c in enumerate(chars) if c}
    alphabet = [c for c in ALPHABET if c in index]
    rng = np.random.default_rng(seed)
    font_list = [f for f in fonts() if "Mono" in f.name or "Sans" in f.name]
    samples, labels, texts = [], [], []
    for _ in range(n_calib + n_eval):
        text = "".join(alphabet[int(rng.integers(len(alphabet)))] for _ in range(int(rng.integers(4, 7))))
        grey = render_captcha(rng, text, font_list)
        samples.append({"input1": (grey.astype(np.float32) / 255.0)[None, None]})
        labels.append([index[c] for c in text])
        texts.append(text)
    return {"_model": package_dir() / "common.onnx", "_calib": samples[:n_calib], "_eval": samples[n_calib:],
            "_labels_json": labels[n_calib:], "texts": {"calib": texts[:n_calib], "eval": texts[n_calib:]},
            "description": "ddddocr's captcha recognizer common.onnx (CNN with SiLU, CTC over 8210 classes, "
                           "output time-major), PyTorch 1.9 export (opset 12) shipped in the ddddocr wheel",
            "preprocessing": "160x64 rendered captcha of 4-6 characters from " + "".join(alphabet)
                             + ", grey, /255; input (1, 1, 64, 160)",
            "metric": {"name": "char_accuracy", "kind": "ctc_text", "output_index": 0, "classes": len(chars),
                       "blank": 0, "batch_axis": 1, "float32_outputs": True,
                       "description": "greedy CTC decoding against the rendered string: 1 - edit distance / "
                                      "length; evaluate_all also gives exact_match, text_agreement with float "
                                      "and sqnr_db of the logits"}}


def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return [np.asarray(im) for im in load_sample_images().images]


def build_det(d: Path, seed: int, n_calib: int, n_eval: int, size: int = 416) -> dict:
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    photos = _photos()
    font_list = [f for f in fonts() if "Bold" in f.name] or fonts()
    glyphs = "ABCDEFGHJKLMNPQRSTUVWXYZ2345678#@&%$?"
    samples, all_boxes = [], []
    for _ in range(n_calib + n_eval):
        photo = photos[int(rng.integers(len(photos)))]
        y0 = int(rng.integers(0, photo.shape[0] - size))
        x0 = int(rng.integers(0, photo.shape[1] - size))
        img = Image.fromarray(photo[y0 : y0 + size, x0 : x0 + size].copy())
        draw = ImageDraw.Draw(img)
        boxes: list[list[float]] = []
        for _ in range(int(rng.integers(3, 7))):
            for _attempt in range(30):
                font = ImageFont.truetype(str(font_list[int(rng.integers(len(font_list)))]), int(rng.integers(36, 64)))
                ch = glyphs[int(rng.integers(len(glyphs)))]
                stroke = int(rng.integers(1, 4))
                bx0, by0, bx1, by1 = draw.textbbox((0, 0), ch, font=font, stroke_width=stroke)
                w, h = bx1 - bx0, by1 - by0
                px, py = int(rng.integers(4, size - w - 4)), int(rng.integers(4, size - h - 4))
                box = [float(px), float(py), float(px + w), float(py + h)]
                if all(box[2] + 4 < b[0] or b[2] + 4 < box[0] or box[3] + 4 < b[1] or b[3] + 4 < box[1]
                       for b in boxes):
                    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
                    outline = tuple(255 - v for v in fill)
                    draw.text((px - bx0, py - by0), ch, font=font, fill=fill, stroke_width=stroke,
                              stroke_fill=outline)
                    boxes.append(box)
                    break
        bgr = np.asarray(img)[:, :, ::-1].astype(np.float32)
        samples.append({"images": bgr.transpose(2, 0, 1)[None].copy()})
        all_boxes.append(boxes)
    return {"_model": package_dir() / "common_det.onnx", "_calib": samples[:n_calib], "_eval": samples[n_calib:],
            "_boxes_json": all_boxes[n_calib:],
            "description": "ddddocr's click-captcha detector common_det.onnx (YOLOX-style: CSP backbone with "
                           "SiLU, PAN neck, decoupled anchor-free head), PyTorch 1.9 export (opset 11) shipped in "
                           "the ddddocr wheel",
            "preprocessing": f"{size}x{size} crops of scikit-learn's sample photos with 3-6 large outlined glyphs; "
                             "BGR pixels 0-255, CHW (ddddocr's preprocessing, no scaling)",
            "metric": {"name": "det_f1", "kind": "det_f1", "output_index": 0, "row_width": 6, "input_size": size,
                       "strides": [8, 16, 32], "score_threshold": 0.1, "nms_iou": 0.45,
                       "description": "boxes decoded as ddddocr does (score = objectness x class > 0.1, NMS 0.45), "
                                      "F1 against the drawn glyphs' boxes at IoU 0.5; evaluate_all also gives "
                                      "f1_vs_float and sqnr_db of the head output"}}
