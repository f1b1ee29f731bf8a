"""``restore()``: one image from file (or array) to restored picture, the same path the CLI takes."""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .checkpoint import fingerprint_of, load_checkpoint, save_checkpoint  # save_checkpoint: patched by a benchmark
from .config import Loss, Preset, Task, resolve_preset, with_overrides
from .degradations import Observation, is_scattered
from .device import resolve_device
from .errors import DeviceError, InputError, UsageError
from .fit import FitResult, Step, fit
from .io import Picture, read_image, read_mask
from .memory import check_fits, out_of_memory_message
from .metrics import ReferenceTracker, psnr, ssim
from .report import to_json
from .snapshots import MANIFEST, Snapshot, SnapshotRecorder, parse_schedule
from .stopping import make_detector, noise_variance

JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})


def choose_task(task: Task | str, *, has_mask: bool, source: Path | None) -> Task:
    """``auto``: inpaint when a mask is given, JPEG artifacts for a .jpg input, denoising otherwise."""
    if task != "auto":
        try:
            task = Task(task)
        except ValueError:
            raise UsageError(f"unknown task {task!r}; choose auto, denoise, inpaint or jpeg") from None
        if task is Task.inpaint and not has_mask:
            raise UsageError("--task inpaint needs --mask MASK (white = known pixels)")
        if task is not Task.inpaint and has_mask:
            raise UsageError(f"--mask only applies to --task inpaint, not {task.value}")
        return task
    if has_mask:
        return Task.inpaint
    if source is not None and source.suffix.lower() in JPEG_SUFFIXES:
        return Task.jpeg
    return Task.denoise


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

    def record(self) -> dict:
        """Everything needed to reproduce and judge the run, as plain JSON-able values."""
        return {
            "task": self.task.value,
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


def _noise(task: Task, preset: Preset, y: torch.Tensor, mask: torch.Tensor | None) -> float | None:
    """The input's noise variance where the loss models the corruption as white noise (denoising with L2, no
    mask), for the detector's noise floor; None elsewhere (JPEG blocks, impulses, holes are not such noise)."""
    if task is not Task.denoise or mask is not None or preset.fit.loss is not Loss.l2:
        return None
    if preset.stop.resolved_rule == "off" or preset.stop.noise_floor == 0:
        return None
    return noise_variance(y)


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


def _all_of(observers: list[Callable[[Step], None]]) -> Callable[[Step], None] | None:
    if not observers:
        return None

    def observe(step: Step) -> None:
        for observer in observers:
            observer(step)

    return observe


def _load(image: Picture | str | Path) -> Picture:
    return image if isinstance(image, Picture) else read_image(image)


def _check_reference(reference: Picture, picture: Picture) -> None:
    if reference.size != picture.size:
        (rw, rh), (w, h) = reference.size, picture.size
        raise InputError(f"reference is {rw}x{rh} but the input is {w}x{h}; give the clean version of the same image")
    if reference.channels != picture.channels:
        raise InputError(
            f"reference has {reference.channels} channel(s) but the input has {picture.channels}; "
            "compare gray with gray and colour with colour"
        )


def restore(
    image: Picture | str | Path,
    *,
    task: Task | str = "auto",
    mask: np.ndarray | str | Path | None = None,
    mask_invert: bool = False,
    preset: str | Preset = "auto",
    iterations: int | None = None,
    lr: float | None = None,
    loss: Loss | str | None = None,
    stop: str | None = None,
    window: int | None = None,
    patience: int | None = None,
    noise_floor: float | None = None,
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
) -> Restoration:
    """Restores one image. ``mask`` is a bool array (H, W) or an image file, True/white = known pixel.

    ``preset`` is a name (see dip.config.PRESETS; auto / paper / light pick by task and device) or a Preset.
    ``stop`` is auto | spread | wmv | emv | off (None or auto: the preset's); with stopping on, ``iterations`` is
    the cap. With a ``reference``, PSNR against it is tracked every ``track_every`` steps for the record; it never
    steers the fit.
    ``snapshots`` (a schedule, see dip.snapshots.parse_schedule) keeps those iterates, and the returned and last
    ones, as files in ``snapshot_dir`` with ``snapshots.json`` beside them.

    ``interrupt`` (an Event, set e.g. by a signal handler) ends the fit after the current step, returning the
    best image so far. With a ``checkpoint`` path, the whole state of the run is saved there every
    ``checkpoint_every`` steps and when interrupted; ``resume=True`` continues from it (it must have been made
    with the same image, mask, settings and seed) and on the CPU gives the uninterrupted run's result exactly.

    ``restarts`` K > 1 fits K nets from different seeds (see ``restart_seed``), each with its own automatic stop,
    and returns the mean of their images (the paper's "2 restarts" averaging); not with snapshots or checkpoints.
    ``restarts_at_once`` fits them together as one stacked net (dip.parallel, as ``restore_parallel``) rather than
    one after another; None: together on a GPU, in turn elsewhere (on a 2-core CPU stacking gained nothing).
    ``observe`` then sees the restarts' steps interleaved.
    """
    # The command line's explicit choices, applied to the preset below (and passed on as they are to each restart)
    overrides = dict(
        iterations=iterations, lr=lr, loss=loss, stop=stop, window=window, patience=patience, noise_floor=noise_floor
    )
    if restarts != 1:
        if restarts < 1:
            raise UsageError(f"restarts must be at least 1, not {restarts}")
        if snapshots is not None or checkpoint is not None or resume:
            raise UsageError("restarts average several fits: they do not go with snapshots or checkpoints")
        device = device if isinstance(device, torch.device) else resolve_device(device)
        # read once for every restart: a mask's warnings are shown once, not once per restart
        image = _load(image)
        mask = read_known(mask, image, mask_invert)
        if restarts_at_once if restarts_at_once is not None else device.type == "cuda":
            return _restarts_at_once(
                image,
                restarts,
                task=task,
                mask=mask,
                preset=preset,
                overrides=overrides,
                seed=seed,
                device=device,
                reference=None if reference is None else _load(reference),
                track_every=track_every,
                observe=observe,
                interrupt=interrupt,
            )
        runs = [
            restore(
                image,
                task=task,
                mask=mask,
                preset=preset,
                **overrides,
                seed=restart_seed(seed, k),
                device=device,
                reference=reference,
                track_every=track_every,
                observe=observe,
                interrupt=interrupt,
            )  # fmt: skip
            for k in range(restarts)
            if k == 0 or interrupt is None or not interrupt.is_set()
        ]
        return _averaged(runs, seed, reference)
    source = image.path if isinstance(image, Picture) else Path(image)
    task = choose_task(task, has_mask=mask is not None, source=source)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    picture, y, mask_tensor, reference_picture = _prepare(image, mask, mask_invert, reference)
    if not isinstance(preset, Preset):
        known = None if mask_tensor is None else mask_tensor[0, 0].numpy() > 0
        preset = resolve_preset(preset, task, device.type, scattered_mask=scattered(known))
    chosen = with_overrides(preset, **overrides)

    schedule = None
    if snapshots is not None:
        if snapshot_dir is None:
            raise UsageError("snapshots need a folder to go to: give snapshot_dir")
        schedule = parse_schedule(snapshots, chosen.fit.iterations)

    tracker = None
    observers = [] if observe is None else [observe]
    if reference_picture is not None:
        tracker = ReferenceTracker(reference_picture.to_tensor(), every=track_every)
        observers.insert(0, tracker)
    detector = make_detector(chosen.stop, _noise(task, chosen, y, mask_tensor), chosen.fit.average)
    recorder = None
    if schedule is not None:
        recorder = SnapshotRecorder(
            Path(snapshot_dir),
            schedule,
            picture,
            suffix=source.suffix.lower() if source is not None and source.suffix else ".png",
            averaged=chosen.fit.average is not None,
            statistic=None if detector is None else (lambda: detector.statistic),
            reference=None if reference_picture is None else reference_picture.pixels,
            digits=max(6, len(str(chosen.fit.iterations))),
        )
        observers.append(recorder)
    channels, height, width = y.shape[-3:]
    check_fits(chosen, task, device, height, width, channels)
    fingerprint = fingerprint_of(y, mask_tensor, chosen, seed, snapshots)
    saved = None
    if resume:
        saved = load_checkpoint(checkpoint, fingerprint)
        if tracker is not None:
            tracker.history = saved["tracker"]
        if recorder is not None:
            recorder.snapshots = {r["iteration"]: Snapshot(**r) for r in saved["snapshots"]}

    def save(state: dict) -> None:
        save_checkpoint(
            checkpoint,
            {
                "fingerprint": fingerprint,
                "fit": state,
                "tracker": [] if tracker is None else tracker.history,
                "snapshots": [] if recorder is None else [s.record() for s in recorder.snapshots.values()],
            },
        )

    try:
        result = fit(
            Observation(y, mask_tensor),
            chosen.net,
            chosen.fit,
            seed=seed,
            device=device,
            detector=detector,
            observe=_all_of(observers),
            interrupt=interrupt,
            checkpoint_every=checkpoint_every,
            save_checkpoint=None if checkpoint is None else save,
            resume=None if saved is None else saved["fit"],
        )
    except BaseException as error:
        if recorder is not None:
            recorder.close()
        if isinstance(error, torch.cuda.OutOfMemoryError):  # also what torch >= 2.5 raises as torch.OutOfMemoryError
            message = out_of_memory_message(chosen, task, device, height, width, channels, None, None)
            raise DeviceError(message) from None
        raise
    kept = []
    if recorder is not None:
        kept = recorder.finish(result)
        _write_snapshot_manifest(Path(snapshot_dir), snapshots, schedule, kept, result, chosen)

    return Restoration(
        picture.with_pixels(result.image),
        result,
        task,
        chosen,
        seed,
        device,
        _scores(tracker, result, picture, reference_picture, chosen),
        reference_history=[] if tracker is None else tracker.history,
        snapshots=kept,
        snapshot_dir=None if recorder is None else Path(snapshot_dir),
    )


def _restarts_at_once(
    picture: Picture,
    restarts: int,
    *,
    task,
    mask: np.ndarray | None,
    preset,
    overrides: dict,
    seed: int,
    device: torch.device,
    reference: Picture | None,
    track_every: int,
    observe: Callable[[Step], None] | None,
    interrupt: threading.Event | None,
) -> Restoration:
    """The restarts of ``restore`` as one stacked fit: each restart's image is the one it gets alone, up to
    rounding (see dip.parallel)."""
    task = choose_task(task, has_mask=mask is not None, source=picture.path)
    if not isinstance(preset, Preset):
        preset = resolve_preset(preset, task, device.type, scattered_mask=scattered(mask))
    chosen = with_overrides(preset, **overrides)
    runs = restore_parallel(
        [picture] * restarts,
        preset=chosen,
        seeds=[restart_seed(seed, k) for k in range(restarts)],
        task=task,
        masks=[mask] * restarts,
        references=[reference] * restarts,
        device=device,
        track_every=track_every,
        observe=None if observe is None else (lambda k, step: observe(step)),
        interrupt=interrupt,
    )
    return _averaged(runs, seed, reference, at_once=True)


def _averaged(runs: list[Restoration], seed: int, reference, *, at_once: bool = False) -> Restoration:
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
    picture = first.picture.with_pixels(image)
    metrics = {}
    if first.metrics:
        clean = _load(reference).pixels
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
        first, picture=picture, result=result, seed=seed, metrics=metrics, restarts=runs, restarts_at_once=at_once
    )


