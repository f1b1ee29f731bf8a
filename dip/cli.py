"""The ``dip`` command. The only module that imports typer and rich.

torch and the image stack load inside the commands, so ``dip --help`` and ``dip --version`` answer at once.
Every user mistake surfaces as a DipError, printed here as one line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .config import PRESET_FAMILIES, PRESETS, STOP_RULES
from .errors import DipError, OutputError, UsageError

app = typer.Typer(
    name="dip",
    help="Restore a damaged photograph with a Deep Image Prior: no training data, no downloaded weights.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say "[default: ...]"; as Rich markup those brackets would vanish
)

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


# --- shared checks ---------------------------------------------------------------------------------------


def _existing_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise UsageError(f"{what} '{path}' does not exist")
    if path.is_dir():
        raise UsageError(f"{what} '{path}' is a folder; give an image file (use 'dip batch' for folders)")
    return path


def _check_output(output: Path, inputs: list[Path], *, overwrite: bool) -> None:
    """Refuses before any work is done what would fail or destroy something after it."""
    from .io import IMAGE_SUFFIXES

    if output.suffix.lower() not in IMAGE_SUFFIXES:
        known = " ".join(sorted(IMAGE_SUFFIXES))
        raise UsageError(f"cannot tell the output format from '{output.name}'; end it with one of: {known}")
    for source in inputs:
        if source.exists() and output.exists() and output.resolve() == source.resolve():
            raise UsageError(f"output '{output}' is an input file; dip never overwrites its inputs")
    if output.exists() and not overwrite:
        raise UsageError(f"output '{output}' already exists; pass --overwrite to replace it")
    # Checked without creating anything: a run refused later (an unreadable input) must leave no empty folder.
    # Missing folders are made when the first file is written.
    folder = output.parent
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists() or parent == parent.parent)
    if not existing.is_dir():
        raise OutputError(f"cannot create output folder '{folder}': '{existing}' is a file", path=folder)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output folder '{existing}' is not writable", path=folder)


def _emit(record: dict, as_json: bool, line: str) -> None:
    if as_json:
        from .report import to_json

        typer.echo(to_json(record))
    else:
        typer.echo(line)


# --- options shared by restore and batch ------------------------------------------------------------------

TaskOption = Annotated[
    str, typer.Option(help="denoise | inpaint | jpeg | auto (inpaint with a mask, jpeg for a .jpg input).")
]
MaskInvertOption = Annotated[bool, typer.Option("--mask-invert", help="The mask marks missing pixels instead.")]
PresetOption = Annotated[
    str,
    typer.Option(
        help=f"auto (paper net on a GPU, light net elsewhere) | {' | '.join([*PRESET_FAMILIES[1:], *PRESETS])}"
    ),
]
ItersOption = Annotated[
    int | None, typer.Option("--iters", help="The most steps with stopping on; exactly this many with --stop off.")
]
StopOption = Annotated[
    str | None,
    typer.Option(
        help="Early stopping: auto (the preset's) | spread (of the iterates around their average) | wmv (windowed "
        "variance) | emv (exponential) | off [auto]."
    ),
]
WindowOption = Annotated[int | None, typer.Option(help="spread, wmv: steps in the window [preset's].")]
PatienceOption = Annotated[
    int | None, typer.Option(help="Steps without a new minimum of the statistic before stopping [preset's].")
]
NoiseFloorOption = Annotated[
    float | None,
    typer.Option(
        help="Denoising with l2: also stop once the loss falls below this fraction of the input's estimated "
        "noise variance (0 = off) [0.8]."
    ),
]
LrOption = Annotated[float | None, typer.Option(help="Adam learning rate [default: the preset's].")]
LossOption = Annotated[str | None, typer.Option(help="l2 (default) or l1 (robust to impulse noise).")]
DeviceOption = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps")]
SnapshotsOption = Annotated[
    str | None,
    typer.Option(
        help="Keep these iterates: 100,500,2400 | every:N | log:N (plus the returned and the last), "
        "with a contact sheet and curves."
    ),
]
RestartsOption = Annotated[
    int, typer.Option(help="Fit K nets from different seeds, each stopped on its own, and average their images.")
]
AnimateOption = Annotated[bool, typer.Option("--animate", help="Also write the snapshots as an animated GIF.")]
RestartsAtOnceOption = Annotated[
    bool | None,
    typer.Option(
        "--restarts-at-once/--restarts-in-turn",
        help="Fit the restarts together, as one stacked net, or one after another [default: together on a GPU].",
        show_default=False,
    ),
]


def _check_fit_options(iters, lr, loss, stop, window, patience, noise_floor) -> None:
    if iters is not None and iters < 1:
        raise UsageError(f"--iters must be at least 1, not {iters}")
    if lr is not None and not lr > 0:
        raise UsageError(f"--lr must be positive, not {lr}")
    if loss is not None and loss not in ("l1", "l2"):
        raise UsageError(f"--loss must be l1 or l2, not {loss!r}")
    if stop is not None and stop not in STOP_RULES:
        raise UsageError(f"--stop must be one of {', '.join(STOP_RULES)}, not {stop!r}")
    if noise_floor is not None and not 0 <= noise_floor < 1:
        raise UsageError(f"--noise-floor must be in [0, 1) (0 = off), not {noise_floor}")
    for name, value, least in (("--window", window, 2), ("--patience", patience, 1)):
        if value is not None and value < least:
            raise UsageError(f"{name} must be at least {least}, not {value}")


# --- dip restore -----------------------------------------------------------------------------------------


class _Bars:
    """Rich progress bars on stderr, fed by the fit's observer hook; silent when stderr is not a terminal."""

    def __init__(self, *columns: str, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn(columns[0]),
            BarColumn(),
            MofNCompleteColumn(),
            *(TextColumn(column) for column in columns[1:]),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not (enabled and console.is_terminal),
        )

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)


