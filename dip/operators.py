"""Forward operators: what the camera, the codec or the damage did to the image, as ``y = A(x)``.

The net draws the restored image ``x``; the fit compares ``A(x)`` with the observation ``y`` over the entries
that were observed. An operator knows ``A``, the size of ``x`` for an observation of a given size, and what it
adds to a checkpoint's fingerprint and to a run's record. Denoising and JPEG restoration observe the image
itself (:class:`Identity`); inpainting observes its known pixels (:class:`Mask`). A new restoration is a new
operator here, its presets in ``dip.config`` and its option in the command line: the fit, the stacked fit, the
memory estimate and the snapshots only ever ask the operator.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from .config import Loss


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

    def fingerprint(self) -> dict:
        """What a checkpoint must share with the run that resumes it, as plain values. Without a mask: the key
        checkpoints made before there were operators carry, so that they still resume."""
        return {"mask": None}

    def record(self) -> dict:
        """What the run's ``.json`` says about the operator."""
        return {}

    def to(self, device: torch.device) -> Operator:
        return self


@dataclass(frozen=True)
class Identity(Operator):
    """The image itself was observed, corrupted by noise or a codec that the prior does not reproduce early."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


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
