"""How close does automatic stopping come to the best iterate a clean image would have picked?

    python benchmarks/early_stopping.py --size 64 --cap 3000 [--images astronaut,F16] [--corruptions ...]
                                        [--seeds 0,1] [--preset light] [--rule spread] [--variants plain,bf16]
                                        [--json out.json]

Each case (image x corruption x seed) is fitted for ``--cap`` steps, always to the end, so that the peak PSNR
over the whole run is known. Along the way the detector sees every iterate exactly as in a real run; the
iteration where it would have stopped and the image it would have returned are recorded. Printed per case:
peak PSNR and its iteration, detected iteration, returned PSNR (raw iterate and output average), the gap
peak - returned, wall time, and the detector's share of the step time. Summary lines follow. The output
average is computed on every case, also where the preset returns the raw iterate (inpainting), so that the
two candidates can be compared.

With ``--traces FILE`` every step's loss, PSNR (raw and average) and the statistics of several detectors are
saved: the spread of the iterates around their average and the raw iterates' windowed variance, each with W = 50,
100, 200, the exponential variance, the windowed variance of the averages, the average's own loss and its change
per step. ``--replay FILE`` then runs dip's own detector over those traces, with the case's preset's settings
and any rule / window / warm-up / patience / noise floor / cap given, without fitting again; it returns what a
live run with those settings returns (the detector reads only the statistic and the loss; a test checks it), so
settings are chosen on one set of fits. ``--before RULE[:W[:P]]`` prints another rule's gap beside each case:

    python benchmarks/early_stopping.py --replay traces.json --rule spread --window 200 --patience 300 \
        --before wmv:200:500

Images: the samples' clean originals, the paper's images in ../shared/data/dip-paper and the super-resolution
sets CSet14 and CSet5 in ../shared/data/sr-benchmarks (when present; CSet14's barbara and zebra are the
paper's files), centre-cropped to a square and resized to --size. Corruptions: Gaussian noise (gaussS, sigma
on the 0-255 scale), salt and pepper (spP, P %), photon noise (shotN, N photons at white), JPEG (jpegQ), pixels
dropped at random (dropP) and kate's text mask. Nothing here is a test; the library is called directly.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import dip  # first: it sets the OpenMP wait policy, which only takes effect before torch loads

# isort: split
import numpy as np
import torch
from PIL import Image

from dip import degradations
from dip.config import PRESETS, Loss, StopConfig, Task, resolve_preset
from dip.degradations import is_scattered
from dip.denoise import choose_noise
from dip.fit import iterate
from dip.metrics import psnr
from dip.nets import build_net, make_input
from dip.operators import Identity, Mask, Observation
from dip.stopping import (
    DEFAULT_SPREAD_WEIGHT,
    AverageSpread,
    ExponentialVariance,
    WindowedVariance,
    make_detector,
    noise_variance,
)

# isort: split
from speed import variant_settings  # the neighbouring benchmark's names for ways of computing a step

TRACED_WINDOWS = (50, 100, 200)

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "data" / "dip-paper"
IMAGES = {
    "astronaut": ROOT / "samples" / "astronaut.png",
    "chelsea": ROOT / "samples" / "chelsea.png",
    "coffee": ROOT / "samples" / "coffee.png",
    "F16": PAPER / "denoising" / "F16_GT.png",
    "kate": PAPER / "inpainting" / "kate.png",
    "zebra": PAPER / "sr" / "zebra_GT.png",
    "barbara": PAPER / "restoration" / "barbara.png",
    "vase": PAPER / "inpainting" / "vase.png",
    "library": PAPER / "inpainting" / "library.png",
}
# The super-resolution test sets hold the textured photographs (fur, foliage, fabric, stripes) where stopping is
# hardest; their barbara and zebra are the paper's own, so those two names keep the paper's files.
SR_SETS = ROOT.parent / "shared" / "data" / "sr-benchmarks"
for _folder in ("CSet14", "CSet5"):
    for _path in sorted((SR_SETS / _folder).glob("*.png")):
        IMAGES.setdefault(_path.stem, _path)
CORRUPTIONS = ("gauss15", "gauss25", "gauss30", "gauss50", "sp30", "shot30", "jpeg10", "jpeg20", "drop50", "text")


def load_square(path: Path, size: int, *, mode: str = "RGB") -> np.ndarray:
    image = Image.open(path).convert(mode)
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if size:  # 0: the square at the image's own resolution
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[..., None] if array.ndim == 2 else array


def load_clean(name: str, size: int) -> np.ndarray:
    """The clean image of a case: barbara is gray, as the paper scored it; the others are RGB."""
    return load_square(IMAGES[name], size, mode="L" if name == "barbara" else "RGB")


def corrupt(clean: np.ndarray, name: str, seed: int) -> tuple[np.ndarray, np.ndarray | None, Task, Loss]:
    """The corrupted image, the mask (True = known) or None, the task and the loss a user would pick."""
    rng = np.random.default_rng(seed)
    if name.startswith("gauss"):
        return degradations.add_gaussian_noise(clean, float(name[5:]), rng), None, Task.denoise, Loss.l2
    if name.startswith("shot"):  # photon noise, N photons at white; the L2 loss, as for Gaussian noise
        return degradations.add_shot_noise(clean, float(name[4:]), rng), None, Task.denoise, Loss.l2
    if name.startswith("sp"):
        return degradations.add_salt_and_pepper(clean, int(name[2:]) / 100, rng), None, Task.denoise, Loss.l1
    if name.startswith("jpeg"):
        return degradations.jpeg_compress(clean, int(name[4:])), None, Task.jpeg, Loss.l2
    if name.startswith("drop"):
        dropped, known = degradations.drop_pixels(clean, int(name[4:]) / 100, rng)
        return dropped, known, Task.inpaint, Loss.l2
    if name == "text":
        # Any darkening after resizing marks a pixel unknown, so that thin strokes survive a small --size.
        known = load_square(PAPER / "inpainting" / "kate_mask.png", clean.shape[0], mode="L")[..., 0] > 0.99
        return clean * known[..., None], known, Task.inpaint, Loss.l2
    raise SystemExit(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]


def run_case(clean: np.ndarray, corruption: str, seed: int, args, variant: str = "plain") -> dict:
    corrupted, known, task, loss = corrupt(clean, corruption, seed)
    # the preset dip itself would pick: a mask of scattered pixels (drop50) takes the -scattered net
    # and the noise model --noise auto reads from the input picks the preset by noise and size (issue 26)
    scattered = known is not None and is_scattered(known)
    noise = choose_noise("auto", task, _tensor(corrupted))
    preset = resolve_preset(args.preset, task, "cpu" if args.device == "cpu" else args.device, scattered_mask=scattered,
                            noise=noise, area=clean.shape[0] * clean.shape[1])  # fmt: skip
    # The average is always computed (it does not change the optimisation), so that both candidates for the
    # returned image, raw iterate and output average, are measured on every case.
    fit_cfg = replace(
        preset.fit,
        iterations=args.cap,
        loss=loss,
        average=preset.fit.average or 0.99,
        **({"lr": args.lr} if args.lr else {}),
        **variant_settings(variant, sync_every=0),
    )
    overrides = {k: getattr(args, k) for k in ("patience", "window", "warmup") if getattr(args, k) is not None}
    stop_cfg = replace(preset.stop, **overrides, **({} if args.rule == "auto" else {"rule": args.rule}))
    if args.noise_floor is not None:
        stop_cfg = replace(stop_cfg, noise_floor=args.noise_floor)
    device = torch.device(args.device)
    mask = None if known is None else torch.from_numpy(known.astype(np.float32))[None, None]
    observation = Observation(_tensor(corrupted), Identity() if mask is None else Mask(mask)).to(device)
    reference = _tensor(clean).to(device)
    net = build_net(preset.net, clean.shape[2], seed=seed).to(device)
    z = make_input(preset.net, *clean.shape[:2], generator=torch.Generator().manual_seed(seed)).to(device)
    detector = make_detector(stop_cfg, _noise(corrupted, known, task, loss), fit_cfg.average)
    # Traced detectors only record their statistic: patience and warm-up are applied later, by replay().
    traced = {f"wmv{w}": WindowedVariance(w, math.inf, 0) for w in TRACED_WINDOWS} if args.traces else {}
    if args.traces:
        traced["emv"] = ExponentialVariance(stop_cfg.alpha, math.inf, 0)
    # The same windows over the output averages, the sequence that is returned, rather than the raw iterates.
    traced_averages = {f"awmv{w}": WindowedVariance(w, math.inf, 0) for w in TRACED_WINDOWS} if args.traces else {}
    if args.traces:  # the spread of the iterates around the average, as the detector computes it
        traced |= {f"spread{w}": AverageSpread(w, fit_cfg.average, math.inf, 0) for w in TRACED_WINDOWS}
    # Also per step: the average's own data loss and how far it moved (mean square change), as candidate signals.
    extra = ("average_loss", "average_change") if args.traces else ()
    trace: dict[str, list[float]] = {
        key: [] for key in ("loss", "psnr", "psnr_average", *traced, *traced_averages, *extra)
    }
    previous_average: torch.Tensor | None = None

    def score(x: torch.Tensor) -> float:
        mse = (x - reference).square().mean().item()
        return math.inf if mse == 0 else -10 * math.log10(mse)

    peak = {"raw": (math.nan, 0), "average": (math.nan, 0)}
    detected_at, returned = None, None
    detector_seconds = 0.0
    started = time.perf_counter()
    for step in iterate(observation, net, z, fit_cfg, generator=torch.Generator(device=device).manual_seed(seed + 1)):
        tick = time.perf_counter()
        fired = detector.update(step)
        detector_seconds += time.perf_counter() - tick
        if traced or step.iteration % args.track_every == 0:
            for kind, image in (("raw", step.x), ("average", step.average)):
                value = score(image)
                if not value <= peak[kind][0]:
                    peak[kind] = (value, step.iteration)
                if traced:
                    trace["psnr" if kind == "raw" else "psnr_average"].append(value)
        if traced:
            trace["loss"].append(step.loss)
            for key, traced_detector in traced.items():
                trace[key].append(traced_detector.push(step.x))
            for key, traced_detector in traced_averages.items():
                trace[key].append(traced_detector.push(step.average))
            trace["average_loss"].append(observation.loss(step.average, loss).item())
            change = math.nan if previous_average is None else (step.average - previous_average).square().mean().item()
            trace["average_change"].append(change)
            previous_average = step.average
        if fired and detected_at is None:
            detected_at = step.iteration
            returned = (
                score(detector.best),
                score(detector.best_average) if detector.best_average is not None else math.nan,
                detector.best_iteration,
            )
    seconds = time.perf_counter() - started
    if detected_at is None:  # never fired: a real run would have hit the cap and returned the best so far
        returned = (
            (
                score(detector.best),
                score(detector.best_average) if detector.best_average is not None else math.nan,
                detector.best_iteration,
            )
            if detector.best is not None
            else (math.nan,) * 3
        )
    steps = step.iteration
    return {
        **({"trace": trace} if traced else {}),
        "corruption": corruption,
        "seed": seed,
        "task": task.value,
        "preset": preset.name,
        "variant": variant,
        "input_psnr": psnr(corrupted, clean),
        "peak_psnr": peak["raw"][0],
        "peak_iteration": peak["raw"][1],
        "peak_psnr_average": peak["average"][0],
        "peak_iteration_average": peak["average"][1],
        "detected_at": detected_at,
        "best_iteration": returned[2],
        "returned_psnr": returned[0],
        "returned_psnr_average": returned[1],
        "seconds": seconds,
        "seconds_to_detection": seconds * (detected_at or steps) / steps,
        "detector_share": detector_seconds / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="astronaut,chelsea,coffee,F16")
    parser.add_argument("--corruptions", default=",".join(CORRUPTIONS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--size", type=int, default=64, help="square side in px; 0 = full size (for a GPU)")
    parser.add_argument("--cap", type=int, default=3000, help="steps per case; the peak is searched up to here")
    parser.add_argument("--preset", default="auto")
    parser.add_argument("--rule", default="auto", choices=("auto", "spread", "wmv", "emv"), help="auto: the preset's")
    parser.add_argument("--lr", type=float, help="override the preset's learning rate")
    parser.add_argument("--patience", type=int)
    parser.add_argument("--window", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--noise-floor", type=float, help="StopConfig.noise_floor (0 = off; default: the preset's)")
    parser.add_argument(
        "--variants",
        default="plain",
        help="ways of computing the steps, as benchmarks/speed.py names them (plain,bf16,compile,...): each case "
        "runs once per variant, and the PSNRs of the later ones are compared with the first's",
    )
    parser.add_argument("--track-every", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path)
    parser.add_argument("--traces", type=Path, help="save every step's loss, PSNR and detector statistics here")
    parser.add_argument("--replay", type=Path, nargs="+", help="evaluate stopping settings on saved traces; no fitting")
    parser.add_argument("--replay-cap", type=int, help="with --replay: a real run's cap (default: the traces')")
    parser.add_argument(
        "--before",
        help="with --replay: RULE[:WINDOW[:PATIENCE]] to compare with, case by case (e.g. wmv:200:500, the light "
        "presets' rule before the spread)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    StopConfig(rule=args.rule)  # fail early on a bad rule
    if args.replay:
        return replay_main(args)
    variants = args.variants.split(",")
    for variant in variants:
        variant_settings(variant)  # fail early on a bad name

    rows = []
    print(
        f"{'image':<10} {'corruption':<8} {'seed':>4} {'variant':<8} {'in':>6} {'peak':>6} {'@':>5} {'det@':>5} "
        f"{'best@':>5} {'ret':>6} {'gap':>5} {'avgpk':>6} {'avg@':>5} {'avgret':>6} {'avggap':>6} {'s':>6} {'det%':>5}"
    )
    for image_name in args.images.split(","):
        path = IMAGES.get(image_name)
        if path is None or not path.exists():
            print(f"# skipping {image_name}: not found", file=sys.stderr)
            continue
        clean = load_clean(image_name, args.size)
        for corruption in args.corruptions.split(","):
            for seed, variant in ((int(s), v) for s in args.seeds.split(",") for v in variants):
                row = {"image": image_name, **run_case(clean, corruption, seed, args, variant)}
                row["gap"] = row["peak_psnr"] - row["returned_psnr"]
                row["gap_average"] = row["peak_psnr_average"] - row["returned_psnr_average"]
                rows.append(row)
                print(
                    f"{image_name:<10} {corruption:<8} {seed:>4} {variant:<8} {row['input_psnr']:>6.2f} "
                    f"{row['peak_psnr']:>6.2f} {row['peak_iteration']:>5} {row['detected_at'] or '-':>5} "
                    f"{row['best_iteration']:>5} {row['returned_psnr']:>6.2f} {row['gap']:>5.2f} "
                    f"{row['peak_psnr_average']:>6.2f} {row['peak_iteration_average']:>5} "
                    f"{row['returned_psnr_average']:>6.2f} {row['gap_average']:>6.2f} {row['seconds']:>6.1f} "
                    f"{100 * row['detector_share']:>5.1f}",
                    flush=True,
                )
    for variant in variants:
        summarise([row for row in rows if row["variant"] == variant], f"{variant}: " if len(variants) > 1 else "")
    compare_variants(rows, variants)
    if rows:
        print(
            f"# detector share of step time: median {100 * statistics.median(r['detector_share'] for r in rows):.1f}%"
        )
    machine = {
        "device": args.device,
        "device_name": (
            torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor() or "cpu"
        ),
        "threads": args.threads,
        "torch": torch.__version__,
        "dip": dip.__version__,
        "python": platform.python_version(),
        "size": args.size,
        "cap": args.cap,
        "rule": args.rule,
    }
    print(f"# {machine}")
    traces = [{key: row.pop(key) for key in ("trace",) if key in row} | _case_key(row) for row in rows]
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    if args.traces:
        args.traces.write_text(json.dumps({"machine": machine, "cases": traces}) + "\n")
    return 0


def _case_key(row: dict) -> dict:
    return {key: row[key] for key in ("image", "corruption", "seed", "task", "preset")}


def summarise(
    rows: list[dict], prefix: str = "", keys=(("gap", "raw iterate"), ("gap_average", "output average"))
) -> None:
    for key, label in keys:
        gaps = [r[key] for r in rows if math.isfinite(r[key])]
        if gaps:
            within = sum(g <= 1.0 for g in gaps) / len(gaps)
            print(
                f"# {prefix}{label}: within 1 dB of its peak in {100 * within:.0f}% of {len(gaps)} cases; "
                f"median gap {statistics.median(gaps):.2f} dB; worst {max(gaps):.2f} dB"
            )


def compare_variants(rows: list[dict], variants: list[str]) -> None:
    """PSNR of each later variant minus the first's, case by case: whether a faster way of computing the steps
    (bf16 above all, which the paper's README warns can fail to converge) still reaches the same image."""
    first = {(r["image"], r["corruption"], r["seed"]): r for r in rows if r["variant"] == variants[0]}
    for variant in variants[1:]:
        pairs = [(first[(r["image"], r["corruption"], r["seed"])], r) for r in rows if r["variant"] == variant]
        for key, label in (("peak_psnr_average", "peak"), ("returned_psnr_average", "returned")):
            differences = [r[key] - base[key] for base, r in pairs if math.isfinite(r[key] - base[key])]
            if differences:
                print(
                    f"# {variant} - {variants[0]}, {label} PSNR (output average), {len(differences)} cases: "
                    f"median {statistics.median(differences):+.2f} dB, range {min(differences):+.2f} to "
                    f"{max(differences):+.2f} dB"
                )
        speedups = [base["seconds"] / r["seconds"] for base, r in pairs]
        if speedups:
            print(f"# {variant} / {variants[0]}: {statistics.median(speedups):.2f}x the speed (median over cases)")


def _noise(corrupted: np.ndarray, known: np.ndarray | None, task: Task, loss: Loss) -> float | None:
    """The noise variance dip.api.restore gives the detector for this case (None where it gives none)."""
    if task is not Task.denoise or known is not None or loss is not Loss.l2:
        return None
    return noise_variance(_tensor(corrupted))


@functools.cache
def traced_case_noise(image: str, corruption: str, seed: int, size: int) -> float | None:
    """The noise variance a live run of a traced case gave its detector: the corrupted image is made again (same
    seed) and estimated once per case, however many rules are replayed on it."""
    return _noise(*corrupt(load_clean(image, size), corruption, seed))


def replayed_statistic(trace: dict, rule: str, window: int, weight: float) -> list[float]:
    """The statistic the detector of ``rule`` computes, read from a trace.

    Traces made before the spread detector existed hold no ``spread{W}``; for them it is rebuilt from the
    average's change per step, (1 - w)^2 times the iterate's squared deviation from the previous average, which
    equals the live statistic up to float32 rounding (within 1e-6 relative where both were traced).
    """
    key = {"spread": f"spread{window}", "wmv": f"wmv{window}", "emv": "emv"}[rule]
    if key in trace:
        return trace[key]
    if rule != "spread" or "average_change" not in trace:
        raise SystemExit(f"the trace has no {key} statistic; traced: {', '.join(trace)}")
    deviations: list[float] = []
    statistic = []
    for change in trace["average_change"]:
        if math.isfinite(change):  # NaN at the first step: no previous average yet
            deviations = [*deviations[1 - window :], change / (1 - weight) ** 2]
        statistic.append(sum(deviations) / window if len(deviations) == window else math.nan)
    return statistic


def replay(case: dict, stop_cfg: StopConfig, cap: int) -> tuple[int | None, int, str]:
    """Where dip's own detector, configured by ``stop_cfg``, would have stopped on a traced case, which iteration
    it would have returned (both 1-based) and why it stopped ("cap" when it did not fire).

    The detector is the real one (dip.stopping.make_detector): only its statistic is read from the trace rather
    than computed from the iterates, and each step's iterate and average are stand-ins that carry their
    iteration, so that whatever the detector keeps names the step it came from.
    """
    trace = case["trace"]
    preset = PRESETS[case["preset"]]
    weight = preset.fit.average or DEFAULT_SPREAD_WEIGHT  # the benchmark always averages, with this weight
    noise = traced_case_noise(case["image"], case["corruption"], case["seed"], case["size"])
    detector = make_detector(stop_cfg, noise, weight)
    values = iter(replayed_statistic(trace, stop_cfg.resolved_rule, stop_cfg.window, weight))
    detector.push = lambda x: next(values)
    for iteration in range(1, cap + 1):
        stand_in = torch.tensor([float(iteration)])
        step = SimpleNamespace(iteration=iteration, x=stand_in, average=stand_in, loss=trace["loss"][iteration - 1])
        if detector.update(step):
            return iteration, int(detector.best_average.item()), detector.reason
    returned = int(detector.best_average.item()) if detector.best_average is not None else cap
    return None, returned, "cap"


def replay_settings(args, preset_stop: StopConfig) -> StopConfig:
    """The stop settings of a replay: the case's preset's, with the command line's choices applied."""
    overrides = {name: getattr(args, name) for name in ("window", "warmup", "patience", "noise_floor")}
    rule = None if args.rule == "auto" else args.rule
    return replace(preset_stop, **{k: v for k, v in (overrides | {"rule": rule}).items() if v is not None})


def replay_main(args) -> int:
    cases = []
    for path in args.replay:
        saved = json.loads(path.read_text())
        cases += [{**case, "size": saved["machine"]["size"]} for case in saved["cases"]]
    before = None
    if args.before:
        rule, *numbers = args.before.split(":")
        before = {"rule": rule} | dict(zip(("window", "patience"), map(int, numbers), strict=False))
    sources = ", ".join(map(str, args.replay))
    shown = replay_settings(args, PRESETS[cases[0]["preset"]].stop) if cases else None
    print(f"# replay of {sources}: {shown}, cap {args.replay_cap or 'the traces'}")
    print(
        f"{'image':<10} {'corruption':<8} {'size':>4} {'seed':>4} {'avgpk':>6} {'avg@':>5} {'det@':>5} {'best@':>5} "
        f"{'why':<11} {'avggap':>6}" + (f" {'before':>6} {'b-best@':>7}" if before else "")
    )
    rows = []
    for case in cases:
        trace = case["trace"]
        cap = min(args.replay_cap or len(trace["loss"]), len(trace["loss"]))
        stop_cfg = replay_settings(args, PRESETS[case["preset"]].stop)
        detected, best, reason = replay(case, stop_cfg, cap)
        series = trace["psnr_average"][:cap]
        peak_index = max(range(len(series)), key=series.__getitem__)
        row = {key: value for key, value in case.items() if key != "trace"}
        row |= {
            "peak_psnr_average": series[peak_index],
            "peak_iteration_average": peak_index + 1,
            "detected_at": detected,
            "stopped_at": detected or cap,
            "best_iteration": best,
            "reason": reason,
            "gap_average": series[peak_index] - series[best - 1],
        }
        line = (
            f"{row['image']:<10} {row['corruption']:<8} {row['size']:>4} {row['seed']:>4} "
            f"{row['peak_psnr_average']:>6.2f} {peak_index + 1:>5} {detected or '-':>5} {best:>5} {reason:<11} "
            f"{row['gap_average']:>6.2f}"
        )
        if before:
            detected_before, best_before, _ = replay(case, replace(stop_cfg, **before), cap)
            row["gap_before"], row["best_iteration_before"] = series[peak_index] - series[best_before - 1], best_before
            row["stopped_at_before"] = detected_before or cap
            line += f" {row['gap_before']:>6.2f} {best_before:>7}"
        rows.append(row)
        print(line)
    summarise(rows, keys=(("gap_average", "output average"),))
    stops = [row["stopped_at"] for row in rows]
    if stops:
        print(
            f"# stopped at step {statistics.median(stops):.0f} (median); "
            f"the cap ended {sum(r['reason'] == 'cap' for r in rows)} of {len(rows)}"
        )
    if before:
        summarise(rows, keys=(("gap_before", f"before ({args.before})"),))
        print(f"# before: stopped at step {statistics.median(r['stopped_at_before'] for r in rows):.0f} (median)")
        kept = [row for row in rows if row["gap_before"] <= 1.0]
        print(
            f"# of the {len(kept)} cases within 1 dB before, {sum(row['gap_average'] <= 1.0 for row in kept)} are "
            f"within 1 dB now"
        )
    if args.json:
        args.json.write_text(json.dumps({"settings": str(shown), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
