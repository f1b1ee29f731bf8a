"""How good is dip beside the classical tools? Tasks x images x methods -> PSNR, SSIM, seconds.

    python benchmarks/quality.py [--tasks gauss25,drop50] [--images astronaut,F16] [--methods dip,tv,bm3d]
                                 [--size 64 | --size 0] [--seeds 0,1] [--device auto] [--dip-iters N]
                                 [--restarts 2] [--dip-preset NAME] [--csv out/quality.csv] [--markdown out/quality.md]

The corrupted images are those of benchmarks/early_stopping.py (same ``load_square`` and ``corrupt``, so the
same seed gives the same noise). Every method sees only the corrupted image and what a user would know about
the corruption (the mask, the noise level, the JPEG quality), never the clean image; PSNR and SSIM against the
clean image are computed afterwards. Each method call is one timed wall-clock call, not a best-of-N: the
seconds say "minutes or milliseconds", not a precise speed (see benchmarks/speed.py for that).

One CSV row per task, image, method and seed is written as it finishes, so an interrupted run keeps what it
measured; at the end a Markdown table of the per-task means (and the machine it ran on) is written and printed.

``--size N`` centre-crops each image to a square and resizes it to N px, for CPU runs; ``--size 0`` keeps the
largest centre square at its own resolution, without resampling, for a GPU (F16, kate and barbara are square,
so they are used whole). A method that does not apply to a task (biharmonic inpainting of noise) is skipped;
a method whose package is not installed (BM3D, OpenCV, PyWavelets) is skipped with a note in the output.
BM3D's licence is non-commercial only, so it must never become a dependency of dip: it is used here only when
the user has installed it (``pip install bm3d``).

Parameters of the classical methods come from the noise level a user knows (sigma of Gaussian noise, the
fraction of salt-and-pepper noise, the JPEG quality) through rules chosen on held-out photographs, not on the
benchmark images; see ``noise_level`` and the method functions.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import inspect
import math
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import NamedTuple

import dip  # first: it sets the OpenMP wait policy, which only takes effect before torch loads

# isort: split
import numpy as np
import skimage
import torch
from deblur_rules import reflected
from early_stopping import CORRUPTIONS, IMAGES, PAPER, corrupt, load_square
from PIL import Image
from scipy.ndimage import median_filter
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet, inpaint_biharmonic

from dip.api import restore
from dip.config import Loss, Task
from dip.degradations import add_gaussian_noise, jpeg_bytes, through_operator
from dip.device import resolve_device
from dip.io import Picture
from dip.jpeg import coding_of
from dip.metrics import psnr, ssim
from dip.operators import Blur, blur_kernel

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (
    "task",
    "image",
    "method",
    "seed",
    "size",
    "input_psnr",
    "input_ssim",
    "psnr",
    "ssim",
    "seconds",
    "device",
    "params",
)

# JPEG leaves no noise level to read off, and skimage's estimate_sigma (a wavelet estimate of white noise) badly
# underestimates its blocky, correlated artifacts (issue 8), so a fair user with a Gaussian denoiser takes a fixed
# value per quality. Chosen on held-out photographs (scikit-image's camera, rocket, coins, moon at 128 px; none of them
# is a benchmark image) as the sigma that maximised the mean PSNR of TV and NLM: q=10 -> 10 for both;
# q=20 -> 5 (TV) and 7 (NLM), so 7; q=30 -> 5 (benchmarks/jpeg_rules.py, which reproduces 10 and 7). The RMS error
# of these JPEGs is 10-13 (q=10) and 8-10 (q=20) at 64-256 px. BM3D does best with more: its own rule, on the same
# photographs and by the same script, is 14, 10 and 8 (+0.24, +0.14, +0.17 dB there over TV's and NLM's sigma).
JPEG_SIGMA = {10: 10.0, 20: 7.0, 30: 5.0}  # on the 0-255 scale
JPEG_SIGMA_BM3D = {10: 14.0, 20: 10.0, 30: 8.0}

# The paper's fixed step counts (../shared/data/README.md), per kind of corruption, for the "dip-paper" method:
# (preset, learning rate or None for the preset's, steps).
PAPER_RUNS = {
    # 1800: the count of the published denoising table (29.22 dB mean on 9 images, sigma=25); the F16 notebook
    # itself runs 3000 with output averaging. The paper has no impulse noise: the denoising setting is used.
    "gauss": ("paper", None, 1800),
    "sp": ("paper", None, 1800),
    "jpeg": ("paper", None, 2400),  # the snail notebook; the paper shows pictures, no numbers
    # Barbara with 50 % missing (32.22 dB): the restoration notebook's F16-shaped net, lr 0.001, input jitter
    # 0.03, no output averaging, 11000 steps (preset paper-scattered, which "paper" picks for such a mask).
    "drop": ("paper", None, 11000),
    "text": ("paper", None, 6001),  # kate's notebook, per the data README (the preset itself says 6000)
    # the super-resolution notebook: 2000 steps (x2-x4), 4000 (x8, preset paper-sr8, which "paper" picks itself)
    "sr": ("paper", None, None),
    "deblur": ("paper", None, 3000),  # no deblurring in the paper: its denoising setting
}

# Super-resolution and deblurring cases, beside early_stopping's corruptions. "srN": the low-resolution input made
# as a user's image was made, with Pillow's bicubic downscaling; "srNop": with dip's own downsampler, the operator
# the fit inverts. The blurs: a blur a user can name (gaussian:SIGMA, motion:LENGTH,ANGLE) and a little noise on
# top (sigma 2 on the 0-255 scale: a good sensor at base ISO), as every real photograph has.
SR_CASES = {f"sr{n}{maker}": (n, maker or "pil") for n in (2, 4, 8) for maker in ("", "op")}
DEBLUR_CASES = {"deblur-gauss": ("gaussian:2", 2.0), "deblur-motion": ("motion:9,30", 2.0)}
JPEG_CASES = ("jpeg30",)  # beside early_stopping's jpeg10 and jpeg20
TASKS = (*CORRUPTIONS, *JPEG_CASES, *SR_CASES, *DEBLUR_CASES)


def make_case_input(clean: np.ndarray, corruption: str, seed: int):
    """(corrupted, known, task, loss, scale, blur): early_stopping's corruptions and this benchmark's own."""
    if corruption in SR_CASES:
        scale, maker = SR_CASES[corruption]
        side = clean.shape[0] - clean.shape[0] % scale
        if maker == "op":
            from dip.operators import Downsample

            small = through_operator(clean[:side, :side], Downsample(scale))
        else:
            eight_bit = Image.fromarray(np.round(clean[:side, :side] * 255).astype(np.uint8).squeeze())
            small = np.asarray(eight_bit.resize((side // scale,) * 2, Image.Resampling.BICUBIC), np.float32) / 255
            small = small.reshape(side // scale, side // scale, clean.shape[2])
        return small, None, Task.sr, Loss.l2, scale, None
    if corruption in DEBLUR_CASES:
        spec, sigma = DEBLUR_CASES[corruption]
        blurred = through_operator(clean, Blur(blur_kernel(spec), spec))
        noisy = add_gaussian_noise(blurred, sigma, np.random.default_rng(seed)) if sigma else blurred
        return noisy, None, Task.deblur, Loss.l2, None, spec
    return (*corrupt(clean, corruption, seed), None, None)


@dataclass(frozen=True)
class DipSettings:
    device: torch.device
    iterations: int | None  # --dip-iters: a cap on every dip run's steps (None: the method's own)
    restarts: int
    preset: str = "auto"  # --dip-preset: the preset of the dip and dip-restarts methods


@dataclass(frozen=True)
class Case:
    """What a method may see: the corrupted image and what a user knows about the corruption."""

    corruption: str  # a name corrupt() understands: gauss25, jpeg10, sp30, drop50, text
    seed: int
    corrupted: np.ndarray  # float32 (H, W, C) in [0, 1]
    known: np.ndarray | None  # bool (H, W), True = known pixel; None for the noise tasks
    task: Task
    loss: Loss  # the loss a user would pick for dip (L1 for impulse noise)
    dip: DipSettings
    scale: int | None = None  # super-resolution: the output is this many times the input
    blur: str | None = None  # deblurring: the known kernel, as dip.operators.blur_kernel reads it

    @property
    def family(self) -> str:
        return family(self.corruption)

    @property
    def sigma(self) -> float:
        return noise_level(self.corruption)


class Output(NamedTuple):
    image: np.ndarray  # float32 (H, W, C)
    params: str  # the settings used, in words, for the CSV
    seconds: float | None = None  # where the call's own wall time is not the method's (dip-net: a shared fit)


@dataclass(frozen=True)
class Method:
    run: Callable[[Case], Output]
    families: frozenset[str]  # the corruptions it applies to; others are skipped, not failed
    unavailable: Callable[[], str | None] = lambda: None  # why it cannot run here, or None


def family(corruption: str) -> str:
    return re.match(r"[a-z]+", corruption).group()


def shown_input(case: Case) -> np.ndarray:
    """The corrupted image at the clean one's size, as a user sees it: a low-resolution input enlarged (bicubic)."""
    if case.scale is None:
        return case.corrupted
    return upscaled(case, Image.Resampling.BICUBIC)


