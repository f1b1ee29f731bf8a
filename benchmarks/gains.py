"""The README's tables of gains over the input, rebuilt from benchmarks/quality.py's JSON results.

    python benchmarks/gains.py benchmarks/results/jpeg-128-nine-*.json [--tasks jpeg10,jpeg20,jpeg30]

For each task and method: the mean PSNR gain over the input (dB), the smallest gain on any image, and the mean
seconds per image; one Markdown table per call, the files' rows pooled (runs split over processes by image).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from statistics import mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--tasks", default=None, help="comma-separated; default: every task in the files")
    args = parser.parse_args()
    rows = [row for path in args.files for row in json.load(open(path))["rows"]]
    tasks = args.tasks.split(",") if args.tasks else sorted({row["task"] for row in rows})
    methods = list(dict.fromkeys(row["method"] for row in rows))
    gains, seconds, images = defaultdict(list), defaultdict(list), defaultdict(set)
    for row in rows:
        gains[row["task"], row["method"]].append(row["psnr"] - row["input_psnr"])
        seconds[row["task"], row["method"]].append(row["seconds"])
        images[row["task"]].add(row["image"])
    print("| task | images | " + " | ".join(f"{m}: mean / least gain, s" for m in methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for task in tasks:
        cells = []
        for method in methods:
            values = [v for v in gains.get((task, method), []) if not math.isnan(v)]
            if not values:
                cells.append("–")
                continue
            failed = len(gains[task, method]) - len(values)  # a method that returned NaN (BM3D on a gray-as-RGB image)
            note = f" ({failed} NaN left out)" if failed else ""
            cells.append(f"{mean(values):+.2f} / {min(values):+.2f}, {mean(seconds[task, method]):.1f}{note}")
        print(f"| {task} | {len(images[task])} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
