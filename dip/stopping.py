"""Early stopping from the iterates alone: no clean image is ever consulted.

A Deep Image Prior fit first reproduces the image and only later the corruption; while it is learning the
image the iterates change slowly and coherently, and once it starts fitting the noise they wander again. Wang et
al. (ES-WMV, TMLR 2023) track the variance of the iterates over a sliding window and take the iterate where that
variance is lowest. A fit that returns the output average is better judged around that average: the default
(``AverageSpread``) measures how far the iterates stray from it, and takes the average where they stray least.

Detectors are small objects: ``update(step) -> bool`` (True: stop now), with ``best`` (the iterate to return),
``best_iteration``, ``statistic`` (the last value, for curves and logs) and ``reason`` (why it fired).

The variance alone misses one case: with Gaussian noise on some images (kate and zebra at sigma 25 in the
benchmark) it keeps falling long after the net has started to reproduce the noise, and the run then returns
an iterate from the cap, far past its peak. The noise itself says when that happens: a net that matches the
clean image leaves a loss about equal to the noise variance, and one that goes below it is fitting noise
(Morozov's discrepancy principle). So, when the noise level can be read off the input, the loss is compared
with it as well.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch

from .config import StopConfig

LOSS_WINDOW = 50  # steps whose losses are averaged before comparing with the noise floor: single ones jitter
DEFAULT_SPREAD_WEIGHT = 0.99  # the paper's output-average weight


class Detector:
    """Remembers the iterate at the lowest statistic and stops after ``patience`` steps without a new one.

    Subclasses say what the statistic is, in ``push(x) -> float`` (NaN while it is not yet defined).
    """

    name = "statistic"

    def __init__(self, patience: int, warmup: int, loss_floor: float | None = None) -> None:
        self.patience, self.warmup = patience, warmup
        self.loss_floor = loss_floor  # stop once the recent mean loss falls below it (None: never)
        self.best: torch.Tensor | None = None
        self.best_average: torch.Tensor | None = None
        self.best_iteration = 0
        self.best_statistic = math.inf
        self.statistic = math.nan
        self.reason = ""  # "patience" or "noise floor", once fired
        self._recent_losses: deque[float] = deque(maxlen=LOSS_WINDOW)

    def push(self, x: torch.Tensor) -> float:
        raise NotImplementedError

    _state_fields: tuple[str, ...] = ()  # what the subclass keeps between steps, for checkpoints

    def state_dict(self) -> dict:
        names = ("best", "best_average", "best_iteration", "best_statistic", "statistic", *self._state_fields)
        return {name: getattr(self, name) for name in names} | {"recent_losses": list(self._recent_losses)}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self._recent_losses.clear()
        self._recent_losses.extend(state.pop("recent_losses", []))
        for name, value in state.items():
            setattr(self, name, value)

    def update(self, step) -> bool:
        """Feeds one Step; True when the run should stop."""
        statistic = self.statistic = self.push(step.x)
        # NaN compares False: nothing is recorded until the statistic exists.
        if step.iteration >= self.warmup and statistic < self.best_statistic:
            self.best_statistic, self.best_iteration = statistic, step.iteration
            self.best = step.x.clone()
            self.best_average = None if step.average is None else step.average.clone()
        if self.best is not None and step.iteration - self.best_iteration >= self.patience:
            self.reason = "patience"
            return True
        if self.loss_floor is None:
            return False
        self._recent_losses.append(step.loss)
        if (
            step.iteration >= self.warmup
            and len(self._recent_losses) == LOSS_WINDOW
            and sum(self._recent_losses) / LOSS_WINDOW < self.loss_floor
        ):
            self.reason = "noise floor"
            return True
        return False


class WindowedVariance(Detector):
    """ES-WMV: VAR_t = (1/W) sum_i (1/N) ||x_i - mean||^2 over the last W iterates, in O(N) per step.

    A ring buffer holds the window (on the iterates' device); running float64 sums of the iterates and of their
    squared norms are updated by adding the newest and subtracting the one that leaves, so the cost per step
    does not grow with W. float64 keeps the subtraction S2 - |S1|^2 / W from cancelling to noise.
    """

    name = "windowed-variance"
    _state_fields = ("_buffer", "_sum", "_sum_squares", "_count")

    def __init__(
        self, window: int = 100, patience: int = 1000, warmup: int = 500, loss_floor: float | None = None
    ) -> None:
        super().__init__(patience, warmup, loss_floor)
        self.window = window
        self._buffer: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None
        self._sum_squares = torch.zeros((), dtype=torch.float64)
        self._count = 0

    def push(self, x: torch.Tensor) -> float:
        """Adds one iterate; returns the window variance, NaN until the window is full."""
        flat = x.detach().reshape(-1)
        if self._buffer is None:
            self._buffer = torch.empty((self.window, flat.numel()), dtype=flat.dtype, device=flat.device)
            self._sum = torch.zeros(flat.numel(), dtype=torch.float64, device=flat.device)
            self._sum_squares = self._sum_squares.to(flat.device)
        slot = self._count % self.window
        new = flat.double()
        if self._count >= self.window:
            old = self._buffer[slot].double()
            self._sum -= old
            self._sum_squares -= old.square().sum()
        self._buffer[slot] = flat
        self._sum += new
        self._sum_squares += new.square().sum()
        self._count += 1
        if self._count < self.window:
            return math.nan
        n = flat.numel()
        total = self._sum_squares - self._sum.square().sum() / self.window
        return max(total.item(), 0.0) / (self.window * n)


class ExponentialVariance(Detector):
    """ES-EMV: an exponential moving mean and variance (weight alpha) instead of a window; memory 2N."""

    name = "exponential-variance"
    _state_fields = ("_mean", "_variance")

    def __init__(
        self, alpha: float = 0.1, patience: int = 1000, warmup: int = 500, loss_floor: float | None = None
    ) -> None:
        super().__init__(patience, warmup, loss_floor)
        self.alpha = alpha
        self._mean: torch.Tensor | None = None
        self._variance: torch.Tensor | None = None

    def push(self, x: torch.Tensor) -> float:
        flat = x.detach().reshape(-1).double()
        if self._mean is None:
            self._mean, self._variance = flat.clone(), torch.zeros_like(flat)
            return math.nan
        # West's incremental form of the exponentially weighted mean and variance.
        delta = flat - self._mean
        self._mean += self.alpha * delta
        self._variance = (1 - self.alpha) * (self._variance + self.alpha * delta.square())
        return self._variance.mean().item()


class AverageSpread(Detector):
    """The spread of the iterates around their running average: S_t = (1/W) sum_i (1/N) ||x_i - m_(i-1)||^2 over the
    last W steps, where m_i = w m_(i-1) + (1 - w) x_i is the exponential average with the fit's own weight w.

    What a fit that averages returns is m, not the raw iterates, and m peaks later than they do: under strong noise
    the raw iterates already wander while the average is still improving (traced at 64 px, sigma 50: the average
    peaked 100-250 steps after them). ES-WMV's variance of the raw iterates times their turn and so returned the
    average too early, often at the warm-up's edge; measured around the average instead, the minimum lies closer to
    the average's own peak (README, "Does automatic stopping find the right iterate?"). It also needs one image of
    memory where the window of iterates needs W.
    """

    name = "average-spread"
    _state_fields = ("_mean", "_deviations")

    def __init__(
        self,
        window: int = 100,
        weight: float = 0.99,
        patience: int = 1000,
        warmup: int = 500,
        loss_floor: float | None = None,
    ) -> None:
        super().__init__(patience, warmup, loss_floor)
        self.window, self.weight = window, weight
        self._mean: torch.Tensor | None = None
        self._deviations: list[float] = []  # the last W mean squared deviations

    def push(self, x: torch.Tensor) -> float:
        """Adds one iterate; returns the window's mean deviation, NaN until W deviations exist."""
        x = x.detach()
        if self._mean is None:
            self._mean = x.clone()
            return math.nan
        deviation = (x - self._mean).double().square().mean().item()
        # the fit's own expression for its average, so that with the same weight the two are the same tensor
        self._mean = self._mean * self.weight + x * (1 - self.weight)
        self._deviations = [*self._deviations[1 - self.window :], deviation]
        if len(self._deviations) < self.window:
            return math.nan
        return sum(self._deviations) / self.window


def noise_variance(y: torch.Tensor) -> float:
    """The variance of white noise in a (1, C, H, W) image, estimated from its finest wavelet details
    (scikit-image's median-absolute-deviation estimate, averaged over channels). Texture reads as noise, so
    on busy images it overestimates (zebra at 64 px: about 1.8x)."""
    # Imported here, as dip.metrics imports SSIM: scikit-image and PyWavelets add about 60 MiB to a process
    # that never estimates a noise level (a fit from Python without restore(), the speed benchmark).
    from skimage.restoration import estimate_sigma

    pixels = y[0].detach().cpu().permute(1, 2, 0).double().numpy()
    return float(estimate_sigma(np.ascontiguousarray(pixels), channel_axis=-1, average_sigmas=True)) ** 2


def make_detector(
    cfg: StopConfig, noise: float | None = None, average: float | None = None
) -> WindowedVariance | ExponentialVariance | AverageSpread | None:
    """The configured detector; ``noise``, the input's noise variance where the loss models it, arms the
    noise floor (StopConfig.noise_floor); ``average``, the fit's output-average weight (FitConfig.average), is the
    weight of the average the spread is measured around (0.99, the paper's, when the fit returns raw iterates)."""
    rule = cfg.resolved_rule
    if rule == "off":
        return None
    floor = cfg.noise_floor * noise if noise is not None and cfg.noise_floor > 0 else None
    if rule == "wmv":
        return WindowedVariance(cfg.window, cfg.patience, cfg.warmup, floor)
    if rule == "spread":
        return AverageSpread(cfg.window, average or DEFAULT_SPREAD_WEIGHT, cfg.patience, cfg.warmup, floor)
    return ExponentialVariance(cfg.alpha, cfg.patience, cfg.warmup, floor)
