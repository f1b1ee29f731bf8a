"""One image fitted in parts: the tiles or windows of its layout (dip.layout), each its own fit, put back
together (dip.tiles), with the record of every part and of the seams between them."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from .fit import FitResult, Step
from .io import Picture
from .layout import groups
from .metrics import psnr, ssim
from .operators import Observation
from .pipeline import Plan, solve, solve_together, with_known
from .restoration import Restoration
from .tiles import Blend, Box, seams


def region_plan(plan: Plan, box: Box) -> Plan:
    """The part of a plan in ``box`` (observation pixels) as a plan of its own: one whole fit, unscored."""
    rows, cols = box.slices()
    observation = plan.observation
    y = observation.y[..., rows, cols].clone()
    picture = Picture(plan.picture.pixels[rows, cols], None, plan.picture.bit_depth, plan.picture.mode, None)
    return dataclasses.replace(
        plan, picture=picture, observation=Observation(y, observation.operator.crop(box)), reference=None,
        layout=None, keep_known=False, preset=dataclasses.replace(plan.preset, wiener=False),
    )  # fmt: skip  (the whole image is finished by the filter once its boxes are joined: see pipeline.finished)


def solve_split(
    plan: Plan,
    *,
    observe: Callable[[Step], None] | None = None,
    interrupt: threading.Event | None = None,
    on_region: Callable[[int, int, Box], None] | None = None,
    share: tuple[int, int] = (0, 1),
    gather: Callable[[dict], dict] | None = None,
) -> Restoration | None:
    """Fits a plan split into tiles or windows (see dip.layout), each box its own fit with its own automatic stop
    and the plan's seed, boxes of one size ``at_once`` together, and puts them back: tiles crossfaded, windows
    pasted into the input. ``on_region(done, total, box)`` is called as each group of boxes of box's size starts.

    ``share`` (rank, world): fit every world-th box from the rank-th only; ``gather`` then takes this process's
    {index: (image, record)} and returns everyone's on rank 0 (None elsewhere, which then returns None).
    Interrupted, the boxes not fitted keep the input: the image is whole, and says so in its record."""
    layout, factor = plan.layout, plan.observation.operator.factor
    rank, world = share
    mine = list(range(len(layout.boxes)))[rank::world]
    fitted: dict[int, tuple[np.ndarray, dict]] = {}
    started = time.perf_counter()
    done = 0
    for members in groups(layout, mine):
        if interrupt is not None and interrupt.is_set():
            break
        if on_region is not None:
            on_region(done, len(mine), layout.boxes[members[0]])
        parts = [region_plan(plan, layout.boxes[index]) for index in members]
        if len(parts) == 1:
            runs = [solve(parts[0], observe=observe, interrupt=interrupt)]
        else:
            first = None if observe is None else (lambda k, step: observe(step) if k == 0 else None)
            runs = solve_together(parts, observe=first, interrupt=interrupt)
        for index, run in zip(members, runs, strict=True):
            result = run.result
            fitted[index] = (result.image[0].numpy(), {
                "box": layout.boxes[index].scaled(factor).record(),
                "best_iteration": result.best_iteration,
                "stopped_at": result.iterations,
                "stop_reason": result.stop_reason,
                "returned": result.returned,
                "seconds": round(result.seconds, 3),
                "rollbacks": result.rollbacks,
                "final_loss": result.final_loss,
            })  # fmt: skip
        done += len(members)
    if gather is not None:
        fitted = gather(fitted)
        if fitted is None:
            return None
    restoration = _assembled(plan, fitted, time.perf_counter() - started)
    if world > 1:
        restoration.split["processes"] = world
    return restoration


def _assembled(plan: Plan, fitted: dict[int, tuple[np.ndarray, dict]], seconds: float) -> Restoration:
    layout, factor = plan.layout, plan.observation.operator.factor
    base = np.ascontiguousarray(plan.shown_input().transpose(2, 0, 1))
    blend = Blend(base, ramp=layout.overlap)
    order = sorted(fitted)
    boxes = [layout.boxes[index].scaled(factor) for index in order]
    for index, box in zip(order, boxes, strict=True):
        blend.add(box, fitted[index][0])
    image = torch.from_numpy(blend.image())[None]
    records = [{"index": index, **fitted[index][1]} for index in order]
    pairs = seams(boxes, [fitted[index][0] for index in order]) if layout.kind == "tiles" else []
    for pair in pairs:
        pair["boxes"] = [order[k] for k in pair["boxes"]]
    reasons = {record["stop_reason"] for record in records}
    interrupted = len(fitted) < len(layout.boxes) or "interrupted" in reasons
    iterations = [record["best_iteration"] for record in records] or [0]
    noun = "tiles crossfaded" if layout.kind == "tiles" else "windows pasted into the input"
    result = FitResult(
        image=image,
        returned=f"{len(fitted)} of {len(layout.boxes)} {noun} (iterates {min(iterations)}-{max(iterations)})",
        best_iteration=max(iterations),
        iterations=max([record["stopped_at"] for record in records] or [0]),
        stop_reason="interrupted" if interrupted else reasons.pop() if len(reasons) == 1 else "per " + layout.kind[:-1],
        rollbacks=sum(record["rollbacks"] for record in records),
        seconds=seconds,
        final_loss=float(np.mean([record["final_loss"] for record in records])) if records else float("nan"),
    )
    result = with_known(plan, result)
    split = {
        **layout.record(factor),
        "fitted": len(fitted),
        "regions": records,
        **({"seams": _seam_summary(pairs)} if layout.kind == "tiles" else {}),
    }
    metrics = {}
    if plan.reference is not None:
        clean, shown = plan.reference.pixels, plan.shown_input()
        metrics = {"psnr": psnr(result.image, clean), "ssim": ssim(result.image, clean),
                   "input_psnr": psnr(shown, clean), "input_ssim": ssim(shown, clean)}  # fmt: skip
    return Restoration(
        plan.output_picture(result.image), result, plan.task, plan.preset, plan.seed, plan.device, metrics,
        operator=plan.observation.operator, split=split, keep_known=plan.keep_known,
    )  # fmt: skip


def _seam_summary(pairs: list[dict]) -> dict:
    """Neighbours' disagreement where they overlap, before the crossfade: over all overlaps (RMS of the pairs'
    RMS) and the worst pixel, and each pair."""
    if not pairs:
        return {"rms": 0.0, "max": 0.0, "pairs": []}
    rms = float(np.sqrt(np.mean([pair["rms"] ** 2 for pair in pairs])))
    return {"rms": round(rms, 5), "max": max(pair["max"] for pair in pairs), "pairs": pairs}
