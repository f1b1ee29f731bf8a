"""Large photos: tiles against whole fits, windows around holes, peak memory, and the estimate against the run.

    python benchmarks/tiles.py overlap [--size 256 --tile 96 --overlaps 8,16,32 --iters 600 --images F16,kate]
    python benchmarks/tiles.py windows [--size 256 --margins 8,16,24,32 --iters 1000 --images F16,kate]
    python benchmarks/tiles.py memory [--megapixels 4 --tile 256 --iters 10]
    python benchmarks/tiles.py large [--width 4000 --height 3000]

overlap: denoising (sigma 25) of each image fitted whole and in tiles with each overlap, the same fixed number of
steps (--stop off); PSNR of each and the seams measured in the record. windows: a scratch inpainted with the
default preset and stopping, whole (known pixels kept) against windows with each margin; PSNR inside the hole.
memory: peak resident memory of a tiled fit of a large image against the fit of one of its tiles alone, each
in a fresh process. large: a scratch on a 12-megapixel mosaic of native-resolution photos, `dip restore` with
its defaults: the estimate said at its start against the time measured, and the hole's PSNR against
scikit-image's biharmonic inpainting. Results are printed as JSON lines; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import dip  # first: it sets the OpenMP wait policy, which only takes effect before torch loads

# isort: split
import numpy as np
import torch
from PIL import Image

import dip.layout
from dip.config import Overrides
from dip.degradations import add_gaussian_noise
from dip.io import Picture, write_image
from dip.metrics import psnr
from dip.pipeline import prepare, solve

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
IMAGES = {
    "F16": DATA / "dip-paper" / "denoising" / "F16_GT.png",
    "kate": DATA / "dip-paper" / "inpainting" / "kate.png",
    "barbara": DATA / "dip-paper" / "restoration" / "barbara.png",
    "monarch": DATA / "sr-benchmarks" / "CSet14" / "monarch.png",
}
MOSAIC_SOURCES = [
    *(DATA / "sr-benchmarks" / "CSet14").glob("*.png"),
    *(DATA / "sr-benchmarks" / "CSet5").glob("*.png"),
    *(DATA / "dip-paper" / "inpainting").glob("[!_]*[!k].png"),
    DATA / "dip-paper" / "denoising" / "F16_GT.png",
    DATA / "dip-paper" / "restoration" / "barbara.png",
    DATA / "dip-paper" / "sr" / "zebra_GT.png",
]


def picture(array: np.ndarray) -> Picture:
    return Picture(array.astype(np.float32), None, 8, "RGB", None)


def load(name: str, size: int) -> np.ndarray:
    image = Image.open(IMAGES[name]).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.float32) / 255


def scratch(height: int, width: int, seed: int, length: float = 0.7, thickness: int = 4, bend: float | None = None):
    """A known-pixel mask (True = known) with one curved scratch of ``thickness`` pixels across ``length`` of the
    image's width, as a fold or a scratch on a print would be; it bends up and down by 5-12 % of the height, or by
    ``bend`` times its length."""
    rng = np.random.default_rng(seed)
    known = np.ones((height, width), bool)
    start = rng.uniform(0.1, 0.2) * width
    xs = np.arange(int(start), int(start + length * width))
    phase, amplitude = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.12) * height
    if bend is not None:
        amplitude = bend * length * width
    ys = height * rng.uniform(0.35, 0.65) + amplitude * np.sin(phase + 3 * np.pi * (xs - start) / (length * width))
    for x, y in zip(xs, ys.astype(int), strict=True):
        known[max(0, y - thickness // 2) : y + (thickness + 1) // 2, x] = False
    return known


def run(plan) -> tuple[object, float]:
    started = time.perf_counter()
    restoration = solve(plan)
    return restoration, time.perf_counter() - started


def overlap(args) -> None:
    for name in args.images.split(","):
        clean = load(name, args.size)
        noisy = add_gaussian_noise(clean, 25, np.random.default_rng(0))
        fixed = Overrides(iterations=args.iters, stop=args.stop)
        whole, seconds = run(prepare(picture(noisy), task="denoise", preset="light", overrides=fixed, tile=0))
        base = psnr(whole.result.image, clean)
        print(json.dumps({"image": name, "size": args.size, "fit": "whole", "psnr": round(base, 3),
                          "seconds": round(seconds, 1)}), flush=True)  # fmt: skip
        for amount in [int(v) for v in args.overlaps.split(",")]:
            plan = prepare(picture(noisy), task="denoise", preset="light", overrides=fixed, tile=args.tile,
                           tile_overlap=amount)  # fmt: skip
            tiled, seconds = run(plan)
            value = psnr(tiled.result.image, clean)
            write_image(Path(args.out) / f"{name}_{args.size}_tile{args.tile}_o{amount}.png", tiled.picture)
            print(json.dumps({
                "image": name, "size": args.size, "fit": f"tiles of {args.tile}", "overlap": amount,
                "tiles": len(plan.layout.boxes), "psnr": round(value, 3), "vs_whole": round(value - base, 3),
                "seam_rms": tiled.split["seams"]["rms"], "seam_max": tiled.split["seams"]["max"],
                "seconds": round(seconds, 1),
            }), flush=True)  # fmt: skip
        write_image(Path(args.out) / f"{name}_{args.size}_whole.png", whole.picture)


def in_hole(image, clean, known) -> float:
    restored = image[0].permute(1, 2, 0).numpy() if hasattr(image, "permute") else image
    holes = ~known
    return float(10 * np.log10(1 / np.mean((restored[holes] - clean[holes]) ** 2)))


def windows(args) -> None:
    for seed, name in enumerate(args.images.split(",")):
        clean = load(name, args.size)
        known = scratch(args.size, args.size, seed)
        damaged = np.where(known[..., None], clean, 1.0)
        steps = Overrides(iterations=args.iters, stop=args.stop)
        whole, seconds = run(prepare(picture(damaged), mask=known, overrides=steps, preset="light", tile=0))
        base = in_hole(whole.result.image, clean, known)
        print(json.dumps({"image": name, "fit": "whole", "hole_psnr": round(base, 3), "seconds": round(seconds, 1),
                          "hole_fraction": round(float((~known).mean()), 4)}), flush=True)  # fmt: skip
        for margin in [int(v) for v in args.margins.split(",")]:
            dip.layout.WINDOW_MARGIN = margin
            plan = prepare(picture(damaged), mask=known, overrides=steps, preset="light", tile=args.window)
            cut, seconds = run(plan)
            value = in_hole(cut.result.image, clean, known)
            print(json.dumps({
                "image": name, "fit": "windows", "margin": margin, "windows": len(plan.layout.boxes),
                "area": round(sum(b.area for b in plan.layout.boxes) / args.size**2, 3),
                "hole_psnr": round(value, 3), "vs_whole": round(value - base, 3), "seconds": round(seconds, 1),
            }), flush=True)  # fmt: skip


def peak_of(command: list[str]) -> tuple[float, float]:
    """Peak resident memory (MiB) and seconds of a command run in a fresh process."""
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        raise RuntimeError("the child's peak did not exceed an earlier child's; run each measurement alone")
    return after / 1024, time.perf_counter() - started


def mosaic(width: int, height: int, cell: int = 500) -> np.ndarray:
    """A photo-sized test image from real photographs at their native resolution: cells of ``cell`` pixels, each
    a crop of one source (mirrored on alternate rows so that repeats are not identical)."""
    sources = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255 for p in sorted(MOSAIC_SOURCES)]
    sources = [s for s in sources if min(s.shape[:2]) >= cell // 2]
    canvas = np.zeros((height, width, 3), np.float32)
    k = 0
    for top in range(0, height, cell):
        for left in range(0, width, cell):
            source = sources[k % len(sources)]
            if (top // cell) % 2:
                source = source[:, ::-1]
            h, w = min(cell, height - top), min(cell, width - left)
            tile = np.asarray(Image.fromarray((source * 255).astype(np.uint8)).resize((cell, cell)), np.float32)
            canvas[top : top + h, left : left + w] = tile[:h, :w] / 255
            k += 1
    return canvas


def memory(args) -> None:
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    side = int(round((args.megapixels * 1e6) ** 0.5))
    clean = mosaic(side, side)
    noisy = add_gaussian_noise(clean, 25, np.random.default_rng(0))
    write_image(folder / "large_noisy.png", picture(noisy))
    write_image(folder / "one_tile.png", picture(noisy[: args.tile, : args.tile]))
    dip_command = [sys.executable, "-m", "dip.cli", "restore", "--preset", "light", "--iters", str(args.iters),
                   "--stop", "off", "--overwrite", "--quiet"]  # fmt: skip
    tile_peak, tile_seconds = peak_of([*dip_command, str(folder / "one_tile.png"), "-o", str(folder / "t.png")])
    tiled_peak, tiled_seconds = peak_of([*dip_command, str(folder / "large_noisy.png"), "-o",
                                         str(folder / "l.png"), "--tile", str(args.tile)])  # fmt: skip
    whole = dip.memory.estimate(dip.config.resolve_preset("light", "denoise", "cpu"), side, side, 3).total
    print(json.dumps({"image": f"{side}x{side}", "tile": args.tile, "one_tile_peak_mib": round(tile_peak),
                      "tiled_peak_mib": round(tiled_peak), "ratio": round(tiled_peak / tile_peak, 2),
                      "whole_estimate_mib": round(whole / 2**20), "tiled_seconds": round(tiled_seconds),
                      "one_tile_seconds": round(tile_seconds)}), flush=True)  # fmt: skip


def large(args) -> None:
    from skimage.restoration import inpaint_biharmonic

    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    clean = mosaic(args.width, args.height)
    known = scratch(args.height, args.width, seed=3, length=args.length / args.width, thickness=args.thickness,
                    bend=0.1)
    damaged = np.where(known[..., None], clean, 1.0)
    write_image(folder / "photo.png", picture(clean))
    write_image(folder / "scratched.png", picture(damaged))
    write_image(folder / "scratch_mask.png", Picture(known[..., None].astype(np.float32), None, 8, "L", None))
    command = [sys.executable, "-m", "dip.cli", "restore", str(folder / "scratched.png"), "-o",
               str(folder / "restored.png"), "--mask", str(folder / "scratch_mask.png"), "--overwrite", "--json"]
    # the tool's own thread count, as a user gets it, not this script's
    environment = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    estimate = subprocess.run([*command, "--estimate"], check=True, capture_output=True, text=True, env=environment)
    predicted = json.loads(estimate.stdout)
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - started
    record = json.loads(done.stdout)
    restored = np.asarray(Image.open(folder / "restored.png").convert("RGB"), np.float32) / 255
    # biharmonic on the scratch's surroundings only (its cost grows with the box): the scratch's bounding box
    # with the same margin dip's windows have
    rows, cols = np.nonzero(~known)
    margin = dip.layout.WINDOW_MARGIN
    top, left = max(0, rows.min() - margin), max(0, cols.min() - margin)
    bottom, right = rows.max() + margin + 1, cols.max() + margin + 1
    started = time.perf_counter()
    part = inpaint_biharmonic(damaged[top:bottom, left:right], ~known[top:bottom, left:right], channel_axis=-1)
    biharmonic_seconds = time.perf_counter() - started
    biharmonic = damaged.copy()
    biharmonic[top:bottom, left:right] = part
    write_image(folder / "biharmonic.png", picture(np.clip(biharmonic, 0, 1)))
    print(json.dumps({
        "image": f"{args.width}x{args.height}", "hole_pixels": int((~known).sum()),
        "layout": record["split"]["count"] if "split" in record else "whole",
        "predicted_seconds": predicted["seconds"], "measured_seconds": round(seconds, 1),
        "fit_seconds": record["seconds"], "predicted_over_measured": round(predicted["seconds"] / seconds, 3),
        "hole_psnr_dip": round(in_hole(restored, clean, known), 3),
        "hole_psnr_biharmonic": round(in_hole(biharmonic, clean, known), 3),
        "biharmonic_seconds": round(biharmonic_seconds, 1),
        "known_identical": bool(np.array_equal(np.asarray(Image.open(folder / "restored.png").convert("RGB"))[known],
                                               np.asarray(Image.open(folder / "scratched.png").convert("RGB"))[known])),
        "stops": sorted({r["stop_reason"] for r in record.get("split", {}).get("regions", [])}),
        "threads": record["threads"],
    }), flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["overlap", "windows", "memory", "large"])
    parser.add_argument("--images", default="F16")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tile", type=int, default=96)
    parser.add_argument("--overlaps", default="8,16,32")
    parser.add_argument("--margins", default="8,16,24,32")
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--iters", type=int, default=600)
    parser.add_argument("--stop", default="off")
    parser.add_argument("--megapixels", type=float, default=4)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--length", type=int, default=300, help="large: the scratch's length in pixels")
    parser.add_argument("--thickness", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="out/tiles")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    {"overlap": overlap, "windows": windows, "memory": memory, "large": large}[args.what](args)


if __name__ == "__main__":
    main()