def upscaled(case: Case, method) -> np.ndarray:
    height, width = case.corrupted.shape[:2]
    size = (case.scale * width, case.scale * height)
    planes = [Image.fromarray(np.ascontiguousarray(case.corrupted[..., c])).resize(size, method)
              for c in range(case.corrupted.shape[2])]  # fmt: skip
    return _as_hwc(np.stack([np.asarray(p) for p in planes], axis=-1))


def noise_level(corruption: str) -> float:
    """The sigma (0-1 scale) a user would give a Gaussian denoiser for this corruption."""
    kind, amount = family(corruption), corruption[len(family(corruption)) :]
    if kind == "gauss":
        return float(amount) / 255
    if kind == "jpeg":
        return JPEG_SIGMA[int(amount)] / 255
    if kind == "sp":
        # The standard deviation of impulse noise hitting a fraction p of pixels, for pixel values spread
        # evenly over [0, 1]: sqrt(p * E[(b - x)^2]) with b in {0, 1}, and E[(b - x)^2] = 1/3.
        return math.sqrt(int(amount) / 100 / 3)
    raise ValueError(f"{corruption} is not a noise: it has a mask, not a noise level")


def _needs(module: str, hint: str) -> Callable[[], str | None]:
    def unavailable() -> str | None:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({hint})"
        # Imported now, so that the first timed call does not pay for it; a broken install is a skip too.
        try:
            importlib.import_module(module)
        except ImportError as error:
            return f"{module} is installed but does not import: {error}"
        return None

    return unavailable


