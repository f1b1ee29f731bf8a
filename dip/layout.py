"""Whole, tiles or windows: how one image is split into fits, decided before the run from its size, its task and
the device's free memory, and the memory the run will need (its time is dip.estimates').

``--tile auto`` fits the whole image when that fits the device's free memory and tiles it otherwise; inpainting
that keeps the known pixels fits windows around the holes instead, unless they cover most of the image anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from . import memory
from .config import Preset, Task
from .errors import DeviceError, UsageError
from .memory import GiB, check_fits, estimate, out_of_memory_message
from .operators import Operator
from .tiles import Box, hole_windows, tile_boxes

# Overlap of neighbouring tiles, in restored pixels: the crossfade's width. README "Large photos" has the
# measurement behind it.
DEFAULT_OVERLAP = 32
# Context kept around every hole, and the largest window, for inpainting only where the holes are (README
# "Large photos").
WINDOW_MARGIN = 16
WINDOW_SIZE = 128
# Fitting windows that cover this much of the image costs as much as fitting all of it: then it is fitted whole.
WINDOWS_WORTH_IT = 0.5
JPEG_GRID = 16  # the codec's 8x8 blocks on 2x-subsampled chroma
# --tile auto's tile on a CPU when the whole does not fit: the light net runs fastest per pixel near 256² here
# (README "How fast is it?": 128² 96k, 256² 229k, 512² 118k pixels a second).
CPU_TILE = 256
GPU_TILES = (1024, 768, 512, 384, 256)  # the largest whose fit fits the free memory, on a GPU
MAX_AT_ONCE = 16
# Free memory the fits may take; the rest is for the blend, the pictures and whatever else runs.
MEMORY_SHARE = 0.8


@dataclass(frozen=True)
class Layout:
    """How an image is fitted: ``whole`` (one fit), ``tiles`` (overlapping boxes covering it, crossfaded) or
    ``windows`` (boxes around an inpainting mask's holes, pasted back). ``boxes`` are in observation pixels
    (the low-resolution input's, for super-resolution); ``overlap`` is the crossfade's width in restored pixels."""

    kind: str
    boxes: tuple[Box, ...]
    tile: int | None = None  # the tile size asked for, or the window cap, restored pixels
    overlap: int = 0
    at_once: int = 1  # boxes of one size fitted together as one stacked net (a GPU)
    reason: str = ""

    @property
    def split(self) -> bool:
        return self.kind != "whole"

    def record(self, factor: int = 1) -> dict:
        sizes = sorted({box.scaled(factor).size for box in self.boxes}, reverse=True)
        return {
            "kind": self.kind,
            "count": len(self.boxes),
            "sizes": [[w, h] for h, w in sizes],
            **({"tile": self.tile, "overlap": self.overlap} if self.kind == "tiles" else {}),
            **({"margin": WINDOW_MARGIN, "window": self.tile} if self.kind == "windows" else {}),
            "at_once": self.at_once,
            "reason": self.reason,
        }

    def describe(self, factor: int = 1) -> str:
        if not self.split:
            return "whole"
        sizes = sorted({box.scaled(factor).size for box in self.boxes}, reverse=True)
        largest = f"{sizes[0][1]}x{sizes[0][0]}"
        noun = "tile" if self.kind == "tiles" else "window"
        count = len(self.boxes)
        return f"{count} {noun}{'s' if count != 1 else ''} of up to {largest}"


def parse_tile(value: str | int | None) -> int | str:
    """``auto``, 0 (never split) or a tile size in pixels of the restored image."""
    if value is None or value == "auto":
        return "auto"
    try:
        size = int(value)
    except ValueError:
        raise UsageError(f"--tile must be auto, 0 or a size in pixels, not {value!r}") from None
    if size != 0 and size < 32:
        raise UsageError(f"--tile {size} is too small: a tile needs at least 32 pixels (0: never tile)")
    return size


def _fits(preset: Preset, device: torch.device, height: int, width: int, channels: int, count: int = 1) -> bool:
    free = memory.available_bytes(device)
    return free is None or count * estimate(preset, height, width, channels, device.type).total <= MEMORY_SHARE * free


def choose_layout(
    tile: int | str,
    overlap: int | None,
    *,
    task: Task,
    operator: Operator,
    preset: Preset,
    device: torch.device,
    observed: tuple[int, int],
    channels: int,
    keep_known: bool,
    prefer_whole: bool = False,
) -> Layout:
    """The layout of one image's fits (see the module's docstring). ``observed``: (height, width) of the input;
    ``prefer_whole``: the run needs one fit (snapshots, checkpoints, restarts), so ``auto`` splits only what does
    not fit. Raises DeviceError when not even the chosen split fits."""
    factor = operator.factor
    height, width = observed
    restored = (height * factor, width * factor)
    if overlap is not None and overlap < 0:
        raise UsageError(f"--tile-overlap must be 0 or more pixels, not {overlap}")

    def whole(reason: str) -> Layout:
        check_fits(preset, task, device, *restored, channels)  # the refusal, naming smaller options
        return Layout("whole", (Box(0, 0, height, width),), reason=reason)

    if tile == 0:
        return whole("--tile 0")
    whole_fits = _fits(preset, device, *restored, channels)
    if task is Task.inpaint and keep_known:
        cap = WINDOW_SIZE if tile == "auto" else int(tile)
        boxes = hole_windows(operator.known[0, 0].cpu().numpy() > 0, WINDOW_MARGIN, cap)
        covered = sum(box.area for box in boxes) / (height * width)
        if tile == "auto" and whole_fits and (prefer_whole or not boxes or covered >= WINDOWS_WORTH_IT):
            return whole("fits in memory" + ("; windows would cover most of it" if boxes else ""))
        if not boxes:
            return whole("no holes")
        reason = f"holes cover {covered:.0%} of it with their margins"
        layout = Layout("windows", tuple(boxes), cap, 2 * WINDOW_MARGIN, reason=reason)
        return _checked(layout, preset, task, device, channels, factor)
    if tile == "auto":
        if whole_fits:
            return whole("fits in memory")
        tile, reason = _largest_tile(preset, device, channels), _too_large(preset, device, restored, channels)
    else:
        reason = f"--tile {tile}"
    overlap = min(DEFAULT_OVERLAP, tile // 4) if overlap is None else overlap
    grid = JPEG_GRID if task is Task.jpeg else 1
    # JPEG tiles hold whole blocks: they start on the codec's grid and span a whole number of blocks
    observed_tile = max(1, tile // factor) // grid * grid
    # every tile must see its neighbours' pixels that the operator reads (a blur kernel's reach)
    observed_overlap = max(math.ceil(overlap / factor), operator.reach)
    if observed_overlap >= observed_tile // 2:
        raise UsageError(f"--tile-overlap {overlap} is too large for --tile {tile}: keep it under half the tile")
    boxes = tile_boxes(height, width, observed_tile, observed_overlap, grid)
    if len(boxes) == 1:
        return whole(f"{reason}; one tile covers the image")
    layout = Layout("tiles", tuple(boxes), tile, observed_overlap * factor, reason=reason)
    return _checked(layout, preset, task, device, channels, factor)


def _too_large(preset: Preset, device: torch.device, restored: tuple[int, int], channels: int) -> str:
    needed = estimate(preset, *restored, channels, device.type).total
    free = memory.available_bytes(device)
    return f"the whole image does not fit in memory: it needs about {needed / GiB:.1f} GiB, {free / GiB:.1f} free"


def _largest_tile(preset: Preset, device: torch.device, channels: int) -> int:
    if device.type != "cuda":
        return CPU_TILE
    return next((size for size in GPU_TILES if _fits(preset, device, size, size, channels)), GPU_TILES[-1])


def _checked(layout: Layout, preset: Preset, task, device: torch.device, channels: int, factor: int) -> Layout:
    """The layout with as many boxes at once as the free memory takes (on a GPU); DeviceError when not even
    its largest box fits."""
    largest = max(layout.boxes, key=lambda box: box.area).scaled(factor)
    needed = estimate(preset, *largest.size, channels, device.type).total
    free = memory.available_bytes(device)
    if free is not None and needed > free:
        message = out_of_memory_message(preset, task, device, *largest.size, channels, needed, free)
        raise DeviceError(f"one {layout.kind[:-1]}: {message}")
    at_once = 1
    if device.type == "cuda" and free is not None:
        at_once = max(1, min(MAX_AT_ONCE, int(MEMORY_SHARE * free // needed), len(layout.boxes)))
    return replace(layout, at_once=at_once)


def needed_bytes(layout: Layout, preset: Preset, device_type: str, restored_shape: tuple[int, ...], factor: int) -> int:
    """Peak memory of the run: its largest fit (times those fitted at once) and, when split, the blend's
    canvas and the boxes' images kept for it. ``restored_shape``: (channels, height, width) of the output."""
    channels, height, width = restored_shape
    largest = max(layout.boxes, key=lambda box: box.area).scaled(factor)
    fits = layout.at_once * estimate(preset, *largest.size, channels, device_type).total
    if not layout.split:
        return fits
    kept = 4 * channels * sum(box.scaled(factor).area for box in layout.boxes)
    canvas = (8 * channels + 8 + 4 * channels) * height * width  # the weighted sums, the weights, the result
    return fits + kept + canvas


def groups(layout: Layout, order: list[int]) -> list[list[int]]:
    """The boxes in ``order``, in runs of one size of up to ``at_once``: what is fitted together."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for index in order:
        by_size.setdefault(layout.boxes[index].size, []).append(index)
    step = layout.at_once
    return [members[i : i + step] for members in by_size.values() for i in range(0, len(members), step)]
