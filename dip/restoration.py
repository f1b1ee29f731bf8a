"""What restoring one image gives: the picture, the fit's result, the settings, the scores, and its record."""

from __future__ import annotations

import dataclasses
import hashlib
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import Preset, Task
from .fit import FitResult
from .io import Picture
from .metrics import ReferenceTracker, psnr, ssim
from .operators import Operator
from .snapshots import Snapshot


@dataclass
class Restoration:
    picture: Picture  # the restored image, with the input's alpha, bit depth and colour profile
    result: FitResult
    task: Task
    preset: Preset
    seed: int
    device: torch.device
    metrics: dict[str, float]  # psnr / ssim / input_psnr / input_ssim when a reference was given
    reference_history: list[dict] = field(default_factory=list, repr=False)  # ReferenceTracker.history
    snapshots: list[Snapshot] = field(default_factory=list, repr=False)
    snapshot_dir: Path | None = None
    restarts: list[Restoration] = field(default_factory=list, repr=False)  # the fits averaged, when several
    restarts_at_once: bool = False  # fitted together as one stacked net (equal to in turn up to rounding)
    operator: Operator | None = field(default=None, repr=False)
    split: dict | None = field(default=None, repr=False)  # tiles or windows: the layout and every box's fit
    keep_known: bool = False  # the observed pixels are the input's own (inpainting)
    refinement: dict | None = None  # how dip.denoise finished the net's image, where it did
    fitted: np.ndarray | None = field(default=None, repr=False)  # the net's own image (H, W, C), where finished

    def record(self) -> dict:
        """Everything needed to reproduce and judge the run, as plain JSON-able values."""
        return {
            "task": self.task.value,
            **({} if self.operator is None else self.operator.record()),
            **({"keep_known": self.keep_known} if self.task is Task.inpaint else {}),
            "iterations": self.result.iterations,
            "stopped_at": self.result.iterations,
            "stop_reason": self.result.stop_reason,
            "best_iteration": self.result.best_iteration,
            "returned": self.result.returned,
            "seconds": round(self.result.seconds, 3),
            "device": str(self.device),
            "seed": self.seed,
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in self.metrics.items()},
            "final_loss": self.result.final_loss,
            "noise_floor_loss": self.result.loss_floor,
            "rollbacks": self.result.rollbacks,
            "preset": self.preset.name,
            "net": asdict(self.preset.net),
            "fit": {**asdict(self.preset.fit), "loss": self.preset.fit.loss.value},
            "stop": asdict(self.preset.stop),
            "versions": {"dip": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "threads": torch.get_num_threads(),
            **({"snapshot_dir": str(self.snapshot_dir)} if self.snapshot_dir is not None else {}),
            **({"split": self.split} if self.split is not None else {}),
            **({"refinement": self.refinement} if self.refinement is not None else {}),
            **(
                {"restarts": [_restart_record(r) for r in self.restarts], "restarts_at_once": self.restarts_at_once}
                if self.restarts
                else {}
            ),
        }

    def psnr_curve(self) -> list[tuple[int, float]]:
        """(iteration, PSNR) of the kind of image the run returns, from the reference tracking; [] without one."""
        key = "psnr_average" if self.preset.fit.average is not None else "psnr"
        return [(entry["iteration"], entry[key]) for entry in self.reference_history if key in entry]


def _restart_record(restart: Restoration) -> dict:
    keys = ("seed", "best_iteration", "stopped_at", "stop_reason", "seconds", "psnr", "ssim", "peak_psnr")
    record = restart.record()
    return {key: record[key] for key in keys if key in record}


def restart_seed(seed: int, restart: int) -> int:
    """The seed of the k-th restart: the run's own seed for the first, so one restart is the plain run; the
    others derived by hashing, so that runs with neighbouring seeds do not share restarts."""
    if restart == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}/restart/{restart}".encode()).digest()[:4], "little") & 0x7FFF_FFFF


def scores(
    tracker: ReferenceTracker | None, result: FitResult, shown_input, reference: Picture | None, preset: Preset
) -> dict:
    """PSNR and SSIM of the returned image and of the input (``shown_input``: at the output's size, see
    Plan.shown_input) against the reference, and the peak the run could have returned with the reference to
    pick by; {} without a reference."""
    if tracker is None:
        return {}
    clean = reference.pixels
    # the peak of the kind of image that is returned: the output average if the fit averages
    peak_psnr, peak_iteration = tracker.peak("psnr_average" if preset.fit.average is not None else "psnr")
    returned_psnr = psnr(result.image, clean)
    # The tracker samples every k steps; the returned iterate may fall between samples and be the peak.
    if not returned_psnr <= peak_psnr:
        peak_psnr, peak_iteration = returned_psnr, result.best_iteration
    return {
        "psnr": returned_psnr,
        "ssim": ssim(result.image, clean),
        "input_psnr": psnr(shown_input, clean),
        "input_ssim": ssim(shown_input, clean),
        "peak_psnr": peak_psnr,
        "peak_iteration": peak_iteration,
    }


def averaged(runs: list[Restoration], seed: int, reference: Picture | None, *, at_once: bool = False) -> Restoration:
    """One Restoration whose image is the mean of the runs' images; the runs are kept in ``restarts``."""
    first = runs[0]
    interrupted = any(run.result.stop_reason == "interrupted" for run in runs)
    image = torch.stack([run.result.image for run in runs]).mean(dim=0)
    result = dataclasses.replace(
        first.result,
        image=image,
        returned=f"mean of {len(runs)} restarts: " + "; ".join(run.result.returned for run in runs),
        # fitted together, each restart's seconds run from the common start: the wall time is the longest
        seconds=(max if at_once else sum)(run.result.seconds for run in runs),
        stop_reason="interrupted" if interrupted else first.result.stop_reason,
        rollbacks=sum(run.result.rollbacks for run in runs),
    )
    metrics = {}
    if first.metrics:
        clean = reference.pixels
        metrics = {
            "psnr": psnr(image, clean),
            "ssim": ssim(image, clean),
            "input_psnr": first.metrics["input_psnr"],
            "input_ssim": first.metrics["input_ssim"],
            # the best single fit's peak: what one restart could have given with a clean image to pick by
            "peak_psnr": max(run.metrics["peak_psnr"] for run in runs),
            "peak_iteration": max(runs, key=lambda run: run.metrics["peak_psnr"]).metrics["peak_iteration"],
        }
    return dataclasses.replace(
        first,
        picture=first.picture.with_pixels(image),
        result=result,
        seed=seed,
        metrics=metrics,
        restarts=runs,
        restarts_at_once=at_once,
    )
