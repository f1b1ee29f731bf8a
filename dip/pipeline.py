"""One image's way through dip, in three steps that ``dip restore``, every image of ``dip batch`` and
``dip.restore()`` all take:

- :func:`prepare` reads the image, the mask and the reference once and decides everything before the fit: the
  task, the device, the preset with the command line's overrides, the forward operator, and whether the memory
  is there. The result is a :class:`Plan`.
- :func:`solve` fits it (or its restarts), with snapshots, checkpoints and interrupt; :func:`solve_together`
  fits several plans of one size at once. Both give :class:`dip.restoration.Restoration`.
- :func:`write` puts the output image, the pictures, the report and the ``.json`` beside it on disk.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import jpeg
from .checkpoint import fingerprint_of, load_checkpoint, save_checkpoint
from .config import NO_OVERRIDES, Loss, Overrides, Preset, Task, grown, resolve_preset
from .degradations import is_scattered
from .denoise import choose_noise, noise_floor_variance, refined, refines
from .device import resolve_device
from .errors import DeviceError, InputError, UsageError
from .fit import FitResult, Step, fit, fit_parallel
from .io import Picture, read_image, read_mask, write_image
from .jpeg import planes_of
from .layout import Layout, choose_layout, parse_tile
from .memory import check_fits, out_of_memory_message
from .metrics import ReferenceTracker
from .operators import Blur, Decoded, Downsample, Identity, Mask, Observation, Operator, blur_kernel
from .report import report_path, write_report, write_sidecar
from .restoration import Restoration, averaged, restart_seed, scores
from .snapshots import Snapshot, SnapshotPlan, SnapshotRecorder, make_pictures
from .stopping import make_detector
from .tiles import Box

JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})


# The option each task's operator needs, as the command line names it.
_NEEDS = {Task.inpaint: ("mask", "--mask MASK (white = known pixels)"), Task.sr: ("scale", "--scale N"),
          Task.deblur: ("blur", "--blur SPEC (e.g. gaussian:2)")}  # fmt: skip


def choose_task(
    task: Task | str, *, has_mask: bool, source: Path | None, scale: int | None = None, blur: str | None = None
) -> Task:
    """``auto``: inpaint with a mask, super-resolve with a scale, deblur with a blur, JPEG artifacts for a .jpg
    input, denoising otherwise. Each of mask, scale and blur belongs to its task alone."""
    given = {"mask": has_mask, "scale": scale is not None, "blur": blur is not None}
    if sum(given.values()) > 1:
        named = " and ".join(f"--{name}" for name, value in given.items() if value)
        raise UsageError(f"{named} belong to different tasks; give one of them")
    if task == "auto":
        wanted = next((t for t, (name, _) in _NEEDS.items() if given[name]), None)
        if wanted is not None:
            return wanted
        if source is not None and source.suffix.lower() in JPEG_SUFFIXES:
            return Task.jpeg
        return Task.denoise
    try:
        task = Task(task)
    except ValueError:
        raise UsageError(f"unknown task {task!r}; choose auto, {', '.join(t.value for t in Task)}") from None
    for needer, (name, option) in _NEEDS.items():
        if task is needer and not given[name]:
            raise UsageError(f"--task {task.value} needs {option}")
        if task is not needer and given[name]:
            raise UsageError(f"--{name} only applies to --task {needer.value}, not {task.value}")
    return task


def operator_for(
    task: Task, known: np.ndarray | None, scale: int | None, blur: str | None, picture: Picture | None = None
) -> Operator:
    """The forward operator of a task: where a new task says what ``A`` is."""
    if task is Task.inpaint:
        return Mask(torch.from_numpy(known.astype(np.float32))[None, None])
    if task is Task.sr:
        return Downsample(scale)
    if task is Task.deblur:
        return Blur(blur_kernel(blur), blur)
    if task is Task.jpeg and picture is not None and picture.jpeg is not None:
        return Decoded(planes_of(picture.pixels, picture.jpeg), picture.jpeg.describe())
    return Identity()


def load_picture(image: Picture | str | Path) -> Picture:
    return image if isinstance(image, Picture) else read_image(image)


def read_known(mask: np.ndarray | str | Path | None, picture: Picture, invert: bool = False) -> np.ndarray | None:
    """A mask (file or bool array, or None) as a bool array (H, W), True = known, checked against the picture."""
    if mask is None:
        return None
    height, width = picture.pixels.shape[:2]
    if isinstance(mask, np.ndarray):
        if mask.shape != (height, width):
            raise InputError(f"mask array has shape {mask.shape} but the image is {height}x{width} (HxW)")
        return mask.astype(bool)
    if picture.path is not None and Path(mask).resolve() == Path(picture.path).resolve():
        raise UsageError(f"the mask '{mask}' is the input image itself; give the mask file (white = known)")
    return read_mask(mask, picture.size, invert=invert)


def _check_reference(reference: Picture, picture: Picture, restored: tuple[int, int]) -> None:
    """``restored``: (height, width) of the image the run gives, which the reference must have."""
    (rw, rh), (w, h) = reference.size, picture.size
    if (rh, rw) != restored:
        if restored == (h, w):
            raise InputError(
                f"reference is {rw}x{rh} but the input is {w}x{h}; give the clean version of the same image"
            )
        raise InputError(
            f"reference is {rw}x{rh} but the output is {restored[1]}x{restored[0]} (the {w}x{h} input enlarged); "
            "give the clean image at the output's size"
        )
    if reference.channels != picture.channels:
        raise InputError(
            f"reference has {reference.channels} channel(s) but the input has {picture.channels}; "
            "compare gray with gray and colour with colour"
        )


@dataclass(frozen=True, eq=False)
class Plan:
    """One image, prepared: everything about its restoration that is decided before the fit starts."""

    picture: Picture  # the input as read
    task: Task
    preset: Preset  # with the overrides applied
    device: torch.device
    observation: Observation  # y and the task's operator, on the CPU
    seed: int = 0
    reference: Picture | None = None  # the clean image, for the scores only
    layout: Layout | None = None  # None: one fit of the whole image
    keep_known: bool = False  # the output's observed pixels are the input's own (inpainting)
    noise: str = "gaussian"  # denoising's noise model (dip.denoise.NOISES less auto)
    sigma: float | None = None  # the noise's standard deviation on the 0-255 scale, where the user knows it

    @property
    def split(self) -> bool:
        return self.layout is not None and self.layout.split

    def output_picture(self, image: torch.Tensor) -> Picture:
        """The restored pixels with the input's alpha, bit depth and profile. The pixels an inpainting filled are
        made opaque: where the holes were transparent (a mask from the alpha), the fill would be invisible."""
        picture = self.picture.with_pixels(image)
        known = self.observation.operator.known
        if self.task is Task.inpaint and picture.alpha is not None and known is not None:
            holes = known[0, 0].cpu().numpy() == 0
            picture = dataclasses.replace(picture, alpha=np.where(holes, 1.0, picture.alpha).astype(np.float32))
        return picture

    def shown_input(self) -> np.ndarray:
        """The input as a user has it at the output's size (enlarged for super-resolution): what the output is
        compared with, on the sheet and in the scores."""
        return self.observation.operator.as_restored(self.picture.pixels)

    def snapshots(self, spec: str | None, folder: str | Path | None) -> SnapshotPlan | None:
        """The snapshots ``spec`` asks for in this run (None for none), checked against its cap."""
        return None if spec is None else SnapshotPlan.parse(spec, folder, self.preset.fit.iterations)


def prepare(
    image: Picture | str | Path,
    *,
    task: Task | str = "auto",
    mask: np.ndarray | str | Path | None = None,
    mask_invert: bool = False,
    preset: str | Preset = "auto",
    overrides: Overrides = NO_OVERRIDES,
    device: str | torch.device = "auto",
    reference: Picture | str | Path | None = None,
    seed: int = 0,
    scale: int | None = None,
    blur: str | None = None,
    tile: int | str = "auto",
    tile_overlap: int | None = None,
    keep_known: bool | None = None,
    prefer_whole: bool = False,
) -> Plan:
    """Reads the image, its mask and reference once and decides the task, device, preset, operator and layout
    (whole, tiles or windows: see dip.layout); refuses (DeviceError, naming smaller options) a fit the device
    clearly lacks the memory for. ``scale`` (an integer factor) asks for super-resolution, ``blur`` (see
    dip.operators.blur_kernel) for deblurring. ``tile``: auto, 0 (never split) or a tile size in output pixels;
    ``keep_known`` (None: for inpainting) makes the output's known pixels the input's own, bit for bit;
    ``prefer_whole``: the run needs one fit (snapshots, checkpoints, restarts), so auto splits only what does not
    fit. ``overrides.noise`` (see dip.denoise) picks a denoising run's loss and preset; ``overrides.sigma``, the
    noise's standard deviation on the 0-255 scale, replaces the estimate from the input."""
    source = image.path if isinstance(image, Picture) else Path(image)
    chosen_task = choose_task(task, has_mask=mask is not None, source=source, scale=scale, blur=blur)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    picture = load_picture(image)
    known = read_known(mask, picture, mask_invert)
    operator = operator_for(chosen_task, known, scale, blur, picture)
    operator.check(*picture.pixels.shape[:2])
    observation = Observation(picture.to_tensor(), operator)
    noise = choose_noise(overrides.noise, chosen_task, observation.y)
    if noise == "impulse" and overrides.loss is None:
        overrides = dataclasses.replace(overrides, loss=Loss.l1)  # an impulse cannot pull an L1 fit far
    channels, height, width = observation.restored_shape
    reference_picture = None if reference is None else load_picture(reference)
    if reference_picture is not None:
        _check_reference(reference_picture, picture, (height, width))
    asked = preset
    if not isinstance(preset, Preset):
        scattered = known is not None and is_scattered(known)  # "paper" then takes the paper's Barbara net
        pick = functools.partial(resolve_preset, asked, chosen_task, device.type, scattered_mask=scattered,
                                 scale=scale, noise=noise)  # fmt: skip
        preset = pick(area=height * width)
    chosen = overrides.apply(preset)
    keep = chosen_task is Task.inpaint if keep_known is None else keep_known
    if keep and chosen_task is not Task.inpaint:
        raise UsageError("--keep-known applies to inpainting (--mask): other tasks observe no pixel exactly")
    layout = choose_layout(parse_tile(tile), tile_overlap, task=chosen_task, operator=operator, preset=chosen,
                           device=device, observed=picture.pixels.shape[:2], channels=channels, keep_known=keep,
                           prefer_whole=prefer_whole)  # fmt: skip
    # Steps grow with the size of the fit, so with the largest box of a split (every box then takes as many).
    fitted = (height, width)
    if layout.split:
        fitted = max(layout.boxes, key=lambda box: box.area).scaled(operator.factor).size
        if asked == "auto":  # small tiles or windows take the preset of a small image (the nets are the same)
            chosen = overrides.apply(pick(area=fitted[0] * fitted[1]))
    chosen = grown(chosen, *fitted)
    return Plan(picture, chosen_task, chosen, device, observation, seed, reference_picture, layout, keep, noise,
                overrides.sigma)