class _Progress(_Bars):
    """One bar for one fit, with the loss and the speed."""

    def __init__(self, total: int, enabled: bool) -> None:
        super().__init__("[bold]fitting", "loss {task.fields[loss]}", "{task.fields[rate]} it/s", enabled=enabled)
        self.task = self.progress.add_task("fit", total=total, loss="-", rate="-")

    def __call__(self, step) -> None:
        speed = self.progress.tasks[0].speed
        self.progress.update(
            self.task,
            completed=step.iteration,
            loss=f"{step.loss:.2e}",
            rate=f"{speed:.1f}" if speed else "-",
        )


@app.command()
def restore(
    input: Annotated[Path, typer.Argument(help="The damaged image (PNG, JPEG, TIFF, WebP, BMP).", show_default=False)],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Where to write the result [default: <stem>.restored.png].")
    ] = None,
    task: TaskOption = "auto",
    mask: Annotated[Path | None, typer.Option(help="Inpainting mask, same size as the input; white = known.")] = None,
    mask_invert: MaskInvertOption = False,
    preset: PresetOption = "auto",
    iters: ItersOption = None,
    stop: StopOption = None,
    window: WindowOption = None,
    patience: PatienceOption = None,
    noise_floor: NoiseFloorOption = None,
    lr: LrOption = None,
    loss: LossOption = None,
    seed: Annotated[int, typer.Option(help="Fixes weights, input noise and jitter: same seed, same result.")] = 0,
    device: DeviceOption = "auto",
    reference: Annotated[
        Path | None, typer.Option(help="Clean image to score against (PSNR/SSIM); never used by the fit.")
    ] = None,
    snapshots: SnapshotsOption = None,
    snapshot_dir: Annotated[
        Path | None, typer.Option(help="Where snapshots go [default: <output stem>.snapshots/].")
    ] = None,
    zoom: Annotated[
        str | None, typer.Option(help="X,Y,W,H: add this crop, enlarged, under every tile of the sheet.")
    ] = None,
    animate: AnimateOption = False,
    report: Annotated[
        bool, typer.Option("--report", help="Write <output stem>.report.html: sheet, curves, settings, metrics.")
    ] = False,
    restarts: RestartsOption = 1,
    restarts_at_once: RestartsAtOnceOption = None,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(help="Save the whole state of the fit to <output>.ckpt every N steps (and on interrupt)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from <output>.ckpt; give the same image, options and seed.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Restore one image: denoise it, remove JPEG artifacts, or fill in the pixels a mask marks as missing."""
    _existing_file(input, "input")
    if mask is not None:
        _existing_file(mask, "mask")
        if mask.resolve() == input.resolve():
            raise UsageError(f"--mask '{mask}' is the input image itself; give the mask file (white = known pixels)")
    if reference is not None:
        _existing_file(reference, "reference")
    _check_fit_options(iters, lr, loss, stop, window, patience, noise_floor)
    if checkpoint_every is not None and checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every must be at least 1, not {checkpoint_every}")
    if restarts < 1:
        raise UsageError(f"--restarts must be at least 1, not {restarts}")
    if restarts > 1 and (snapshots or zoom or animate or report or checkpoint_every or resume):
        raise UsageError("--restarts averages several fits; it does not go with snapshots, reports or checkpoints")
    output = output if output is not None else input.with_name(f"{input.stem}.restored.png")
    checkpoint = output.with_name(output.name + ".ckpt")
    if resume and not checkpoint.is_file():
        raise UsageError(f"nothing to resume: no checkpoint '{checkpoint}' (run with --checkpoint-every N first)")
    # The output of the run being resumed (written when it was interrupted) is that run's to replace.
    inputs = [p for p in (input, mask, reference) if p is not None]
    _check_output(output, inputs, overwrite=overwrite or resume)
    if snapshots is None and snapshot_dir is not None:
        raise UsageError("--snapshot-dir needs --snapshots SPEC (e.g. log:12)")

    from .api import choose_task, read_known, scattered
    from .api import restore as run_restore
    from .config import resolve_preset, with_overrides
    from .device import resolve_device
    from .io import read_image
    from .report import report_path

    # Everything the command line can get wrong is checked before the (long) fit starts.
    chosen_task = choose_task(task, has_mask=mask is not None, source=input)
    chosen_device = resolve_device(device)
    picture = read_image(input)
    known = read_known(mask, picture, mask_invert)  # read once: its warnings are shown once
    chosen = with_overrides(
        resolve_preset(preset, chosen_task, chosen_device.type, scattered_mask=scattered(known)),
        iterations=iters,
        lr=lr,
        loss=loss,
        stop=stop,
        window=window,
        patience=patience,
        noise_floor=noise_floor,
    )
    if snapshots is None and (zoom is not None or animate or report):
        from .snapshots import DEFAULT_LOG_COUNT

        # the sheet, the animation and the report are made from snapshots
        snapshots = f"log:{min(DEFAULT_LOG_COUNT, chosen.fit.iterations)}"
    zoom_box = None
    if snapshots is not None:
        from .snapshots import check_folder, default_folder, parse_schedule
        from .visuals import parse_zoom

        parse_schedule(snapshots, chosen.fit.iterations)
        zoom_box = None if zoom is None else parse_zoom(zoom, picture.size)
        snapshot_dir = snapshot_dir if snapshot_dir is not None else default_folder(output)
        if not resume:  # a resumed run keeps the snapshots it had already written
            check_folder(snapshot_dir, overwrite=overwrite)
        if report and report_path(output).exists() and not (overwrite or resume):
            raise UsageError(f"report '{report_path(output)}' already exists; pass --overwrite to replace it")

    with _Signals() as signals, _Progress(chosen.fit.iterations, enabled=not quiet) as progress:
        restoration = run_restore(
            picture,
            task=chosen_task,
            mask=known,
            preset=chosen,
            seed=seed,
            device=chosen_device,
            reference=reference,
            observe=progress,
            snapshots=snapshots,
            snapshot_dir=snapshot_dir,
            interrupt=signals.event,
            checkpoint=checkpoint if checkpoint_every or resume else None,
            checkpoint_every=checkpoint_every or 0,
            resume=resume,
            restarts=restarts,
            restarts_at_once=restarts_at_once,
        )
        record = _write_restoration(
            restoration, picture, input, output, mask, reference, snapshots, zoom_box, animate, report
        )
    result = restoration.result
    if result.stop_reason != "interrupted" and checkpoint.exists():
        checkpoint.unlink()  # the run is complete: nothing left to resume
    line = f"{input} -> {output}: {record['task']}, iterate {result.best_iteration} of {result.iterations}"
    line += f" ({result.stop_reason}) in {result.seconds:.1f} s on {record['device']}"
    if restoration.metrics:
        line += f", PSNR {restoration.metrics['input_psnr']:.2f} -> {restoration.metrics['psnr']:.2f} dB"
    if result.stop_reason == "interrupted":
        line += " (interrupted: wrote the image so far"
        line += "; resume with --resume)" if checkpoint.exists() else ")"
    elif result.stop_reason == "diverged":
        line += " (the fit diverged: wrote the last good image)"
    _emit(record, as_json, line)
    if signals.code is not None:
        raise typer.Exit(signals.code)


def _write_restoration(
    restoration, picture, input, output, mask, reference, snapshots, zoom_box, animate, report
) -> dict:
    """The image, then the pictures, then the settings, which are returned: written last, they mark the output as
    complete."""
    from .io import read_image, write_image
    from .report import report_path, write_report, write_sidecar

    write_image(output, restoration.picture)
    record = {"input": str(input), "output": str(output), **restoration.record()}
    if mask is not None:
        record["mask"] = str(mask)
    if reference is not None:
        record["reference"] = str(reference)
    if snapshots is not None:
        from .snapshots import make_pictures

        clean = None if reference is None else read_image(reference).pixels
        pictures = make_pictures(restoration, picture.pixels, zoom=zoom_box, animate=animate, reference=clean)
        if report:
            record["report"] = str(report_path(output))
            write_report(report_path(output), record, pictures)
    write_sidecar(output, record)
    return record


class _Signals:
    """SIGINT (Ctrl-C) or SIGTERM ends the fit after the current step, so that the best image so far is written
    whole (and a checkpoint saved); the command then exits 130 or 143. A second Ctrl-C stops at once."""

    def __enter__(self) -> _Signals:
        import signal
        import threading

        self.event, self.code = threading.Event(), None
        self._codes = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}
        self._previous = {}
        if threading.current_thread() is threading.main_thread():  # Python only delivers signals there
            for number in self._codes:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.code = self._codes[number]
        self.event.set()

    def __exit__(self, *exc) -> None:
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)


