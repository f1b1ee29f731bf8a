"""How many Richardson-Lucy iterations a fair user gives each blur of benchmarks/quality.py, chosen on held-out
photographs (scikit-image's camera, rocket, coins and moon at 128 px; none is a benchmark image).

    python benchmarks/deblur_rules.py

Each image is blurred with the benchmark's kernel, sigma-2 noise (0-255 scale) added as the benchmark adds it,
and restored with scikit-image's Richardson-Lucy at each candidate count; the count with the best mean PSNR is
the rule (quality.RL_ITERATIONS). Unsupervised Wiener has no parameter to choose.
"""

from __future__ import annotations

import numpy as np
from skimage import data, transform
from skimage.restoration import richardson_lucy

from dip.degradations import add_gaussian_noise, through_operator
from dip.metrics import psnr
from dip.operators import Blur, blur_kernel

HELD_OUT = {"camera": data.camera, "rocket": data.rocket, "coins": data.coins, "moon": data.moon}
BLURS = {"gaussian:2": 2.0, "motion:9,30": 2.0}  # spec: noise sigma, as quality.DEBLUR_CASES
COUNTS = (5, 10, 20, 30, 50, 100, 200)


def held_out(name: str, size: int = 128) -> np.ndarray:
    image = HELD_OUT[name]()
    image = image if image.ndim == 2 else image.mean(axis=2)
    side = min(image.shape[:2])
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    square = image[top : top + side, left : left + side] / 255.0
    return transform.resize(square, (size, size), anti_aliasing=True).astype(np.float32)[..., None]


def reflected(method, plane: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """``method`` on the plane padded by reflection by the kernel's size, cropped back. scikit-image's
    deconvolutions pad with zeros, and the dark frame they then see costs them 2-9 dB at these sizes; the blur
    was made with reflection at the border, so a fair user pads so too."""
    pad = max(psf.shape)
    return method(np.pad(plane, pad, mode="reflect"))[pad:-pad, pad:-pad]


def main() -> None:
    for spec, sigma in BLURS.items():
        psf = blur_kernel(spec).double().numpy()
        scores = {count: [] for count in COUNTS}
        for index, name in enumerate(HELD_OUT):
            clean = held_out(name)
            blurred = through_operator(clean, Blur(blur_kernel(spec), spec))
            noisy = add_gaussian_noise(blurred, sigma, np.random.default_rng(index))
            for count in COUNTS:

                def deconvolve(plane: np.ndarray, count: int = count, psf: np.ndarray = psf) -> np.ndarray:
                    return richardson_lucy(plane, psf, num_iter=count, clip=True)

                restored = reflected(deconvolve, noisy[..., 0].astype(np.float64), psf)
                scores[count].append(psnr(restored[..., None].astype(np.float32), clean))
        means = {count: float(np.mean(values)) for count, values in scores.items()}
        best = max(means, key=means.get)
        print(f"{spec} + noise {sigma}: " + ", ".join(f"{c}: {m:.2f}" for c, m in means.items()) + f" -> {best}")


if __name__ == "__main__":
    main()
