"""Throughput of K images fitted at once (``dip batch --parallel K``) against the same K fitted one after another.

    python benchmarks/parallel.py [--k 1,2,4,8] [--size 256] [--preset auto] [--steps 200] [--device auto]
                                  [--threads N] [--json out.json]

For each K, K images (the early-stopping benchmark's photographs with Gaussian noise, sigma = 25, cycled when K
is larger) are fitted for ``--steps`` steps with stopping off, first one after another with ``dip.fit.fit``,
then all at once with ``dip.fit.fit_parallel``, after one untimed warm-up fit. Reported: seconds of each,
images per minute, the speed-up (sequential time over parallel time), and the mean PSNR of both runs' images with
the largest difference between an image's two PSNRs. The two runs compute the same fits but not bit for bit
(grouped convolutions take other kernels and sum in another order, and Adam's normalised steps let rounding
grow), so images are compared by their quality, not pixel by pixel. Fixed step counts keep the comparison about
speed: with stopping on, images leave the stack at different steps and the gain depends on when.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import dip  # first: it sets the OpenMP wait policy, which only takes effect before torch loads

# isort: split
import torch

from dip.config import FitConfig, Task, resolve_preset
from dip.device import resolve_device
from dip.fit import fit, fit_parallel
from dip.metrics import psnr
from dip.operators import Observation

# isort: split
from early_stopping import IMAGES, corrupt, load_clean


def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(array.transpose(2, 0, 1).copy())[None]


def cases(count: int, size: int) -> list[tuple[Observation, torch.Tensor]]:
    """``count`` noisy images, each with its clean original."""
    names = [name for name, path in IMAGES.items() if path.exists() and name != "barbara"]  # barbara is gray
    result = []
    for k in range(count):
        clean = load_clean(names[k % len(names)], size)
        corrupted, _, _, _ = corrupt(clean, "gauss25", seed=k)
        result.append((Observation(_tensor(corrupted)), _tensor(clean)))
    return result


def _wait(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(k: int, args, device: torch.device) -> dict:
    preset = resolve_preset(args.preset, Task.denoise, device.type)
    fit_cfg = replace(preset.fit, iterations=args.steps)
    images, cleans = zip(*cases(k, args.size), strict=True)
    seeds = list(range(k))

    _wait(device)
    tick = time.perf_counter()
    alone = [fit(o, preset.net, fit_cfg, seed=s, device=device).image for o, s in zip(images, seeds, strict=True)]
    _wait(device)
    sequential = time.perf_counter() - tick

    tick = time.perf_counter()
    together = [r.image for r in fit_parallel(images, preset.net, fit_cfg, seeds=seeds, device=device)]
    _wait(device)
    parallel = time.perf_counter() - tick

    psnr_alone = [psnr(x, clean) for x, clean in zip(alone, cleans, strict=True)]
    psnr_together = [psnr(x, clean) for x, clean in zip(together, cleans, strict=True)]
    return {
        "k": k,
        "preset": preset.name,
        "size": args.size,
        "steps": args.steps,
        "sequential_seconds": sequential,
        "parallel_seconds": parallel,
        "images_per_minute_sequential": 60 * k / sequential,
        "images_per_minute_parallel": 60 * k / parallel,
        "speedup": sequential / parallel,
        "psnr_sequential": statistics.mean(psnr_alone),
        "psnr_parallel": statistics.mean(psnr_together),
        "largest_psnr_difference": max(abs(a - b) for a, b in zip(psnr_alone, psnr_together, strict=True)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", default="1,2,4,8", help="how many images at once, comma-separated")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--preset", default="auto")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    # The first fit on a device pays for kernel selection and allocation; neither way of fitting should.
    [(observation, _)] = cases(1, args.size)
    fit(observation, resolve_preset(args.preset, Task.denoise, device.type).net, FitConfig(iterations=2), device=device)

    print(f"{'K':>3} {'sequential s':>12} {'parallel s':>10} {'img/min seq':>11} {'img/min par':>11} {'speed-up':>8} "
          f"{'PSNR seq':>8} {'PSNR par':>8} {'max |dPSNR|':>11}")  # fmt: skip
    rows = []
    for k in (int(value) for value in args.k.split(",")):
        row = measure(k, args, device)
        rows.append(row)
        print(
            f"{k:>3} {row['sequential_seconds']:>12.1f} {row['parallel_seconds']:>10.1f} "
            f"{row['images_per_minute_sequential']:>11.2f} {row['images_per_minute_parallel']:>11.2f} "
            f"{row['speedup']:>8.2f} {row['psnr_sequential']:>8.2f} {row['psnr_parallel']:>8.2f} "
            f"{row['largest_psnr_difference']:>11.2f}",
            flush=True,
        )
    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": args.threads,
        "torch": torch.__version__,
        "dip": dip.__version__,
        "preset": rows[0]["preset"] if rows else args.preset,
        "size": args.size,
        "steps": args.steps,
    }
    print(f"# {machine}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
