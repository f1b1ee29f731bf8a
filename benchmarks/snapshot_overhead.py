"""What keeping snapshots costs the fit: steps/s with and without them, same image, seed and settings.

    python benchmarks/snapshot_overhead.py [--image samples/astronaut_noisy25.png] [--iters 300]
                                           [--schedules every:10,every:50,log:12] [--repeats 3] [--device cpu]

Each variant runs ``--iters`` steps with stopping off (so every run does the same work) ``--repeats`` times,
interleaved, and the median wall time of the fit is reported; the snapshot variants include waiting for their
last file to be written. Sheet, curves and animation are made after the fit and are timed separately.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dip  # noqa: F401  (first: it sets the OpenMP wait policy, which only takes effect before torch loads)

# isort: split
import torch

from dip.api import restore
from dip.io import read_image
from dip.snapshots import make_pictures, parse_schedule

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=ROOT / "samples" / "astronaut_noisy25.png")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--schedules", default="every:10,every:50,log:12")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    picture = read_image(args.image)
    variants = [None, *args.schedules.split(",")]
    seconds: dict[str | None, list[float]] = {v: [] for v in variants}
    pictures_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for variant in variants:
                folder = Path(scratch) / f"{repeat}-{variant}".replace(":", "_")
                started = time.perf_counter()
                restoration = restore(
                    picture,
                    preset=args.preset,
                    iterations=args.iters,
                    stop="off",
                    device=args.device,
                    snapshots=variant,
                    snapshot_dir=folder if variant else None,
                )
                seconds[variant].append(time.perf_counter() - started)
                if variant is not None and repeat == 0:
                    tick = time.perf_counter()
                    make_pictures(restoration, picture.pixels, animate=True)
                    pictures_seconds.append(time.perf_counter() - tick)
    width, height = picture.size
    print(f"# {args.image.name} {width}x{height}, {args.iters} steps, {restoration.preset.name}, "
          f"{restoration.device}, {args.threads} thread(s), median of {args.repeats}")  # fmt: skip
    plain = statistics.median(seconds[None])
    print(f"{'snapshots':<12} {'kept':>5} {'s':>8} {'steps/s':>8} {'overhead':>9}")
    for variant in variants:
        median = statistics.median(seconds[variant])
        kept = 0 if variant is None else len(parse_schedule(variant, args.iters))
        print(
            f"{variant or 'none':<12} {kept:>5} {median:>8.2f} {args.iters / median:>8.2f} "
            f"{100 * (median / plain - 1):>8.1f}%"
        )
    if pictures_seconds:
        print(f"# sheet + curves + animation after the fit: {statistics.median(pictures_seconds):.2f} s (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