def _tracker(plan: Plan, every: int) -> ReferenceTracker | None:
    return None if plan.reference is None else ReferenceTracker(plan.reference.to_tensor(), every=every)


def _all_of(observers: list[Callable[[Step], None]]) -> Callable[[Step], None] | None:
    if not observers:
        return None

    def observe(step: Step) -> None:
        for observer in observers:
            observer(step)

    return observe


def solve(
    plan: Plan,
    *,
    observe: Callable[[Step], None] | None = None,
    interrupt: threading.Event | None = None,
    snapshots: SnapshotPlan | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    restarts: int = 1,
    restarts_at_once: bool | None = None,
    track_every: int = 10,
    on_region: Callable[[int, int, Box], None] | None = None,
) -> Restoration:
    """Fits the plan and returns its restoration; see :func:`dip.api.restore` for what each option does.
    A plan split into tiles or windows goes to :func:`dip.split.solve_split` (``on_region``: see there).

    ``restarts`` K > 1 fits K nets from the seeds ``restart_seed(plan.seed, k)`` and returns the mean of their
    images, together as one stacked net (``restarts_at_once``; None: on a GPU) or one after another.
    """
    if restarts < 1:
        raise UsageError(f"restarts must be at least 1, not {restarts}")
    if plan.split:
        asked = {"snapshots": snapshots is not None, "checkpoints": checkpoint is not None, "restarts": restarts > 1}
        wanted = [name for name, given in asked.items() if given]
        if wanted:
            channels, height, width = plan.observation.restored_shape
            raise UsageError(
                f"{' and '.join(wanted)} need one fit of the whole image, but this {width}x{height} one is fitted in "
                f"{plan.layout.describe(plan.observation.operator.factor)} ({plan.layout.reason}); pass --tile 0 "
                "to fit it whole"
            )
        from .split import solve_split

        return finished(plan, solve_split(plan, observe=observe, interrupt=interrupt, on_region=on_region))
    if restarts == 1:
        one = _solve_one(plan, observe, interrupt, snapshots, checkpoint, checkpoint_every, resume, track_every)
        return finished(plan, one)
    if snapshots is not None or checkpoint is not None or resume:
        raise UsageError("restarts average several fits: they do not go with snapshots or checkpoints")
    seeded = [dataclasses.replace(plan, seed=restart_seed(plan.seed, k)) for k in range(restarts)]
    at_once = restarts_at_once if restarts_at_once is not None else plan.device.type == "cuda"
    if at_once:
        each = None if observe is None else (lambda k, step: observe(step))
        runs = solve_together(seeded, observe=each, interrupt=interrupt, track_every=track_every)
    else:
        runs = [
            _solve_one(restart, observe, interrupt, None, None, 0, False, track_every)
            for k, restart in enumerate(seeded)
            if k == 0 or interrupt is None or not interrupt.is_set()
        ]
    return finished(plan, averaged(runs, plan.seed, plan.reference, at_once=at_once))


