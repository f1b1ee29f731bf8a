"""The noise level a fair user gives a Gaussian denoiser (TV, NLM, BM3D) for a JPEG of each quality in
benchmarks/quality.py, chosen on held-out photographs (scikit-image's camera, rocket, coins and moon at 128 px,
as benchmarks/deblur_rules.py; none is a benchmark image).

    python benchmarks/jpeg_rules.py [--qualities 10,20,30] [--out benchmarks/results/jpeg-rules.json]

Each image goes through Pillow's JPEG codec at the quality, then through each method at every candidate sigma
(0-255 scale); the sigma with the best mean PSNR of TV and NLM (BM3D's own best is printed beside it) is the rule
(quality.JPEG_SIGMA). BM3D is used only where the user has installed it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys

import numpy as np
from deblur_rules import HELD_OUT, held_out
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

from dip.degradations import jpeg_compress
from dip.metrics import psnr

SIGMAS = (3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0)


def methods() -> dict:
    chosen = {
        "tv": lambda plane, sigma: denoise_tv_chambolle(plane, weight=0.75 * sigma),
        "nlm": lambda plane, sigma: denoise_nl_means(
            plane, h=0.6 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6
        ),  # fmt: skip
    }
    if importlib.util.find_spec("bm3d"):
        import bm3d

        chosen["bm3d"] = lambda plane, sigma: bm3d.bm3d(plane, sigma_psd=sigma)
    return chosen  # the settings of quality.tv, quality.nlm and quality.bm3d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qualities", default="10,20,30")
    parser.add_argument("--out", default=None, help="write the means as JSON here")
    args = parser.parse_args()
    table = {}
    for quality in (int(q) for q in args.qualities.split(",")):
        scores: dict[str, dict[float, list[float]]] = {}
        for name in HELD_OUT:
            clean = held_out(name)
            compressed = jpeg_compress(clean, quality)
            for method, run in methods().items():
                for sigma in SIGMAS:
                    restored = run(compressed[..., 0].astype(np.float64), sigma / 255)
                    value = psnr(np.asarray(restored, np.float32)[..., None], clean)
                    scores.setdefault(method, {}).setdefault(sigma, []).append(value)
        means = {method: {s: float(np.mean(v)) for s, v in by_sigma.items()} for method, by_sigma in scores.items()}
        joint = {s: (means["tv"][s] + means["nlm"][s]) / 2 for s in SIGMAS}
        rule = max(joint, key=joint.get)
        line = f"q={quality}: TV+NLM best at sigma {rule:g} ({joint[rule]:.2f} dB)"
        for method, by_sigma in means.items():
            best = max(by_sigma, key=by_sigma.get)
            line += f"; {method} alone {best:g} ({by_sigma[best]:.2f}, at the rule {by_sigma[rule]:.2f})"
        print(line, flush=True)
        table[quality] = {"rule": rule, "means": means}
    if args.out:
        record = {"command": " ".join(["python", *sys.argv]), "sigmas": SIGMAS, "qualities": table}
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