def read_known(mask, image, mask_invert: bool = False) -> np.ndarray | None:
    """A mask (file or bool array, or None) as a bool array (H, W), True = known, checked against the image. Read
    once and passed on as the array, so that a mask's warnings are shown once."""
    if mask is None:
        return None
    _, _, mask_tensor, _ = _prepare(image, mask, mask_invert, None)
    return mask_tensor[0, 0].numpy() > 0


def scattered(known: np.ndarray | None) -> bool:
    """Whether a mask leaves pixels missing here and there rather than in strokes or holes
    (dip.degradations.is_scattered): "paper" then takes paper-scattered (see dip.config.resolve_preset)."""
    return known is not None and is_scattered(known)


def _prepare(image, mask, mask_invert: bool, reference):
    """The picture, its tensor, the mask tensor (1 = known) or None, and the reference picture or None."""
    picture = _load(image)
    known = None
    if mask is not None:
        if isinstance(mask, np.ndarray):
            if mask.shape != (picture.size[1], picture.size[0]):
                raise InputError(
                    f"mask array has shape {mask.shape} but the image is {picture.size[1]}x{picture.size[0]} (HxW)"
                )
            known = mask.astype(bool)
        else:
            if picture.path is not None and Path(mask).resolve() == Path(picture.path).resolve():
                raise UsageError(f"the mask '{mask}' is the input image itself; give the mask file (white = known)")
            known = read_mask(mask, picture.size, invert=mask_invert)
    mask_tensor = None if known is None else torch.from_numpy(known.astype(np.float32))[None, None]
    reference_picture = None
    if reference is not None:
        reference_picture = _load(reference)
        _check_reference(reference_picture, picture)
    return picture, picture.to_tensor(), mask_tensor, reference_picture