def finished(plan: Plan, restoration: Restoration | None) -> Restoration | None:
    """The restoration as returned: on Gaussian noise finished by dip.denoise's filter, a JPEG file's put back
    inside its quantisation intervals (dip.jpeg), unless interrupted (the user asked for the image as it stood).
    None (another process's share of a split run) stays None."""
    if restoration is None or restoration.result.stop_reason == "interrupted":
        return restoration
    if isinstance(plan.observation.operator, Decoded):
        return jpeg.refined(plan, restoration)
    return refined(plan, restoration) if refines(plan) else restoration


def _solve_one(plan, observe, interrupt, snapshots, checkpoint, checkpoint_every, resume, track_every) -> Restoration:
    preset = plan.preset
    tracker = _tracker(plan, track_every)
    detector = make_detector(preset.stop, noise_floor_variance(plan), preset.fit.average)
    recorder = None
    if snapshots is not None:
        source = plan.picture.path
        recorder = SnapshotRecorder(
            snapshots.folder,
            snapshots.schedule,
            plan.picture,
            suffix=source.suffix.lower() if source is not None and source.suffix else ".png",
            averaged=preset.fit.average is not None,
            statistic=None if detector is None else (lambda: detector.statistic),
            reference=None if plan.reference is None else plan.reference.pixels,
            digits=max(6, len(str(preset.fit.iterations))),
        )
    observers = [o for o in (tracker, observe, recorder) if o is not None]
    state = _Checkpointing(plan, snapshots, checkpoint, tracker, recorder)
    saved = state.load() if resume else None
    try:
        result = fit(
            plan.observation,
            preset.net,
            preset.fit,
            seed=plan.seed,
            device=plan.device,
            detector=detector,
            observe=_all_of(observers),
            interrupt=interrupt,
            checkpoint_every=checkpoint_every,
            save_checkpoint=None if checkpoint is None else state.save,
            resume=None if saved is None else saved["fit"],
        )
    except BaseException as error:
        if recorder is not None:
            recorder.close()
        if isinstance(error, torch.cuda.OutOfMemoryError):  # also what torch >= 2.5 raises as torch.OutOfMemoryError
            channels, height, width = plan.observation.restored_shape
            message = out_of_memory_message(preset, plan.task, plan.device, height, width, channels, None, None)
            raise DeviceError(message) from None
        raise
    result = with_known(plan, result)
    kept = []
    if recorder is not None:
        kept = recorder.finish(result)
        snapshots.write_manifest(kept, result, averaged=preset.fit.average is not None)
    return Restoration(
        plan.output_picture(result.image),
        result,
        plan.task,
        preset,
        plan.seed,
        plan.device,
        scores(tracker, result, plan.shown_input(), plan.reference, preset),
        reference_history=[] if tracker is None else tracker.history,
        snapshots=kept,
        snapshot_dir=None if recorder is None else snapshots.folder,
        operator=plan.observation.operator,
        keep_known=plan.keep_known,
    )


