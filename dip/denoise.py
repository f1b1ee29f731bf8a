"""The noise in an image dip denoises, and the collaborative filter that finishes a fit on Gaussian noise.
Its functions take a dip.pipeline.Plan (the pipeline imports this module, so the type is not imported here).

Which noise decides the loss and the preset (see dip.config.resolve_preset): impulses (salt and pepper) are fitted
with L1, which a pixel that is wholly wrong cannot pull far; Gaussian and photon (Poisson) noise with L2. Gaussian
noise then gets a second stage: the net's image and a hard-thresholded estimate of the noisy image together are
the pilot of a collaborative Wiener filter (dip.wiener, BM3D's second stage). The net's errors and the
thresholding's differ (the net blurs fine texture, thresholding leaves ringing in flat parts), so their mean is a
better pilot than either, and the filter, reading the noisy image again, puts back the detail the net had not
fitted. Measured choices are in the README's denoising section.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
import torch.nn.functional as F

from .config import NOISES, Loss, Task
from .errors import UsageError
from .metrics import psnr, ssim
from .stopping import noise_variance
from .wiener import collaborative_wiener

# Share of pixels that are impulses (black or white and far from their neighbourhood's median) above which auto
# takes the noise for salt and pepper: 1 % of impulses is already visible, and on clean and Gaussian-noisy
# photographs (clipped highlights and shadows included) the share was below 0.1 %.
IMPULSE_SHARE = 0.01
_IMPULSE_DISTANCE = 0.25  # how far from the 3 x 3 median an extreme pixel must be to count as an impulse
_IMPULSE_RATIO = 3.0  # how many times commoner than other outliers the extreme ones must be
# The filter's settings, chosen at 128 px on the nine tuning photographs at sigma 25 (README): matched groups of up
# to 16 patches, and two passes, the second with the first's output as its pilot.
_GROUP = 16
_PASSES = 2
_SMALLEST = 16  # px
_LEAST_SIGMA = 0.5 / 255  # below half a grey level, no noise worth filtering
_HARD_MATCH = 2500.0  # BM3D's matching threshold for its hard-thresholding stage (0-255 scale)


def impulse_share(y: torch.Tensor) -> float:
    """The share of the pixels of a (1, C, H, W) image in [0, 1] that look like impulses: black or white and far
    from their 3 x 3 median, where such outliers are no rarer among the other pixels (Gaussian or photon noise
    clipped at black and white makes them too, but as a few of many outliers); 0 where they are."""
    padded = F.pad(y.float(), (1, 1, 1, 1), mode="replicate")
    median = padded.unfold(2, 3, 1).unfold(3, 3, 1).reshape(*y.shape, 9).median(dim=-1).values
    extreme = (y <= 0.0) | (y >= 1.0)
    outlier = (y - median).abs() > _IMPULSE_DISTANCE
    impulses = float((extreme & outlier).float().mean())
    others = float((~extreme & outlier).float().mean())
    return impulses if impulses > _IMPULSE_RATIO * others else 0.0


def choose_noise(noise: str, task: Task, y: torch.Tensor) -> str:
    """The noise model of a run: ``noise`` as given, or for auto, impulse where the input shows impulses and
    Gaussian elsewhere (photon noise is not told from Gaussian by its look: a user names it). Only denoising
    models a noise; other tasks get "gaussian", which changes nothing for them."""
    if noise not in NOISES:  # Overrides checks the command line's; this is the library's own call
        raise UsageError(f"noise must be one of {', '.join(NOISES)}, not {noise!r}")
    task = Task(task)
    if task is not Task.denoise:
        if noise != "auto":
            raise UsageError(f"--noise models the noise of a denoising run; this run's task is {task.value}")
        return "gaussian"
    if noise == "auto":
        return "impulse" if impulse_share(y) > IMPULSE_SHARE else "gaussian"
    return noise


def sigma_of(plan) -> float:
    """The noise's standard deviation on the 0-1 scale: the user's, or estimated from the input."""
    if plan.sigma is not None:
        return plan.sigma / 255.0
    variance = noise_variance(plan.observation.y)
    return variance**0.5 if math.isfinite(variance) else 0.0  # NaN: a flat image, where no noise is seen


def noise_floor_variance(plan) -> float | None:
    """The input's noise variance where the loss models the corruption as white noise (denoising with L2 of the
    image itself), for the detector's noise floor; None elsewhere (JPEG blocks, impulses, holes are not such
    noise)."""
    preset = plan.preset
    if plan.task is not Task.denoise or plan.observation.operator.known is not None or preset.fit.loss is not Loss.l2:
        return None
    if preset.stop.resolved_rule == "off" or preset.stop.noise_floor == 0:
        return None
    return sigma_of(plan) ** 2


def refines(plan) -> bool:
    """Whether the run ends with the collaborative filter: Gaussian noise, fitted with L2, the preset's choice, on
    an image of at least two patches each way (a thinner one has too few patches to match)."""
    return (
        min(plan.observation.y.shape[-2:]) >= _SMALLEST
        and plan.task is Task.denoise
        and plan.noise == "gaussian"
        and plan.preset.wiener
        and plan.preset.fit.loss is Loss.l2
        and plan.observation.operator.known is None
    )


def finish(noisy: torch.Tensor, fitted: torch.Tensor, sigma: float) -> torch.Tensor:
    """The final image from the noisy one and the net's (both C x H x W in [0, 1]) at noise level ``sigma``."""
    if not sigma > _LEAST_SIGMA:
        return fitted  # no noise seen (a flat or synthetic image): nothing for the filter to take out
    basic = collaborative_wiener(noisy, noisy, sigma, shrink="hard", group=_GROUP, match=_HARD_MATCH)
    pilot = (fitted + basic) / 2
    for _ in range(_PASSES):
        pilot = collaborative_wiener(noisy, pilot, sigma, group=_GROUP)
    return pilot.clamp(0, 1)


def refined(plan, restoration):
    """The restoration with its image finished by the collaborative filter; the record says how, with the net's
    own scores beside the final ones."""
    start = time.perf_counter()
    sigma = sigma_of(plan)
    image = finish(plan.observation.y[0], restoration.result.image[0], sigma)[None]
    refinement = {
        "method": "collaborative Wiener filter, pilot: the net's image and a hard-thresholded estimate",
        "sigma": round(sigma * 255, 3),
        "sigma_from": "given" if plan.sigma is not None else "estimated",
    }
    return with_finished_image(plan, restoration, image, refinement, "a collaborative Wiener filter", start)


def with_finished_image(plan, restoration, image: torch.Tensor, refinement: dict, how: str, start: float):
    """The restoration with ``image`` (1, C, H, W), made from the net's by ``how`` since ``start`` (perf_counter),
    as its result; ``refinement`` (the record's) gains the seconds and, with a reference, the net's own scores."""
    seconds = time.perf_counter() - start
    result = dataclasses.replace(
        restoration.result,
        image=image,
        returned=f"{restoration.result.returned}, then {how}",
        seconds=restoration.result.seconds + seconds,
    )
    metrics = dict(restoration.metrics)
    refinement = {**refinement, "seconds": round(seconds, 3)}
    if metrics and plan.reference is not None:
        clean = plan.reference.pixels
        refinement["fit_psnr"] = round(metrics["psnr"], 4)
        refinement["fit_ssim"] = round(metrics["ssim"], 4)
        metrics.update(psnr=psnr(image, clean), ssim=ssim(image, clean))
    return dataclasses.replace(
        restoration,
        picture=plan.output_picture(image),
        result=result,
        metrics=metrics,
        refinement=refinement,
        fitted=restoration.picture.pixels,
    )
