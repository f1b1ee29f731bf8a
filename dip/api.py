"""``restore()``: one image from file (or array) to restored picture, the same path the CLI takes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .config import Loss, Overrides, Preset, Task
from .fit import Step
from .io import Picture
from .pipeline import prepare, solve
from .restoration import Restoration, restart_seed

__all__ = ["Restoration", "restart_seed", "restore"]


def restore(
    image: Picture | str | Path,
    *,
    task: Task | str = "auto",
    mask: np.ndarray | str | Path | None = None,
    mask_invert: bool = False,
    scale: int | None = None,
    blur: str | None = None,
    preset: str | Preset = "auto",
    iterations: int | None = None,
    lr: float | None = None,
    loss: Loss | str | None = None,
    stop: str | None = None,
    window: int | None = None,
    patience: int | None = None,
    noise_floor: float | None = None,
    noise: str = "auto",
    sigma: float | None = None,
    wiener: bool | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    reference: Picture | str | Path | None = None,
    track_every: int = 10,
    observe: Callable[[Step], None] | None = None,
    snapshots: str | None = None,
    snapshot_dir: str | Path | None = None,
    interrupt: threading.Event | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    restarts: int = 1,
    restarts_at_once: bool | None = None,
    tile: int | str = "auto",
    tile_overlap: int | None = None,
    keep_known: bool | None = None,
) -> Restoration:
    """Restores one image. ``mask`` is a bool array (H, W) or an image file, True/white = known pixel.
    ``scale`` N super-resolves (the output is N times the input), ``blur`` (gaussian:SIGMA, motion:LENGTH,ANGLE,
    box:N or a kernel image) deblurs; with task "auto" each picks its task.

    ``preset`` is a name (see dip.config.PRESETS; auto / paper / light / fast pick by task and device) or a Preset.
    ``stop`` is auto | spread | wmv | emv | off (None or auto: the preset's); with stopping on, ``iterations`` is
    the cap. With a ``reference``, PSNR against it is tracked every ``track_every`` steps for the record; it never
    steers the fit.
    ``noise`` (auto, gaussian, poisson, impulse) is denoising's noise model: it picks the loss (l1 for impulses)
    and, with preset auto, the preset; Gaussian noise ends with a collaborative Wiener filter (``wiener=False``:
    the net's image as it is) at ``sigma`` (0-255 scale; None: estimated from the input).
    ``snapshots`` (a schedule, see dip.snapshots.parse_schedule) keeps those iterates, and the returned and last
    ones, as files in ``snapshot_dir`` with ``snapshots.json`` beside them.

    ``interrupt`` (an Event, set e.g. by a signal handler) ends the fit after the current step, returning the
    best image so far. With a ``checkpoint`` path, the whole state of the run is saved there every
    ``checkpoint_every`` steps and when interrupted; ``resume=True`` continues from it (it must have been made
    with the same image, mask, settings and seed) and on the CPU gives the uninterrupted run's result exactly.

    ``restarts`` K > 1 fits K nets from different seeds (see ``restart_seed``), each with its own automatic stop,
    and returns the mean of their images (the paper's "2 restarts" averaging); not with snapshots or checkpoints.
    ``restarts_at_once`` fits them together as one stacked net (dip.parallel) rather than one after another;
    None: together on a GPU, in turn elsewhere (on a 2-core CPU stacking gained nothing). ``observe`` then sees
    the restarts' steps interleaved.

    ``tile``: auto (whole when the fit fits the device's free memory, tiles otherwise; inpainting fits windows
    around the holes), 0 (always whole) or a tile size in output pixels; ``tile_overlap`` the crossfade's width
    (see dip.layout). ``keep_known`` (None: for inpainting) makes the known pixels of the output the input's own,
    bit for bit; False returns the net's image everywhere. A split image's record has ``split``.
    """
    overrides = Overrides(iterations, lr, loss, stop, window, patience, noise_floor, wiener, noise, sigma)
    plan = prepare(
        image,
        task=task,
        mask=mask,
        mask_invert=mask_invert,
        preset=preset,
        overrides=overrides,
        device=device,
        reference=reference,
        seed=seed,
        scale=scale,
        blur=blur,
        tile=tile,
        tile_overlap=tile_overlap,
        keep_known=keep_known,
        # snapshots, checkpoints and restarts need one fit of the whole image
        prefer_whole=snapshots is not None or checkpoint is not None or resume or restarts > 1,
    )
    return solve(
        plan,
        observe=observe,
        interrupt=interrupt,
        snapshots=plan.snapshots(snapshots, snapshot_dir),
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        restarts=restarts,
        restarts_at_once=restarts_at_once,
        track_every=track_every,
    )
