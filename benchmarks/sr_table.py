"""The paper's super-resolution table (CSet5 / CSet14) at a size a CPU can run, with the baselines a user has.

    python benchmarks/sr_table.py [--sets CSet5,CSet14] [--scale 4] [--crop 128] [--preset light]
                                  [--iters 2000] [--stop off] [--lr-maker pil|dip] [--csv out/sr_table.csv]

Each ground truth is centre-cropped to ``--crop`` px at its own resolution (``--crop 0``: the whole image, cut
to a multiple of 32 as the paper's notebook does), and its low-resolution input made the way a user's image was
made: Pillow's bicubic downscaling (``--lr-maker dip``: dip's own Lanczos-2 downsampler, the operator the fit
inverts). The paper's ground truths and bicubic inputs came from the LapSRN viewer (MATLAB's imresize); Pillow's
bicubic is close to it but not equal, and the crop is not the paper's whole image: say so beside a figure.

Scored two ways: PSNR over RGB on the whole image, and the paper's convention, PSNR of the luminance Y (ITU-R 601,
as MATLAB's rgb2ycbcr) less a border of ``scale`` pixels. Beside the fit's returned image, the run records the
PSNR peak (reference tracking every ``--track-every`` steps) and, passively, where automatic stopping (the light
presets' spread rule) would have stopped and what it would have returned: whether a fixed count or the
detector is the better default is read from these columns.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

# isort: split
import numpy as np
import torch
from PIL import Image

from dip.api import restore
from dip.config import PRESETS, StopConfig
from dip.degradations import crop_to_multiple, through_operator
from dip.io import Picture
from dip.metrics import psnr
from dip.operators import Downsample
from dip.stopping import make_detector

ROOT = Path(__file__).resolve().parents[1]
SETS = ROOT.parent / "shared" / "data" / "sr-benchmarks"
PAPER = {"CSet5": {"dip": 29.90, "bicubic": 28.43}, "CSet14": {"dip": 27.00, "bicubic": 26.05}}  # x4, Y, border 4


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y of ITU-R 601 on the 0-1 scale, as MATLAB's rgb2ycbcr (16-235)."""
    return (16 + rgb @ np.array([65.481, 128.553, 24.966])) / 255


def y_psnr(image: np.ndarray, clean: np.ndarray, border: int) -> float:
    crop = (slice(border, -border or None), slice(border, -border or None))
    def y(rgb: np.ndarray) -> np.ndarray:
        return luminance(rgb)[crop][..., None].astype(np.float32)

    return psnr(y(image), y(clean))


def upscale(lr: np.ndarray, size: tuple[int, int], method) -> np.ndarray:
    planes = [Image.fromarray(np.ascontiguousarray(lr[..., c])).resize(size, method) for c in range(lr.shape[2])]
    return np.clip(np.stack([np.asarray(p) for p in planes], axis=-1), 0, 1).astype(np.float32)


def ground_truth(path: Path, crop: int, scale: int) -> np.ndarray:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    if crop:
        height, width = pixels.shape[:2]
        side = min(crop, height - height % scale, width - width % scale)
        top, left = (height - side) // 2, (width - side) // 2
        return pixels[top : top + side, left : left + side]
    return crop_to_multiple(pixels, 32)[0]


