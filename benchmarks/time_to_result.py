"""Time to the returned image, and its PSNR, for several presets side by side (issue 20's measure).

    python benchmarks/time_to_result.py [--presets paper,light] [--sizes 128,256] [--set tuning|fresh]
                                        [--corruptions gauss25,jpeg10,drop50] [--seeds 0] [--threads 1]
                                        [--json out.json]

Each case (image x corruption x seed x size) is corrupted once and restored by every preset with its own
defaults, automatic stopping included, exactly as `dip.restore` runs it (``NAME@N``: that preset for a fixed
N steps with stopping off, e.g. ``paper@3000``, the paper's own count); the clock runs from the call to the
returned image. Printed per case: each preset's seconds, steps run, returned iteration and PSNR; then per
preset, against the first one listed: the median and the smallest speed-up and the mean and worst PSNR
difference. ``--set tuning`` is the early-stopping benchmark's tuning images (astronaut, coffee, F16,
chelsea), ``fresh`` images none of the stopping choices were made on (baboon, pepper, monarch, lenna from
CSet14). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import dip  # first: it sets the OpenMP wait policy, which only takes effect before torch loads

# isort: split
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from early_stopping import corrupt, load_clean  # noqa: E402

from dip.io import Picture  # noqa: E402
from dip.metrics import psnr  # noqa: E402

SETS = {"tuning": ("astronaut", "coffee", "F16", "chelsea"), "fresh": ("baboon", "pepper", "monarch", "lenna")}


def picture(array: np.ndarray) -> Picture:
    return Picture(array.astype(np.float32), None, 8, "RGB" if array.shape[2] == 3 else "L", None)


def run_case(image: str, size: int, corruption: str, seed: int, presets: list[str]) -> dict:
    clean = load_clean(image, size)
    corrupted, known, task, loss = corrupt(clean, corruption, seed)
    row = {"image": image, "size": size, "corruption": corruption, "seed": seed,
           "input_psnr": round(psnr(corrupted, clean), 3), "presets": {}}  # fmt: skip
    for preset in presets:
        name, _, steps = preset.partition("@")
        fixed = {"iterations": int(steps), "stop": "off"} if steps else {}
        started = time.perf_counter()
        restored = dip.restore(picture(corrupted), task=task, mask=known, loss=loss, preset=name, seed=seed, tile=0,
                               **fixed, **({"keep_known": False} if known is not None else {}))  # fmt: skip
        seconds = time.perf_counter() - started
        result = restored.result
        row["presets"][preset] = {
            "name": restored.preset.name, "seconds": round(seconds, 1), "steps": result.iterations,
            "returned": result.best_iteration, "stop": result.stop_reason,
            "psnr": round(psnr(result.image, clean), 3),
        }  # fmt: skip
    return row


def summary(rows: list[dict], presets: list[str]) -> list[str]:
    base = presets[0]
    lines = []
    for preset in presets[1:]:
        speedups = [r["presets"][base]["seconds"] / r["presets"][preset]["seconds"] for r in rows]
        gains = [r["presets"][preset]["psnr"] - r["presets"][base]["psnr"] for r in rows]
        lines.append(
            f"{preset} against {base}: {statistics.median(speedups):.1f}x sooner (median; least "
            f"{min(speedups):.1f}x), PSNR {statistics.mean(gains):+.2f} dB (mean; worst {min(gains):+.2f})"
        )
    return lines


def merge(paths: list[Path], presets: list[str]) -> int:
    joined: dict[tuple, dict] = {}
    for path in paths:
        for row in json.loads(path.read_text())["rows"]:
            key = (row["size"], row["image"], row["corruption"], row["seed"])
            joined.setdefault(key, {**row, "presets": {}})["presets"].update(row["presets"])
    rows = [row for row in joined.values() if all(p in row["presets"] for p in presets)]
    for row in rows:
        print(_line(row, presets))
    for line in summary(rows, presets):
        print(line)
    return 0


def _line(row: dict, presets: list[str]) -> str:
    cells = "  ".join(f"{p}: {v['psnr']:.2f} dB {v['seconds']:.0f} s ({v['returned']}/{v['steps']} {v['stop']})"
                      for p, v in ((p, row["presets"][p]) for p in presets))  # fmt: skip
    case = f"{row['image']} {row['size']} {row['corruption']} s{row['seed']}"
    return f"{case} (input {row['input_psnr']:.2f} dB)  {cells}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="paper,light")
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--set", default="tuning", choices=sorted(SETS))
    parser.add_argument("--images", help="instead of --set: comma-separated names")
    parser.add_argument("--corruptions", default="gauss25")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--merge", type=Path, nargs="+",
                        help="instead of running: join the rows of earlier --json files case by case (presets run in "
                             "separate processes) and print them side by side")  # fmt: skip
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.presets.split(","))
    torch.set_num_threads(args.threads)
    presets = args.presets.split(",")
    images = args.images.split(",") if args.images else SETS[args.set]
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for image in images:
            for corruption in args.corruptions.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    row = run_case(image, size, corruption, seed, presets)
                    rows.append(row)
                    print(_line(row, presets), flush=True)
                    if args.json is not None:  # as it goes: a long run interrupted keeps its finished cases
                        write(args, rows)
    for line in summary(rows, presets):
        print(line)
    return 0


def write(args, rows: list[dict]) -> None:
    machine = {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
               "processor": platform.processor() or platform.machine()}  # fmt: skip
    args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
