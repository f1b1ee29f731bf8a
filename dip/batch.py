"""Folders: which files are inputs, which are masks, where each output goes, what is already done, and the
manifest that records every image. Also the share of a folder that one of several processes takes.

A folder run must give the same result for an image however it was run: one process or many, in any order, after
any number of restarts. So everything about an image (its seed, its output path, whether it is done) is derived
from its path relative to the input folder and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .config import NO_OVERRIDES, Overrides
from .errors import DipError, UsageError
from .io import IMAGE_SUFFIXES
from .report import sidecar_path, to_json

MANIFEST = "manifest.jsonl"
PART_PREFIX = "manifest.part-"
OUTPUT_SUFFIX = ".png"  # lossless and 16-bit capable, whatever the input's format was


@dataclass(frozen=True)
class Job:
    source: Path
    relative: Path  # of the source, inside the input folder: the image's identity
    output: Path
    mask: Path | None = None
    problem: str | None = None  # known before any fitting: a missing mask, an output another input also wants
    seed: int = 0
    reference: Path | None = None  # a clean version to score against (metrics only; never used by the fit)

    @property
    def name(self) -> str:
        return self.relative.as_posix()


@dataclass
class Discovery:
    jobs: list[Job]
    ignored: list[Path] = field(default_factory=list)  # files that are not images (relative paths)
    masks: list[Path] = field(default_factory=list)  # files taken as masks, not inputs (relative paths)


def image_seed(base_seed: int, relative: Path) -> int:
    """A seed for one image from the run's seed and the image's relative path: independent of order and shard."""
    digest = hashlib.sha256(f"{base_seed}/{relative.as_posix()}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFF_FFFF


def output_for(output_dir: Path, relative: Path) -> Path:
    return output_dir / relative.with_suffix(OUTPUT_SUFFIX)


def discover(
    input_dir: Path,
    output_dir: Path,
    *,
    pattern: str = "*",
    recursive: bool = False,
    masks_dir: Path | None = None,
    mask_suffix: str | None = None,
    references_dir: Path | None = None,
    seed: int = 0,
    masks_required: bool = True,
) -> Discovery:
    """The sorted jobs of a folder. With ``masks_dir`` each input's mask is the file of the same relative path and
    stem there (any image format); with ``mask_suffix`` it is ``<stem><suffix>.<ext>`` beside the input, and such
    files are masks, not inputs. A missing mask is that image's problem, not the run's — unless not
    ``masks_required`` (a folder of mixed work: images without a mask are then restored by their own task).
    ``references_dir`` pairs clean images the same way as ``masks_dir``; an image without one is restored and
    simply not scored."""
    if not input_dir.is_dir():
        raise UsageError(f"input folder '{input_dir}' does not exist or is not a folder")
    if masks_dir is not None and not masks_dir.is_dir():
        raise UsageError(f"mask folder '{masks_dir}' does not exist or is not a folder")
    if references_dir is not None and not references_dir.is_dir():
        raise UsageError(f"reference folder '{references_dir}' does not exist or is not a folder")
    if masks_dir is not None and mask_suffix is not None:
        raise UsageError("give --masks DIR or --mask-suffix SUFFIX, not both")
    outside = output_dir.resolve()
    candidates = sorted(
        path
        for path in (input_dir.rglob(pattern) if recursive else input_dir.glob(pattern))
        if path.is_file() and outside not in path.resolve().parents  # an output folder inside the input one
    )
    relative = {path: path.relative_to(input_dir) for path in candidates}
    images = [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES]
    found = Discovery(jobs=[], ignored=[relative[p] for p in candidates if p.suffix.lower() not in IMAGE_SUFFIXES])
    if mask_suffix is not None:
        found.masks = [relative[p] for p in images if p.stem.endswith(mask_suffix)]
        images = [p for p in images if not p.stem.endswith(mask_suffix)]

    claimed: dict[Path, Path] = {}
    for path in images:
        rel = relative[path]
        output = output_for(output_dir, rel)
        mask, problem = None, None
        if masks_dir is not None:
            mask = _find_image(masks_dir / rel.parent, rel.stem, prefer=path.suffix)
            if mask is None and masks_required:
                problem = f"no mask for it in '{masks_dir / rel.parent}' (looked for {rel.stem}.*)"
        elif mask_suffix is not None:
            mask = _find_image(path.parent, path.stem + mask_suffix, prefer=path.suffix)
            if mask is None and masks_required:
                problem = f"no mask beside it (looked for {path.stem}{mask_suffix}.*)"
        if output in claimed:
            problem = f"its output '{output.name}' is also the output of '{claimed[output].as_posix()}'; rename one"
        claimed.setdefault(output, rel)
        reference = None
        if references_dir is not None:
            reference = _find_image(references_dir / rel.parent, rel.stem, prefer=path.suffix)
        found.jobs.append(Job(path, rel, output, mask, problem, image_seed(seed, rel), reference))
    return found


def _find_image(folder: Path, stem: str, *, prefer: str) -> Path | None:
    suffixes = [prefer, *sorted(IMAGE_SUFFIXES - {prefer}), *(s.upper() for s in sorted(IMAGE_SUFFIXES))]
    return next((folder / (stem + s) for s in suffixes if (folder / (stem + s)).is_file()), None)


def is_done(job: Job) -> bool:
    """Both the image and its settings exist. Each is written atomically and the settings last, so a run killed
    at any moment leaves either both (done) or not the settings (redone on resume)."""
    return job.output.is_file() and sidecar_path(job.output).is_file()


# --- processes -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Shard:
        """torchrun (and other launchers) set RANK, WORLD_SIZE and LOCAL_RANK; none of them means one process."""
        try:
            rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
            local_rank = int(os.environ.get("LOCAL_RANK", rank))
        except ValueError:
            raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers") from None
        if not 0 <= rank < world:
            raise UsageError(f"RANK {rank} is not in 0..WORLD_SIZE-1 ({world - 1})")
        return cls(rank, world, local_rank)

    def take(self, jobs: list[Job]) -> list[Job]:
        """A disjoint, deterministic share: every world-th job of the sorted list, starting at this rank."""
        return jobs[self.rank :: self.world]

    def manifest(self, output_dir: Path) -> Path:
        if self.world == 1:
            return output_dir / MANIFEST
        return output_dir / f"{PART_PREFIX}{self.rank:05d}-of-{self.world:05d}.jsonl"


def append_record(path: Path, record: dict) -> None:
    """One line per image, flushed to disk as the image finishes, so a killed run loses no finished record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(json.loads(to_json(record)), separators=(",", ":")) + "\n"
    with open(path, "a", encoding="utf-8") as manifest:
        manifest.write(line)
        manifest.flush()
        os.fsync(manifest.fileno())


