"""What a JPEG file says about the picture it was made from, as a data term for the fit.

A JPEG encoder turns the image into YCbCr, averages the chroma over 2x2 pixels (4:2:0, Pillow's default), takes
the 8x8 block DCT of each plane and rounds every coefficient to a multiple of its step in the file's quantisation
table. So the original's coefficient lies within half a step of the decoded one: every image inside those
intervals is as consistent with the file as the decoded pixels are, blocks and ringing included. The fit's data
term here is zero inside each interval and grows outside it (a dead zone), so that the prior, not the codec's
rounding, chooses among those images; :func:`project` puts an image back inside the intervals.

The decoded pixels give the intervals' centres: the block DCT of their luma, rounded to the step, is the file's
coefficient (the decoder's rounding to 8 bits moves a coefficient by about half a level, far less than half a
step); the subsampled chroma is first recovered from the decoder's upsampled planes by least squares.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .denoise import with_finished_image
from .wiener import collaborative_wiener, dct_matrix

BLOCK = 8
# JFIF's RGB -> YCbCr (ITU-R BT.601, full range), the rows Y, Cb, Cr; Cb and Cr are offset by 128 after it.
_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


@dataclass(frozen=True)
class Coding:
    """How a JPEG file was coded: one quantisation table (8x8, natural order) and one subsampling factor
    (rows, columns: 1 or 2) per component, Y then Cb and Cr, or Y alone for a gray file."""

    tables: tuple[np.ndarray, ...]
    factors: tuple[tuple[int, int], ...]

    @property
    def colour(self) -> bool:
        return len(self.tables) == 3

    def describe(self) -> str:
        if not self.colour:
            return "gray"
        (fy, fx) = self.factors[1]
        return {(1, 1): "4:4:4", (1, 2): "4:2:2", (2, 2): "4:2:0", (2, 1): "4:4:0"}[(fy, fx)]


def coding_of(image) -> Coding | None:
    """The coding of a Pillow JPEG image, or None where this module cannot model it (CMYK, Adobe RGB
    transforms, progressive files are fine; subsampling other than 1 or 2 per direction is not)."""
    tables_by_id = getattr(image, "quantization", None)
    layers = getattr(image, "layer", None)
    if not tables_by_id or not layers or image.mode not in ("L", "RGB") or len(layers) not in (1, 3):
        return None
    if image.mode == "RGB" and (len(layers) != 3 or image.info.get("adobe_transform") == 0):
        return None  # three components stored as RGB, not YCbCr
    if image.mode == "L" and len(layers) != 1:
        return None
    largest = (max(layer[2] for layer in layers), max(layer[1] for layer in layers))
    factors, tables = [], []
    for _, horizontal, vertical, table in layers:
        factor = (largest[0] // vertical, largest[1] // horizontal)
        if factor[0] not in (1, 2) or factor[1] not in (1, 2) or table not in tables_by_id:
            return None
        factors.append(factor)
        tables.append(np.asarray(tables_by_id[table], dtype=np.float64).reshape(BLOCK, BLOCK))
    if factors[0] != (1, 1):
        return None  # luma subsampled: not something an encoder does
    return Coding(tuple(tables), tuple(factors))


def to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> JPEG's YCbCr on the 0-255 scale, each plane less 128 (the level shift
    before the DCT); (N, 1, H, W) gray -> Y less 128."""
    if x.shape[1] == 1:
        return x * 255 - 128
    matrix = torch.tensor(_TO_YCBCR, dtype=x.dtype, device=x.device)
    ycbcr = torch.einsum("oc,nchw->nohw", matrix, x * 255)
    return ycbcr - torch.tensor((128.0, 0.0, 0.0), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)