def _restarts_unavailable() -> str | None:
    if "restarts" in inspect.signature(restore).parameters:
        return None
    return "dip.api.restore takes no `restarts` keyword yet"


def _rgb(case: Case) -> bool:
    return case.corrupted.shape[2] == 3


def _channel_axis(case: Case) -> int | None:
    return -1 if _rgb(case) else None


def _plane(case: Case) -> np.ndarray:
    """(H, W, 3) for colour, (H, W) for gray: the shapes the classical libraries take with their channel axis."""
    return case.corrupted if _rgb(case) else case.corrupted[..., 0]


def _as_hwc(image: np.ndarray) -> np.ndarray:
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return image[..., None] if image.ndim == 2 else image


# ---------------------------------------------------------------------------------------------- dip methods


def _picture(case: Case) -> Picture:
    coding = None
    if case.family == "jpeg":  # what the file would tell dip: its tables and subsampling depend on the quality alone
        encoded = Image.open(BytesIO(jpeg_bytes(case.corrupted, int(case.corruption[4:]))))
        coding = coding_of(encoded)
    return Picture(case.corrupted, None, 8, "RGB" if _rgb(case) else "L", None, jpeg=coding)


def _fit(case: Case, **settings) -> Output:
    restoration = restore(
        _picture(case),
        task=case.task,
        mask=case.known,
        scale=case.scale,
        blur=case.blur,
        loss=case.loss,
        seed=case.seed,
        device=case.dip.device,
        # the net's image everywhere, as the paper scores inpainting and as these tables were measured; dip's
        # default since issue 18 keeps the known pixels, which can only raise the PSNR of an inpainting
        **({"keep_known": False} if case.task is Task.inpaint else {}),
        **settings,
    )
    runs = restoration.restarts or [restoration]
    stops = ",".join(f"{run.result.best_iteration}/{run.result.iterations} {run.result.stop_reason}" for run in runs)
    params = f"preset={restoration.preset.name} returned/steps={stops}"
    if restoration.refinement is not None:
        # the net's own image from the same fit, for dip-net: the fit's seconds without the filter's
        refinement = restoration.refinement
        seconds = restoration.result.seconds - refinement["seconds"]
        _NET_IMAGES[id(case.corrupted)] = Output(restoration.fitted, params + " (the net's image)", seconds)
        params += f" wiener sigma={refinement['sigma']:.2f} ({refinement['sigma_from']}) {refinement['seconds']:.2f}s"
    return Output(restoration.picture.pixels, params)