def _scores(tracker, result: FitResult, picture: Picture, reference: Picture | None, preset: Preset) -> dict:
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
        "input_psnr": psnr(picture.pixels, clean),
        "input_ssim": ssim(picture.pixels, clean),
        "peak_psnr": peak_psnr,
        "peak_iteration": peak_iteration,
    }


def restore_parallel(
    images: list[Picture | str | Path],
    *,
    preset: Preset,
    seeds: list[int],
    task: Task,
    masks: list | None = None,
    mask_invert: bool = False,
    references: list | None = None,
    device: str | torch.device = "auto",
    track_every: int = 10,
    observe: Callable[[int, Step], None] | None = None,
    interrupt: threading.Event | None = None,
) -> list[Restoration]:
    """Several images of one size and task fitted at once, one net each (see dip.parallel): the same result per
    image as ``restore`` with its seed, and a better-used device. No snapshots or checkpoints. ``interrupt``
    ends every fit after the current step, each returning its best so far."""
    from .parallel import fit_parallel

    device = device if isinstance(device, torch.device) else resolve_device(device)
    masks = masks or [None] * len(images)
    references = references or [None] * len(images)
    prepared = [_prepare(i, m, mask_invert, r) for i, m, r in zip(images, masks, references, strict=True)]
    channels, height, width = prepared[0][1].shape[-3:]
    # K nets at once need about K times one net's activations: counted as one image K times as wide
    check_fits(preset, task, device, height, width * len(images), channels)
    trackers = [
        None if reference is None else ReferenceTracker(reference.to_tensor(), every=track_every)
        for _, _, _, reference in prepared
    ]

    def watch(k: int, step: Step) -> None:
        if trackers[k] is not None:
            trackers[k](step)
        if observe is not None:
            observe(k, step)
        if interrupt is not None and interrupt.is_set():
            raise KeyboardInterrupt  # fit_parallel then returns every image's best so far, marked interrupted

    results = fit_parallel(
        [Observation(y, mask) for _, y, mask, _ in prepared],
        preset.net,
        preset.fit,
        seeds=seeds,
        device=device,
        detectors=[
            make_detector(preset.stop, _noise(task, preset, y, mask), preset.fit.average) for _, y, mask, _ in prepared
        ],
        observe=watch,
    )
    return [
        Restoration(
            picture.with_pixels(result.image),
            result,
            task,
            preset,
            seed,
            device,
            _scores(tracker, result, picture, reference, preset),
            reference_history=[] if tracker is None else tracker.history,
        )
        for (picture, _, _, reference), result, seed, tracker in zip(prepared, results, seeds, trackers, strict=True)
    ]


def _write_snapshot_manifest(
    folder: Path, spec: str, schedule: list[int], kept: list[Snapshot], result: FitResult, preset: Preset
) -> None:
    from .io import atomic_output

    manifest = {
        "schedule": spec,
        "scheduled": schedule,
        "not_reached": [i for i in schedule if i > result.iterations],
        "image": "output average" if preset.fit.average is not None else "iterate",
        "returned_iteration": result.best_iteration,
        "stopped_at": result.iterations,
        "stop_reason": result.stop_reason,
        "snapshots": [snapshot.record() for snapshot in kept],
    }
    with atomic_output(folder / MANIFEST) as temporary:
        temporary.write_text(to_json(manifest) + "\n", encoding="utf-8")
