"""Forward operators: what the camera, the codec or the damage did to the image, as ``y = A(x)``.

The net draws the restored image ``x``; the fit compares ``A(x)`` with the observation ``y`` over the entries
that were observed. An operator knows ``A``, the size of ``x`` for an observation of a given size, and what it
adds to a checkpoint's fingerprint and to a run's record. Denoising and JPEG restoration observe the image
itself (:class:`Identity`); inpainting observes its known pixels (:class:`Mask`); super-resolution a downsampled
image (:class:`Downsample`); deblurring a blurred one (:class:`Blur`). A new restoration is a new
operator here, its presets in ``dip.config`` and its option in the command line: the fit, the stacked fit, the
memory estimate and the snapshots only ever ask the operator.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from .config import Loss
from .errors import InputError, UsageError
from .tiles import Box


class Operator:
    """``A`` of ``y = A(x)``. Subclasses are frozen dataclasses holding their tensors on one device."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def known(self) -> torch.Tensor | None:
        """Weights (1, 1, h, w) at the observation's size, 1 where ``y`` was observed; None: everywhere."""
        return None

    def restored_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of ``x`` for an observation of this size."""
        return height, width

    def check(self, height: int, width: int) -> None:
        """Raises InputError when an observation of this size is too small for the operator."""

    def fingerprint(self) -> dict:
        """What a checkpoint must share with the run that resumes it, as plain values. Without a mask: the key
        checkpoints made before there were operators carry, so that they still resume."""
        return {"mask": None}

    def record(self) -> dict:
        """What the run's ``.json`` says about the operator."""
        return {}

    def to(self, device: torch.device) -> Operator:
        return self

    factor = 1  # restored pixels per observed pixel, in each direction
    reach = 0  # observed pixels beyond a part's edge that its A(x) near the edge depends on (see crop)

    def crop(self, box: Box) -> Operator:
        """The operator of the part of the observation in ``box`` (observation pixels), for a fit of that part
        alone (a tile): the same for operators that act alike everywhere."""
        return self

    def as_restored(self, y: np.ndarray) -> np.ndarray:
        """The observation (H, W, C) as a user sees it at the restored size: what the restoration is compared
        with (the sheet's input tile, the input's PSNR against a reference)."""
        return y

    shown_as = "input"  # the title of that image on the sheet


@dataclass(frozen=True)
class Identity(Operator):
    """The image itself was observed, corrupted by noise or a codec that the prior does not reproduce early."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass(frozen=True, eq=False)
class Decoded(Identity):
    """A decoded JPEG file: the image itself was observed, and ``planes`` (dip.jpeg) hold what the file says of
    it, each block coefficient's quantisation interval, which the finished image is put back inside. The fit
    itself is the plain one: a loss that let the net roam inside the intervals did worse (README)."""

    planes: tuple = ()
    coding: str = ""  # "4:2:0", "gray", ...: for the record

    def record(self) -> dict:
        return {"jpeg_coding": self.coding}

    def crop(self, box: Box) -> Operator:
        return Identity()  # a tile is fitted plainly; the joined image is finished with the whole file's planes


@dataclass(frozen=True)
class Mask(Operator):
    """The pixels where ``mask`` (1, 1, H, W) is 1 were observed; the fit fills in those where it is 0."""

    mask: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    @property
    def known(self) -> torch.Tensor:
        return self.mask

    def fingerprint(self) -> dict:
        return {"mask": hashlib.sha256(self.mask.cpu().numpy().tobytes()).hexdigest()}

    def to(self, device: torch.device) -> Mask:
        return Mask(self.mask.to(device))

    def crop(self, box: Box) -> Mask:
        rows, cols = box.slices()
        return Mask(self.mask[..., rows, cols].clone())


@dataclass(frozen=True)
class Observation:
    """What the fit sees: the corrupted image ``y`` (1, C, h, w) and the operator that made it from ``x``."""

    y: torch.Tensor
    operator: Operator = Identity()

    @property
    def restored_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the image the fit draws."""
        channels, height, width = self.y.shape[-3:]
        return (channels, *self.operator.restored_size(height, width))

    def loss(self, x: torch.Tensor, kind: Loss = Loss.l2) -> torch.Tensor:
        return data_loss(self.operator(x), self.y, self.operator.known, kind)

    def to(self, device: torch.device) -> Observation:
        return Observation(self.y.to(device), self.operator.to(device))