_NET_IMAGES: dict[int, Output] = {}  # dip's last fits' own images, by their corrupted image


def dip_default(case: Case) -> Output:
    """The library's defaults, as `dip restore` runs them: automatic stopping, no ground truth, no tuning."""
    return _fit(case, iterations=case.dip.iterations, preset=case.dip.preset)


def dip_net(case: Case) -> Output:
    """The default fit's net image, before the collaborative Wiener filter that ends Gaussian denoising: the
    default before issue 26 wherever the preset is the same (fast at 128 px and up). Taken from the "dip" run of
    the same case where that ran first (its fit's seconds less the filter's), fitted with --no-wiener if not."""
    cached = _NET_IMAGES.pop(id(case.corrupted), None)
    return cached if cached is not None else _fit(case, iterations=case.dip.iterations, preset=case.dip.preset,
                                                  wiener=False)  # fmt: skip


def dip_paper(case: Case) -> Output:
    """The paper's nets and fixed step counts, stopping off."""
    preset, lr, steps = PAPER_RUNS[case.family]
    if steps is None:  # the preset's own count
        steps = 4000 if case.scale == 8 else 2000
    steps = min(steps, case.dip.iterations or steps)
    return _fit(case, preset=preset, stop="off", iterations=steps, **({"lr": lr} if lr else {}))


def dip_restarts(case: Case) -> Output:
    """The defaults, K fits from different seeds averaged (the paper averaged 2: 29.22 -> 31.00 dB)."""
    return _fit(case, iterations=case.dip.iterations, restarts=case.dip.restarts, preset=case.dip.preset)


# ----------------------------------------------------------------------------------------- classical methods


def tv(case: Case) -> Output:
    # weight = 0.75 sigma: the best of 0.5, 0.75, 1, 1.5, 2 x sigma on the held-out photographs (see
    # JPEG_SIGMA) at sigma 15, 25 and 50 alike; 1 x sigma was 0.2-0.7 dB worse.
    weight = 0.75 * case.sigma
    return Output(
        _as_hwc(denoise_tv_chambolle(_plane(case), weight=weight, channel_axis=_channel_axis(case))),
        f"weight={weight:.4f}",
    )


def nlm(case: Case) -> Output:
    # h = 0.6 sigma with fast_mode and sigma given, as scikit-image's gallery advises; on the held-out
    # photographs 0.6 beat 0.4, 0.8, 1.0 and 1.2 x sigma at sigma 15 and 25 and tied 0.4 at 50.
    # fast_mode=False returned NaN with a JPEG-like sigma.
    h = 0.6 * case.sigma
    denoised = denoise_nl_means(
        _plane(case),
        h=h,
        sigma=case.sigma,
        fast_mode=True,
        patch_size=5,
        patch_distance=6,
        channel_axis=_channel_axis(case),
    )
    return Output(_as_hwc(denoised), f"h={h:.4f} sigma={case.sigma:.4f} patch=5 distance=6 fast")


def wavelet(case: Case) -> Output:
    # BayesShrink picks a threshold per sub-band by itself; it only needs the noise level. Colour goes
    # through YCbCr, as scikit-image's gallery does, so that the luma carries the detail.
    denoised = denoise_wavelet(
        _plane(case),
        sigma=case.sigma,
        method="BayesShrink",
        mode="soft",
        rescale_sigma=True,
        convert2ycbcr=_rgb(case),
        channel_axis=_channel_axis(case),
    )
    return Output(_as_hwc(denoised), f"BayesShrink soft sigma={case.sigma:.4f}")


def median(case: Case) -> Output:
    # 3x3, the textbook filter for impulse noise up to about 30 %: a 5x5 removes more clusters but blurs more.
    return Output(median_filter(case.corrupted, size=(3, 3, 1), mode="reflect"), "3x3 per channel")


