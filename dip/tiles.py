"""Where the fits of a large image go: overlapping tiles over the whole image, or windows around an inpainting
mask's holes, and how their results are put back together.

Pure geometry and arithmetic on arrays: which boxes, with which crossfade weights, and how much neighbours
disagreed where they overlap. What is fitted in each box, and when, is ``dip.pipeline``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """A rectangle of an image, in pixels: rows ``top`` to ``top + height``, columns ``left`` to ``left + width``."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def area(self) -> int:
        return self.height * self.width

    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def scaled(self, factor: int) -> Box:
        return Box(self.top * factor, self.left * factor, self.height * factor, self.width * factor)

    def intersection(self, other: Box) -> Box | None:
        top, left = max(self.top, other.top), max(self.left, other.left)
        bottom, right = min(self.bottom, other.bottom), min(self.right, other.right)
        return Box(top, left, bottom - top, right - left) if bottom > top and right > left else None

    def record(self) -> list[int]:
        """[x, y, width, height], the order of the command line's --zoom."""
        return [self.left, self.top, self.width, self.height]


def spans(length: int, tile: int, overlap: int, grid: int = 1) -> list[tuple[int, int]]:
    """(start, size) of tiles covering ``0..length`` with at least ``overlap`` pixels shared by neighbours, spread
    evenly. Starts fall on multiples of ``grid`` (a JPEG's 16-pixel block grid), so every tile sees whole blocks;
    the last tile then ends at the edge and may be up to ``grid - 1`` pixels longer than ``tile``."""
    if tile <= 0 or overlap < 0 or grid < 1:
        raise ValueError(f"tile {tile}, overlap {overlap}, grid {grid}")
    if length <= tile:
        return [(0, length)]
    # in units of the grid: consecutive starts at most ``stride`` apart keep the overlap
    stride = (tile - overlap) // grid
    if stride < 1:
        raise ValueError(f"a tile of {tile} with an overlap of {overlap} leaves no room to advance on a grid of {grid}")
    last = (length - tile) // grid
    if last == 0:  # the grid leaves one tile, a little longer
        return [(0, length)]
    count = math.ceil(last / stride) + 1
    starts = [round(i * last / (count - 1)) * grid for i in range(count)]
    return [(start, (length - start) if i == count - 1 else tile) for i, start in enumerate(starts)]


def tile_boxes(height: int, width: int, tile: int, overlap: int, grid: int = 1) -> list[Box]:
    """Overlapping tiles covering the image, row by row (see :func:`spans`)."""
    return [
        Box(top, left, tile_height, tile_width)
        for top, tile_height in spans(height, tile, overlap, grid)
        for left, tile_width in spans(width, tile, overlap, grid)
    ]


def hole_windows(known: np.ndarray, margin: int, window: int, multiple: int = 32) -> list[Box]:
    """Boxes to fit for inpainting only where the holes are: every hole (``known`` False) with at least ``margin``
    pixels of context on each side that has any.

    Holes closer than twice the margin share a window. A window larger than ``window`` in either direction (a long
    scratch) is cut into overlapping tiles of that size, and only the tiles holding a hole are kept: with an
    overlap of twice the margin, each hole pixel is at least ``margin`` from the inner edges of one of them.
    Windows are enlarged to a multiple of ``multiple`` where the image allows, so that more of them share a size
    (and are fitted at once on a GPU) and none is padded by the net.
    """
    from scipy import ndimage

    holes = ~known.astype(bool)
    if not holes.any():
        return []
    height, width = holes.shape
    reach = ndimage.binary_dilation(holes, structure=np.ones((3, 3), bool), iterations=margin) if margin else holes
    labels, _ = ndimage.label(reach, structure=np.ones((3, 3), bool))
    boxes: list[Box] = []
    for rows, cols in ndimage.find_objects(labels):
        region = Box(rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start)
        if region.height <= window and region.width <= window:
            boxes.append(_enlarged(region, multiple, height, width))
            continue
        inside = holes[region.slices()]
        for piece in tile_boxes(region.height, region.width, window, min(2 * margin, window // 2)):
            if inside[piece.slices()].any():
                boxes.append(Box(region.top + piece.top, region.left + piece.left, piece.height, piece.width))
    return boxes


def _enlarged(box: Box, multiple: int, height: int, width: int) -> Box:
    def grow(start: int, size: int, limit: int) -> tuple[int, int]:
        wanted = min(limit, -(-size // multiple) * multiple)
        start = min(max(0, start - (wanted - size) // 2), limit - wanted)
        return start, wanted

    top, box_height = grow(box.top, box.height, height)
    left, box_width = grow(box.left, box.width, width)
    return Box(top, left, box_height, box_width)


def crossfade(box: Box, height: int, width: int, ramp: int) -> np.ndarray:
    """A box's blending weight (its height x width), before normalisation: 1 inside, falling linearly to nearly 0
    over ``ramp`` pixels towards each side that lies inside the image; never 0, so every covered pixel has
    weight."""

    def profile(size: int, starts_inside: bool, ends_inside: bool) -> np.ndarray:
        ramp_length = max(1, min(ramp, size))
        position = np.arange(size, dtype=np.float64)
        weight = np.ones(size)
        if starts_inside:
            weight = np.minimum(weight, (position + 0.5) / ramp_length)
        if ends_inside:
            weight = np.minimum(weight, (size - position - 0.5) / ramp_length)
        return weight

    rows = profile(box.height, box.top > 0, box.bottom < height)
    cols = profile(box.width, box.left > 0, box.right < width)
    return np.outer(rows, cols)


class Blend:
    """Fitted boxes put back into one (C, H, W) image: the weighted mean of the boxes covering each pixel, with
    crossfade weights (normalised, they sum to one wherever a box covers); ``base`` where none does."""

    def __init__(self, base: np.ndarray, ramp: int) -> None:
        self.base = base
        self.ramp = ramp
        self.total = np.zeros(base.shape, dtype=np.float64)
        self.weight = np.zeros(base.shape[-2:], dtype=np.float64)

    def add(self, box: Box, image: np.ndarray) -> None:
        weight = crossfade(box, *self.weight.shape, self.ramp)
        rows, cols = box.slices()
        self.total[:, rows, cols] += weight * image
        self.weight[rows, cols] += weight

    def image(self) -> np.ndarray:
        covered = self.weight > 0
        blended = self.total / np.where(covered, self.weight, 1.0)
        return np.where(covered, blended, self.base).astype(np.float32)


def seams(boxes: list[Box], images: list[np.ndarray]) -> list[dict]:
    """How much each pair of overlapping boxes disagreed where they overlap, before blending: RMS and maximum of
    the difference of their images (0-1 scale)."""
    found = []
    for i, first in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            shared = first.intersection(boxes[j])
            if shared is None:
                continue
            a = _within(images[i], first, shared)
            b = _within(images[j], boxes[j], shared)
            difference = a.astype(np.float64) - b
            found.append({
                "boxes": [i, j],
                "overlap": shared.record(),
                "rms": round(float(np.sqrt(np.mean(difference**2))), 5),
                "max": round(float(np.abs(difference).max()), 5),
            })  # fmt: skip
    return found


def _within(image: np.ndarray, box: Box, part: Box) -> np.ndarray:
    return image[:, part.top - box.top : part.bottom - box.top, part.left - box.left : part.right - box.left]
