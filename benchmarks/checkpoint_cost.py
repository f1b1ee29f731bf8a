"""What a checkpoint costs: its size and the seconds one save takes, for presets x detectors at one size.

    python benchmarks/checkpoint_cost.py [--size 512] [--cases paper:wmv,paper:emv,light:spread] [--steps 3]

Each case fits a random image for ``--steps`` steps with a checkpoint after every step and reports the file's
size and the time of each save (the window of the windowed-variance detector is allocated whole at the first
step, so the first save already has the full size).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import dip  # first: it sets the OpenMP wait policy, which only takes effect before torch loads

# isort: split
import numpy as np
import torch

import dip.pipeline
from dip.api import restore
from dip.io import Picture


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cases", default="paper:wmv,paper:emv,light:spread")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pixels = np.random.default_rng(0).random((args.size, args.size, 3), dtype=np.float32)
    picture = Picture(pixels, None, 8, "RGB", None)
    save = dip.pipeline.save_checkpoint
    print(f"# {args.size}x{args.size} RGB, {args.threads} thread(s), torch {torch.__version__}")
    for case in args.cases.split(","):
        preset, rule = case.split(":")
        seconds: list[float] = []

        def timed(path, payload, seconds=seconds):
            tick = time.perf_counter()
            save(path, payload)
            seconds.append(time.perf_counter() - tick)

        with tempfile.TemporaryDirectory() as scratch:
            checkpoint = Path(scratch) / "run.ckpt"
            dip.pipeline.save_checkpoint = timed
            try:
                restore(picture, preset=preset, stop=rule, iterations=args.steps, checkpoint=checkpoint,
                        checkpoint_every=1)  # fmt: skip
            finally:
                dip.pipeline.save_checkpoint = save
            size = checkpoint.stat().st_size / 2**20
        print(f"{preset:<6} {rule:<4} {size:>7.0f} MiB  seconds per save: {', '.join(f'{s:.2f}' for s in seconds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