def bm3d(case: Case) -> Output:
    import bm3d as bm3d_package

    sigma = case.sigma
    if family(case.corruption) == "jpeg":
        sigma = JPEG_SIGMA_BM3D[int(case.corruption[4:])] / 255
    if _rgb(case):
        denoised = bm3d_package.bm3d_rgb(case.corrupted, sigma_psd=sigma)
    else:
        denoised = bm3d_package.bm3d(case.corrupted[..., 0], sigma_psd=sigma)
    return Output(_as_hwc(denoised), f"sigma={sigma:.4f}")


def bicubic(case: Case) -> Output:
    return Output(upscaled(case, Image.Resampling.BICUBIC), "Pillow")


def lanczos(case: Case) -> Output:
    return Output(upscaled(case, Image.Resampling.LANCZOS), "Pillow")


# Richardson-Lucy's iteration count is its only regulariser: noise grows with every iteration. Chosen on held-out
# photographs (scikit-image's camera, rocket, coins, moon at 128 px, none of them a benchmark image; see
# benchmarks/deblur_rules.py) as the count that maximised the mean PSNR for each blur at noise sigma 2, of 5-200:
# gaussian:2 30.07 dB at 50 (30.02 at 30, 29.67 at 100); motion:9,30 28.74 dB at 10 (28.49 at 5, 27.16 at 20).
RL_ITERATIONS = {"gaussian:2": 50, "motion:9,30": 10}


def richardson_lucy(case: Case) -> Output:
    from skimage.restoration import richardson_lucy as rl

    psf = blur_kernel(case.blur).double().numpy()
    iterations = RL_ITERATIONS[case.blur]
    planes = [reflected(lambda plane: rl(plane, psf, num_iter=iterations, clip=True), case.corrupted[..., c], psf)
              for c in range(case.corrupted.shape[2])]  # fmt: skip
    return Output(_as_hwc(np.stack(planes, axis=-1)), f"num_iter={iterations}, reflection-padded")


def wiener(case: Case) -> Output:
    from skimage.restoration import unsupervised_wiener

    # unsupervised: the noise and the image's regularisation are estimated by the method itself (Gibbs sampling),
    # seeded for a reproducible result
    psf = blur_kernel(case.blur).double().numpy()

    def deconvolve(plane: np.ndarray) -> np.ndarray:
        return unsupervised_wiener(plane, psf, clip=True, rng=np.random.default_rng(case.seed))[0]

    planes = [reflected(deconvolve, case.corrupted[..., c], psf) for c in range(case.corrupted.shape[2])]
    return Output(_as_hwc(np.stack(planes, axis=-1)), "unsupervised, Laplacian regulariser, reflection-padded")


def biharmonic(case: Case) -> Output:
    filled = inpaint_biharmonic(_plane(case), ~case.known, channel_axis=_channel_axis(case))
    return Output(_as_hwc(filled), "")


def _opencv(case: Case, flag_name: str) -> Output:
    import cv2

    # 3 px: OpenCV's own example radius; the known pixels are already on the 8-bit grid (load_square).
    eight_bit = np.round(_plane(case) * 255).astype(np.uint8)
    holes = (~case.known).astype(np.uint8)
    filled = cv2.inpaint(eight_bit, holes, 3, getattr(cv2, flag_name))
    return Output(_as_hwc(filled.astype(np.float32) / 255), "radius=3")


def opencv_telea(case: Case) -> Output:
    return _opencv(case, "INPAINT_TELEA")


def opencv_navier_stokes(case: Case) -> Output:
    return _opencv(case, "INPAINT_NS")


