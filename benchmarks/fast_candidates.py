"""Which changes bring a light fit to its best image in less time? Issue 20's search, kept so it can be rerun.

    python benchmarks/fast_candidates.py --candidates light,lr02,cos08 --images astronaut,F16 --size 128 \
        --steps 1000 [--corruption gauss25] [--threads 1] [--json out.json]

Each candidate is the task's light preset (the fast preset for the names starting with "fast") with some
settings changed (CANDIDATES below names them). Every case is fitted for ``--steps`` steps with no stopping,
the PSNR of the returned image (the output average, or the raw iterate where the preset returns it) traced
at every step against the clean image, so that each candidate's peak, the step and the seconds at which it
comes, and how fast it falls afterwards are known. The seconds are the fit's own clock. Time to an
automatically stopped result is ``time_to_result.py``'s measure; this one says which candidates are worth
it. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import dip  # noqa: F401  first: it sets the OpenMP wait policy, which only takes effect before torch loads

# isort: split
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from early_stopping import corrupt, load_clean  # noqa: E402

from dip.config import Task, resolve_preset  # noqa: E402
from dip.fit import fit  # noqa: E402
from dip.metrics import psnr  # noqa: E402
from dip.operators import Identity, Mask, Observation  # noqa: E402

# name -> (net changes, fit changes), applied to the task's light preset
CANDIDATES: dict[str, tuple[dict, dict]] = {
    "light": ({}, {}),
    "lr02": ({}, {"lr": 0.02}),
    "lr04": ({}, {"lr": 0.04}),
    "cos02": ({}, {"lr": 0.02, "lr_schedule": "cosine", "lr_warmup": 50}),
    "cos04": ({}, {"lr": 0.04, "lr_schedule": "cosine", "lr_warmup": 50}),
    "cos08": ({}, {"lr": 0.08, "lr_schedule": "cosine", "lr_warmup": 100}),
    "cos16": ({}, {"lr": 0.16, "lr_schedule": "cosine", "lr_warmup": 100}),
    "cos08nj": ({}, {"lr": 0.08, "lr_schedule": "cosine", "lr_warmup": 100, "reg_noise_std": 0.0}),
    "cos08a98": ({}, {"lr": 0.08, "lr_schedule": "cosine", "lr_warmup": 100, "average": 0.98}),
    "cos08j15": ({}, {"lr": 0.08, "lr_schedule": "cosine", "lr_warmup": 100, "reg_noise_std": 0.015}),
    "cos08j15a98": ({}, {"lr": 0.08, "lr_schedule": "cosine", "lr_warmup": 100, "reg_noise_std": 0.015,
                         "average": 0.98}),
    "cos08j20": ({}, {"lr": 0.08, "lr_schedule": "cosine", "lr_warmup": 100, "reg_noise_std": 0.02}),
    "cos04j15": ({}, {"lr": 0.04, "lr_schedule": "cosine", "lr_warmup": 100, "reg_noise_std": 0.015}),
    "cos08j25": ({}, {"lr": 0.08, "lr_schedule": "cosine", "lr_warmup": 100, "reg_noise_std": 0.025}),
    # the fast presets' settings at fewer steps (--steps is the schedule's length)
    "fast": ({}, {}),
    "fastj20": ({}, {"reg_noise_std": 0.02}),
    "fastj20w30": ({}, {"reg_noise_std": 0.02, "lr_warmup": 30}),
    "fastj20lr12": ({}, {"reg_noise_std": 0.02, "lr": 0.12}),
    "fastw200": ({}, {"lr_warmup": 200}),
    "fastw300": ({}, {"lr_warmup": 300}),
    "fine16": ({"channels_down": (16, 32, 32, 32, 32), "channels_up": (16, 32, 32, 32, 32)}, {}),
    "fine16lr04": ({"channels_down": (16, 32, 32, 32, 32), "channels_up": (16, 32, 32, 32, 32)}, {"lr": 0.04}),
    "no1x1": ({"extra_1x1_up": False}, {}),
    "no1x1lr04": ({"extra_1x1_up": False}, {"lr": 0.04}),
    "avg98lr04": ({}, {"lr": 0.04, "average": 0.98}),
    "avg995lr04": ({}, {"lr": 0.04, "average": 0.995}),
}


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None].float()


def trace(clean: np.ndarray, corrupted: np.ndarray, known, task: Task, loss, candidate: str, steps: int,
          seed: int) -> dict:  # fmt: skip
    net_changes, fit_changes = CANDIDATES[candidate]
    preset = resolve_preset("fast" if candidate.startswith("fast") else "light", task, "cpu")
    net_cfg = replace(preset.net, **net_changes)
    fit_cfg = replace(preset.fit, iterations=steps, loss=loss, **fit_changes)
    y = _tensor(corrupted)
    operator = Identity() if known is None else Mask(_tensor(known))
    observation = Observation(y, operator)
    clean_t = _tensor(clean)
    curve: list[float] = []
    clock: list[float] = []
    started = time.perf_counter()

    def observe(step) -> None:
        image = step.average if step.average is not None else step.x
        curve.append(psnr(image.clamp(0, 1), clean_t))
        clock.append(time.perf_counter() - started)

    fit(observation, net_cfg, fit_cfg, seed=seed, observe=observe)
    peak = int(np.argmax(curve))
    return {
        "candidate": candidate, "peak_psnr": round(curve[peak], 3), "peak_step": peak + 1,
        "peak_seconds": round(clock[peak], 1), "seconds_per_step": round(clock[-1] / len(clock), 4),
        "psnr_every_50": [round(v, 3) for v in curve[49::50]],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default="light,lr02,cos04")
    parser.add_argument("--images", default="astronaut,F16")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--corruption", default="gauss25")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    unknown = [c for c in args.candidates.split(",") if c not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; known: {', '.join(CANDIDATES)}")
    rows = []
    for image in args.images.split(","):
        clean = load_clean(image, args.size)
        corrupted, known, task, loss = corrupt(clean, args.corruption, args.seed)
        for candidate in args.candidates.split(","):
            row = {"image": image, "size": args.size, "corruption": args.corruption,
                   **trace(clean, corrupted, known, task, loss, candidate, args.steps, args.seed)}  # fmt: skip
            rows.append(row)
            at = {s: row["psnr_every_50"][s // 50 - 1] for s in (300, 500, 800, 1000, 1500, 2000)
                  if s <= args.steps}  # fmt: skip
            marks = " ".join(f"{s}:{v:.2f}" for s, v in at.items())
            print(f"{image} {args.size} {candidate:>12}: peak {row['peak_psnr']:.2f} dB at {row['peak_step']} "
                  f"({row['peak_seconds']:.0f} s, {row['seconds_per_step']:.3f} s/step)  {marks}", flush=True)
            if args.json is not None:
                args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
