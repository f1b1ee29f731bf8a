"""Quality against a clean reference. Evaluation only: nothing here may feed the loss or the stopping rule."""

from __future__ import annotations

import math

import numpy as np
import torch


def _as_hwc(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu()
        if image.ndim == 4:
            image = image[0]
        image = image.permute(1, 2, 0).numpy()
    image = np.asarray(image, dtype=np.float64)
    return image[..., None] if image.ndim == 2 else image


def _check_pair(image: np.ndarray, reference: np.ndarray) -> None:
    if image.shape != reference.shape:
        raise ValueError(f"image {image.shape} and reference {reference.shape} differ in shape")


def psnr(image, reference, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images."""
    image, reference = _as_hwc(image), _as_hwc(reference)
    _check_pair(image, reference)
    mse = float(np.mean((image - reference) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(image, reference, *, data_range: float = 1.0) -> float:
    """Structural similarity, scikit-image's defaults (7x7 uniform window), averaged over channels."""
    from skimage.metrics import structural_similarity

    image, reference = _as_hwc(image), _as_hwc(reference)
    _check_pair(image, reference)
    # Images narrower than the 7-px window would make scikit-image raise; shrink the window to fit instead.
    win = min(7, *image.shape[:2])
    win -= 1 - win % 2
    if win < 3:
        return float("nan")
    return float(structural_similarity(image, reference, data_range=data_range, channel_axis=-1, win_size=win))