ALL = frozenset({"gauss", "sp", "jpeg", "drop", "text", "sr", "deblur"})
NOISE = frozenset({"gauss", "sp", "jpeg"})
MASKED = frozenset({"drop", "text"})
_BM3D_HINT = "pip install bm3d; its licence is non-commercial, so dip never depends on it"
_OPENCV_HINT = "pip install opencv-python-headless"
METHODS: dict[str, Method] = {
    "dip": Method(dip_default, ALL),
    "dip-net": Method(dip_net, NOISE),
    "dip-paper": Method(dip_paper, ALL),
    "dip-restarts": Method(dip_restarts, ALL, _restarts_unavailable),
    "tv": Method(tv, NOISE),
    "nlm": Method(nlm, NOISE),
    "wavelet": Method(wavelet, NOISE, _needs("pywt", "pip install PyWavelets")),
    "median": Method(median, frozenset({"sp"})),
    "bm3d": Method(bm3d, frozenset({"gauss", "jpeg"}), _needs("bm3d", _BM3D_HINT)),
    "biharmonic": Method(biharmonic, MASKED),
    "opencv-telea": Method(opencv_telea, MASKED, _needs("cv2", _OPENCV_HINT)),
    "opencv-ns": Method(opencv_navier_stokes, MASKED, _needs("cv2", _OPENCV_HINT)),
    "bicubic": Method(bicubic, frozenset({"sr"})),
    "lanczos": Method(lanczos, frozenset({"sr"})),
    "richardson-lucy": Method(richardson_lucy, frozenset({"deblur"})),
    "wiener": Method(wiener, frozenset({"deblur"})),
}


# --------------------------------------------------------------------------------------------------- running


def load_clean(path: Path, size: int) -> np.ndarray:
    """Gray files (barbara) stay gray, as the paper scored them; everything else is RGB."""
    with Image.open(path) as image:
        gray = image.mode in ("1", "L", "LA", "I", "I;16")
    return load_square(path, size, mode="L" if gray else "RGB")


def score(row: dict, image: np.ndarray, clean: np.ndarray, prefix: str = "") -> None:
    row[f"{prefix}psnr"] = round(psnr(image, clean), 4)
    row[f"{prefix}ssim"] = round(ssim(image, clean), 4)


def run_image(name: str, clean: np.ndarray, methods: list[str], args, write: Callable[[dict], None]) -> None:
    for corruption in args.tasks:
        for seed in args.seeds:
            corrupted, known, task, loss, scale, blur = make_case_input(clean, corruption, seed)
            case = Case(corruption, seed, corrupted, known, task, loss, args.dip, scale, blur)
            truth = clean if scale is None else clean[: scale * corrupted.shape[0], : scale * corrupted.shape[1]]
            for method_name in methods:
                method = METHODS[method_name]
                if case.family not in method.families:
                    continue
                started = time.perf_counter()
                output = method.run(case)
                seconds = time.perf_counter() - started if output.seconds is None else output.seconds
                row = {
                    "task": corruption,
                    "image": name,
                    "method": method_name,
                    "seed": seed,
                    "size": f"{truth.shape[1]}x{truth.shape[0]}",
                    "seconds": round(seconds, 3),
                    "device": str(args.dip.device) if method_name.startswith("dip") else "cpu",
                    "params": output.params,
                }
                score(row, shown_input(case), truth, "input_")
                score(row, output.image, truth)
                write(row)
                print(
                    f"{corruption:<8} {name:<10} {seed:>4} {method_name:<13} {row['input_psnr']:>6.2f} -> "
                    f"{row['psnr']:>6.2f} dB  SSIM {row['ssim']:.3f}  {seconds:>8.2f} s  {output.params}",
                    flush=True,
                )


def warm_up(settings: DipSettings) -> None:
    """One step of a tiny fit before anything is timed: the first fit of a process pays once for torch's and
    the device's start-up (kernels, allocator, a CUDA context), which is no part of any one image's time."""
    blank = Picture(np.zeros((32, 32, 3), np.float32), None, 8, "RGB", None)
    restore(blank, task=Task.denoise, stop="off", iterations=1, device=settings.device)


def machine_line(device: torch.device) -> str:
    if device.type == "cuda":
        processor = torch.cuda.get_device_name(device)
    else:
        processor = _cpu_name()
    parts = [
        f"{device.type}: {processor}",
        f"{torch.get_num_threads()} torch threads",
        f"torch {torch.__version__}",
        f"dip {dip.__version__}",
        f"scikit-image {skimage.__version__}",
        f"python {platform.python_version()}",
    ]
    for module, label in (("bm3d", "bm3d"), ("cv2", "OpenCV"), ("pywt", "PyWavelets")):
        parts.append(f"{label} {_version(module)}" if importlib.util.find_spec(module) else f"no {label}")
    return " | ".join(parts)


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    distribution = {"cv2": "opencv-python", "pywt": "PyWavelets"}.get(module, module)
    for name in (distribution, f"{distribution}-headless", module):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "(version unknown)"


