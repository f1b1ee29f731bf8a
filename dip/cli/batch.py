"""``dip batch``: a folder, restored image by image through ``dip.batch.FolderRun``, resumable and shareable
among the processes of a launcher."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import NO_OVERRIDES, Overrides
from ..errors import UsageError
from .options import (
    AnimateOption,
    BlurOption,
    DeviceOption,
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
    takes_overrides,
)


@takes_overrides
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
    scale: ScaleOption = None,
    blur: BlurOption = None,
    preset: PresetOption = "auto",
    overrides: Overrides = NO_OVERRIDES,
    seed: Annotated[
        int, typer.Option(help="Base seed; each image's seed comes from it and the image's path in the folder.")
    ] = 0,
    device: DeviceOption = "auto",
    snapshots: SnapshotsOption = None,
    animate: AnimateOption = False,
    restarts: RestartsOption = 1,
    restarts_at_once: RestartsAtOnceOption = None,
    tile: TileOption = "auto",
    tile_overlap: TileOverlapOption = None,
    keep_known: KeepKnownOption = None,
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
    if merge:
        _merge(input_dir, output_dir, as_json)
        return
    _refuse_impossible(input_dir, output_dir, snapshots=snapshots, animate=animate, parallel=parallel,
                       restarts=restarts)  # fmt: skip
    from ..layout import parse_tile

    tile_size = parse_tile(tile)
    output_dir.mkdir(parents=True, exist_ok=True)

    from ..batch import FolderSettings, Shard, discover

    found = discover(
        input_dir, output_dir, pattern=glob, recursive=recursive, masks_dir=masks, mask_suffix=mask_suffix,
        references_dir=references, seed=seed,
        # with --task auto a folder may mix work: an image without a mask is restored by its own task
        masks_required=task == "inpaint",
    )  # fmt: skip
    if verbose:
        for path in found.ignored:
            typer.echo(f"dip: not an image, ignored: {path.as_posix()}", err=True)
        for path in found.masks:
            typer.echo(f"dip: mask, not an input: {path.as_posix()}", err=True)
    settings = FolderSettings(task, mask_invert, preset, overrides, snapshots, animate, restarts, restarts_at_once,
                              parallel, scale, blur, tile_size, tile_overlap, keep_known)  # fmt: skip
    shard = Shard.from_environment()
    records, seconds = _run(found.jobs, shard, settings, device, output_dir, overwrite, fail_fast, quiet)

    failures = [r for r in records if r["status"] == "failed"]
    if shard.rank == 0:
        # Rank 0 speaks for the whole run, exit code included: a launcher stops the other processes as soon as one
        # exits with an error, so only rank 0 may, and only after the merge.
        counts = {status: sum(r["status"] == status for r in records) for status in ("done", "skipped", "failed")}
        if failures:
            from .console import failure_table

            failure_table(failures)
        summary = {
            **counts,
            "images": len(found.jobs),
            "seconds": round(seconds, 3),
            "manifest": str(output_dir / "manifest.jsonl"),
            **({"processes": shard.world} if shard.world > 1 else {}),
        }
        line = f"{input_dir} -> {output_dir}: {counts['done']} done, {counts['skipped']} skipped"
        emit(summary, as_json, line + f", {counts['failed']} failed in {summary['seconds']:.1f} s")
    if failures and shard.rank == 0:
        raise typer.Exit(1)


def _refuse_impossible(input_dir, output_dir, *, snapshots, animate: bool, parallel: int, restarts: int) -> None:
    """What no image of the folder could do, refused before any is read."""
    if input_dir is None or output_dir is None:
        raise UsageError("give the input and the output folder: dip batch INPUT_DIR OUTPUT_DIR")
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
    check_output(output_dir / "manifest.png", [], overwrite=True)  # the folder can be made and written to


def _run(jobs, shard, settings, device, output_dir: Path, overwrite: bool, fail_fast: bool, quiet: bool):
    """This process's share of the jobs, restored; every process's records, and the seconds it took."""
    import time

    from ..batch import FolderRun
    from ..device import resolve_device
    from ..processes import device_for, gather_records, join_process_group
    from .console import EXIT_INTERRUPTED, FolderProgress, Signals

    mine = shard.take(jobs)
    chosen_device = resolve_device(device_for(device, shard))
    progress = FolderProgress(len(mine), enabled=not quiet and shard.rank == 0)
    records, started = [], time.perf_counter()
    with Signals() as signals:
        run = FolderRun(settings, chosen_device, interrupt=signals.event, progress=progress)
        run.check(mine)  # once for the whole folder rather than failing every image the same way
        group = join_process_group(shard)
        extra = {"rank": shard.rank} if shard.world > 1 else {}
        try:
            with progress:
                for record in run.run(mine, manifest=shard.manifest(output_dir), overwrite=overwrite,
                                      fail_fast=fail_fast, extra=extra):  # fmt: skip
                    records.append(record)
                    progress.finish_image(record["status"], record["input"])
        except KeyboardInterrupt:
            done = sum(r["status"] == "done" for r in records)
            typer.echo(
                f"dip: interrupted after {done} image(s); the image in progress was not written. "
                "Run the same command again to resume.",
                err=True,
            )
            raise typer.Exit(signals.code or EXIT_INTERRUPTED) from None
    return gather_records(group, shard, records, output_dir), time.perf_counter() - started


def _merge(input_dir: Path | None, output_dir: Path | None, as_json: bool) -> None:
    from ..batch import merge_manifests

    folder = output_dir or input_dir
    if folder is None or (output_dir is not None and input_dir is not None):
        raise UsageError("--merge takes one folder: dip batch --merge OUTPUT_DIR")
    if not folder.is_dir():
        raise UsageError(f"'{folder}' is not a folder")
    merged = merge_manifests(folder)
    emit({"merged": merged, "manifest": str(folder / "manifest.jsonl")}, as_json, f"merged {merged} record(s)")
