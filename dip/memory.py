"""How much memory a fit needs, found before it starts, and a clear refusal when the device does not have it.

The activations that autograd keeps for the backward pass dominate, and they depend on the net, the image size
and padding in ways that are tedious to count by hand. So the net is run once on the ``meta`` device (shapes
only, no data, no time) with a hook that adds up every tensor autograd saves. Parameters, gradients, Adam's
two moments, the divergence guard's copies, the images the fit keeps and the detector's window are added on top.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import torch

from .config import Preset, resolve_preset
from .errors import DeviceError
from .nets import SkipNet, padded_size

GiB = 2**30
MiB = 2**20
# The backward pass holds gradients of activations beside the saved ones, allocators round up and fragment, and
# the kernels keep workspaces. Fitted to the peak resident memory of real CPU fits (120 steps, 1 thread):
# paper net 256 px 961 MiB measured / 1051 estimated, light net 256 px 386 / 446, light net 512 px (see README).
HEADROOM = 1.4
FIXED_OVERHEAD = 128 * MiB


@dataclass(frozen=True)
class Estimate:
    activations: int  # bytes autograd saves for the backward pass
    parameters: int  # weights, gradients, Adam moments and the guard's copies
    images: int  # the input noise, the observation, iterates, averages and the stored best
    detector: int  # the window of iterates (wmv), the running moments (emv) or the running average (spread)

    @property
    def total(self) -> int:
        parts = self.activations + self.parameters + self.images + self.detector
        return math.ceil(HEADROOM * parts + FIXED_OVERHEAD)


def saved_activation_bytes(preset: Preset, height: int, width: int, channels: int) -> int:
    with torch.device("meta"):
        net = SkipNet(preset.net, preset.net.out_channels or channels)
        padded_h, padded_w = padded_size(height, width, preset.net)
        z = torch.empty(1, preset.net.input_depth, padded_h, padded_w)
    total = 0

    def count(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
        net(z)
    return total


def estimate(preset: Preset, height: int, width: int, channels: int, device_type: str = "cpu") -> Estimate:
    """Bytes a fit of ``preset`` on an image of this size needs, in float32, by part, on that kind of device."""
    with torch.device("meta"):
        parameter_count = sum(p.numel() for p in SkipNet(preset.net, preset.net.out_channels or channels).parameters())
    image = 4 * channels * height * width
    padded_h, padded_w = padded_size(height, width, preset.net)
    rule = preset.stop.resolved_rule
    detector = {"spread": image, "wmv": preset.stop.window * image + 2 * image, "emv": 4 * image, "off": 0}[rule]
    return Estimate(
        activations=saved_activation_bytes(preset, height, width, channels),
        # weights, gradients, Adam's two moments; the guard keeps weights and both moments again, and a third time
        # while its next copy waits for the loss to be judged
        parameters=10 * 4 * parameter_count,
        # z and its jitter, observation and mask, iterate, average, best iterate and best average, and the iterate
        # and average of every further step queued before the host reads the losses
        images=2 * 4 * preset.net.input_depth * padded_h * padded_w
        + (6 + 2 * (preset.fit.sync_interval(device_type) - 1)) * image,
        detector=detector,
    )


def available_bytes(device: torch.device) -> int | None:
    """Free memory on the device (None when it cannot be known, e.g. Apple MPS)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                fields = dict(line.split(":", 1) for line in meminfo)
            return int(fields["MemAvailable"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            try:
                return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (OSError, ValueError, AttributeError):
                return None
    return None


def _gib(count: int) -> str:
    return f"{count / GiB:.1f} GiB"


def alternatives(preset: Preset, task, device: torch.device, height: int, width: int, channels: int) -> list[str]:
    """Options that make the fit smaller, each with what it would need."""
    options = []
    fast = resolve_preset("fast", task, device.type)
    if fast.net != preset.net:
        options.append(f"--preset fast ({_gib(estimate(fast, height, width, channels, device.type).total)})")
    if preset.stop.resolved_rule == "wmv":
        spread = replace(preset, stop=replace(preset.stop, rule="spread"))
        options.append(f"--stop spread ({_gib(estimate(spread, height, width, channels, device.type).total)})")
    half = max(1, height // 2), max(1, width // 2)
    half_needs = estimate(preset, *half, channels, device.type).total
    # sizes are the restored image's: for super-resolution the output's, not the input's
    what = "an output" if str(getattr(task, "value", task)) == "sr" else "an image"
    options.append(f"{what} of half the size, {half[1]}x{half[0]} ({_gib(half_needs)})")
    return options


def check_fits(preset: Preset, task, device: torch.device, height: int, width: int, channels: int) -> Estimate:
    """The estimate; raises DeviceError, naming smaller options, when the device clearly lacks the memory."""
    needed = estimate(preset, height, width, channels, device.type)
    free = available_bytes(device)
    if free is not None and needed.total > free:
        raise DeviceError(out_of_memory_message(preset, task, device, height, width, channels, needed.total, free))
    return needed


def out_of_memory_message(preset, task, device, height, width, channels, needed: int | None, free: int | None) -> str:
    output = "output" if str(getattr(task, "value", task)) == "sr" else "image"
    what = f"restoring a {width}x{height} {output} with {preset.name}"
    amount = f" needs about {_gib(needed)}" if needed is not None else " ran out of memory"
    have = f" but {device} has {_gib(free)} free" if free is not None else f" on {device}"
    smaller = "; ".join(alternatives(preset, task, device, height, width, channels))
    return f"{what}{amount}{have}; smaller options: {smaller}"
