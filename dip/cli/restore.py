"""``dip restore``: one image, read, fitted and written through ``dip.pipeline``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from ..config import NO_OVERRIDES, Overrides
from ..errors import UsageError
from .options import (
    AnimateOption,
    BlurOption,
    DeviceOption,
    JsonOption,
    KeepKnownOption,
    MaskInvertOption,
    PresetOption,
    RestartsAtOnceOption,
    RestartsOption,
    ScaleOption,
    SnapshotsOption,
    TaskOption,
    TileOption,
    TileOverlapOption,
    check_output,
    emit,
    existing_file,
    takes_overrides,
)


@takes_overrides
def restore(
    input: Annotated[Path, typer.Argument(help="The damaged image (PNG, JPEG, TIFF, WebP, BMP).", show_default=False)],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Where to write the result [default: <stem>.restored.png].")
    ] = None,
    task: TaskOption = "auto",
    mask: Annotated[Path | None, typer.Option(help="Inpainting mask, same size as the input; white = known.")] = None,
    mask_invert: MaskInvertOption = False,
    scale: ScaleOption = None,
    blur: BlurOption = None,
    preset: PresetOption = "auto",
    overrides: Overrides = NO_OVERRIDES,
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
        str | None,
        typer.Option(help="X,Y,W,H (in output pixels): add this crop, enlarged, under every tile of the sheet."),
    ] = None,
    animate: AnimateOption = False,
    report: Annotated[
        bool, typer.Option("--report", help="Write <output stem>.report.html: sheet, curves, settings, metrics.")
    ] = False,
    restarts: RestartsOption = 1,
    restarts_at_once: RestartsAtOnceOption = None,
    tile: TileOption = "auto",
    tile_overlap: TileOverlapOption = None,
    keep_known: KeepKnownOption = None,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate",
            help="Say what the run would do (layout, memory, time from a few timed steps) and exit; writes nothing.",
        ),
    ] = False,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(help="Save the whole state of the fit to <output>.ckpt every N steps (and on interrupt)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from <output>.ckpt; give the same image, options and seed.")
    ] = False,
    as_json: JsonOption = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Restore one image: denoise it, remove JPEG artifacts, fill in the pixels a mask marks as missing,
    super-resolve it (--scale N) or remove a known blur (--blur SPEC)."""
    _check_inputs(input, mask, reference)
    if checkpoint_every is not None and checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every must be at least 1, not {checkpoint_every}")
    if restarts < 1:
        raise UsageError(f"--restarts must be at least 1, not {restarts}")
    wants_pictures = zoom is not None or animate or report
    if restarts > 1 and (snapshots or wants_pictures or checkpoint_every or resume):
        raise UsageError("--restarts averages several fits; it does not go with snapshots, reports or checkpoints")
    if snapshots is None and snapshot_dir is not None:
        raise UsageError("--snapshot-dir needs --snapshots SPEC (e.g. log:12)")

    from ..layout import parse_tile
    from ..pipeline import checkpoint_path, finished, prepare, solve, write
    from ..split import solve_split

    output = output if output is not None else input.with_name(f"{input.stem}.restored.png")
    checkpoint = checkpoint_path(output)
    if resume and not checkpoint.is_file() and not estimate:
        raise UsageError(f"nothing to resume: no checkpoint '{checkpoint}' (run with --checkpoint-every N first)")
    if not estimate:  # the output of the run being resumed (written when it was interrupted) is that run's
        check_output(output, [p for p in (input, mask, reference) if p is not None], overwrite=overwrite or resume)

    from ..batch import Shard
    from ..processes import device_for, gathering

    shard = Shard.from_environment()
    device = device_for(device, shard)
    # Everything the command line can get wrong is checked before the (long) fit starts.
    one_fit = bool(snapshots or wants_pictures or checkpoint_every or resume or restarts > 1)
    plan = prepare(input, task=task, mask=mask, mask_invert=mask_invert, preset=preset, overrides=overrides,
                   device=device, reference=reference, seed=seed, scale=scale, blur=blur, tile=parse_tile(tile),
                   tile_overlap=tile_overlap, keep_known=keep_known, prefer_whole=one_fit)  # fmt: skip
    if estimate:
        from ..estimates import estimate_run

        found = estimate_run(plan)
        emit(found.record(), as_json, found.line())
        return
    joined = _joined(shard, plan)
    if joined is None:
        return
    plan, group = joined
    snapshot_plan, zoom_box = _snapshots(plan, output, snapshots, snapshot_dir, zoom, wants_pictures, report,
                                         overwrite=overwrite, resume=resume)  # fmt: skip

    from .console import Signals

    with Signals() as signals, _progress(plan, quiet or shard.rank != 0) as progress:
        if group is not None:
            restoration = solve_split(plan, observe=progress, interrupt=signals.event, on_region=progress.start_region,
                                      share=(shard.rank, shard.world), gather=gathering(group, shard))  # fmt: skip
            group.destroy_process_group()
            if restoration is None:
                return  # rank 0 blends and writes
            restoration = finished(plan, restoration)
        else:
            restoration = solve(
                plan,
                observe=progress,
                on_region=progress.start_region,
                interrupt=signals.event,
                snapshots=snapshot_plan,
                checkpoint=checkpoint if checkpoint_every or resume else None,
                checkpoint_every=checkpoint_every or 0,
                resume=resume,
                restarts=restarts,
                restarts_at_once=restarts_at_once,
            )
        inputs = {"input": input, "mask": mask, "reference": reference}
        record = write(plan, restoration, output, inputs=inputs, zoom=zoom_box, animate=animate, report=report)
    emit(record, as_json, _summary(restoration, record, input, output, checkpoint))
    if signals.code is not None:
        raise typer.Exit(signals.code)