# --- dip degrade -----------------------------------------------------------------------------------------


@app.command()
def degrade(
    clean: Annotated[Path, typer.Argument(help="The clean image to corrupt.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the corrupted image.")],
    noise: Annotated[float | None, typer.Option(help="Add Gaussian noise of this sigma (0-255 scale).")] = None,
    drop: Annotated[float | None, typer.Option(help="Black out this fraction of pixels at random (0-1).")] = None,
    mask_out: Annotated[
        Path | None, typer.Option(help="With --drop: where to write the mask [default: <output stem>_mask.png].")
    ] = None,
    jpeg: Annotated[int | None, typer.Option(help="Compress with JPEG at this quality (1-95).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random corruption.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
) -> None:
    """Make a corrupted test image from a clean one (noise, missing pixels or JPEG), with its settings beside it."""
    chosen = [name for name, value in (("--noise", noise), ("--drop", drop), ("--jpeg", jpeg)) if value is not None]
    if len(chosen) != 1:
        raise UsageError(
            "give exactly one of --noise SIGMA, --drop P, --jpeg Q" + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if mask_out is not None and drop is None:
        raise UsageError("--mask-out only goes with --drop")
    _existing_file(clean, "input")
    if drop is not None and mask_out is None:
        mask_out = output.with_name(f"{output.stem}_mask.png")
    outputs = [output] + ([mask_out] if mask_out is not None else [])
    for path in outputs:
        _check_output(path, [clean], overwrite=overwrite)
    if mask_out is not None and mask_out.resolve() == output.resolve():
        raise UsageError("--mask-out must differ from the output")

    import numpy as np

    from . import degradations
    from .io import Picture, atomic_output, read_image, write_image
    from .metrics import psnr
    from .report import write_sidecar

    picture = read_image(clean)
    rng = np.random.default_rng(seed)
    record: dict = {"input": str(clean), "output": str(output), "seed": seed}
    if noise is not None:
        corrupted = degradations.add_gaussian_noise(picture.pixels, noise, rng)
        record["corruption"] = {"kind": "gaussian", "sigma": noise}
        write_image(output, picture.with_pixels(corrupted))
    elif drop is not None:
        corrupted, known = degradations.drop_pixels(picture.pixels, drop, rng)
        record["corruption"] = {"kind": "drop", "fraction": drop, "known_fraction": round(float(known.mean()), 6)}
        record["mask"] = str(mask_out)
        mask_picture = Picture(known[..., None].astype(np.float32), None, 8, "L", None)
        write_image(mask_out, mask_picture)
        write_image(output, picture.with_pixels(corrupted))
    else:
        record["corruption"] = {"kind": "jpeg", "quality": jpeg}
        if output.suffix.lower() in (".jpg", ".jpeg"):
            # A real JPEG file at quality q: re-encoding the decoded pixels at another quality would add artifacts.
            data = degradations.jpeg_bytes(picture.pixels, jpeg)
            with atomic_output(output) as temporary:
                temporary.write_bytes(data)
        else:
            write_image(output, picture.with_pixels(degradations.jpeg_compress(picture.pixels, jpeg)))
    # Scored as written (quantised to the file's bit depth), so it matches what `restore` reports as input_psnr.
    record["psnr"] = round(psnr(read_image(output).pixels, picture.pixels), 4)
    write_sidecar(output, record)
    _emit(record, as_json, f"{clean} -> {output}: {record['corruption']['kind']}, PSNR {record['psnr']:.2f} dB")


# --- dip batch -------------------------------------------------------------------------------------------


@app.command()
def batch(
    input_dir: Annotated[Path | None, typer.Argument(help="Folder of damaged images.", show_default=False)] = None,
    output_dir: Annotated[
        Path | None,
        typer.Argument(help="Where the restored images go; the input tree is mirrored.", show_default=False),
    ] = None,
    glob: Annotated[str, typer.Option(help="Which files to consider, e.g. '*.jpg'.")] = "*",
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Also look into subfolders.")] = False,
    masks: Annotated[
        Path | None, typer.Option(help="Folder of inpainting masks named like the inputs (same subfolders).")
    ] = None,
    mask_suffix: Annotated[
        str | None, typer.Option(help="Masks lie beside the inputs as <stem><SUFFIX>.<ext>, e.g. _mask.")
    ] = None,
    mask_invert: MaskInvertOption = False,
    references: Annotated[
        Path | None,
        typer.Option(help="Folder of clean images named like the inputs: PSNR/SSIM go into the manifest."),
    ] = None,
    task: TaskOption = "auto",
    preset: PresetOption = "auto",
    iters: ItersOption = None,
    stop: StopOption = None,
    window: WindowOption = None,
    patience: PatienceOption = None,
    noise_floor: NoiseFloorOption = None,
    lr: LrOption = None,
    loss: LossOption = None,
    seed: Annotated[
        int, typer.Option(help="Base seed; each image's seed comes from it and the image's path in the folder.")
    ] = 0,
    device: DeviceOption = "auto",
    snapshots: SnapshotsOption = None,
    animate: AnimateOption = False,
    restarts: RestartsOption = 1,
    restarts_at_once: RestartsAtOnceOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo images that are already done.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first image that fails.")] = False,
    parallel: Annotated[
        int, typer.Option(help="Fit up to K images of one size at once on the device (one net each).")
    ] = 1,
    merge: Annotated[
        bool, typer.Option("--merge", help="Only merge the manifest parts of a multi-process run in OUTPUT_DIR.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List the files that were not inputs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Restore every image of a folder: resumable, a failed file does not stop the rest, and under torchrun each
    process takes its share (dip batch IN OUT, or dip batch --merge OUT after a multi-process run)."""
    from .batch import merge_manifests

    if merge:
        folder = output_dir or input_dir
        if folder is None or (output_dir is not None and input_dir is not None):
            raise UsageError("--merge takes one folder: dip batch --merge OUTPUT_DIR")
        if not folder.is_dir():
            raise UsageError(f"'{folder}' is not a folder")
        merged = merge_manifests(folder)
        _emit({"merged": merged, "manifest": str(folder / "manifest.jsonl")}, as_json, f"merged {merged} record(s)")
        return
    if input_dir is None or output_dir is None:
        raise UsageError("give the input and the output folder: dip batch INPUT_DIR OUTPUT_DIR")
    _check_fit_options(iters, lr, loss, stop, window, patience, noise_floor)
    if not input_dir.is_dir():
        raise UsageError(f"input folder '{input_dir}' does not exist or is not a folder")
    if output_dir.exists() and input_dir.resolve() == output_dir.resolve():
        raise UsageError("the output folder is the input folder; dip never writes over its inputs")
    if animate and snapshots is None:
        raise UsageError("--animate needs --snapshots SPEC (e.g. log:12)")
    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1, not {parallel}")
    if parallel > 1 and snapshots is not None:
        raise UsageError("--snapshots works one image at a time; drop --parallel or --snapshots")
    if restarts < 1:
        raise UsageError(f"--restarts must be at least 1, not {restarts}")
    if restarts > 1 and (parallel > 1 or snapshots is not None):
        raise UsageError("--restarts goes with neither --parallel nor --snapshots")
    _check_output(output_dir / "manifest.png", [], overwrite=True)  # the folder can be made and written to
    output_dir.mkdir(parents=True, exist_ok=True)

    import time

    from .api import choose_task, read_known, restore_parallel, scattered
    from .api import restore as run_restore
    from .batch import Abandoned, Shard, discover, run_jobs
    from .config import resolve_preset, with_overrides
    from .device import resolve_device
    from .io import read_image, write_image
    from .report import write_sidecar
    from .snapshots import check_folder, default_folder, make_pictures, parse_schedule

    shard = Shard.from_environment()
    found = discover(
        input_dir,
        output_dir,
        pattern=glob,
        recursive=recursive,
        masks_dir=masks,
        mask_suffix=mask_suffix,
        references_dir=references,
        seed=seed,
        # with --task auto a folder may mix work: an image without a mask is restored by its own task
        masks_required=task == "inpaint",
    )
    if verbose:
        for path in found.ignored:
            typer.echo(f"dip: not an image, ignored: {path.as_posix()}", err=True)
        for path in found.masks:
            typer.echo(f"dip: mask, not an input: {path.as_posix()}", err=True)
    jobs = shard.take(found.jobs)
    chosen_device = resolve_device(_device_for(device, shard))
    settings = dict(
        iterations=iters, lr=lr, loss=loss, stop=stop, window=window, patience=patience, noise_floor=noise_floor
    )
    # Checked once for the whole folder rather than failing every image the same way.
    for job_task in {choose_task(task, has_mask=j.mask is not None, source=j.source) for j in jobs if not j.problem}:
        for scattered_pixels in (False, True) if job_task == "inpaint" else (False,):
            chosen = with_overrides(
                resolve_preset(preset, job_task, chosen_device.type, scattered_mask=scattered_pixels), **settings
            )
            if snapshots is not None:
                parse_schedule(snapshots, chosen.fit.iterations)
    group = _join_process_group(shard)

    folder_progress = _FolderProgress(len(jobs), enabled=not quiet and shard.rank == 0)

    signals: _Signals | None = None

    def restore_one(job) -> dict:
        if signals.event.is_set():  # a signal came between two images: do not start another
            raise Abandoned
        job_task = choose_task(task, has_mask=job.mask is not None, source=job.source)
        picture = read_image(job.source)
        known = read_known(job.mask, picture, mask_invert)
        chosen = with_overrides(
            resolve_preset(preset, job_task, chosen_device.type, scattered_mask=scattered(known)), **settings
        )
        folder_progress.start_image(job.name, chosen.fit.iterations)
        snapshot_dir = None
        if snapshots is not None:
            snapshot_dir = default_folder(job.output)
            check_folder(snapshot_dir, overwrite=True)  # leftovers of an attempt that did not finish
        restoration = run_restore(
            picture,
            task=job_task,
            mask=known,
            preset=chosen,
            seed=job.seed,
            device=chosen_device,
            reference=job.reference,
            observe=folder_progress,
            snapshots=snapshots,
            snapshot_dir=snapshot_dir,
            interrupt=signals.event,
            restarts=restarts,
            restarts_at_once=restarts_at_once,
        )
        return write_one(job, restoration)

    def write_one(job, restoration) -> dict:
        if restoration.result.stop_reason == "interrupted":
            raise Abandoned
        write_image(job.output, restoration.picture)
        record = {"input": str(job.source), "output": str(job.output), **restoration.record()}
        if job.mask is not None:
            record["mask"] = str(job.mask)
        if job.reference is not None:
            record["reference"] = str(job.reference)
        if snapshots is not None:
            clean = None if job.reference is None else _pixels_of(job.reference)
            make_pictures(restoration, _pixels_of(job.source), animate=animate, reference=clean)
        write_sidecar(job.output, record)  # last: an image with its settings beside it is what counts as done
        keys = ("task", "iterations", "best_iteration", "stop_reason", "preset", "device", "rollbacks")
        scores = ("psnr", "ssim", "input_psnr", "input_ssim", "peak_psnr", "peak_iteration")
        return {key: record[key] for key in (*keys, *scores) if key in record} | {"fit_seconds": record["seconds"]}

    def restore_many(chunk) -> list:
        """Up to --parallel images: those of one task, size and channel count are fitted together."""
        if signals.event.is_set():
            raise Abandoned
        outcomes: dict = {}
        groups: dict = {}
        known: dict = {}  # each mask read once, as an array
        for job in chunk:
            try:
                job_task = choose_task(task, has_mask=job.mask is not None, source=job.source)
                picture = read_image(job.source)
                known[job.name] = read_known(job.mask, picture, mask_invert)
            except DipError as error:
                outcomes[job.name] = error
                continue
            groups.setdefault((job_task, picture.pixels.shape, scattered(known[job.name])), []).append(job)
        for (job_task, _shape, scattered_pixels), members in groups.items():
            chosen = with_overrides(
                resolve_preset(preset, job_task, chosen_device.type, scattered_mask=scattered_pixels), **settings
            )
            folder_progress.start_image(f"{len(members)} x {members[0].name}", chosen.fit.iterations)
            try:
                restorations = restore_parallel(
                    [job.source for job in members],
                    preset=chosen,
                    seeds=[job.seed for job in members],
                    task=job_task,
                    masks=[known[job.name] for job in members],
                    references=[job.reference for job in members],
                    device=chosen_device,
                    observe=lambda k, step: folder_progress(step) if k == 0 else None,
                    interrupt=signals.event,
                )
            except Exception as error:  # the group's failure is each of its images' failure
                outcomes.update({job.name: error for job in members})
                continue
            for job, restoration in zip(members, restorations, strict=True):
                try:
                    outcomes[job.name] = write_one(job, restoration)
                except Exception as error:
                    outcomes[job.name] = error
        return [outcomes[job.name] for job in chunk]

    records = []
    started = time.perf_counter()
    extra = {"rank": shard.rank} if shard.world > 1 else {}
    try:
        with _Signals() as signals, folder_progress:
            for record in run_jobs(
                jobs, restore_one, manifest=shard.manifest(output_dir), overwrite=overwrite, fail_fast=fail_fast,
                extra=extra, restore_many=restore_many if parallel > 1 else None, group=parallel,
            ):  # fmt: skip
                records.append(record)
                folder_progress.finish_image()
    except KeyboardInterrupt:
        done = sum(r["status"] == "done" for r in records)
        typer.echo(
            f"dip: interrupted after {done} image(s); the image in progress was not written. "
            "Run the same command again to resume.",
            err=True,
        )
        raise typer.Exit(signals.code or EXIT_INTERRUPTED) from None
    if group is not None:
        # Rank 0 speaks for the whole run, exit code included: a launcher stops the other processes as soon as one
        # exits with an error, so only rank 0 may, and only after the merge.
        everyone: list[list[dict]] = [[] for _ in range(shard.world)]
        group.all_gather_object(everyone, records)
        records = [record for share in everyone for record in share]
        if shard.rank == 0:
            merge_manifests(output_dir)
        group.barrier()
        group.destroy_process_group()

    failures = [r for r in records if r["status"] == "failed"]
    if shard.rank == 0:
        counts = {status: sum(r["status"] == status for r in records) for status in ("done", "skipped", "failed")}
        if failures:
            _failure_table(failures)
        summary = {
            **counts,
            "images": len(found.jobs),
            "seconds": round(time.perf_counter() - started, 3),
            "manifest": str(output_dir / "manifest.jsonl"),
            **({"processes": shard.world} if shard.world > 1 else {}),
        }
        line = f"{input_dir} -> {output_dir}: {counts['done']} done, {counts['skipped']} skipped"
        _emit(summary, as_json, line + f", {counts['failed']} failed in {summary['seconds']:.1f} s")
    if failures and shard.rank == 0:
        raise typer.Exit(1)


def _pixels_of(source: Path):
    from .io import read_image

    return read_image(source).pixels


def _device_for(device: str, shard) -> str:
    """Under a launcher, ``auto`` means this process's own GPU (LOCAL_RANK), not everyone's first one."""
    if device != "auto" or shard.world == 1:
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{shard.local_rank % torch.cuda.device_count()}"
    return device


def _join_process_group(shard):
    """Joins the launcher's group (gloo: it only serves the final barrier, on CPU or GPU machines alike)."""
    if shard.world == 1:
        return None
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        try:
            # Processes finish their shares at different times; the barrier must outwait the slowest one.
            dist.init_process_group("gloo", timeout=timedelta(days=7))
        except ValueError as error:
            raise UsageError(f"RANK/WORLD_SIZE are set but no launcher is: start with torchrun ({error})") from None
    return dist


class _FolderProgress(_Bars):
    """Two bars: images of the folder (with ETA) and steps of the current image."""

    def __init__(self, total: int, enabled: bool) -> None:
        super().__init__("[bold]{task.description}", enabled=enabled)
        self.folder = self.progress.add_task("folder", total=total)
        self.image = self.progress.add_task("image", total=1, visible=False)

    def start_image(self, name: str, steps: int) -> None:
        self.progress.reset(self.image, total=steps, description=name[-40:], visible=True)

    def __call__(self, step) -> None:
        self.progress.update(self.image, completed=step.iteration)

    def finish_image(self) -> None:
        self.progress.advance(self.folder)


def _failure_table(failures: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(failures)} image(s) failed", title_justify="left")
    table.add_column("image", overflow="fold")
    table.add_column("error", overflow="fold")
    for record in failures:
        table.add_row(record["input"], record.get("error", ""))
    Console(stderr=True).print(table)


# --- dip compare -----------------------------------------------------------------------------------------


@app.command()
def compare(
    images: Annotated[list[Path], typer.Argument(help="Images of the same size, in the order to show them.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the side-by-side sheet (PNG).")],
    reference: Annotated[
        Path | None, typer.Option(help="Clean image: adds PSNR/SSIM under each tile and a reference tile.")
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated tile titles, one per image [default: the file names].")
    ] = None,
    zoom: Annotated[str | None, typer.Option(help="X,Y,W,H: add this crop, enlarged, under every tile.")] = None,
    columns: Annotated[int | None, typer.Option(help="Tiles per row [default: up to 6].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Put images side by side with labels (and metrics against a reference): runs, snapshots, other tools."""
    for path in images:
        _existing_file(path, "image")
    if reference is not None:
        _existing_file(reference, "reference")
    titles = [path.name for path in images]
    if labels is not None:
        titles = [label.strip() for label in labels.split(",")]
        if len(titles) != len(images):
            raise UsageError(f"--labels gives {len(titles)} title(s) for {len(images)} image(s); give one per image")
    if columns is not None and columns < 1:
        raise UsageError(f"--columns must be at least 1, not {columns}")
    _check_output(output, [*images, *([reference] if reference else [])], overwrite=overwrite)

    from .errors import InputError
    from .io import read_image
    from .metrics import psnr, ssim
    from .visuals import Tile, parse_zoom, save_sheet

    pictures = [read_image(path) for path in images]
    clean = read_image(reference) if reference is not None else None
    first = pictures[0]
    for path, picture in [*zip(images, pictures, strict=True), *([(reference, clean)] if clean else [])]:
        if picture.size != first.size:
            (w, h), (w0, h0) = picture.size, first.size
            raise InputError(f"'{path}' is {w}x{h} but '{images[0]}' is {w0}x{h0}; compare images of the same size")
    zoom_box = None if zoom is None else parse_zoom(zoom, first.size)

    def as_shown(pixels):
        # Gray beside colour: show gray as three equal channels so that every tile has the same shape.
        colour = max(p.channels for p in [*pictures, *([clean] if clean else [])])
        return pixels if pixels.shape[2] == colour else pixels.repeat(colour, axis=2)

    tiles, entries = [], []
    for path, title, picture in zip(images, titles, pictures, strict=True):
        entry = {"image": str(path), "label": title}
        caption = ""
        if clean is not None:
            if picture.channels != clean.channels:
                raise InputError(
                    f"'{path}' has {picture.channels} channel(s) but the reference has {clean.channels}; "
                    "compare gray with gray and colour with colour"
                )
            entry["psnr"], entry["ssim"] = psnr(picture.pixels, clean.pixels), ssim(picture.pixels, clean.pixels)
            caption = f"{entry['psnr']:.2f} dB · SSIM {entry['ssim']:.3f}"
        tiles.append(Tile(as_shown(picture.pixels), title, caption))
        entries.append(entry)
    if clean is not None:
        tiles.append(Tile(as_shown(clean.pixels), "reference"))
    save_sheet(tiles, output, zoom=zoom_box, columns=columns)
    record = {"output": str(output), "reference": str(reference) if reference else None, "images": entries}
    scores = "".join(f", {e['label']} {e['psnr']:.2f} dB" for e in entries if "psnr" in e)
    _emit(record, as_json, f"{len(images)} image(s) -> {output}{scores}")


# --- entry point -----------------------------------------------------------------------------------------


def _click_exception_type() -> type[Exception]:
    # Typer vendors click in recent releases and uses the real one in older ones; find the class either way.
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app and turns user errors into one line on stderr and an exit code."""
    command = typer.main.get_command(app)
    click_exception = _click_exception_type()
    with warnings.catch_warnings():
        # Warnings meant for the user (first frame of an animation, clipped values) as one plain line each.
        warnings.showwarning = lambda message, *_: typer.echo(f"dip: warning: {message}", err=True)
        try:
            code = command.main(args=argv, prog_name="dip", standalone_mode=False)
        except DipError as error:
            typer.echo(f"dip: error: {error}", err=True)
            code = error.exit_code
        except click_exception as error:
            typer.echo(f"dip: error: {error.format_message()}", err=True)
            code = error.exit_code
        except (KeyboardInterrupt, typer.Abort):
            typer.echo("dip: interrupted before anything could be written", err=True)
            code = EXIT_INTERRUPTED
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
