"""Inpainting masks made from what a user has at hand, in dip's convention (True / white = known pixel): a copy
of the photo with the damage painted over, the painted copy beside the original, bright or dark marks, or an
image's transparent pixels. Arrays in, arrays out; ``dip mask`` reads and writes the files."""

from __future__ import annotations

import re

import numpy as np

from .errors import UsageError

NAMED_COLORS = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "magenta": (255, 0, 255),
    "cyan": (0, 255, 255), "yellow": (255, 255, 0), "white": (255, 255, 255), "black": (0, 0, 0),
}  # fmt: skip
# A stroke saved as JPEG or blended at its edges strays from the colour painted by a few tens of levels.
COLOR_TOLERANCE = 60
# A painted copy re-saved by an editor differs from its original by a few levels where nothing was painted.
DIFFERENCE_TOLERANCE = 24
# Warn when the mask marks this much or more as missing: there is little left for the fit to go on.
MOSTLY_MISSING = 0.9


def parse_color(text: str) -> tuple[int, int, int]:
    """``red`` (and the other names of NAMED_COLORS) or ``#RRGGBB``, as 0-255 levels."""
    name = text.strip().lower()
    if name in NAMED_COLORS:
        return NAMED_COLORS[name]
    if re.fullmatch(r"#?[0-9a-f]{6}", name):
        digits = name.lstrip("#")
        return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))
    raise UsageError(f"--color {text!r} is neither #RRGGBB nor one of {', '.join(NAMED_COLORS)}")


def _levels(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) on the 0-255 scale; a gray image is taken as its three equal channels."""
    rgb = pixels if pixels.shape[2] == 3 else np.repeat(pixels, 3, axis=2)
    return rgb.astype(np.float64) * 255


def painted_in(pixels: np.ndarray, color: tuple[int, int, int], tolerance: float = COLOR_TOLERANCE) -> np.ndarray:
    """Known where the pixel is not the painted colour: holes where every channel is within ``tolerance``
    levels of it."""
    distance = np.abs(_levels(pixels) - np.asarray(color, dtype=np.float64)).max(axis=2)
    return distance > tolerance


def changed_from(painted: np.ndarray, original: np.ndarray, tolerance: float = DIFFERENCE_TOLERANCE) -> np.ndarray:
    """Known where the painted copy still equals the original: holes where a channel differs by more than
    ``tolerance`` levels."""
    if painted.shape[:2] != original.shape[:2]:
        (h, w), (oh, ow) = painted.shape[:2], original.shape[:2]
        raise UsageError(f"the painted copy is {w}x{h} but the original is {ow}x{oh}; give the same photo")
    return np.abs(_levels(painted) - _levels(original)).max(axis=2) <= tolerance


def by_level(pixels: np.ndarray, *, above: float | None = None, below: float | None = None) -> np.ndarray:
    """Known except where the gray level (0-255, ITU-R 601) is above ``above`` (white text, light scratches) or
    below ``below`` (dark scratches, ink)."""
    if (above is None) == (below is None):
        raise UsageError("give one of --above V and --below V")
    gray = _levels(pixels) @ np.array([0.299, 0.587, 0.114])
    return gray <= above if above is not None else gray >= below


def from_alpha(alpha: np.ndarray | None) -> np.ndarray:
    """Known where the image is opaque (alpha at least half): the transparent pixels are the holes."""
    if alpha is None:
        raise UsageError("--from-alpha needs an image with transparency (PNG, TIFF or WebP with alpha)")
    return alpha >= 0.5


def grown(known: np.ndarray, pixels: int) -> np.ndarray:
    """The holes dilated by ``pixels`` in every direction (a disc), for the soft edges around a stroke."""
    if pixels < 0:
        raise UsageError(f"--grow must be 0 or more pixels, not {pixels}")
    if pixels == 0:
        return known
    from scipy import ndimage

    offsets = np.arange(-pixels, pixels + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= pixels**2
    return ~ndimage.binary_dilation(~known, structure=disc)


def missing_warning(known: np.ndarray) -> str | None:
    """What a user should hear about a mask before a long fit: no hole at all, or nearly nothing known."""
    missing = float(np.mean(~known))
    if missing == 0:
        return "the mask has no hole (every pixel is known): check the colour, tolerance or level"
    if missing >= MOSTLY_MISSING:
        return f"the mask marks {missing:.0%} of the pixels as missing: check the colour, tolerance or level"
    return None


def preview(pixels: np.ndarray, known: np.ndarray, tint: tuple[int, int, int] = (255, 0, 255)) -> np.ndarray:
    """The photo with its holes tinted half-way to ``tint``, (H, W, 3) in 0-1: to check a mask before fitting."""
    rgb = pixels if pixels.shape[2] == 3 else np.repeat(pixels, 3, axis=2)
    tinted = 0.5 * rgb + 0.5 * np.asarray(tint, dtype=np.float32) / 255
    return np.where(known[..., None], rgb, tinted).astype(np.float32)