class _Checkpointing:
    """A run's checkpoint: the fit's state with the reference tracking and the snapshots kept so far, for a run of
    the same image, operator, settings, seed and snapshots."""

    def __init__(self, plan: Plan, snapshots: SnapshotPlan | None, path, tracker, recorder) -> None:
        self.path, self.tracker, self.recorder = path, tracker, recorder
        observation = plan.observation
        spec = None if snapshots is None else snapshots.spec
        self.fingerprint = fingerprint_of(observation.y, observation.operator, plan.preset, plan.seed, spec)

    def load(self) -> dict:
        saved = load_checkpoint(self.path, self.fingerprint)
        if self.tracker is not None:
            self.tracker.history = saved["tracker"]
        if self.recorder is not None:
            self.recorder.snapshots = {r["iteration"]: Snapshot(**r) for r in saved["snapshots"]}
        return saved

    def save(self, state: dict) -> None:
        save_checkpoint(
            self.path,
            {
                "fingerprint": self.fingerprint,
                "fit": state,
                "tracker": [] if self.tracker is None else self.tracker.history,
                "snapshots": [] if self.recorder is None else [s.record() for s in self.recorder.snapshots.values()],
            },
        )


def solve_together(
    plans: list[Plan],
    *,
    observe: Callable[[int, Step], None] | None = None,
    interrupt: threading.Event | None = None,
    track_every: int = 10,
) -> list[Restoration]:
    """Plans of one size, task and preset fitted at once, one net each (see dip.parallel): the same result per
    image as :func:`solve` with its seed, and a better-used device. No snapshots or checkpoints. ``interrupt``
    ends every fit after the current step, each returning its best so far. The nets' images, not yet
    :func:`finished`: the caller finishes each (a split run joins its boxes first)."""
    first = plans[0]
    preset, device = first.preset, first.device
    channels, height, width = first.observation.restored_shape
    # K nets at once need about K times one net's activations: counted as one image K times as wide
    check_fits(preset, first.task, device, height, width * len(plans), channels)
    trackers = [_tracker(plan, track_every) for plan in plans]

    def watch(k: int, step: Step) -> None:
        if trackers[k] is not None:
            trackers[k](step)
        if observe is not None:
            observe(k, step)

    results = fit_parallel(
        [plan.observation for plan in plans],
        preset.net,
        preset.fit,
        seeds=[plan.seed for plan in plans],
        device=device,
        detectors=[make_detector(preset.stop, noise_floor_variance(plan), preset.fit.average) for plan in plans],
        observe=watch,
        interrupt=interrupt,
    )
    results = [with_known(plan, result) for plan, result in zip(plans, results, strict=True)]
    return [
        Restoration(
            plan.output_picture(result.image),
            result,
            plan.task,
            preset,
            plan.seed,
            device,
            scores(tracker, result, plan.shown_input(), plan.reference, preset),
            reference_history=[] if tracker is None else tracker.history,
            operator=plan.observation.operator,
            keep_known=plan.keep_known,
        )
        for plan, result, tracker in zip(plans, results, trackers, strict=True)
    ]