def read_manifest(path: Path) -> list[dict]:
    """The records of a manifest; a last line cut short by a kill is left out."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def merge_manifests(output_dir: Path) -> int:
    """Appends every process's part to ``manifest.jsonl`` (in input order) and removes the parts."""
    parts = sorted(output_dir.glob(f"{PART_PREFIX}*.jsonl"))
    records = [record for part in parts for record in read_manifest(part)]
    records.sort(key=lambda record: (record.get("started", 0), record.get("input", "")))
    for record in records:
        append_record(output_dir / MANIFEST, record)
    for part in parts:
        part.unlink()
    return len(records)


# --- running ---------------------------------------------------------------------------------------------


class Abandoned(KeyboardInterrupt):
    """The run was interrupted during an image; that image was not written and the next run redoes it."""


def run_jobs(
    jobs: list[Job],
    restore_one: Callable[[Job], dict] | None = None,
    *,
    manifest: Path,
    overwrite: bool = False,
    fail_fast: bool = False,
    extra: dict | None = None,
    restore_many: Callable[[list[Job]], list[dict | Exception]] | None = None,
    group: int = 1,
) -> Iterator[dict]:
    """Restores the jobs and yields each one's manifest record as it is appended.

    ``restore_one(job) -> record`` restores one image; or ``restore_many(jobs)`` up to ``group`` at once, returning
    per job its record or the exception it failed with. A job that is done is skipped without fitting (unless
    ``overwrite``); one whose restore raises a DipError or any other error is recorded as failed and the run goes
    on (``fail_fast``: it stops there; a bug's traceback is then shown). An interrupt inside a restore must raise
    Abandoned; nothing is recorded for the images in progress.
    """
    if restore_many is None:
        restore_many = lambda chunk: [_outcome(restore_one, job) for job in chunk]  # noqa: E731
    for start in range(0, len(jobs), group):
        chunk = jobs[start : start + group]
        records, pending = {}, []
        for job in chunk:
            records[job.name] = {"input": job.name, "output": job.relative.with_suffix(OUTPUT_SUFFIX).as_posix(),
                                 "seed": job.seed, "started": time.time(), **(extra or {})}  # fmt: skip
            if job.problem is not None:
                records[job.name].update(status="failed", error=job.problem)
            elif not overwrite and is_done(job):
                records[job.name].update(status="skipped")
            else:
                pending.append(job)
        started = time.perf_counter()
        outcomes = dict(zip((job.name for job in pending), restore_many(pending) if pending else [], strict=True))
        seconds = round((time.perf_counter() - started) / max(1, len(pending)), 3)
        stop, bug = False, None
        for job in chunk:
            record, outcome = records[job.name], outcomes.get(job.name)
            if isinstance(outcome, DipError):
                record.update(status="failed", error=str(outcome))
            elif isinstance(outcome, Exception):
                record.update(status="failed", error=f"internal error: {type(outcome).__name__}: {outcome}")
                bug = bug or outcome
            elif outcome is not None:
                record.update(outcome, status="done")
            record["seconds"] = seconds if job in pending else 0.0
            append_record(manifest, record)
            yield record
            stop = stop or (fail_fast and record["status"] == "failed")
        if stop:  # after the whole chunk: the images fitted beside the failed one are recorded too
            if bug is not None:
                raise bug  # with --fail-fast a bug shows its traceback
            return