def from_ycbcr(ycbcr: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_ycbcr`, in [0, 1] (unclipped)."""
    if ycbcr.shape[1] == 1:
        return (ycbcr + 128) / 255
    matrix = torch.linalg.inv(torch.tensor(_TO_YCBCR, dtype=torch.float64)).to(ycbcr.dtype).to(ycbcr.device)
    shifted = ycbcr + torch.tensor((128.0, 0.0, 0.0), dtype=ycbcr.dtype, device=ycbcr.device).view(1, 3, 1, 1)
    return torch.einsum("oc,nchw->nohw", matrix, shifted) / 255


def blocks_of(plane: torch.Tensor) -> torch.Tensor:
    """(N, h, w) with h, w multiples of 8 -> (N, h/8, w/8, 8, 8) block DCT coefficients."""
    n, h, w = plane.shape
    tiles = plane.reshape(n, h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(2, 3)
    matrix = dct_matrix(BLOCK, plane.dtype).to(plane.device)
    return matrix @ tiles @ matrix.T


def from_blocks(coefficients: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`blocks_of`."""
    n, rows, cols = coefficients.shape[:3]
    matrix = dct_matrix(BLOCK, coefficients.dtype).to(coefficients.device)
    tiles = matrix.T @ coefficients @ matrix
    return tiles.transpose(2, 3).reshape(n, rows * BLOCK, cols * BLOCK)


def fancy_upsampling(size: int, factor: int) -> np.ndarray:
    """(size, ceil(size / factor)): libjpeg's "fancy" upsampling of one direction, the triangle filter that puts
    3/4 of each output pixel on its own sample and 1/4 on the nearer neighbour (edges repeat)."""
    if factor == 1:
        return np.eye(size)
    samples = -(-size // factor)
    matrix = np.zeros((factor * samples, samples))
    for i in range(samples):
        matrix[2 * i, i] += 0.75
        matrix[2 * i, max(i - 1, 0)] += 0.25
        matrix[2 * i + 1, i] += 0.75
        matrix[2 * i + 1, min(i + 1, samples - 1)] += 0.25
    return matrix[:size]


@functools.lru_cache(maxsize=2)  # the rows' and the columns' of one image
def _unsampling(size: int, factor: int) -> np.ndarray:
    """The least-squares inverse of :func:`fancy_upsampling`, shared by Cb and Cr."""
    return np.linalg.pinv(fancy_upsampling(size, factor))


@dataclass(frozen=True)
class Plane:
    """One component's part of the data term: the blocks wholly inside the image, their steps and centres."""

    factor: tuple[int, int]
    steps: torch.Tensor  # (8, 8)
    centres: torch.Tensor  # (rows, cols, 8, 8), multiples of the steps

    @property
    def extent(self) -> tuple[int, int]:
        """The full-resolution pixels its blocks cover, from the top left corner."""
        rows, cols = self.centres.shape[:2]
        return rows * BLOCK * self.factor[0], cols * BLOCK * self.factor[1]


def _subsampled(plane: torch.Tensor, factor: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) averaged over factor pixels, as the encoder does before the DCT."""
    if factor == (1, 1):
        return plane
    return torch.nn.functional.avg_pool2d(plane[:, None], factor)[:, 0]


def planes_of(decoded: np.ndarray, coding: Coding) -> tuple[Plane, ...]:
    """The data term's planes for the decoded pixels (H, W, C) in [0, 1] of a file coded as ``coding``."""
    height, width = decoded.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1))).double()[None]
    ycbcr = to_ycbcr(x)[0]
    planes = []
    for component, (table, factor) in enumerate(zip(coding.tables, coding.factors, strict=True)):
        full = ycbcr[component].numpy()
        if factor == (1, 1):
            samples = full
        else:  # the decoder's upsampled plane -> the samples it was upsampled from, by least squares
            samples = _unsampling(height, factor[0]) @ full @ _unsampling(width, factor[1]).T
        inner = (height // (BLOCK * factor[0]) * BLOCK, width // (BLOCK * factor[1]) * BLOCK)
        steps = torch.from_numpy(table)
        coefficients = blocks_of(torch.from_numpy(np.ascontiguousarray(samples[: inner[0], : inner[1]]))[None])[0]
        centres = torch.round(coefficients / steps) * steps
        planes.append(Plane(factor, steps.float(), centres.float()))
    return tuple(planes)


def coefficients(x: torch.Tensor, plane: Plane, component: int, ycbcr: torch.Tensor | None = None) -> torch.Tensor:
    """The block DCT of ``x``'s component (N, rows, cols, 8, 8) over the plane's blocks."""
    ycbcr = to_ycbcr(x) if ycbcr is None else ycbcr
    rows, cols = plane.extent
    return blocks_of(_subsampled(ycbcr[:, component, :rows, :cols], plane.factor))


def project(x: torch.Tensor, planes: tuple[Plane, ...]) -> torch.Tensor:
    """``x`` (N, C, H, W) moved into the quantisation intervals, the nearest such image in YCbCr (a subsampled
    plane's correction spread evenly over the pixels it averages), clipped to [0, 1]."""
    ycbcr = to_ycbcr(x.double())
    for component, plane in enumerate(planes):
        rows, cols = plane.extent
        now = coefficients(x.double(), plane, component, ycbcr)
        half = plane.steps.double() / 2
        centres = plane.centres.double()
        moved = torch.maximum(torch.minimum(now, centres + half), centres - half)
        change = from_blocks(moved - now)
        if plane.factor != (1, 1):
            change = change.repeat_interleave(plane.factor[0], 1).repeat_interleave(plane.factor[1], 2)
        ycbcr[:, component, :rows, :cols] += change
    return from_ycbcr(ycbcr).clamp(0, 1).to(x.dtype)


# The Wiener filter's noise level, as a multiple of the distance between the decoded image and the net's image put
# inside the intervals: that image is smoother than the original, and the distance is 0.55-0.7 of the JPEG's true
# error (q 10-20, 128 px); on four tuning images 2 x beat 1 and 1.5 x, and 2.5 x was 0.01-0.03 dB better (README,
# "JPEG artifacts").
SIGMA_FROM_DISTANCE = 2.0
_SMALLEST = 16  # px: a thinner image has too few patches for the filter to match


def blockiness(image: torch.Tensor) -> float:
    """How much stronger the luma's steps are across the 8x8 grid's lines than between the other neighbours:
    mean squared difference at block edges over that inside blocks (about 1 for a picture without blocks,
    more for a JPEG). Measured without a reference, on (1, C, H, W) in [0, 1]; NaN below two blocks."""
    luma = to_ycbcr(image.double())[0, 0]
    ratios = []
    for steps in (luma.diff(dim=1), luma.diff(dim=0).T):  # across columns, then across rows
        edges = torch.arange(steps.shape[1]) % BLOCK == BLOCK - 1
        if edges.any() and (~edges).any():
            ratios.append(steps[:, edges].square().mean() / steps[:, ~edges].square().mean().clamp_min(1e-12))
    return float(torch.stack(ratios).mean()) if ratios else float("nan")


class Finished(NamedTuple):
    image: torch.Tensor  # (1, C, H, W)
    sigma: float | None  # the filter's, on the 0-1 scale; None: it did not run
    blockiness: tuple[float, float]  # the decoded image's and the finished one's
    kept_input: bool  # the guard returned the decoded image: the finished one was no less blocky


def finish(decoded: torch.Tensor, fitted: torch.Tensor, planes: tuple[Plane, ...], *, filtered: bool = True):
    """The final image from the decoded one and the net's (1, C, H, W): the net's image put inside the file's
    intervals, then (``filtered``) a collaborative Wiener filter of the decoded image with it as the pilot, put
    inside them again. The guard: an image no less blocky than the decoded one is no restoration of it, and the
    decoded image is returned instead."""
    image = pilot = project(fitted, planes)
    sigma = SIGMA_FROM_DISTANCE * (decoded - pilot).square().mean().sqrt().item()
    if not filtered or min(decoded.shape[-2:]) < _SMALLEST or not sigma > 0.5 / 255:
        sigma = None
    else:
        image = project(collaborative_wiener(decoded[0], pilot[0], sigma)[None], planes)
    before, after = blockiness(decoded), blockiness(image)
    kept_input = after >= before  # False when either is NaN (too small to tell): the finished image stands
    return Finished(decoded.clone() if kept_input else image, sigma, (before, after), kept_input)


def refined(plan, restoration):
    """The restoration of a JPEG file (``plan.observation.operator`` a dip.operators.Decoded) finished by
    :func:`finish`; the record says how, with the net's own scores beside the final ones."""
    start = time.perf_counter()
    operator = plan.observation.operator
    done = finish(plan.observation.y, restoration.result.image.cpu(), operator.planes, filtered=plan.preset.wiener)
    how = "projected onto the file's quantisation intervals"
    if done.sigma is not None:
        how += ", a collaborative Wiener filter with that as its pilot, projected again"
    if done.kept_input:
        how = "the input itself: the restoration was no less blocky"
    refinement = {
        "method": how,
        "sigma": None if done.sigma is None else round(done.sigma * 255, 3),
        "sigma_from": "estimated",
        "blockiness": {"input": round(done.blockiness[0], 4), "output": round(done.blockiness[1], 4)},
        "kept_input": done.kept_input,
    }
    return with_finished_image(plan, restoration, done.image, refinement, how, start)