def low_resolution(hr: np.ndarray, scale: int, maker: str) -> np.ndarray:
    if maker == "dip":
        return through_operator(hr, Downsample(scale))
    eight_bit = Image.fromarray(np.round(hr * 255).astype(np.uint8))
    small = eight_bit.resize((hr.shape[1] // scale, hr.shape[0] // scale), Image.Resampling.BICUBIC)
    return np.asarray(small, dtype=np.float32) / 255


class PassiveStop:
    """Watches a fit's steps with the light presets' detector, without ending the fit: where it would have
    stopped, and the image it would have returned."""

    def __init__(self, average: float | None) -> None:
        light = PRESETS["light-denoise"].stop
        rule = StopConfig(rule="spread", cap=light.cap, window=light.window, patience=light.patience,
                          warmup=light.warmup)  # fmt: skip
        self.detector = make_detector(rule, None, average)
        self.average, self.fired_at, self.image = average, None, None

    def __call__(self, step) -> None:
        if self.fired_at is None and self.detector.update(step):
            self.fired_at = step.iteration
            best = self.detector.best_average if self.average is not None else self.detector.best
            self.image = best[0].permute(1, 2, 0).cpu().numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="CSet5,CSet14")
    parser.add_argument("--images", default=None, help="only these image stems")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--preset", default="light")
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--stop", default="off")
    parser.add_argument("--lr-maker", choices=("pil", "dip"), default="pil")
    parser.add_argument("--track-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", type=Path, default=ROOT / "out" / "sr_table.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    wanted = None if args.images is None else set(args.images.split(","))
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(args.csv, "w", newline="") as file:
        writer = None
        for name in args.sets.split(","):
            for path in sorted((SETS / name).glob("*.png")):
                if wanted is not None and path.stem not in wanted:
                    continue
                row = {"set": name, **run_image(path, args)}
                rows.append(row)
                if writer is None:
                    writer = csv.DictWriter(file, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
                file.flush()
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    summarise(rows, args)


def run_image(path: Path, args) -> dict:
    hr = ground_truth(path, args.crop, args.scale)
    lr = low_resolution(hr, args.scale, args.lr_maker)
    size = (hr.shape[1], hr.shape[0])
    baselines = {name: upscale(lr, size, getattr(Image.Resampling, name.upper())) for name in ("bicubic", "lanczos")}
    row: dict = {"image": path.stem, "size": f"{size[0]}x{size[1]}", "scale": args.scale, "lr_maker": args.lr_maker}
    for method, image in baselines.items():
        row[f"{method}_rgb"] = round(psnr(image, hr), 3)
        row[f"{method}_y"] = round(y_psnr(image, hr, args.scale), 3)
    preset = PRESETS[args.preset] if args.preset in PRESETS else None
    average = (preset or PRESETS[f"{args.preset}-sr"]).fit.average
    watcher = PassiveStop(average)
    started = time.perf_counter()
    result = restore(Picture(lr, None, 8, "RGB", None), scale=args.scale, preset=args.preset, iterations=args.iters,
                     stop=args.stop, reference=Picture(hr, None, 8, "RGB", None), track_every=args.track_every,
                     observe=watcher, seed=0)  # fmt: skip
    out = result.picture.pixels
    row.update(
        dip_rgb=round(psnr(out, hr), 3),
        dip_y=round(y_psnr(out, hr, args.scale), 3),
        dip_returned=result.result.best_iteration,
        dip_steps=result.result.iterations,
        peak_rgb=round(result.metrics["peak_psnr"], 3),
        peak_iteration=result.metrics["peak_iteration"],
        # the returned kind of image (average or iterate) every 500 steps, from the tracking: other fixed counts
        curve=" ".join(f"{i}:{p:.2f}" for i, p in result.psnr_curve() if i % 500 == 0),
        auto_stop=watcher.fired_at,
        auto_rgb=None if watcher.image is None else round(psnr(watcher.image, hr), 3),
        seconds=round(time.perf_counter() - started, 1),
        preset=result.preset.name,
    )
    return row


def summarise(rows: list[dict], args) -> None:
    preset = rows[0]["preset"] if rows else ""
    print(f"\nx{args.scale}, {args.crop or 'whole'} px crops, LR by {args.lr_maker}, {preset}, "
          f"{torch.get_num_threads()} thread(s); mean PSNR (Y less a {args.scale}-px border / RGB):")  # fmt: skip
    for name in sorted({row["set"] for row in rows}):
        members = [row for row in rows if row["set"] == name]
        line = " | ".join(
            f"{method} {statistics.mean(r[f'{method}_y'] for r in members):.2f} / "
            f"{statistics.mean(r[f'{method}_rgb'] for r in members):.2f}"
            for method in ("bicubic", "lanczos", "dip")
        )
        wins = sum(r["dip_rgb"] > r["lanczos_rgb"] for r in members)
        paper = PAPER.get(name, {})
        print(f"{name} ({len(members)}): {line}; dip > lanczos on {wins}/{len(members)}; paper x4 (Y): "
              f"dip {paper.get('dip')} bicubic {paper.get('bicubic')}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
