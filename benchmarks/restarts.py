"""How much averaging more fits gives, and whether fits of flipped or rotated copies of the image average better
than fits from new seeds.

    python benchmarks/restarts.py [--images astronaut,F16] [--size 64] [--corruption gauss25] [--seeds 4]
                                  [--iters N] [--threads 1] [--out out/restarts]
    python benchmarks/restarts.py --from out/restarts          # the table again from the saved images

For each image, dip's default fit (automatic stopping, ``dip.restore`` defaults) is run on
- the image with the seeds of restarts 0 .. S-1 (``dip.api.restart_seed``): what ``--restarts S`` averages;
- each of the 8 symmetries of the square (rotations by 90 degrees, each with and without a left-right mirror),
  with restart k's seed for symmetry k, and mapped back. Symmetry 0 is the image itself with seed 0, the plain
  fit, shared by both groups.
The net is not equivariant to these maps (its strided layers and padding see the image differently), so a
mirrored fit is a different estimate of the same image. Every fit's image is kept (``--out``, one .npz per
image), and the table gives the PSNR of the mean of several groups of fits: 1, new seeds (2, S), symmetries
(2, 4, the 4 that keep a non-square image's shape, 8), and all fits together. With bm3d installed, BM3D's PSNR
on the same noisy image is added for comparison (it is not a dependency of dip).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import dip  # first: it sets the OpenMP wait policy, which only takes effect before torch loads

# isort: split
import numpy as np
import torch
from early_stopping import IMAGES, corrupt, load_clean
from quality import noise_level

from dip.api import restart_seed, restore
from dip.io import Picture
from dip.metrics import psnr

SYMMETRIES = 8


def to_view(pixels: np.ndarray, symmetry: int) -> np.ndarray:
    """Symmetry k of an (H, W, C) image: a left-right mirror for k >= 4, then k % 4 quarter turns."""
    if symmetry >= 4:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(np.rot90(pixels, symmetry % 4))


def from_view(pixels: np.ndarray, symmetry: int) -> np.ndarray:
    pixels = np.rot90(pixels, -(symmetry % 4))
    if symmetry >= 4:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(pixels)


def groups(seeds: int) -> dict[str, list[str]]:
    """Named sets of fits whose mean is scored; 's{k}' is seed k on the image, 'v{k}' symmetry k (v0 = s0)."""
    seeded = ["v0", *(f"s{k}" for k in range(1, seeds))]
    named = {
        "1 fit": ["v0"],
        "2 seeds": seeded[:2],
        f"{seeds} seeds": seeded,
        "2 views": ["v0", "v1"],
        "4 views": ["v0", "v1", "v2", "v3"],
        "4 mirrors": ["v0", "v2", "v4", "v6"],  # identity, half turn, left-right, up-down: the shape is kept
        "8 views": [f"v{k}" for k in range(SYMMETRIES)],
        f"{seeds} seeds + 4 views": [*seeded, "v1", "v2", "v3", "v4"],
        "all": [*seeded, *(f"v{k}" for k in range(1, SYMMETRIES))],
    }
    return {name: fits for name, fits in named.items() if len(set(fits)) == len(fits)}


def fit_image(name: str, args) -> dict[str, np.ndarray]:
    clean = load_clean(name, args.size)
    noisy, known, task, loss = corrupt(clean, args.corruption, 0)
    if known is not None:
        raise SystemExit(f"{args.corruption} has a mask; this benchmark maps only the image, not a mask")
    fits = {"clean": clean, "noisy": noisy}
    plan = [(f"s{k}", k, 0) for k in range(1, args.seeds)] + [(f"v{k}", k, k) for k in range(SYMMETRIES)]
    for label, restart, symmetry in plan:
        started = time.perf_counter()
        mode = "RGB" if noisy.shape[2] == 3 else "L"
        view = Picture(to_view(noisy, symmetry).astype(np.float32), None, 8, mode, None)
        restoration = restore(
            view, task=task, loss=loss, iterations=args.iters, seed=restart_seed(0, restart), device="cpu"
        )
        fits[label] = from_view(restoration.picture.pixels, symmetry)
        print(
            f"{name:<10} {label:<3} {psnr(fits[label], clean):6.2f} dB  returned {restoration.result.best_iteration:>5}"
            f"  {time.perf_counter() - started:6.1f} s",
            flush=True,
        )
    if importlib.util.find_spec("bm3d") is not None:
        fits["bm3d"] = bm3d_image(noisy, args.corruption)
    return fits


def bm3d_image(noisy: np.ndarray, corruption: str) -> np.ndarray:
    import bm3d

    sigma = noise_level(corruption)
    denoised = bm3d.bm3d_rgb(noisy, sigma_psd=sigma) if noisy.shape[2] == 3 else bm3d.bm3d(noisy[..., 0], sigma)
    return np.clip(np.asarray(denoised, np.float32), 0, 1).reshape(noisy.shape)


def table(folder: Path, names: list[str] | None) -> dict:
    files = sorted(folder.glob("*.npz")) if names is None else [folder / f"{name}.npz" for name in names]
    rows = {}
    for file in files:
        saved = np.load(file)
        seeds = 1 + sum(key.startswith("s") and key[1:].isdigit() for key in saved.files)
        row = {
            group: psnr(np.mean([saved[label] for label in fits], axis=0), saved["clean"])
            for group, fits in groups(seeds).items()
        }
        row["input"] = psnr(saved["noisy"], saved["clean"])
        if "bm3d" in saved.files:
            row["BM3D"] = psnr(saved["bm3d"], saved["clean"])
        rows[file.stem] = row
    columns = [c for c in ["input", *groups(seeds), "BM3D"] if all(c in row for row in rows.values())]
    print("| image | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
    means = {c: statistics.mean(row[c] for row in rows.values()) for c in columns}
    print("| **mean** | " + " | ".join(f"{means[c]:.3f}" for c in columns) + " |")
    return {"rows": rows, "mean": means}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default=",".join(IMAGES))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--corruption", default="gauss25")
    parser.add_argument("--seeds", type=int, default=4, help="fits from new seeds, the plain one included")
    parser.add_argument("--iters", type=int, help="cap on each fit's steps [the preset's]")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("out/restarts"), help="folder for each image's fits")
    parser.add_argument("--from", dest="source", type=Path, help="only tabulate the fits saved in this folder")
    args = parser.parse_args(argv)
    names = args.images.split(",")
    unknown = sorted(set(names) - set(IMAGES))
    if unknown or args.seeds < 1:
        raise SystemExit(f"unknown images: {', '.join(unknown)}" if unknown else "--seeds must be at least 1")
    if args.source is not None:
        table(args.source, None)
        return 0
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        np.savez(args.out / f"{name}.npz", **fit_image(name, args))
    summary = table(args.out, names)
    machine = {"threads": args.threads, "torch": torch.__version__, "dip": dip.__version__, "size": args.size}
    (args.out / "summary.json").write_text(json.dumps({"machine": machine, **summary}, indent=2) + "\n")
    print(f"# {machine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