def markdown(rows: list[dict], methods: list[str], header: list[str]) -> str:
    """Per-task means: PSNR / SSIM (best PSNR in bold), then seconds; over every image and seed that ran."""
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    shown = [m for m in methods if any(row["method"] == m for row in rows)]

    def mean(task: str, method: str, key: str) -> float | None:
        values = [row[key] for row in rows if row["task"] == task and row["method"] == method]
        return sum(values) / len(values) if values else None

    def inputs(task: str, key: str) -> float:
        # once per image and seed, not once per method
        unique = {(row["image"], row["seed"]): row[key] for row in rows if row["task"] == task}
        return sum(unique.values()) / len(unique)

    lines = [*header, "", "Mean PSNR (dB) / SSIM per task; the best PSNR of each task in bold.", ""]
    lines += ["| task | cases | input | " + " | ".join(shown) + " |", "|---" * (len(shown) + 3) + "|"]
    for task in tasks:
        psnrs = {m: mean(task, m, "psnr") for m in shown}
        best = max((v for v in psnrs.values() if v is not None), default=None)
        cells = []
        for method in shown:
            if psnrs[method] is None:
                cells.append("–")
                continue
            value = f"{psnrs[method]:.2f}"
            cells.append(f"{f'**{value}**' if psnrs[method] == best else value} / {mean(task, method, 'ssim'):.3f}")
        cases = len({(row["image"], row["seed"]) for row in rows if row["task"] == task})
        lines.append(
            f"| {task} | {cases} | {inputs(task, 'input_psnr'):.2f} / {inputs(task, 'input_ssim'):.3f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "PSNR (dB) per image; the best of each row in bold.", ""]
    lines += ["| task | image | seed | input | " + " | ".join(shown) + " |", "|---" * (len(shown) + 4) + "|"]
    for task in tasks:
        for image, seed in dict.fromkeys((row["image"], row["seed"]) for row in rows if row["task"] == task):
            found = {
                row["method"]: row for row in rows if (row["task"], row["image"], row["seed"]) == (task, image, seed)
            }
            best = max(row["psnr"] for row in found.values())
            cells = [
                "–"
                if m not in found
                else (f"**{found[m]['psnr']:.2f}**" if found[m]["psnr"] == best else f"{found[m]['psnr']:.2f}")
                for m in shown
            ]
            first = next(iter(found.values()))
            lines.append(f"| {task} | {image} | {seed} | {first['input_psnr']:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Mean seconds per image (one wall-clock call each).", ""]
    lines += ["| task | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for task in tasks:
        seconds = [mean(task, m, "seconds") for m in shown]
        lines.append(f"| {task} | " + " | ".join("–" if s is None else f"{s:.2f}" for s in seconds) + " |")
    return "\n".join(lines) + "\n"


def tables_from_csv(paths: list[Path], destination: Path) -> int:
    """The Markdown of runs made earlier (e.g. one per task, on two cores), from their CSV rows together."""
    rows = []
    for path in paths:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                for key in ("input_psnr", "input_ssim", "psnr", "ssim", "seconds"):
                    row[key] = float(row[key])
                row["seed"] = int(row["seed"])
                rows.append(row)
    if not rows:
        raise SystemExit(f"no rows in {', '.join(map(str, paths))}")
    methods = [m for m in METHODS if any(row["method"] == m for row in rows)]
    sizes = ", ".join(sorted({row["size"] for row in rows}))
    header = [
        "# Restoration quality: dip beside the classical tools",
        "",
        f"Rebuilt from {', '.join(map(str, paths))} (sizes {sizes}); each run printed its machine line.",
        f"Command: python benchmarks/quality.py --from-csv {' '.join(map(str, paths))}",
    ]
    table = markdown(rows, methods, header)
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(table)
    print(table)
    return 0


def _names(value: str, known, what: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    extra = ", ".join([*SR_CASES, *DEBLUR_CASES])
    parser.add_argument("--tasks", default=",".join(CORRUPTIONS),
                        help=f"corruptions, as benchmarks/early_stopping.py, or {extra}")  # fmt: skip
    parser.add_argument("--images", help="default: every image of early_stopping.IMAGES that exists here")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"default: all ({', '.join(METHODS)})")
    parser.add_argument("--size", type=int, default=64, help="square side in px; 0 = native resolution (GPU)")
    parser.add_argument("--seeds", default="0", help="noise and dip seeds, e.g. 0,1,2")
    parser.add_argument("--device", default="auto", help="for dip: auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--dip-iters", type=int, help="cap every dip run at N steps (smoke tests, CPU budgets)")
    parser.add_argument("--restarts", type=int, default=2, help="fits averaged by dip-restarts (paper: 2)")
    parser.add_argument("--dip-preset", default="auto", help="preset of dip and dip-restarts (default: dip's own)")
    parser.add_argument("--csv", type=Path, default=ROOT / "out" / "quality.csv")
    parser.add_argument("--markdown", type=Path, default=ROOT / "out" / "quality.md")
    parser.add_argument("--json", type=Path, help="also every row with the commit, machine, versions and command")
    parser.add_argument("--from-csv", type=Path, nargs="+", help="no runs: the tables of earlier runs' CSV files")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.from_csv:
        return tables_from_csv(args.from_csv, args.markdown)

    args.tasks = _names(args.tasks, TASKS, "task")
    for task in args.tasks:
        if family(task) == "jpeg" and int(task[4:]) not in JPEG_SIGMA:
            raise SystemExit(f"{task}: no equivalent noise level for the classical denoisers; add one to JPEG_SIGMA")
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    if args.size < 0 or (args.dip_iters is not None and args.dip_iters < 1) or args.restarts < 1:
        raise SystemExit("--size must be >= 0, --dip-iters and --restarts >= 1")
    images = _names(args.images, IMAGES, "image") if args.images else list(IMAGES)
    if "text" in args.tasks and not (PAPER / "inpainting" / "kate_mask.png").exists():
        raise SystemExit("the text task needs kate_mask.png from ../shared/data/dip-paper/inpainting")
    args.dip = DipSettings(resolve_device(args.device), args.dip_iters, args.restarts, args.dip_preset)

    notes = []
    methods = []
    for name in _names(args.methods, METHODS, "method"):
        why = METHODS[name].unavailable()
        if why is None:
            methods.append(name)
        else:
            notes.append(f"skipped {name}: {why}")
    for name in images:
        if not IMAGES[name].exists():
            notes.append(f"skipped image {name}: {IMAGES[name]} not found")
    images = [name for name in images if IMAGES[name].exists()]
    for note in notes:
        print(f"# {note}", file=sys.stderr)
    if not images or not methods:
        raise SystemExit("nothing to run: no image found or no method available")

    if any(name.startswith("dip") for name in methods):
        warm_up(args.dip)
    machine = machine_line(args.dip.device)
    print(f"# {machine}")
    rows: list[dict] = []
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()

        def write(row: dict) -> None:
            writer.writerow(row)
            handle.flush()  # an interrupted run keeps every row measured so far
            rows.append(row)

        for name in images:
            run_image(name, load_clean(IMAGES[name], args.size), methods, args, write)

    size = "native resolution (largest centre square)" if args.size == 0 else f"{args.size} px"
    header = [
        "# Restoration quality: dip beside the classical tools",
        "",
        f"Machine: {machine}.",
        f"Images: {', '.join(images)} at {size}; seeds {', '.join(map(str, args.seeds))}; dip on {args.dip.device}"
        + (f", every dip run capped at {args.dip_iters} steps" if args.dip_iters else "")
        + (f"; dip-restarts averages {args.restarts} fits" if "dip-restarts" in methods else "")
        + ".",
        *(f"Note: {note}." for note in notes),
        f"Command: python benchmarks/quality.py {' '.join(argv if argv is not None else sys.argv[1:])}",
    ]
    table = markdown(rows, methods, header)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(table)
    print(table)
    print(f"# wrote {args.csv} and {args.markdown}")
    if args.json:
        write_json(args.json, rows, machine, header[-1].removeprefix("Command: "))
    return 0


def write_json(path: Path, rows: list[dict], machine: str, command: str) -> None:
    """The rows with what is needed to rebuild their table and to know what measured them."""
    import json
    import subprocess

    def git(*words: str) -> str:
        return subprocess.run(["git", *words], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    record = {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": machine,
        "threads": torch.get_num_threads(),
        "versions": {"dip": dip.__version__, "torch": torch.__version__, "python": platform.python_version(),
                     "scikit-image": skimage.__version__},  # fmt: skip
        "command": command,
        "rows": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"# wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
