"""The corruptions used to make test images, and how a mask's holes lie.

The makers work on float arrays (H, W, C) in [0, 1] and are what ``dip degrade`` runs. The forward operators the
fit inverts are in ``dip.operators``.
"""

from __future__ import annotations

import io

import numpy as np

from .errors import UsageError

# Below this, a mask's holes are taken for scattered pixels: the chance that a missing pixel's neighbour is missing
# too, less the chance for any pixel, over what it could be above it (0 for pixels dropped at random, 1 for one
# solid hole). Measured: random drops of 2-98 % -0.02-0.004; kate's text strokes 0.72 at 64 px and 0.81 at
# 512; the paper's vase and library holes 0.76-0.98.
SCATTERED_BELOW = 0.2


def is_scattered(known: np.ndarray) -> bool:
    """Whether the missing pixels of a mask (bool (H, W), True = known) lie about singly, as in the paper's
    Barbara, rather than in strokes or holes."""
    missing = ~np.asarray(known, dtype=bool)
    fraction = missing.mean()
    if fraction in (0.0, 1.0):
        return False
    neighbours = [(missing[:, 1:], missing[:, :-1]), (missing[1:, :], missing[:-1, :])]
    both = sum(int((a & b).sum()) for a, b in neighbours)
    first = sum(int(b.sum()) for _, b in neighbours)
    if first == 0:  # one column or row of pixels: nothing to judge by
        return False
    together = both / first
    return (together - fraction) / (1.0 - fraction) < SCATTERED_BELOW


# --- making corrupted images for experiments -------------------------------------------------------------


def add_gaussian_noise(pixels: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise; ``sigma`` on the 0-255 scale as in the literature (25 means 25/255)."""
    if not 0 < sigma <= 255:
        raise UsageError(f"noise sigma is on the 0-255 scale and must be in (0, 255], not {sigma}")
    noisy = pixels + rng.normal(0.0, sigma / 255.0, size=pixels.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def drop_pixels(pixels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Blacks out a random ``fraction`` of pixel positions (all channels).

    Returns the image and the mask, True where the pixel was kept.
    """
    if not 0 < fraction < 1:
        raise UsageError(f"the fraction of pixels to drop must be strictly between 0 and 1, not {fraction}")
    known = rng.random(pixels.shape[:2]) >= fraction
    return (pixels * known[..., None]).astype(np.float32), known


def add_salt_and_pepper(pixels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Impulse noise: a random ``fraction`` of pixel positions set to black or white (half each, all channels)."""
    if not 0 < fraction < 1:
        raise UsageError(f"the salt-and-pepper fraction must be strictly between 0 and 1, not {fraction}")
    hit = rng.random(pixels.shape[:2]) < fraction
    white = rng.random(pixels.shape[:2]) < 0.5
    noisy = pixels.copy()
    noisy[hit] = white[hit][:, None].astype(np.float32)
    return noisy.astype(np.float32)


def add_shot_noise(pixels: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    """Photon (Poisson) noise, as a sensor in dim light makes it: a pixel of value v counts Poisson(v * photons)
    photons, so white gets ``photons`` on average and the noise grows with the brightness (std sqrt(v / photons))."""
    if not photons > 0:
        raise UsageError(f"the photon count of shot noise must be positive, not {photons}")
    noisy = rng.poisson(np.clip(pixels, 0.0, 1.0) * photons) / photons
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def jpeg_bytes(pixels: np.ndarray, quality: int) -> bytes:
    """The image encoded by Pillow's JPEG codec at ``quality`` (1-95), 4:2:0 chroma as Pillow does by default."""
    from PIL import Image

    if not 1 <= quality <= 95:
        raise UsageError(f"JPEG quality must be between 1 and 95, not {quality}")
    eight_bit = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(eight_bit[..., 0] if eight_bit.shape[-1] == 1 else eight_bit)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_compress(pixels: np.ndarray, quality: int) -> np.ndarray:
    """A round trip through the JPEG codec at ``quality``, in memory: the artifacts without the file."""
    from PIL import Image

    decoded = np.asarray(Image.open(io.BytesIO(jpeg_bytes(pixels, quality))), dtype=np.float32) / 255.0
    return decoded.reshape(pixels.shape)


def through_operator(pixels: np.ndarray, operator) -> np.ndarray:
    """``A(x)`` of a float image (H, W, C) for one of dip's forward operators (dip.operators): a pair made with
    it matches what the fit assumes exactly."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None].double()
    with torch.no_grad():
        y = operator(x)[0].permute(1, 2, 0).numpy()
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def crop_to_multiple(pixels: np.ndarray, factor: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The centred crop whose sides are multiples of ``factor``, and its box (x, y, width, height)."""
    height, width = pixels.shape[:2]
    new_height, new_width = height - height % factor, width - width % factor
    top, left = (height - new_height) // 2, (width - new_width) // 2
    return pixels[top : top + new_height, left : left + new_width], (left, top, new_width, new_height)