def data_loss(ax: torch.Tensor, y: torch.Tensor, known: torch.Tensor | None, kind: Loss = Loss.l2) -> torch.Tensor:
    """Mean error of ``A(x)`` against ``y`` over the observed entries only.

    Dividing by the number of observed entries rather than by all of them keeps the gradient scale, and so the
    useful learning rate, independent of how large the hole is. Unobserved pixels of ``y`` do not enter at all.
    """
    diff = ax - y
    error = diff.square() if Loss(kind) is Loss.l2 else diff.abs()
    if known is None:
        return error.mean()
    weights = known.expand_as(error)
    # where() rather than a product: y may hold NaN or garbage at unknown pixels, and 0 * NaN is NaN.
    return torch.where(weights > 0, error, torch.zeros_like(error)).sum() / weights.sum()


SCALES = range(2, 9)  # super-resolution factors; larger ones leave the prior too little to go on


def lanczos2_taps(factor: int) -> torch.Tensor:
    """The 1-D Lanczos-2 kernel of a downsampling by ``factor``, normalised to sum 1 (float64).

    One tap per high-resolution pixel within the kernel's support of 2 low-resolution pixels on either side of
    the block's centre, taken at that pixel's distance from the centre in low-resolution pixels. For an even
    factor the centre lies between two pixels: the taps are the paper's "phase ½" kernel of 4 x factor taps
    (its models/downsampler.py); for an odd one it lies on a pixel, and 4 x factor - 1 taps are all inside the
    support.
    """
    count = 4 * factor - factor % 2
    offsets = (torch.arange(count, dtype=torch.float64) - (count - 1) / 2) / factor
    taps = torch.sinc(offsets) * torch.sinc(offsets / 2)
    return taps / taps.sum()


