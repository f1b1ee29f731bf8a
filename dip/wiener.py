"""Collaborative Wiener filtering of a noisy image, guided by a pilot estimate of the clean one.

This is the second stage of BM3D (Dabov, Foi, Katkovnik & Egiazarian 2007), written here in torch, with dip's
restored image as the pilot in place of BM3D's own first stage. Patches alike in the pilot are stacked into a
3-D group; the group is taken to a separable transform (a 2-D DCT per patch, a DCT along the stack) where the
pilot's coefficients say how much of each noisy coefficient is signal, and each noisy coefficient is shrunk by
the empirical Wiener factor pilot^2 / (pilot^2 + sigma^2). Every pixel is covered by many groups; their
estimates are averaged with weights that favour the groups whose filter kept the least noise.

Why it helps a Deep Image Prior: the net's image is smooth where the prior is confident and, at the moment the
fit is stopped, slightly blurred in fine texture. The pilot only has to tell signal from noise per coefficient,
and the noisy image still holds the texture, so the filter restores detail the net had not yet fitted while
removing the noise the net had started to fit. Work is bounded: reference patches are taken a band of rows at a
time, so memory grows with the image's width, not its area.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Orthonormal opponent colours: iid noise of one sigma per RGB channel keeps that sigma in each opponent channel,
# and the luminance row (the mean, scaled) is where patches are matched, as in colour BM3D.
_OPPONENT = torch.tensor(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
        [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
        [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
    ]
)
_FAR = 1e3  # the value the pilot is padded with: a candidate patch that leaves the image is never matched


def dct_matrix(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II as an n x n matrix (rows are basis functions; JPEG's 8 x 8 block transform is
    D @ block @ D.T with n = 8)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    matrix[0] /= math.sqrt(2)
    return matrix.to(dtype)


def _haar_matrix(n: int) -> torch.Tensor:
    """The orthonormal Haar transform of length n (a power of two) as an n x n matrix."""
    matrix = torch.ones(1, 1, dtype=torch.float64)
    while matrix.shape[0] < n:
        size = matrix.shape[0]
        coarse = torch.kron(matrix, torch.tensor([[1.0, 1.0]], dtype=torch.float64))
        fine = torch.kron(torch.eye(size, dtype=torch.float64), torch.tensor([[1.0, -1.0]], dtype=torch.float64))
        matrix = torch.cat([coarse, fine]) / math.sqrt(2)
    return matrix.float()


def _kaiser(patch: int, beta: float = 2.0) -> torch.Tensor:
    window = torch.kaiser_window(patch, periodic=False, beta=beta)
    return (window[:, None] * window[None, :]).reshape(-1)


def _positions(extent: int, patch: int, stride: int) -> torch.Tensor:
    """Top-left corners of reference patches along one axis: every ``stride``, and the last patch that fits."""
    last = extent - patch
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return torch.tensor(starts)


def collaborative_wiener(
    noisy: torch.Tensor,
    pilot: torch.Tensor,
    sigma: float | Sequence[float],
    *,
    patch: int = 8,
    group: int = 32,
    radius: int = 12,
    stride: int = 3,
    band: int = 1024,
    shrink: str = "wiener",
    threshold: float = 2.7,
    match: float = 400.0,
) -> torch.Tensor:
    """The Wiener estimate of ``noisy`` (C x H x W, values in [0, 1], white noise of standard deviation ``sigma``
    on that scale) with ``pilot`` (same shape) as the estimate of its clean signal. ``sigma`` may also be one value per
