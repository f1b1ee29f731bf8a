"""The stopping rules that were tried for the light presets and not kept, scored on saved traces.

    python benchmarks/stopping_candidates.py out/t64_*.json
    python benchmarks/stopping_candidates.py out/t128_a.json out/t128_b.json

Each line is one rule, replayed over every case of the traces (made by ``early_stopping.py --traces``) the way
the detector decides: a minimum of a statistic recorded from the warm-up on, a stop ``patience`` steps after the
last one, the noise floor on the loss (denoising with L2) and the cap. The gap is the output average's peak PSNR
minus that of the average returned. The statistics come from the traces; rules that dip does not have (a fixed
lag after the minimum, a warm-up moved on when the minimum lies at its edge, a tolerance band around the
minimum) are written out here, not in the library, so that the kept rule stays the only one there.

The first two lines are dip's rules as replayed by ``early_stopping.py --replay`` (same figures). Nothing here
is a test; no net is fitted.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import early_stopping  # the neighbouring benchmark: images, corruptions, noise estimate, statistics from traces

from dip.config import StopConfig
from dip.stopping import LOSS_WINDOW

NOISE_FLOOR = StopConfig().noise_floor  # the light presets' too


def decide(case: dict, statistic: list[float], *, warmup=300, patience=500, cap=2000, band=0.0) -> tuple[int, int]:
    """(stopped at, returned iteration). With ``band`` > 0 the returned iteration is the last one whose statistic
    was within (1 + band) of the minimum so far, and patience counts from there."""
    losses = case["trace"]["loss"]
    noise = early_stopping.traced_case_noise(case["image"], case["corruption"], case["seed"], case["size"])
    floor = None if noise is None else NOISE_FLOOR * noise
    best, kept, recent = math.inf, None, []
    steps = min(cap, len(statistic))
    for iteration in range(1, steps + 1):
        value = statistic[iteration - 1]
        if iteration >= warmup and value == value:
            best = min(best, value)
            if value <= (1 + band) * best:
                kept = iteration
        if kept is not None and iteration - kept >= patience:
            return iteration, kept
        if floor is not None:
            recent = [*recent[1 - LOSS_WINDOW :], losses[iteration - 1]]
            if iteration >= warmup and len(recent) == LOSS_WINDOW and sum(recent) / LOSS_WINDOW < floor:
                return iteration, kept or iteration
    return steps, kept or steps


def _statistic(case: dict, key: str) -> list[float]:
    trace = case["trace"]
    if key == "spread-emv":  # the spread smoothed exponentially (weight 0.01) instead of over a window
        value, smoothed = 0.0, []
        for change in trace["average_change"]:
            value = (1 - 0.01) * (value + 0.01 * change / 0.01**2) if math.isfinite(change) else value
            smoothed.append(value if math.isfinite(change) else math.nan)
        return smoothed
    if key.startswith("spread"):
        return early_stopping.replayed_statistic(trace, "spread", int(key[6:]), 0.99)
    return trace[key]


CANDIDATES = {
    # name: (statistic, decide() settings, lag after the returned minimum, warm-up edge: (within, moved by))
    "spread W200 P300 (dip's light rule now)": ("spread200", {"patience": 300}, 0, None),
    "wmv W200 P500 (dip's light rule before)": ("wmv200", {}, 0, None),
    "wmv W200 P500, warm-up 400": ("wmv200", {"warmup": 400}, 0, None),
    "wmv W200, average 50 steps after the minimum": ("wmv200", {}, 50, None),
    "wmv W200, average 100 steps after the minimum": ("wmv200", {}, 100, None),
    "wmv W200, average 200 steps after the minimum": ("wmv200", {}, 200, None),
    "wmv W200, edge minimum: warm-up moved on 100": ("wmv200", {}, 0, (25, 100)),
    "wmv W100 P500": ("wmv100", {}, 0, None),
    "emv alpha 0.1 P500": ("emv", {}, 0, None),
    "variance of the averages W200 P500": ("awmv200", {}, 0, None),
    "variance of the averages W50 P500": ("awmv50", {}, 0, None),
    "spread, exponential (0.01) P500": ("spread-emv", {}, 0, None),
    "spread W50 P300": ("spread50", {"patience": 300}, 0, None),
    "spread W100 P300": ("spread100", {"patience": 300}, 0, None),
    "spread W200 P500": ("spread200", {}, 0, None),
    "spread W200 P300, band 1 %": ("spread200", {"patience": 300, "band": 0.01}, 0, None),
    "spread W200 P300, band 5 %": ("spread200", {"patience": 300, "band": 0.05}, 0, None),
}


def score(cases: list[dict], key: str, settings: dict, lag: int, edge: tuple[int, int] | None) -> dict:
    gaps, stops = [], []
    for case in cases:
        statistic = _statistic(case, key)
        stopped, returned = decide(case, statistic, **settings)
        warmup = settings.get("warmup", 300)
        if edge is not None and returned - warmup < edge[0]:
            stopped, returned = decide(case, statistic, **{**settings, "warmup": warmup + edge[1]})
        returned = min(returned + lag, stopped)
        averages = case["trace"]["psnr_average"][: settings.get("cap", 2000)]
        gaps.append(max(averages) - averages[returned - 1])
        stops.append(stopped)
    return {
        "within": sum(g <= 1.0 for g in gaps) / len(gaps),
        "median": statistics.median(gaps),
        "worst": max(gaps),
        "over_2": sum(g > 2.0 for g in gaps),
        "stop": statistics.median(stops),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", type=Path, nargs="+")
    args = parser.parse_args(argv)
    cases = []
    for path in args.traces:
        saved = json.loads(path.read_text())
        cases += [{**case, "size": saved["machine"]["size"]} for case in saved["cases"]]
    print(f"# {len(cases)} cases from {', '.join(map(str, args.traces))}")
    print(f"| rule | within 1 dB | median gap | worst gap | > 2 dB | median stop |\n|{'---|' * 6}")
    for name, (key, settings, lag, edge) in CANDIDATES.items():
        row = score(cases, key, settings, lag, edge)
        print(
            f"| {name} | {100 * row['within']:.0f} % | {row['median']:.2f} | {row['worst']:.2f} | {row['over_2']} "
            f"| {row['stop']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