@dataclass(frozen=True)
class Downsample(Operator):
    """Super-resolution: ``y`` is ``x`` filtered with the Lanczos-2 kernel and sampled every ``factor`` pixels
    (block centres), reflected at the border; the restored image is ``factor`` times ``y`` in each direction."""

    factor: int  # restored pixels per observed pixel, as the base class names it
    reach = 2  # the Lanczos-2 kernel's support, in low-resolution pixels either side

    def __post_init__(self) -> None:
        if self.factor not in SCALES:
            raise UsageError(f"--scale must be a whole number from {SCALES[0]} to {SCALES[-1]}, not {self.factor}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        taps = lanczos2_taps(self.factor).to(x.device, x.dtype)
        count, channels = taps.numel(), x.shape[1]
        pad = (count - self.factor) // 2  # so that output pixel j is centred on the block j of x
        x = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
        # separable: the rows, then the columns, each a strided depthwise convolution
        rows = taps.view(1, 1, count, 1).expand(channels, 1, count, 1)
        x = torch.nn.functional.conv2d(x, rows, stride=(self.factor, 1), groups=channels)
        return torch.nn.functional.conv2d(x, rows.transpose(2, 3), stride=(1, self.factor), groups=channels)

    def restored_size(self, height: int, width: int) -> tuple[int, int]:
        return self.factor * height, self.factor * width

    def check(self, height: int, width: int) -> None:
        if min(height, width) < 2:
            raise InputError(f"a {width}x{height} image is too small to super-resolve; it needs at least 2x2 pixels")

    def fingerprint(self) -> dict:
        return {"mask": None, "scale": self.factor}

    def record(self) -> dict:
        return {"scale": self.factor}

    @property
    def shown_as(self) -> str:
        return f"input · bicubic x{self.factor}"

    def as_restored(self, y: np.ndarray) -> np.ndarray:
        from PIL import Image

        height, width = y.shape[:2]
        size = (self.factor * width, self.factor * height)
        planes = [Image.fromarray(np.ascontiguousarray(y[..., c])).resize(size, Image.Resampling.BICUBIC)
                  for c in range(y.shape[2])]  # fmt: skip
        return np.clip(np.stack([np.asarray(p) for p in planes], axis=-1), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Blur(Operator):
    """Deblurring: ``y`` is ``x`` convolved with a known ``kernel`` (kH, kW), summing to 1, reflected at the
    border. ``spec`` is how the kernel was asked for (``gaussian:2``, a file), for the record."""

    kernel: torch.Tensor
    spec: str = ""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from kornia.filters import filter2d

        return filter2d(x, self.kernel[None].to(x.dtype), border_type="reflect", behaviour="conv")

    @property
    def reach(self) -> int:
        return max(self.kernel.shape) // 2

    def check(self, height: int, width: int) -> None:
        kernel_height, kernel_width = self.kernel.shape
        if height <= kernel_height // 2 or width <= kernel_width // 2:
            raise InputError(
                f"a {width}x{height} image is too small for a {kernel_width}x{kernel_height} blur kernel; "
                "it needs more than half the kernel's size in each direction"
            )

    def fingerprint(self) -> dict:
        return {"mask": None, "blur": hashlib.sha256(self.kernel.cpu().double().numpy().tobytes()).hexdigest()}

    def record(self) -> dict:
        return {"blur": self.spec, "kernel_size": list(self.kernel.shape)}

    def to(self, device: torch.device) -> Blur:
        return Blur(self.kernel.to(device), self.spec)


BLUR_FORMS = "gaussian:SIGMA, motion:LENGTH,ANGLE, box:N or a kernel image file"


def blur_kernel(spec: str) -> torch.Tensor:
    """The kernel (kH, kW), float32, summing to 1, that ``spec`` names: ``gaussian:SIGMA`` (pixels; 3 sigma
    either side), ``motion:LENGTH,ANGLE`` (a line of LENGTH pixels, odd, at ANGLE degrees), ``box:N``, or the
    path of a gray image holding the kernel. Raises UsageError (InputError for an unreadable or empty file)."""
    from kornia.filters import get_gaussian_kernel2d, get_motion_kernel2d

    kind, _, value = spec.partition(":")
    kind = kind.strip().lower()
    try:
        if kind == "gaussian" and value:
            sigma = float(value)
            if not 0 < sigma <= 50:
                raise UsageError(f"--blur gaussian:SIGMA needs 0 < SIGMA <= 50 pixels, not {value}")
            size = 2 * int(np.ceil(3 * sigma)) + 1
            return get_gaussian_kernel2d((size, size), (sigma, sigma), dtype=torch.float64)[0].float()
        if kind == "motion" and value:
            length_text, _, angle_text = value.partition(",")
            length, angle = int(length_text), float(angle_text or 0)
            if length < 3 or length % 2 == 0 or length > 101:
                raise UsageError(f"--blur motion:LENGTH,ANGLE needs an odd LENGTH from 3 to 101 pixels, not {length}")
            return get_motion_kernel2d(length, angle, mode="bilinear")[0].float()
        if kind == "box" and value:
            size = int(value)
            if not 2 <= size <= 101:
                raise UsageError(f"--blur box:N needs N from 2 to 101 pixels, not {size}")
            return torch.full((size, size), 1.0 / size**2)
    except ValueError:
        raise UsageError(f"cannot read --blur {spec!r}; give {BLUR_FORMS}") from None
    if kind in ("gaussian", "motion", "box"):
        raise UsageError(f"--blur {kind} needs its size: give {BLUR_FORMS}")
    return _kernel_from_file(spec)


def _kernel_from_file(path: str) -> torch.Tensor:
    from pathlib import Path

    from .io import IMAGE_SUFFIXES, read_image

    file = Path(path)
    if not file.is_file():
        what = "a kernel image" if file.suffix.lower() in IMAGE_SUFFIXES else "one of them"
        raise UsageError(f"--blur {path!r} is not {what}: give {BLUR_FORMS}")
    picture = read_image(file)
    pixels = picture.pixels.mean(axis=2).astype(np.float64)
    total = pixels.sum()
    if not total > 0:
        raise InputError(f"blur kernel '{path}' is all black: a kernel needs some weight (white = weight)")
    if max(pixels.shape) > 101:
        raise InputError(f"blur kernel '{path}' is {pixels.shape[1]}x{pixels.shape[0]}; a kernel is at most 101x101")
    return torch.from_numpy(pixels / total).float()
