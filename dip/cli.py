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
)

EXIT_INTERRUPTED = 130


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
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create output folder '{folder}': {error.strerror}", path=folder) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder '{folder}' is not writable", path=folder)


def _emit(record: dict, as_json: bool, line: str) -> None:
    if as_json:
        from .report import to_json

        typer.echo(to_json(record))
    else:
        typer.echo(line)


# --- dip restore -----------------------------------------------------------------------------------------


class _Progress:
    """A Rich bar on stderr, fed by the fit's observer hook; silent when stderr is not a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]fitting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} it/s"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not (enabled and console.is_terminal),
        )
        self.task = self.progress.add_task("fit", total=total, loss="-", rate="-")

    def __enter__(self) -> _Progress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

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
    task: Annotated[
        str, typer.Option(help="denoise | inpaint | jpeg | auto (inpaint with --mask, jpeg for a .jpg input).")
    ] = "auto",
    mask: Annotated[Path | None, typer.Option(help="Inpainting mask, same size as the input; white = known.")] = None,
    mask_invert: Annotated[bool, typer.Option("--mask-invert", help="The mask marks missing pixels instead.")] = False,
    preset: Annotated[
        str,
        typer.Option(
            help=f"auto (paper net on a GPU, light net elsewhere) | {' | '.join([*PRESET_FAMILIES[1:], *PRESETS])}"
        ),
    ] = "auto",
    iters: Annotated[
        int | None,
        typer.Option("--iters", help="The most steps with stopping on; exactly this many with --stop off."),
    ] = None,
    stop: Annotated[
        str | None,
        typer.Option(help="Early stopping: auto | wmv (windowed variance) | emv (exponential) | off [preset's]."),
    ] = None,
    window: Annotated[int | None, typer.Option(help="wmv: iterates in the variance window [preset's].")] = None,
    patience: Annotated[
        int | None, typer.Option(help="Steps without a new variance minimum before stopping [preset's].")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate [default: the preset's].")] = None,
    loss: Annotated[str | None, typer.Option(help="l2 (default) or l1 (robust to impulse noise).")] = None,
    seed: Annotated[int, typer.Option(help="Fixes weights, input noise and jitter: same seed, same result.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps")] = "auto",
    reference: Annotated[
        Path | None, typer.Option(help="Clean image to score against (PSNR/SSIM); never used by the fit.")
    ] = None,
    snapshots: Annotated[
        str | None,
        typer.Option(
            help="Keep these iterates: 100,500,2400 | every:N | log:N (plus the returned and the last), "
            "with a contact sheet and curves."
        ),
    ] = None,
    snapshot_dir: Annotated[
        Path | None, typer.Option(help="Where snapshots go [default: <output stem>.snapshots/].")
    ] = None,
    zoom: Annotated[
        str | None, typer.Option(help="X,Y,W,H: add this crop, enlarged, under every tile of the sheet.")
    ] = None,
    animate: Annotated[bool, typer.Option("--animate", help="Also write the snapshots as an animated GIF.")] = False,
    report: Annotated[
        bool, typer.Option("--report", help="Write <output stem>.report.html: sheet, curves, settings, metrics.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Restore one image: denoise it, remove JPEG artifacts, or fill in the pixels a mask marks as missing."""
    _existing_file(input, "input")
    if mask is not None:
        _existing_file(mask, "mask")
    if reference is not None:
        _existing_file(reference, "reference")
    if iters is not None and iters < 1:
        raise UsageError(f"--iters must be at least 1, not {iters}")
    if lr is not None and not lr > 0:
        raise UsageError(f"--lr must be positive, not {lr}")
    if loss is not None and loss not in ("l1", "l2"):
        raise UsageError(f"--loss must be l1 or l2, not {loss!r}")
    if stop is not None and stop not in STOP_RULES:
        raise UsageError(f"--stop must be one of {', '.join(STOP_RULES)}, not {stop!r}")
    for name, value, least in (("--window", window, 2), ("--patience", patience, 1)):
        if value is not None and value < least:
            raise UsageError(f"{name} must be at least {least}, not {value}")
    output = output if output is not None else input.with_name(f"{input.stem}.restored.png")
    _check_output(output, [p for p in (input, mask, reference) if p is not None], overwrite=overwrite)
    if snapshots is None and snapshot_dir is not None:
        raise UsageError("--snapshot-dir needs --snapshots SPEC (e.g. log:12)")

    from .api import choose_task
    from .api import restore as run_restore
    from .config import resolve_preset, with_overrides
    from .device import resolve_device
    from .io import read_image, write_image
    from .report import report_path, write_report, write_sidecar

    # Everything the command line can get wrong is checked before the (long) fit starts.
    chosen_task = choose_task(task, has_mask=mask is not None, source=input)
    chosen_device = resolve_device(device)
    chosen = with_overrides(
        resolve_preset(preset, chosen_task, chosen_device.type),
        iterations=iters,
        lr=lr,
        loss=loss,
        stop=stop,
        window=window,
        patience=patience,
    )
    if snapshots is None and (zoom is not None or animate or report):
        from .snapshots import DEFAULT_LOG_COUNT

        # the sheet, the animation and the report are made from snapshots
        snapshots = f"log:{min(DEFAULT_LOG_COUNT, chosen.fit.iterations)}"
    picture = read_image(input)
    zoom_box = None
    if snapshots is not None:
        from .snapshots import check_folder, default_folder, parse_schedule
        from .visuals import parse_zoom

        parse_schedule(snapshots, chosen.fit.iterations)
        zoom_box = None if zoom is None else parse_zoom(zoom, picture.size)
        snapshot_dir = snapshot_dir if snapshot_dir is not None else default_folder(output)
        check_folder(snapshot_dir, overwrite=overwrite)
        if report and report_path(output).exists() and not overwrite:
            raise UsageError(f"report '{report_path(output)}' already exists; pass --overwrite to replace it")

    with _Progress(chosen.fit.iterations, enabled=not quiet) as progress:
        restoration = run_restore(
            picture,
            task=chosen_task,
            mask=mask,
            mask_invert=mask_invert,
            preset=chosen,
            seed=seed,
            device=chosen_device,
            reference=reference,
            observe=progress,
            snapshots=snapshots,
            snapshot_dir=snapshot_dir,
        )
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

    result = restoration.result
    line = f"{input} -> {output}: {record['task']}, iterate {result.best_iteration} of {result.iterations}"
    line += f" ({result.stop_reason}) in {result.seconds:.1f} s on {record['device']}"
    if restoration.metrics:
        line += f", PSNR {restoration.metrics['input_psnr']:.2f} -> {restoration.metrics['psnr']:.2f} dB"
    if result.stop_reason == "interrupted":
        line += " (interrupted: wrote the image so far)"
    elif result.stop_reason == "diverged":
        line += " (the fit diverged: wrote the last good image)"
    _emit(record, as_json, line)
    if result.stop_reason == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)


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
