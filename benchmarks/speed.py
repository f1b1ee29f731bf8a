"""Steps per second and peak memory of a fit, for presets x sizes x ways of computing the same steps.

    python benchmarks/speed.py [--presets paper,light] [--sizes 128,256,512] [--variants plain,channels_last,compile]
                               [--steps 20] [--warmup 5] [--device auto] [--threads N] [--conv-ceiling]
                               [--json out.json]

Variants (FitConfig fields; the maths are the same, see tests/test_fit.py): ``plain`` (fp32, eager, NCHW, the
loss read on the host after every step), ``channels_last``, ``compile`` (torch.compile), ``bf16`` (autocast of
the forward), ``sync`` (the losses read in blocks of FitConfig.sync_every's device default: 1 on the CPU, so it
changes nothing there), and combinations joined with ``+`` (``compile+channels_last+sync``). Each case runs in
a fresh process, so that compile caches and peak memory belong to it alone. A step is what a real run does per
iteration: jitter, forward, masked loss, backward, Adam, output average and the windowed-variance detector.
Reported: median seconds per step over ``--steps`` timed steps after ``--warmup`` untimed ones (compilation
happens there; with ``sync`` a step's time is its block's mean, as its steps reach the host together), the
spread (interquartile range), steps/s, the ratio to ``plain`` at the same preset and size, peak memory
(CUDA: allocated; CPU: the process's peak resident size) and GFLOP/s: the convolutions' and matrix products'
floating-point operations of a step (counted by torch's FlopCounterMode) over its time.
A family name (``paper``, ``light``) times the denoising net; name a preset to time another (``paper-jpeg``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import dip  # noqa: F401  (first: it sets the OpenMP wait policy, which only takes effect before torch loads)

VARIANT_FIELDS = {
    "plain": {},
    "sync": {"sync_every": 0},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "bf16": {"precision": "bf16"},
}


def variant_settings(name: str, *, sync_every: int = 1) -> dict:
    """FitConfig fields of a variant name. By default the host waits for every step unless the variant says
    "sync"; ``sync_every=0`` leaves that to the device, as a real run does."""
    settings = {"sync_every": sync_every}
    for part in name.split("+"):
        if part not in VARIANT_FIELDS:
            raise SystemExit(f"unknown variant {part!r}; choose from {', '.join(VARIANT_FIELDS)} (join with +)")
        settings.update(VARIANT_FIELDS[part])
    return settings


def run_one(case: dict) -> dict:
    """One preset x size x variant, in this process."""
    import resource
    from dataclasses import replace

    import torch

    from dip.config import resolve_preset
    from dip.device import resolve_device
    from dip.fit import iterate
    from dip.nets import build_net, make_input
    from dip.operators import Observation
    from dip.stopping import make_detector

    torch.set_num_threads(case["threads"])
    device = resolve_device(case["device"])
    preset = resolve_preset(case["preset"], "denoise", device.type)
    steps = case["warmup"] + case["steps"]
    fit_cfg = replace(preset.fit, iterations=steps, **variant_settings(case["variant"]))
    size = case["size"]
    clean = torch.rand((1, 3, size, size), generator=torch.Generator().manual_seed(0))
    observation = Observation(clean).to(device)
    net = build_net(preset.net, 3, seed=0).to(device)
    z = make_input(preset.net, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    detector = make_detector(preset.stop, average=preset.fit.average)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    tick = time.perf_counter()
    for step in iterate(observation, net, z, fit_cfg, generator=torch.Generator(device=device).manual_seed(1)):
        if detector is not None:
            detector.update(step)
        # Steps reach the host when their loss is read, in blocks of `block` (FitConfig.sync_every); the read
        # waits for the device, so the clock sees whole blocks, and a step's time is its block's share.
        tock = time.perf_counter()
        times.append(tock - tick)
        losses.append(step.loss)
        tick = tock
    block = fit_cfg.sync_interval(device.type)
    chunks = [times[i : i + block] for i in range(0, len(times), block) if i >= case["warmup"]]
    timed = [sum(chunk) / len(chunk) for chunk in chunks]
    if not timed:
        raise SystemExit(f"--warmup + --steps must go past the first block of {block} steps (the sync variant)")
    quartiles = statistics.quantiles(timed, n=4) if len(timed) > 1 else [timed[0]] * 3
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gflop = _gflop_per_step(net, z)
    return {
        **case,
        "seconds_per_step": statistics.median(timed),
        "spread": quartiles[2] - quartiles[0],
        "steps_per_second": 1 / statistics.median(timed),
        "first_steps_seconds": sum(times[: case["warmup"]]),
        "peak_memory_mib": peak / 2**20,
        "final_loss": losses[-1],
        "gflop_per_step": gflop,
        "gflop_per_second": gflop / statistics.median(timed),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
    }


def _gflop_per_step(net, z) -> float:
    """Floating-point operations of one forward and backward of ``net`` (convolutions and matrix products, which
    are nearly all of them), after the timing: set against a step's time, it says how far the step is from what
    the machine's convolution kernels can do, which no variant that keeps the maths can exceed."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        net(z).square().mean().backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def conv_ceiling(size: int, threads: int, device: str, repeats: int = 5) -> dict:
    """GFLOP/s of a single 3x3 convolution, 128 channels in and out, at ``size``: forward, input gradient and
    weight gradient, as the paper net's widest layers take them. A whole step, with its normalisations,
    activations, padding, smaller layers and optimiser, runs slower than this; so no variant that computes the
    same step can run it faster than its GFLOP over this rate."""
    import torch

    from dip.device import resolve_device

    torch.set_num_threads(threads)
    target = resolve_device(device)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(target)
    x = torch.randn(1, 128, size, size, device=target, requires_grad=True)

    def wait() -> None:
        if target.type == "cuda":
            torch.cuda.synchronize(target)

    def forward_backward() -> None:
        conv(x).sum().backward()

    def forward() -> None:
        with torch.no_grad():
            conv(x)

    rates = {}
    for name, run, passes in (("forward", forward, 1), ("forward_backward", forward_backward, 3)):
        run()  # the first call picks kernels and allocates
        wait()
        tick = time.perf_counter()
        for _ in range(repeats):
            run()
        wait()
        seconds = (time.perf_counter() - tick) / repeats
        rates[name] = passes * 2 * 128 * 128 * 9 * size * size / 1e9 / seconds
    return {"size": size, "threads": threads, "gflop_per_second": rates}


