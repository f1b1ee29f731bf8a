"""What dip would run on here, and what it would do differently on each device: the first thing to paste into a
bug report (``dip doctor``)."""

from __future__ import annotations

import os
import platform
from importlib import metadata

import torch

from . import __version__
from .config import Task, resolve_preset
from .layout import CPU_TILE, GPU_TILES, MEMORY_SHARE
from .memory import GiB, available_bytes, estimate

PACKAGES = ("torch", "kornia", "pillow", "scikit-image", "numpy", "scipy", "typer", "rich")


def versions() -> dict[str, str]:
    found = {"dip": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def largest_whole(preset, device: torch.device) -> int | None:
    """The side of the largest square colour image whose fit with ``preset`` fits the device's free memory
    whole; None where the free memory cannot be known. A fit's memory is affine in the image's area, so two
    estimates give the line."""
    free = available_bytes(device)
    if free is None:
        return None
    small, large = (estimate(preset, side, side, 3, device.type).total for side in (128, 256))
    per_pixel = (large - small) / (256**2 - 128**2)
    area = (MEMORY_SHARE * free - (small - per_pixel * 128**2)) / per_pixel
    return int(max(0.0, area) ** 0.5) // 16 * 16


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _device_entry(device: torch.device, name: str) -> dict:
    preset = resolve_preset("auto", Task.denoise, device.type)
    free = available_bytes(device)
    side = largest_whole(preset, device)
    entry = {
        "device": str(device),
        "name": name,
        "free_gib": None if free is None else round(free / GiB, 2),
        "preset": preset.name,
        "restarts": "at once (one stacked net)" if device.type == "cuda" else "in turn",
        "largest_whole_image": None if side is None else f"{side}x{side}",
        "tiles_otherwise": f"{CPU_TILE}" if device.type != "cuda" else f"the largest of {GPU_TILES} that fits",
    }
    if device.type == "cpu":
        entry["threads"] = torch.get_num_threads()
        entry["cores"] = os.cpu_count()
        entry["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "")
    return entry


def report() -> dict:
    """Devices found (CUDA with name and free memory, MPS, the CPU with the threads dip uses) and, for each,
    what ``auto`` would choose there; the versions of dip and what it runs on."""
    devices = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            device = torch.device(f"cuda:{index}")
            devices.append(_device_entry(device, torch.cuda.get_device_name(device)))
    if torch.backends.mps.is_available():
        devices.append(_device_entry(torch.device("mps"), "Apple MPS"))
    devices.append(_device_entry(torch.device("cpu"), cpu_name()))
    return {
        "versions": versions(),
        "system": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "auto_device": devices[0]["device"],
        "devices": devices,
    }


def lines(found: dict) -> list[str]:
    """The report as text, one fact a line."""
    text = ["dip " + found["versions"]["dip"] + " on " + found["system"]]
    text.append("  " + ", ".join(f"{name} {version}" for name, version in found["versions"].items() if name != "dip"))
    text.append(f"--device auto: {found['auto_device']}")
    for entry in found["devices"]:
        free = "free memory unknown" if entry["free_gib"] is None else f"{entry['free_gib']:.1f} GiB free"
        head = f"{entry['device']} ({entry['name']}): {free}"
        if "threads" in entry:
            head += f", {entry['threads']} threads on {entry['cores']} cores"
            head += f", OMP_WAIT_POLICY={entry['omp_wait_policy'] or 'unset'}"
        text.append(head)
        largest = entry["largest_whole_image"] or "unknown"
        text.append(
            f"  --preset auto: {entry['preset']}; restarts {entry['restarts']}; fitted whole up to about {largest} "
            f"(denoising), tiles of {entry['tiles_otherwise']} beyond"
        )
    return text
