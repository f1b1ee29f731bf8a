"""Restores the shipped samples (and F16 from the paper's data, when present) with the default settings.

    python benchmarks/samples.py [--preset auto] [--size-f16 128] [--json results.json]

Prints one row per case: PSNR of the corrupted input and of the result against the clean image, steps,
seconds, device. The library is called directly, as a user's script would; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import dip  # first: it sets the OpenMP wait policy, which only takes effect before torch loads

# isort: split
import numpy as np
import torch
from PIL import Image

from dip.degradations import add_gaussian_noise
from dip.io import Picture, read_image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
F16 = ROOT.parent / "shared" / "data" / "dip-paper" / "denoising" / "F16_GT.png"


def _f16_case(size: int) -> dict | None:
    """F16 resized to size x size with sigma = 25 noise, seed 0 — the same as `dip degrade --noise 25`."""
    if not F16.exists():
        return None
    clean = np.asarray(Image.open(F16).convert("RGB").resize((size, size), Image.Resampling.LANCZOS), np.float32)
    clean = Picture(clean / 255.0, None, 8, "RGB", None)
    noisy = clean.with_pixels(add_gaussian_noise(clean.pixels, 25, np.random.default_rng(0)))
    # The noisy image is quantised to 8 bits as a file would be, so the figures match the CLI's.
    noisy = noisy.with_pixels(np.round(noisy.pixels * 255) / 255)
    return {"name": f"F16 {size}px sigma=25", "input": noisy, "reference": clean, "kwargs": {"task": "denoise"}}


def cases(f16_size: int) -> list[dict]:
    listed = [
        {
            "name": "astronaut sigma=25",
            "input": SAMPLES / "astronaut_noisy25.png",
            "reference": SAMPLES / "astronaut.png",
            "kwargs": {},
        },
        {
            "name": "chelsea JPEG q=10",
            "input": SAMPLES / "chelsea_q10.jpg",
            "reference": SAMPLES / "chelsea.png",
            "kwargs": {},
        },
        {
            "name": "coffee text inpainting",
            "input": SAMPLES / "coffee_text.png",
            "reference": SAMPLES / "coffee.png",
            "kwargs": {"mask": SAMPLES / "coffee_text_mask.png"},
        },
    ]
    f16 = _f16_case(f16_size)
    return listed + ([f16] if f16 else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="auto")
    parser.add_argument("--size-f16", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    rows = []
    header = (
        f"{'case':<26} {'task':<8} {'preset':<14} {'in dB':>6} {'out dB':>7} {'gain':>6} {'best@':>6} {'steps':>6} "
        f"{'stop':<9} {'peak':>6} {'peak@':>6} {'s':>7}"
    )
    print(header)
    for case in cases(args.size_f16):
        if args.only and args.only not in case["name"]:
            continue
        image = case["input"] if isinstance(case["input"], Picture) else read_image(case["input"])
        result = dip.restore(image, preset=args.preset, seed=args.seed, reference=case["reference"], **case["kwargs"])
        m = result.metrics
        row = {
            "case": case["name"],
            "task": result.task.value,
            "preset": result.preset.name,
            "input_psnr": round(m["input_psnr"], 2),
            "psnr": round(m["psnr"], 2),
            "ssim": round(m["ssim"], 4),
            "best_iteration": result.result.best_iteration,
            "iterations": result.result.iterations,
            "stop_reason": result.result.stop_reason,
            "peak_psnr": round(m["peak_psnr"], 2),
            "peak_iteration": m["peak_iteration"],
            "seconds": round(result.result.seconds, 1),
        }
        rows.append(row)
        print(
            f"{row['case']:<26} {row['task']:<8} {row['preset']:<14} {row['input_psnr']:>6.2f} {row['psnr']:>7.2f} "
            f"{row['psnr'] - row['input_psnr']:>+6.2f} {row['best_iteration']:>6} {row['iterations']:>6} "
            f"{row['stop_reason']:<9} {row['peak_psnr']:>6.2f} {row['peak_iteration']:>6} {row['seconds']:>7.1f}",
            flush=True,
        )
    machine = {
        "device": str(result.device) if rows else None,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dip": dip.__version__,
        "python": platform.python_version(),
    }
    print(f"# {machine}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