def _measure(preset: str, size: int, variant: str, policy: str | None, args) -> dict:
    """One case in a fresh process (compile caches and peak memory are its own; the wait policy is read by the
    OpenMP runtime when torch loads, so it can only be chosen per process)."""
    import os

    case = {
        "preset": preset,
        "size": size,
        "variant": variant,
        "steps": args.steps,
        "warmup": args.warmup,
        "device": args.device,
        "threads": args.threads,
        "wait_policy": policy or os.environ.get("OMP_WAIT_POLICY", "PASSIVE (dip's default)"),
    }
    environment = dict(os.environ)
    if policy is not None:
        environment["OMP_WAIT_POLICY"] = policy
    done = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(case)], capture_output=True, text=True, env=environment
    )
    if done.returncode != 0:
        return {**case, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="paper,light")
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--variants", default="plain,channels_last,compile")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--wait-policies",
        default="",
        help="comma-separated OpenMP wait policies to compare (passive,active); default: the tool's own (passive)",
    )
    parser.add_argument(
        "--busy", action="store_true", help="keep one core busy with another process, as on a shared machine"
    )
    parser.add_argument(
        "--conv-ceiling",
        action="store_true",
        help="also time one 128-channel 3x3 convolution alone at each size: the rate no step can beat",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case (JSON) and print its result
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0
    for variant in args.variants.split(","):
        variant_settings(variant)
    if args.threads is None:
        import os

        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    rows = []
    print(f"{'preset':<7} {'size':>5} {'variant':<22} {'policy':<8} {'s/step':>8} {'spread':>7} {'steps/s':>8} "
          f"{'x plain':>7} {'MiB':>7} {'GFLOP/s':>8}")  # fmt: skip
    policies = [p.strip().upper() for p in args.wait_policies.split(",") if p.strip()] or [None]
    burner = None
    if args.busy:
        # another program using one core, as on a laptop that is doing something else
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for preset in args.presets.split(","):
            for size in (int(s) for s in args.sizes.split(",")):
                plain = None
                for policy in policies:
                    for variant in args.variants.split(","):
                        row = _measure(preset, size, variant, policy, args)
                        rows.append(row)
                        if "error" in row:
                            print(f"{preset:<7} {size:>5} {variant:<22} failed: {row['error'][:80]}")
                            continue
                        if plain is None and variant == "plain":
                            plain = row["steps_per_second"]
                        row["ratio"] = row["steps_per_second"] / plain if plain else None
                        ratio = f"{row['ratio']:.2f}" if row["ratio"] else "-"
                        print(
                            f"{preset:<7} {size:>5} {variant:<22} {policy or 'tool':<8} "
                            f"{row['seconds_per_step']:>8.3f} {row['spread']:>7.3f} {row['steps_per_second']:>8.2f} "
                            f"{ratio:>7} {row['peak_memory_mib']:>7.0f} {row['gflop_per_second']:>8.1f}",
                            flush=True,
                        )
    finally:
        if burner is not None:
            burner.kill()
    ceilings = []
    if args.conv_ceiling:
        for size in (int(s) for s in args.sizes.split(",")):
            ceiling = conv_ceiling(size, args.threads, args.device)
            ceilings.append(ceiling)
            rates = ceiling["gflop_per_second"]
            print(
                f"# one 128->128 3x3 convolution at {size}²: forward {rates['forward']:.1f} GFLOP/s, "
                f"forward + both gradients {rates['forward_backward']:.1f} GFLOP/s"
            )
    first = next((r for r in rows if "error" not in r), {})
    machine = {
        "device": first.get("device_name"),
        "torch": first.get("torch"),
        "threads": args.threads,
        "python": platform.python_version(),
        "steps": args.steps,
        "warmup": args.warmup,
        "busy": args.busy,
    }
    print(f"# {machine}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows, "conv_ceiling": ceilings}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
