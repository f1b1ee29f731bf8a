"""Frozen settings for the net and the fit, and the named presets.

Imports nothing heavy: the CLI reads these to build ``--help`` without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum

from .errors import UsageError


class Task(str, Enum):
    denoise = "denoise"
    inpaint = "inpaint"
    jpeg = "jpeg"
    sr = "sr"  # super-resolution, by an integer factor
    deblur = "deblur"  # a known blur


class Loss(str, Enum):
    l2 = "l2"
    l1 = "l1"


def _per_scale(value, n_scales: int, name: str) -> tuple[int, ...]:
    """A single int means the same at every scale; a sequence must name every scale."""
    if isinstance(value, int):
        return (value,) * n_scales
    value = tuple(int(v) for v in value)
    if len(value) != n_scales:
        raise UsageError(f"{name} has {len(value)} entries but the net has {n_scales} scales; give one per scale")
    return value


@dataclass(frozen=True)
class NetConfig:
    """The encoder-decoder with skip connections of Ulyanov et al.; each field is one choice of the paper's code.

    Channel and kernel fields take one int for every scale or a tuple with one entry per scale (finest first).
    """

    scales: int = 5
    channels_down: tuple[int, ...] | int = 128
    channels_up: tuple[int, ...] | int = 128
    channels_skip: tuple[int, ...] | int = 4
    kernel_down: tuple[int, ...] | int = 3
    kernel_up: tuple[int, ...] | int = 3
    kernel_skip: int = 1
    upsample: str = "bilinear"  # or "nearest"
    input_depth: int = 32
    input_scale: float = 0.1  # z ~ U(0, 1) * input_scale, drawn once per run
    extra_1x1_up: bool = True  # the paper's need1x1_up: a 1x1 conv after every decoder 3x3 conv
    out_channels: int | None = None  # None: the image's channel count

    def __post_init__(self) -> None:
        if not 1 <= self.scales <= 10:
            raise UsageError(f"scales must be between 1 and 10, not {self.scales}")
        for name in ("channels_down", "channels_up", "channels_skip", "kernel_down", "kernel_up"):
            object.__setattr__(self, name, _per_scale(getattr(self, name), self.scales, name))
        if min(self.channels_down) < 1 or min(self.channels_up) < 1 or min(self.channels_skip) < 0:
            raise UsageError("channel counts must be positive (skip channels may be 0: no skip at that scale)")
        if any(k < 1 or k % 2 == 0 for k in (*self.kernel_down, *self.kernel_up, self.kernel_skip)):
            raise UsageError("kernel sizes must be odd and positive, so that padding keeps the size")
        if self.upsample not in ("bilinear", "nearest"):
            raise UsageError(f"upsample must be 'bilinear' or 'nearest', not {self.upsample!r}")
        if self.input_depth < 1 or self.input_scale <= 0:
            raise UsageError("input_depth must be >= 1 and input_scale > 0")

    @property
    def size_multiple(self) -> int:
        """Height and width are padded to a multiple of this so every stride-2 level halves exactly."""
        return 2**self.scales


PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine")
# Steps between host reads of the loss on a GPU (FitConfig.sync_every = 0): enough to keep the device busy while
# the host queues; each step of a block keeps its iterate and average until the read, so memory grows with it.
DEVICE_SYNC_EVERY = 16


@dataclass(frozen=True)
class FitConfig:
    """How the net is fitted: optimiser, input jitter, output averaging, divergence guard."""

    iterations: int = 3000
    lr: float = 0.01
    # "cosine": lr rises linearly over lr_warmup steps, then falls along a half cosine to lr * lr_floor at the
    # last step (iterations, or the stopping cap): a large step early, small steps near the end, where the
    # output average settles. "constant" keeps lr (halved only by the divergence guard).
    lr_schedule: str = "constant"
    lr_warmup: int = 0
    lr_floor: float = 0.05
    reg_noise_std: float = 1.0 / 30.0  # fresh perturbation of z at every step; 0 turns it off
    loss: Loss = Loss.l2
    # Exponential average of the iterates (the paper's exp_weight); None writes the raw iterate.
    average: float | None = 0.99
    # Divergence guard: a loss this many times its running average (or non-finite) rolls back and halves lr.
    jump_factor: float = 4.0
    max_rollbacks: int = 8
    guard_every: int = 25  # how often the last good state is copied
    # How the steps are computed; the maths stay the same (see benchmarks/speed.py for what each one gives).
    precision: str = "fp32"  # or "bf16": autocast of the net's forward; the loss and the optimiser stay fp32
    channels_last: bool = False  # NHWC memory layout for the net and its input
    compile: bool = False  # torch.compile the net's forward
    # Adam's fused kernel: the same update in one pass over all weights instead of a dozen small ops per tensor.
    # On the light net at 128 px (112 tensors) it cut Adam from 4.7 to 0.65 ms of a ~60 ms step on this CPU; off
    # for the older presets, whose results it would change in the last bits.
    fused_adam: bool = False
    # Steps between reads of the loss on the host. Each read waits for the device to finish, so a GPU idles while
    # the host queues the next step; reading k losses at once lets k steps queue back to back. 0 = by device: 1 on
    # the CPU (a read costs nothing there), DEVICE_SYNC_EVERY elsewhere. Results are the same for every value
    # unless the divergence guard rolls back (the steps after the bad one in its block are then thrown away).
    sync_every: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        try:
            object.__setattr__(self, "loss", Loss(self.loss))
        except ValueError:
            raise UsageError(f"loss must be l1 or l2, not {self.loss!r}") from None
        if self.iterations < 1:
            raise UsageError(f"iterations must be at least 1, not {self.iterations}")
        if not self.lr > 0:
            raise UsageError(f"learning rate must be positive, not {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {self.lr_schedule!r}")
        if self.lr_warmup < 0 or not 0 <= self.lr_floor <= 1:
            raise UsageError("lr_warmup must be >= 0 and lr_floor in [0, 1]")
        if self.reg_noise_std < 0:
            raise UsageError("reg_noise_std must be >= 0")
        if self.average is not None and not 0 < self.average < 1:
            raise UsageError(f"average must be in (0, 1) or None, not {self.average}")
        if self.jump_factor <= 1 or self.max_rollbacks < 0 or self.guard_every < 1:
            raise UsageError("jump_factor must be > 1, max_rollbacks >= 0, guard_every >= 1")
        if self.sync_every < 0:
            raise UsageError(f"sync_every must be >= 0 (0 = by device), not {self.sync_every}")

    def lr_factor(self, iteration: int) -> float:
        """The schedule's multiple of ``lr`` at 1-based ``iteration``."""
        if self.lr_schedule == "constant":
            return 1.0
        rise = min(1.0, iteration / self.lr_warmup) if self.lr_warmup else 1.0
        progress = min(1.0, (iteration - 1) / max(1, self.iterations - 1))
        return rise * (self.lr_floor + (1 - self.lr_floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def sync_interval(self, device_type: str) -> int:
        if self.sync_every:
            return self.sync_every
        return 1 if device_type == "cpu" else DEVICE_SYNC_EVERY


STOP_RULES = ("auto", "spread", "wmv", "emv", "off")


@dataclass(frozen=True)
class StopConfig:
    """Automatic early stopping (see dip/stopping.py): which detector, and its window, patience and warm-up."""

    rule: str = "auto"  # auto = spread; given as an override, auto keeps the preset's own rule
    cap: int = 6000  # the most steps a run takes while stopping is on (--iters overrides it)
    window: int = 100  # W: steps in the window (the iterates' variance for wmv, their spread for spread)
    patience: int = 1000  # P: steps without a new minimum before stopping
    warmup: int = 500  # no minimum is recorded before this step: early plateaus are false minima
    alpha: float = 0.1  # emv's smoothing weight
    # Morozov's discrepancy principle, for noise the L2 loss models (denoising, no mask): once the mean loss of
    # the last steps falls below this fraction of the noise variance estimated from the input, the net is
    # reproducing the noise, so the run stops there with the best iterate so far. 0 turns it off. At the peak
    # the loss was 0.80-1.00 of the estimate in the tuning runs, 0.55-0.80 on zebra, whose stripes read partly
    # as noise (README, "Does automatic stopping...").
    noise_floor: float = 0.8
    # Steps added to the cap (and to the fixed count, with stopping off) per doubling of the fit's side beyond
    # GROWTH_FROM pixels: a larger image takes more steps to the same PSNR. See grown(); --iters turns it off.
    cap_growth: int = 0

    def __post_init__(self) -> None:
        if self.rule not in STOP_RULES:
            raise UsageError(f"unknown stopping rule {self.rule!r}; choose one of: {', '.join(STOP_RULES)}")
        if self.cap < 1:
            raise UsageError(f"the iteration cap must be at least 1, not {self.cap}")
        if self.window < 2:
            raise UsageError(f"--window must be at least 2, not {self.window}")
        if self.patience < 1:
            raise UsageError(f"--patience must be at least 1, not {self.patience}")
        if self.warmup < 0:
            raise UsageError(f"the warm-up must be >= 0, not {self.warmup}")
        if not 0 < self.alpha < 1:
            raise UsageError(f"alpha must be in (0, 1), not {self.alpha}")
        if not 0 <= self.noise_floor < 1:
            raise UsageError(f"the noise floor must be in [0, 1) (0 = off), not {self.noise_floor}")
        if self.cap_growth < 0:
            raise UsageError(f"cap_growth must be >= 0, not {self.cap_growth}")

    @property
    def resolved_rule(self) -> str:
        return "spread" if self.rule == "auto" else self.rule


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    net: NetConfig = field(default_factory=NetConfig)
    fit: FitConfig = field(default_factory=FitConfig)  # fit.iterations: the fixed count when stopping is off
    stop: StopConfig = field(default_factory=StopConfig)
    # Gaussian denoising ends with dip.denoise.finish, a collaborative Wiener filter with the net's image in its
    # pilot: +1.2 dB at 128 px, sigma 25 (README, "Denoising"); a JPEG file's restoration with dip.jpeg.finish,
    # the same filter between two projections onto the file's quantisation intervals.
    wiener: bool = False


# The paper's per-task settings, from the reference notebooks (see ../shared/data/README.md). Their detector stays
# ES-WMV with its published window, patience and warm-up: the spread around the average that the light presets use
# was chosen on the light nets at 64 and 128 px, and the paper nets have not been traced yet (that needs a GPU).
PAPER_STOP = StopConfig(rule="wmv")
PAPER_DENOISE = Preset(
    "paper-denoise",
    "the paper's denoising net: 5 scales x 128 ch, 4 skip ch, 32-ch input, 3000 steps, output averaging",
    NetConfig(scales=5, channels_down=128, channels_up=128, channels_skip=4, input_depth=32),
    FitConfig(iterations=3000, lr=0.01, reg_noise_std=1 / 30, average=0.99),
    replace(PAPER_STOP, cap=6000),
    wiener=True,
)
PAPER_JPEG = Preset(
    "paper-jpeg",
    "the paper's JPEG net: 8->128 ch, skip [0,0,0,4,4], 3-ch input, 2400 steps, output averaging",
    NetConfig(
        scales=5,
        channels_down=(8, 16, 32, 64, 128),
        channels_up=(8, 16, 32, 64, 128),
        channels_skip=(0, 0, 0, 4, 4),
        input_depth=3,
    ),
    FitConfig(iterations=2400, lr=0.01, reg_noise_std=1 / 30, average=0.99),
    replace(PAPER_STOP, cap=6000),
    wiener=True,
)
PAPER_INPAINT = Preset(
    "paper-inpaint",
    "the paper's text-inpainting net: 5 x 128 ch with 128 skip ch, nearest upsampling, 6000 steps",
    NetConfig(scales=5, channels_down=128, channels_up=128, channels_skip=128, upsample="nearest", input_depth=32),
    FitConfig(iterations=6000, lr=0.01, reg_noise_std=0.03, average=None),
    replace(PAPER_STOP, cap=12000),
)
# Pixels missing here and there (the paper's Barbara, 50 % dropped at random) rather than in strokes or holes: the
# paper's restoration notebook fills them with its denoising net (few skip channels, bilinear upsampling) and a
# slow learning rate, not with the wide-skip net of its text inpainting. Not yet measured here (needs a GPU).
PAPER_SCATTERED = Preset(
    "paper-scattered",
    "the paper's net for scattered missing pixels (Barbara): 5 x 128 ch, 4 skip ch, lr 0.001, 11000 steps",
    NetConfig(scales=5, channels_down=128, channels_up=128, channels_skip=4, input_depth=32),
    FitConfig(iterations=11000, lr=0.001, reg_noise_std=0.03, average=None),
    replace(PAPER_STOP, cap=22000),
)
# Chosen on the early-stopping benchmark's tuning traces (60 cases at 64 px, 20 at 128 px, textured images and
# strong noise among them; README "Does automatic stopping find the right iterate?"). The spread around the
# average replaced the raw iterates' windowed variance (W 200, patience 500), whose minimum fell at the warm-up's
# edge under strong noise and returned the average 100-1560 steps before its peak (128 px: 80 % of cases within
# 1 dB of the peak, worst 2.58 dB; the spread: 95 %, worst 1.44). A 200-step window beat 50 and 100 at 128 px;
# patience 300 returned the same images as 400 and 500, sooner; the warm-up (200-400 alike) keeps the first,
# fast-falling stretch of the curve out; the 2000-step cap keeps slowly converging nets from drifting past their
# peak.
LIGHT_STOP = StopConfig(rule="spread", cap=2000, window=200, patience=300, warmup=300)
# A narrow net for CPUs: the paper's nets need about 2 s a step at 256 px on two cores. Measured against the
# paper's presets (README, "How fast is it?"): equal PSNR at 64 px; on F16 at 256 px 9.2x sooner than the
# paper preset and 0.52 dB lower, 3.3-4.4x faster to equal PSNR; still improving at its 2000-step cap there.
LIGHT_DENOISE = Preset(
    "light-denoise",
    "CPU: 5 scales x 32 ch, 4 skip ch, 16-ch input, 1200 steps (--stop off), output averaging",
    NetConfig(scales=5, channels_down=32, channels_up=32, channels_skip=4, input_depth=16),
    FitConfig(iterations=1200, lr=0.01, reg_noise_std=1 / 30, average=0.99),
    LIGHT_STOP,
    wiener=True,
)
LIGHT_JPEG = Preset(
    "light-jpeg",
    "CPU: the paper's JPEG net, narrower (8->64 ch), 1200 steps (--stop off), output averaging",
    NetConfig(
        scales=5,
        channels_down=(8, 16, 32, 64, 64),
        channels_up=(8, 16, 32, 64, 64),
        channels_skip=(0, 0, 0, 4, 4),
        input_depth=3,
    ),
    FitConfig(iterations=1200, lr=0.01, reg_noise_std=1 / 30, average=0.99),
    LIGHT_STOP,
    wiener=True,
)
LIGHT_INPAINT = Preset(
    "light-inpaint",
    "CPU: 5 scales x 32 ch with 32 skip ch, nearest upsampling, 2000 steps (--stop off), output averaging",
    NetConfig(scales=5, channels_down=32, channels_up=32, channels_skip=32, upsample="nearest", input_depth=16),
    # Unlike the paper's inpainting, with output averaging: it returned the better image in 5 of the 6
    # inpainting cases of benchmarks/early_stopping.py (64 px, light nets; see README).
    FitConfig(iterations=2000, lr=0.01, reg_noise_std=0.03, average=0.99),
    LIGHT_STOP,
)
# The light denoising net for scattered missing pixels, by name only: at 64 px with 50 % missing it beat
# light-inpaint on 8 of 9 images (+0.76 dB mean), but at 256 px it lost on both images tried (F16 -1.26, Barbara
# -0.55 dB; both nets still improving at the 2000-step cap), so "light" keeps light-inpaint for every mask.
LIGHT_SCATTERED = Preset(
    "light-scattered",
    "CPU: the light denoising net for scattered missing pixels (better on small images only), 2000 steps",
    LIGHT_DENOISE.net,
    FitConfig(iterations=2000, lr=0.01, reg_noise_std=0.03, average=0.99),
    LIGHT_STOP,
)

# The CPU default (issue 20): the light nets, fitted in far fewer steps. Chosen with benchmarks/fast_candidates.py
# on the tuning images (astronaut, coffee, F16, chelsea) at 128 px and F16 at 256 px, sigma 25 (README, "Faster
# on a CPU"). A cosine learning-rate schedule lets the output average settle by the cap instead of drifting;
# lr 0.08 (0.04 rose slower, 0.16 and 0.12 no better); a 200-step warm-up (30 lost 1-1.4 dB, 100 lost 0.14 on
# astronaut); input jitter 0.025 instead of 1/30 (1/30 had not settled by 1000 steps; 0.015-0.02 and none
# peaked sooner but lower). A larger constant lr alone was slower to rise than 0.01. Adam's fused kernel: the
# same update, cheaper. With these, 700 steps at 128 px came within 0.2 dB of the light presets' 2000.
FAST_SCHEDULE = {"lr": 0.08, "lr_schedule": "cosine", "lr_warmup": 200, "reg_noise_std": 0.025, "fused_adam": True}
# Settled by the cap, the spread detector seldom fires; the noise floor is what stops a smooth image (chelsea
# peaked at step 427 of 1000) before the net reproduces the noise. At the peak the loss was 0.96-1.03 of the
# noise estimate on the tuning images, so the floor is 0.95 rather than the light presets' 0.8 (which returned
# chelsea 150 steps past its peak). The cap is the schedule's length: 700 steps at 128 px; at 256 px (F16) 1000
# steps reached 29.93 dB, the light preset's 2000 29.86, hence 300 more per doubling of the side.
FAST_STOP = replace(LIGHT_STOP, cap=700, noise_floor=0.95, cap_growth=300)

def _fast(light: Preset, net_name: str) -> Preset:
    """The light preset's net on the fast schedule."""
    return Preset(
        light.name.replace("light", "fast"),
        f"CPU: the light {net_name} net, lr 0.08 on a cosine schedule, jitter 0.025, 700 steps at 128 px, "
        "+300 a doubling",
        light.net,
        replace(light.fit, iterations=FAST_STOP.cap, **FAST_SCHEDULE),
        FAST_STOP,
        light.wiener,
    )


FAST_DENOISE = _fast(LIGHT_DENOISE, "denoising")
# JPEG: the net's image is the pilot of dip.jpeg.finish, which decides most of the result: at 128 px, q 10 and 20, a
# 400-step schedule did as well as 700 (+0.07 dB at q 10, level at q 20, four tuning images) in 60 % of the time,
# and two restarts averaged added 0.01-0.03 dB for twice the time (README, "JPEG artifacts").
FAST_JPEG_STEPS = 400
FAST_JPEG = replace(
    _fast(LIGHT_JPEG, "JPEG"),
    description="CPU: the light JPEG net, lr 0.08 on a cosine schedule, jitter 0.025, 400 steps at 128 px, "
    "+300 a doubling",
    fit=replace(_fast(LIGHT_JPEG, "JPEG").fit, iterations=FAST_JPEG_STEPS),
    stop=replace(FAST_STOP, cap=FAST_JPEG_STEPS),
)
FAST_INPAINT = _fast(LIGHT_INPAINT, "inpainting")

# The paper's super-resolution notebook: its denoising net, no output averaging, a fixed count (2000 steps for x4,
# 4000 for x8) and the last iterate; more input jitter for the larger factor. It never stops early.
PAPER_SR = Preset(
    "paper-sr",
    "the paper's super-resolution (x2-x4): the denoising net, lr 0.01, jitter 0.03, 2000 steps, the last iterate",
    PAPER_DENOISE.net,
    FitConfig(iterations=2000, lr=0.01, reg_noise_std=0.03, average=None),
    replace(PAPER_STOP, rule="off", cap=4000),
)
PAPER_SR8 = replace(
    PAPER_SR,
    name="paper-sr8",
    description="the paper's super-resolution x8: the denoising net, lr 0.01, jitter 0.05, 4000 steps, last iterate",
    fit=replace(PAPER_SR.fit, iterations=4000, reg_noise_std=0.05),
    stop=replace(PAPER_SR.stop, cap=8000),
)
# The paper has no deblurring notebook; its denoising setting, as the closest of its own.
PAPER_DEBLUR = Preset(
    "paper-deblur",
    "the paper's denoising net and setting for a known blur: 3000 steps, output averaging",
    PAPER_DENOISE.net,
    PAPER_DENOISE.fit,
    replace(PAPER_STOP, cap=6000),
)
LIGHT_SR = Preset(
    "light-sr",
    "CPU: the light denoising net for super-resolution, jitter 0.03, 2000 steps, output averaging",
    LIGHT_DENOISE.net,
    FitConfig(iterations=2000, lr=0.01, reg_noise_std=0.03, average=0.99),
    replace(LIGHT_STOP, rule="off"),
)
# Deblurring converges slowly: at 64 px with gaussian:2 (noise sigma 2) the output average was still rising at 5000
# steps on astronaut and chelsea, and passed scikit-image's Richardson-Lucy only after 2000-3000 (motion:9,30 passed
# it by 500); lr 0.02 and less input jitter (0.01, 0) were no faster to 3000 steps. Hence many steps, a fixed count.
LIGHT_DEBLUR = Preset(
    "light-deblur",
    "CPU: the light denoising net for a known blur, 5000 steps, output averaging",
    LIGHT_DENOISE.net,
    FitConfig(iterations=5000, lr=0.01, reg_noise_std=1 / 30, average=0.99),
    replace(LIGHT_STOP, rule="off", cap=5000),
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        PAPER_DENOISE,
        PAPER_JPEG,
        PAPER_INPAINT,
        PAPER_SCATTERED,
        PAPER_SR,
        PAPER_SR8,
        PAPER_DEBLUR,
        LIGHT_DENOISE,
        LIGHT_JPEG,
        LIGHT_INPAINT,
        LIGHT_SCATTERED,
        LIGHT_SR,
        LIGHT_DEBLUR,
        FAST_DENOISE,
        FAST_JPEG,
        FAST_INPAINT,
    )
}
# Short names pick the variant that fits the task: "paper" + inpaint -> "paper-inpaint".
PRESET_FAMILIES = ("auto", "paper", "light", "fast")
# Tasks the fast schedule has not been measured on keep the light presets' settings under "fast".
FAST_TASKS = (Task.denoise, Task.jpeg, Task.inpaint)


NOISES = ("auto", "gaussian", "poisson", "impulse")  # see dip.denoise

# px^2: below this fit area (a small image, tile or window) auto takes the light presets on a CPU, not the fast
# ones; and for any noise but Gaussian (issue 26: at 64 px the fast presets' peak was 1.7 dB lower on Gaussian,
# photon and impulse noise; on impulses they ran to their cap with the peak at 320-390 steps).
FAST_FROM_AREA = 128 * 128


def resolve_preset(
    name: str,
    task: Task,
    device_type: str,
    *,
    scattered_mask: bool = False,
    scale: int | None = None,
    noise: str = "gaussian",
    area: int | None = None,
) -> Preset:
    """``auto`` takes the paper's net on a GPU; on a CPU the fast presets for Gaussian noise (or no noise) on fits
    of at least FAST_FROM_AREA pixels (``area``: the largest fit's; None: large), the light ones otherwise. A
    family name picks by task, and
    "paper" for inpainting also by the mask: ``scattered_mask`` (see dip.degradations.is_scattered) takes
    paper-scattered, the net of the paper's own Barbara run; for super-resolution by 8, paper-sr8. "fast" is the
    light nets on a shorter schedule; for super-resolution and deblurring it is the light presets themselves."""
    task = Task(task)
    if name == "auto" and device_type == "cuda":
        name = "paper"
    elif name == "auto":
        small = area is not None and area < FAST_FROM_AREA
        name = "light" if small or noise != "gaussian" else "fast"
    if name == "fast" and task not in FAST_TASKS:
        name = "light"
    if name == "paper" and task is Task.inpaint and scattered_mask:
        name = "paper-scattered"
    elif name == "paper" and task is Task.sr and scale == 8:
        name = "paper-sr8"
    elif name in ("paper", "light", "fast"):
        name = f"{name}-{task.value}"
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join([*PRESET_FAMILIES, *PRESETS])
        raise UsageError(f"unknown preset {name!r}; choose one of: {known}") from None


GROWTH_FROM = 128  # px: the side up to which StopConfig.cap_growth adds nothing
GROWN_AT_MOST = 3000  # the paper's own count


def grown(preset: Preset, height: int, width: int) -> Preset:
    """The preset with its step count grown for a fit of ``height`` x ``width`` restored pixels: cap_growth steps
    per doubling of the side (the square root of the area) beyond GROWTH_FROM, in steps of 50."""
    growth, side = preset.stop.cap_growth, math.sqrt(height * width)
    if not growth or side <= GROWTH_FROM:
        return preset
    steps = min(preset.fit.iterations + round(growth * math.log2(side / GROWTH_FROM) / 50) * 50, GROWN_AT_MOST)
    return replace(preset, fit=replace(preset.fit, iterations=steps), stop=replace(preset.stop, cap=steps))


def _given(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class Overrides:
    """The command line's explicit choices for the fit, one value for a whole command: applied to whichever preset
    each image gets. None keeps the preset's value. Checked here, once, before any image is read.

    ``iterations`` is the exact step count when stopping is off and the cap when it is on.
    """

    iterations: int | None = None
    lr: float | None = None
    loss: Loss | str | None = None
    stop: str | None = None
    window: int | None = None
    patience: int | None = None
    noise_floor: float | None = None
    wiener: bool | None = None  # False: no collaborative filter (dip.denoise, dip.jpeg) after the fit
    noise: str = "auto"  # denoising's noise model, one of NOISES (auto: impulse if the input shows them)
    sigma: float | None = None  # the noise's standard deviation on the 0-255 scale (None: estimated)

    def __post_init__(self) -> None:
        if self.iterations is not None and self.iterations < 1:
            raise UsageError(f"--iters must be at least 1, not {self.iterations}")
        if self.lr is not None and not self.lr > 0:
            raise UsageError(f"--lr must be positive, not {self.lr}")
        if self.loss is not None and self.loss not in ("l1", "l2"):
            raise UsageError(f"--loss must be l1 or l2, not {self.loss!r}")
        if self.stop is not None and self.stop not in STOP_RULES:
            raise UsageError(f"--stop must be one of {', '.join(STOP_RULES)}, not {self.stop!r}")
        if self.noise_floor is not None and not 0 <= self.noise_floor < 1:
            raise UsageError(f"--noise-floor must be in [0, 1) (0 = off), not {self.noise_floor}")
        if self.noise not in NOISES:
            raise UsageError(f"--noise must be one of {', '.join(NOISES)}, not {self.noise!r}")
        if self.sigma is not None and not 0 < self.sigma < 255:
            raise UsageError(
                f"--sigma is the noise's standard deviation on the 0-255 scale, in (0, 255), not {self.sigma}"
            )
        for name, value, least in (("--window", self.window, 2), ("--patience", self.patience, 1)):
            if value is not None and value < least:
                raise UsageError(f"{name} must be at least {least}, not {value}")

    def apply(self, preset: Preset) -> Preset:
        """The preset with these choices applied. Its fit.iterations becomes the number of steps actually asked of
        the fit: the count when stopping is off, the cap when it is on."""
        rule = None if self.stop == "auto" else self.stop  # auto: the rule the preset was measured with
        stop_cfg = replace(
            preset.stop,
            **_given(
                rule=rule, window=self.window, patience=self.patience, noise_floor=self.noise_floor, cap=self.iterations
            ),
        )
        steps = preset.fit.iterations if stop_cfg.resolved_rule == "off" else stop_cfg.cap
        fit_cfg = replace(preset.fit, **_given(iterations=self.iterations or steps, lr=self.lr, loss=self.loss))
        if self.iterations:  # the count asked for is the count run, whatever the image's size
            stop_cfg = replace(stop_cfg, cap_growth=0)
        return replace(preset, fit=fit_cfg, stop=stop_cfg, **_given(wiener=self.wiener))


NO_OVERRIDES = Overrides()  # every preset value kept