def with_known(plan: Plan, result: FitResult) -> FitResult:
    """The result with the observed pixels the input's own, exactly, where the plan keeps them."""
    if not plan.keep_known:
        return result
    observation = plan.observation
    image = torch.where(observation.operator.known > 0, observation.y, result.image)
    return dataclasses.replace(result, image=image)


def checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name + ".ckpt")


def write(
    plan: Plan,
    restoration: Restoration,
    output: Path,
    *,
    inputs: dict[str, Path | None],
    zoom: tuple[int, int, int, int] | None = None,
    animate: bool = False,
    report: bool = False,
) -> dict:
    """The image, then the pictures, then the settings, which are returned: written last, they mark the output as
    complete. ``inputs`` names the files the run read ("input", and "mask" and "reference" where given). A
    finished run's checkpoint is removed: there is nothing left to resume."""
    write_image(output, restoration.picture)
    record = {"input": str(inputs["input"]), "output": str(output), **restoration.record()}
    if plan.task is Task.denoise:
        record["noise"] = plan.noise
    for role in ("mask", "reference"):
        if inputs.get(role) is not None:
            record[role] = str(inputs[role])
    if restoration.snapshot_dir is not None:
        clean = None if plan.reference is None else plan.reference.pixels
        pictures = make_pictures(restoration, plan.shown_input(), zoom=zoom, animate=animate, reference=clean,
                                 input_title=plan.observation.operator.shown_as)  # fmt: skip
        if report:
            record["report"] = str(report_path(output))
            write_report(report_path(output), record, pictures)
    write_sidecar(output, record)
    checkpoint = checkpoint_path(output)
    if restoration.result.stop_reason != "interrupted" and checkpoint.exists():
        checkpoint.unlink()
    return record