channel, a colour image's in the opponent colours (luminance first) where the filter works. ``group`` patches of
    ``patch`` x ``patch`` pixels, matched within ``radius`` pixels of every ``stride``-th patch; ``band``: about
    how many reference patches are filtered at once (memory)."""
    if noisy.shape != pilot.shape or noisy.dim() != 3:
        raise ValueError(f"noisy {tuple(noisy.shape)} and pilot {tuple(pilot.shape)} must both be C x H x W")
    channels, height, width = noisy.shape
    patch = min(patch, height, width)
    if not isinstance(sigma, (int, float)):  # per channel, broadcast over (channels, groups, size, patch^2)
        sigma = torch.tensor(sigma, dtype=torch.float32).reshape(-1, 1, 1, 1)
        if sigma.numel() != channels:
            raise ValueError(f"{sigma.numel()} noise levels for {channels} channels")
    if not (torch.as_tensor(sigma) > 0).all():
        return noisy.clone()
    noisy, pilot = noisy.float(), pilot.float()
    if channels == 3:
        noisy = torch.einsum("oc,chw->ohw", _OPPONENT, noisy)
        pilot = torch.einsum("oc,chw->ohw", _OPPONENT, pilot)
    rows, cols = _positions(height, patch, stride), _positions(width, patch, stride)
    last_row, last_col = height - patch, width - patch
    group = min(group, (min(radius, last_row) + 1) * (min(radius, last_col) + 1))  # candidates a corner has
    patch_dct = torch.kron(dct_matrix(patch), dct_matrix(patch))  # 2-D DCT of a flattened patch
    # BM3D's matching thresholds are mean squared differences on the 0-255 scale of a mean-luminance channel;
    # the luminance here is sqrt(3) times that mean.
    scale = (3.0 if channels == 3 else 1.0) / 255.0**2
    window = _kaiser(patch)
    offsets = torch.arange(patch)
    within = (offsets[:, None] * width + offsets[None, :]).reshape(-1)  # a patch's pixels, flat, from its corner
    guide = F.pad(pilot[0][None, None], (radius,) * 4, value=_FAR)[0, 0]
    flat_noisy, flat_pilot = noisy.reshape(channels, -1), pilot.reshape(channels, -1)
    numerator = torch.zeros(channels, height * width)
    denominator = torch.zeros(channels, height * width)
    span = 2 * radius + 1
    rows_per_band = max(1, band // len(cols))
    for first in range(0, len(rows), rows_per_band):
        band_rows = rows[first : first + rows_per_band]
        top, bottom = int(band_rows[0]), int(band_rows[-1])
        # The guide's rows this band's candidates can reach (padded coordinates), then every offset's distances.
        region = guide[top : bottom + patch + 2 * radius]
        centre = region[radius : radius + bottom - top + patch, radius : radius + width]
        distances = []
        for dy in range(span):
            shifted = torch.stack([region[dy : dy + centre.shape[0], dx : dx + width] for dx in range(span)])
            squared = (shifted - centre[None]) ** 2
            summed = F.avg_pool2d(squared[None], patch, stride=1)[0]  # span x (rows) x (cols), mean over a patch
            distances.append(summed[:, band_rows - top][:, :, cols])
        distance = torch.stack(distances).reshape(span * span, len(band_rows), len(cols))
        distance = distance.permute(1, 2, 0).reshape(-1, span * span)
        # Candidates outside the image are never matched, whatever the pilot holds (the padding alone would not
        # keep them out of a pilot with values near _FAR or with NaN).
        offset = torch.arange(span) - radius
        row_ok = (band_rows[:, None] + offset[None, :] >= 0) & (band_rows[:, None] + offset[None, :] <= last_row)
        col_ok = (cols[:, None] + offset[None, :] >= 0) & (cols[:, None] + offset[None, :] <= last_col)
        inside = (row_ok[:, None, :, None] & col_ok[None, :, None, :]).reshape(-1, span * span)
        distance = torch.where(inside, torch.nan_to_num(distance, nan=_FAR**2), torch.inf)
        nearest = distance.topk(group, dim=1, largest=False)  # (references, group), self first
        ref_y = band_rows[:, None].expand(-1, len(cols)).reshape(-1, 1)
        ref_x = cols[None, :].expand(len(band_rows), -1).reshape(-1, 1)
        corner_y = ref_y + nearest.indices // span - radius
        corner_x = ref_x + nearest.indices % span - radius
        pixels = (corner_y * width + corner_x)[..., None] + within  # (references, group, patch^2)
        # A patch without enough close matches gets a smaller group (a power of two, as in BM3D): a stack padded
        # with unlike patches would be smoothed towards them.
        matched = (nearest.values <= match * scale).sum(dim=1).clamp_min(1)
        sizes = 2 ** torch.floor(torch.log2(matched.float())).long()
        for size in sizes.unique().tolist():
            chosen = pixels[sizes == size, :size]
            _filter(chosen, flat_noisy, flat_pilot, sigma, shrink, threshold, _haar_matrix(size), patch_dct, window,
                    numerator, denominator)  # fmt: skip
    restored = (numerator / denominator).reshape(channels, height, width)
    if channels == 3:
        restored = torch.einsum("oc,ohw->chw", _OPPONENT, restored)  # the transform is orthonormal: its inverse
    return restored


def _filter(pixels, flat_noisy, flat_pilot, sigma, shrink, threshold, stack_dct, patch_dct, window, numerator,
            denominator) -> None:  # fmt: skip
    """Filters the groups whose pixels are ``pixels`` (groups x size x patch^2 flat indices) and adds their
    weighted estimates to the running sums."""
    channels, size = flat_noisy.shape[0], pixels.shape[1]
    noisy_spectrum = stack_dct @ (flat_noisy[:, pixels] @ patch_dct.T)
    if shrink == "hard":
        gain = (noisy_spectrum.abs() > threshold * sigma).float()
        gain[..., 0, 0] = 1.0
    else:
        pilot_spectrum = stack_dct @ (flat_pilot[:, pixels] @ patch_dct.T)
        gain = pilot_spectrum**2 / (pilot_spectrum**2 + sigma**2)
    estimate = stack_dct.T @ ((gain * noisy_spectrum) @ patch_dct)
    variance = sigma[..., 0, 0] ** 2 if isinstance(sigma, torch.Tensor) else sigma**2
    weight = 1.0 / (variance * gain.pow(2).sum(dim=(2, 3)).clamp_min(1e-12))  # (channels, groups)
    weighted = estimate * window * weight[..., None, None]
    index = pixels.reshape(-1)
    for channel in range(channels):
        numerator[channel].index_add_(0, index, weighted[channel].reshape(-1))
        spread = (window * weight[channel][:, None, None]).expand(-1, size, -1)
        denominator[channel].index_add_(0, index, spread.reshape(-1))