def _outcome(restore_one: Callable[[Job], dict], job: Job) -> dict | Exception:
    try:
        return restore_one(job)
    except Abandoned:
        raise
    except Exception as error:  # a bug on one image must not cost the rest of the folder its results
        return error


# --- restoring a folder ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderSettings:
    """What applies to every image of a folder run: the command line's choices, given once."""

    task: str = "auto"
    mask_invert: bool = False
    preset: str = "auto"
    overrides: Overrides = NO_OVERRIDES
    snapshots: str | None = None
    animate: bool = False
    restarts: int = 1
    restarts_at_once: bool | None = None
    parallel: int = 1  # images of one size fitted at once
    scale: int | None = None  # super-resolution by this factor
    blur: str | None = None  # the known blur of every image (dip.operators.blur_kernel)
    tile: int | str = "auto"  # see dip.layout: whole, tiles or windows, per image
    tile_overlap: int | None = None
    keep_known: bool | None = None  # inpainting: the known pixels are the input's own


class FolderProgress(Protocol):
    def start_image(self, name: str, steps: int) -> None: ...
    def __call__(self, step) -> None: ...


class FolderRun:
    """Restores the jobs of a folder, each image through ``dip.pipeline`` as ``dip restore`` restores one.

    ``interrupt`` set between two images starts no other; set during one, it abandons that image (nothing is
    written for it, the next run redoes it). ``progress`` hears when an image starts and sees its steps.
    """

    def __init__(
        self, settings: FolderSettings, device, *, interrupt: threading.Event, progress: FolderProgress | None = None
    ) -> None:
        self.settings, self.device, self.interrupt = settings, device, interrupt
        self.progress = progress

    def check(self, jobs: list[Job]) -> None:
        """What every image would fail on in the same way (a preset, a snapshot schedule), refused once."""
        from .config import resolve_preset
        from .operators import Downsample, blur_kernel
        from .pipeline import choose_task
        from .snapshots import parse_schedule

        settings = self.settings
        tasks = {choose_task(settings.task, has_mask=j.mask is not None, source=j.source, scale=settings.scale,
                             blur=settings.blur) for j in jobs if not j.problem}  # fmt: skip
        if settings.blur is not None:
            blur_kernel(settings.blur)  # a bad kernel or scale is the folder's problem, not each image's
        if settings.scale is not None:
            Downsample(settings.scale)
        for task in tasks:
            for scattered in (False, True) if task == "inpaint" else (False,):
                named = resolve_preset(settings.preset, task, self.device.type, scattered_mask=scattered,
                                       scale=settings.scale)  # fmt: skip
                preset = settings.overrides.apply(named)
                if settings.snapshots is not None:
                    parse_schedule(settings.snapshots, preset.fit.iterations)

    def run(self, jobs: list[Job], *, manifest: Path, overwrite: bool, fail_fast: bool, extra: dict) -> Iterator[dict]:
        """Each job's manifest record as it is appended (see :func:`run_jobs`)."""
        parallel = self.settings.parallel
        many = self.restore_many if parallel > 1 else None
        yield from run_jobs(jobs, self.restore_one, manifest=manifest, overwrite=overwrite, fail_fast=fail_fast,
                            extra=extra, restore_many=many, group=parallel)  # fmt: skip

    def _prepare(self, job: Job):
        from .pipeline import prepare

        s = self.settings
        # snapshots and restarts need one fit per image, and images fitted together are fitted whole
        one_fit = s.snapshots is not None or s.restarts > 1 or s.parallel > 1
        return prepare(job.source, task=s.task, mask=job.mask, mask_invert=s.mask_invert, preset=s.preset,
                       overrides=s.overrides, device=self.device, reference=job.reference, seed=job.seed,
                       scale=s.scale, blur=s.blur, tile=s.tile, tile_overlap=s.tile_overlap, keep_known=s.keep_known,
                       prefer_whole=one_fit)  # fmt: skip

    def _start(self, name: str, steps: int) -> None:
        if self.progress is not None:
            self.progress.start_image(name, steps)

    def restore_one(self, job: Job) -> dict:
        from .pipeline import solve
        from .snapshots import check_folder, default_folder

        if self.interrupt.is_set():  # a signal came between two images: do not start another
            raise Abandoned
        settings, plan = self.settings, self._prepare(job)
        self._start(job.name, plan.preset.fit.iterations)
        snapshots = None
        if settings.snapshots is not None:
            folder = default_folder(job.output)
            check_folder(folder, overwrite=True)  # leftovers of an attempt that did not finish
            snapshots = plan.snapshots(settings.snapshots, folder)
        restoration = solve(plan, observe=self.progress, interrupt=self.interrupt, snapshots=snapshots,
                            restarts=settings.restarts, restarts_at_once=settings.restarts_at_once)  # fmt: skip
        return self._write(job, plan, restoration)

    def restore_many(self, chunk: list[Job]) -> list[dict | Exception]:
        """Up to ``parallel`` images: those of one task, size, channel count and preset are fitted together."""
        from .pipeline import finished, solve, solve_together

        if self.interrupt.is_set():
            raise Abandoned
        outcomes: dict[str, dict | Exception] = {}
        groups: dict[tuple, list] = {}
        for job in chunk:
            try:
                plan = self._prepare(job)
            except DipError as error:
                outcomes[job.name] = error
                continue
            # an image too large to fit whole is fitted alone, in its tiles
            key = ("split", job.name) if plan.split else (plan.task, plan.picture.pixels.shape, plan.preset)
            groups.setdefault(key, []).append((job, plan))
        progress = self.progress

        def first_only(k: int, step) -> None:  # one bar for the group: its first image's steps
            if k == 0:
                progress(step)

        for members in groups.values():
            first_job, first_plan = members[0]
            self._start(f"{len(members)} x {first_job.name}", first_plan.preset.fit.iterations)
            try:
                if first_plan.split:
                    restorations = [solve(first_plan, observe=progress, interrupt=self.interrupt)]
                else:
                    restorations = solve_together(
                        [plan for _, plan in members],
                        observe=None if progress is None else first_only,
                        interrupt=self.interrupt,
                    )
                    restorations = [finished(plan, r) for (_, plan), r in zip(members, restorations, strict=True)]
            except Exception as error:  # the group's failure is each of its images' failure
                outcomes.update({job.name: error for job, _ in members})
                continue
            for (job, plan), restoration in zip(members, restorations, strict=True):
                try:
                    outcomes[job.name] = self._write(job, plan, restoration)
                except Exception as error:
                    outcomes[job.name] = error
        return [outcomes[job.name] for job in chunk]

    def _write(self, job: Job, plan, restoration) -> dict:
        """The image's files, and the manifest's summary of it."""
        from .pipeline import write

        if restoration.result.stop_reason == "interrupted":
            raise Abandoned
        inputs = {"input": job.source, "mask": job.mask, "reference": job.reference}
        record = write(plan, restoration, job.output, inputs=inputs, animate=self.settings.animate)
        keys = ("task", "iterations", "best_iteration", "stop_reason", "preset", "device", "rollbacks")
        scores = ("psnr", "ssim", "input_psnr", "input_ssim", "peak_psnr", "peak_iteration")
        return {key: record[key] for key in (*keys, *scores) if key in record} | {"fit_seconds": record["seconds"]}
