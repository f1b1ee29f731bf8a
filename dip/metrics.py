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


class ReferenceTracker:
    """An observer for evaluation runs: PSNR of each k-th iterate (and of the output average) against a clean
    reference, SSIM at a coarser interval, so that a run knows its own peak. It only watches the Steps; the
    stopping rule never sees it.
    """

    def __init__(self, reference: torch.Tensor, *, every: int = 10, ssim_every: int = 100) -> None:
        self.reference = reference.float()
        self.every, self.ssim_every = every, ssim_every
        self.history: list[dict[str, float]] = []

    def _psnr(self, x: torch.Tensor) -> float:
        if self.reference.device != x.device:
            self.reference = self.reference.to(x.device)
        # .item() is a device sync; it happens only every `every` steps
        mse = (x.float() - self.reference).square().mean().item()
        return math.inf if mse == 0 else -10.0 * math.log10(mse)

    def __call__(self, step) -> None:
        if step.iteration % self.every and step.iteration != 1:
            return
        entry: dict[str, float] = {"iteration": step.iteration, "psnr": self._psnr(step.x)}
        if step.average is not None:
            entry["psnr_average"] = self._psnr(step.average)
        if step.iteration % self.ssim_every == 0:
            entry["ssim"] = ssim(step.x, self.reference)
            if step.average is not None:
                entry["ssim_average"] = ssim(step.average, self.reference)
        self.history.append(entry)

    def peak(self, key: str = "psnr") -> tuple[float, int]:
        """The highest value of ``key`` seen and its iteration; (nan, 0) before any record."""
        seen = [(entry[key], entry["iteration"]) for entry in self.history if key in entry]
        if not seen:
            return math.nan, 0
        best = max(seen, key=lambda pair: pair[0])
        return best[0], int(best[1])