def _joined(shard, plan):
    """Under torchrun the processes share one image's tiles: each fits every world-th, rank 0 blends and writes.
    (plan with rank 0's layout, the group); the group is None alone, or when the image is one fit, which rank 0
    makes; None on a process that has nothing to do."""
    from ..processes import agreed, join_process_group

    group = join_process_group(shard)
    plan = dataclasses.replace(plan, layout=agreed(group, plan.layout))
    if group is None or plan.split:
        return plan, group
    group.destroy_process_group()
    if shard.rank != 0:
        return None
    typer.echo(f"one fit of the whole image: the other {shard.world - 1} process(es) have nothing to do", err=True)
    return plan, None


def _progress(plan, quiet: bool):
    """The run's progress bar; when the run is split, it first says so, and it gives the run's estimate once the
    first steps are timed, if the run should take more than a few minutes."""
    from ..estimates import WORTH_SAYING_SECONDS, estimate_run
    from ..layout import groups
    from .console import FitProgress

    layout, factor = plan.layout, plan.observation.operator.factor
    order = [index for group in groups(layout, list(range(len(layout.boxes)))) for index in group]
    largest = max(box.area for box in layout.boxes)

    def said(seconds_per_step: float, area: int) -> None:
        found = estimate_run(plan, seconds_per_step * largest / area)
        if found.seconds > WORTH_SAYING_SECONDS:
            progress.say(f"expected: {found.line()}")

    noun = {"tiles": "tile", "windows": "window"}.get(layout.kind, "")
    progress = FitProgress(plan.preset.fit.iterations, enabled=not quiet, noun=noun, at_once=layout.at_once,
                           areas=[layout.boxes[i].area for i in order],
                           on_rate=None if quiet else said)  # fmt: skip
    if layout.split and not quiet:
        channels, height, width = plan.observation.restored_shape
        progress.say(f"{width}x{height}: fitting {layout.describe(factor)} ({layout.reason})")
    return progress


def _check_inputs(input: Path, mask: Path | None, reference: Path | None) -> None:
    existing_file(input, "input")
    if mask is not None:
        existing_file(mask, "mask")
        if mask.resolve() == input.resolve():
            raise UsageError(f"--mask '{mask}' is the input image itself; give the mask file (white = known pixels)")
    if reference is not None:
        existing_file(reference, "reference")


def _snapshots(plan, output: Path, spec, folder, zoom, wants_pictures: bool, report: bool, *, overwrite, resume):
    """The snapshots to keep and the sheet's zoom box; the sheet, the animation and the report are made from
    snapshots, so asking for one of them keeps a few."""
    from ..report import report_path
    from ..snapshots import DEFAULT_LOG_COUNT, check_folder, default_folder
    from ..visuals import parse_zoom

    if spec is None and wants_pictures:
        spec = f"log:{min(DEFAULT_LOG_COUNT, plan.preset.fit.iterations)}"
    if spec is None:
        return None, None
    folder = folder if folder is not None else default_folder(output)
    snapshot_plan = plan.snapshots(spec, folder)
    _, height, width = plan.observation.restored_shape  # the sheet is at the output's size
    zoom_box = None if zoom is None else parse_zoom(zoom, (width, height))
    if not resume:  # a resumed run keeps the snapshots it had already written
        check_folder(folder, overwrite=overwrite)
    if report and report_path(output).exists() and not (overwrite or resume):
        raise UsageError(f"report '{report_path(output)}' already exists; pass --overwrite to replace it")
    return snapshot_plan, zoom_box


def _summary(restoration, record: dict, input: Path, output: Path, checkpoint: Path) -> str:
    result = restoration.result
    if restoration.split is not None:
        line = f"{input} -> {output}: {record['task']}, {result.returned}"
    else:
        line = f"{input} -> {output}: {record['task']}, iterate {result.best_iteration} of {result.iterations}"
    line += f" ({result.stop_reason}) in {result.seconds:.1f} s on {record['device']}"
    if restoration.metrics:
        line += f", PSNR {restoration.metrics['input_psnr']:.2f} -> {restoration.metrics['psnr']:.2f} dB"
    if result.stop_reason == "interrupted" and restoration.split is not None:
        line += " (interrupted: wrote the image with the input where no fit had ended)"
    elif result.stop_reason == "interrupted":
        line += " (interrupted: wrote the image so far"
        line += "; resume with --resume)" if checkpoint.exists() else ")"
    elif result.stop_reason == "diverged":
        line += " (the fit diverged: wrote the last good image)"
    return line
