"""Write the bundled example: examples/tiny_cnn.onnx and 32 calibration images in examples/calib/.

The model comes from ``tiny_cnn`` in tests/models.py (one copy of the builder,
shared with the tests). The images are smooth random fields (bilinear
upsampling of coarse noise, plus a little fine noise), scaled like
mean/std-normalized photos, so activation ranges look like real data and not
like white noise. Everything is seeded: running the script again rewrites
the same bytes.

Usage:
    python tools/make_example.py [--out examples] [--samples 32] [--seed 2024]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from models import tiny_cnn  # noqa: E402
from rewriter.ir.load import save_model  # noqa: E402


def smooth_images(n: int, shape: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """``n`` float32 arrays of ``shape`` (N, C, H, W): smooth fields, about zero mean and unit spread."""
    rng = np.random.default_rng(seed)
    _, c, h, w = shape
    images = []
    for _ in range(n):
        coarse = rng.standard_normal((shape[0], c, 5, 5))
        # Separable bilinear upsampling: rows then columns.
        img = np.einsum("hi,ncij,wj->nchw", _interp_matrix(h, 5), coarse, _interp_matrix(w, 5))
        img += 0.1 * rng.standard_normal(shape)
        # Per-channel brightness and contrast, as photos differ.
        img = img * rng.uniform(0.6, 1.4, (1, c, 1, 1)) + rng.uniform(-0.5, 0.5, (1, c, 1, 1))
        images.append(img.astype(np.float32))
    return images


def _interp_matrix(size: int, knots: int) -> np.ndarray:
    """[size, knots] weights of linear interpolation from ``knots`` evenly spaced points."""
    pos = np.linspace(0, knots - 1, size)
    lo = np.minimum(np.floor(pos).astype(int), knots - 2)
    frac = pos - lo
    m = np.zeros((size, knots))
    m[np.arange(size), lo] = 1 - frac
    m[np.arange(size), lo + 1] = frac
    return m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "examples")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)

    model = tiny_cnn()
    save_model(model, args.out / "tiny_cnn.onnx")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in dims)
    calib = args.out / "calib"
    calib.mkdir(parents=True, exist_ok=True)
    for old in calib.glob("sample_*.npy"):
        old.unlink()
    for i, img in enumerate(smooth_images(args.samples, shape, args.seed)):
        np.save(calib / f"sample_{i:03d}.npy", img)
    print(f"wrote {args.out / 'tiny_cnn.onnx'} and {args.samples} samples of shape {shape} in {calib}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
