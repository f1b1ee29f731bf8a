"""Which iterations to keep, and keeping them: image files, ``snapshots.json``, and the pictures made from them.

A schedule is a spec string: ``100,500,2400`` (those iterations), ``every:250`` (250, 500, ... up to the cap) or
``log:12`` (12 iterations spaced evenly in log scale from 1 to the cap, the natural scale of a fit that changes
fast at first and slowly later). The returned iterate and the last one are kept whatever the schedule says.

The recorder is an observer of the fit's Steps: at a scheduled step it copies the image and hands the encoding,
the metrics and the file write to one background thread, so the optimisation only pays for the copy.
"""

from __future__ import annotations

import math
import re
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import UsageError
from .io import Picture, atomic_output, read_image, write_image
from .metrics import psnr, ssim
from .report import to_json

DEFAULT_LOG_COUNT = 8  # snapshots kept when only a sheet, an animation or a report is asked for
MANIFEST = "snapshots.json"
SNAPSHOT_NAME = re.compile(r"^it\d{6,}\.\w+$")
# Everything a run writes into its snapshot folder, so that --overwrite can clear exactly that and nothing else.
ARTIFACTS = (MANIFEST, "sheet.png", "curves.png", "animation.gif")


def parse_schedule(spec: str, cap: int) -> list[int]:
    """The sorted iterations ``spec`` names, all in 1..cap. Raises UsageError with the accepted forms."""
    forms = "give iterations (100,500,2400), every:N or log:N"
    text = spec.strip().lower()
    try:
        if text.startswith("every:"):
            step = int(text[len("every:") :])
            if step < 1:
                raise UsageError(f"--snapshots every:N needs N >= 1, not {step}")
            return list(range(step, cap + 1, step)) or [cap]
        if text.startswith("log:"):
            count = int(text[len("log:") :])
            if not 1 <= count <= cap:
                raise UsageError(f"--snapshots log:N needs 1 <= N <= the cap ({cap}), not {count}")
            return log_spaced(count, cap)
        iterations = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UsageError(f"cannot read --snapshots {spec!r}; {forms}") from None
    if not iterations:
        raise UsageError(f"--snapshots {spec!r} names no iteration; {forms}")
    if iterations[0] < 1:
        raise UsageError(f"--snapshots iterations start at 1, not {iterations[0]}")
    if iterations[-1] > cap:
        raise UsageError(
            f"--snapshots asks for iteration {iterations[-1]}, past the run's cap of {cap} steps; raise --iters"
        )
    return iterations


def log_spaced(count: int, cap: int) -> list[int]:
    """``count`` distinct iterations from 1 to ``cap``, as evenly spaced in log scale as integers allow."""
    if count == 1:
        return [cap]
    points = [round(cap ** (k / (count - 1))) for k in range(count)]
    # Rounding makes the small ones collide (1, 1, 2, ...); push them apart upwards, then keep the top at cap.
    for k in range(1, count):
        points[k] = max(points[k], points[k - 1] + 1)
    points[-1] = cap
    for k in range(count - 2, -1, -1):
        points[k] = min(points[k], points[k + 1] - 1)
    return points


@dataclass(frozen=True)
class SnapshotPlan:
    """Which iterates a run keeps (``spec`` as given, ``schedule`` as parsed against the run's cap) and where."""

    spec: str
    schedule: list[int]
    folder: Path

    @classmethod
    def parse(cls, spec: str, folder: str | Path | None, cap: int) -> SnapshotPlan:
        if folder is None:
            raise UsageError("snapshots need a folder to go to: give snapshot_dir")
        return cls(spec, parse_schedule(spec, cap), Path(folder))

    def write_manifest(self, kept: list[Snapshot], result, averaged: bool) -> None:
        """``snapshots.json``: the schedule, what was kept, and where the run stopped and what it returned."""
        manifest = {
            "schedule": self.spec,
            "scheduled": self.schedule,
            "not_reached": [i for i in self.schedule if i > result.iterations],
            "image": "output average" if averaged else "iterate",
            "returned_iteration": result.best_iteration,
            "stopped_at": result.iterations,
            "stop_reason": result.stop_reason,
            "snapshots": [snapshot.record() for snapshot in kept],
        }
        with atomic_output(self.folder / MANIFEST) as temporary:
            temporary.write_text(to_json(manifest) + "\n", encoding="utf-8")


def default_folder(output: Path) -> Path:
    return output.with_name(f"{output.stem}.snapshots")


def check_folder(folder: Path, *, overwrite: bool) -> None:
    """Refuses, before the fit, a folder holding an earlier run's snapshots; with ``overwrite`` removes them."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"snapshot folder '{folder}' is a file; give a folder with --snapshot-dir")
    if not folder.is_dir():
        return
    earlier = [p for p in folder.iterdir() if SNAPSHOT_NAME.match(p.name) or p.name in ARTIFACTS]
    if earlier and not overwrite:
        raise UsageError(
            f"snapshot folder '{folder}' holds an earlier run's snapshots; pass --overwrite to replace them"
        )
    for path in earlier:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


@dataclass
class Snapshot:
    iteration: int
    loss: float
    statistic: float | None  # the early-stopping statistic at this step (None: stopping off, or not yet defined)
    file: str  # name inside the snapshot folder
    roles: list[str] = field(default_factory=list)  # "scheduled", "returned", "last"
    psnr: float | None = None
    ssim: float | None = None

    def record(self) -> dict:
        entry = {"iteration": self.iteration, "file": self.file, "roles": self.roles, "loss": self.loss}
        entry["statistic"] = self.statistic
        if self.psnr is not None:
            entry["psnr"], entry["ssim"] = self.psnr, self.ssim
        return entry


class SnapshotRecorder:
    """Observes the fit and keeps the scheduled iterates as files in ``folder``.

    ``template`` is the input picture: snapshots are written in its format (``suffix``), bit depth, alpha and
    colour profile. ``averaged``: keep the output average, the image the run returns, rather than the raw iterate,
    so that the snapshot at the returned iteration is the returned image. ``statistic`` reads the detector's
    current value (called right after the detector has seen the step).
    """

    def __init__(
        self,
        folder: Path,
        schedule: list[int],
        template: Picture,
        *,
        suffix: str,
        averaged: bool,
        statistic=None,
        reference: np.ndarray | None = None,
        digits: int = 6,
    ) -> None:
        self.folder, self.schedule, self.template = Path(folder), set(schedule), template
        self.suffix, self.averaged, self.statistic, self.reference = suffix, averaged, statistic, reference
        self.digits = digits
        self.snapshots: dict[int, Snapshot] = {}
        self.last_step = None
        self._pending: list[Future] = []
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dip-snapshots")

    def file_name(self, iteration: int) -> str:
        return f"it{iteration:0{self.digits}d}{self.suffix}"

    def __call__(self, step) -> None:
        self.last_step = step
        if step.iteration not in self.schedule:
            return
        image = step.average if self.averaged and step.average is not None else step.x
        statistic = self.statistic() if self.statistic is not None else None
        self._keep(step.iteration, step.loss, statistic, image, "scheduled")

    def _keep(self, iteration: int, loss: float, statistic: float | None, image: torch.Tensor, role: str) -> None:
        if iteration in self.snapshots:
            self.snapshots[iteration].roles.append(role)
            return
        statistic = statistic if statistic is not None and math.isfinite(statistic) else None
        snapshot = Snapshot(iteration, float(loss), statistic, self.file_name(iteration), [role])
        self.snapshots[iteration] = snapshot
        # The conversion to a numpy copy is the only cost on the fit's path; encoding and scoring happen on the
        # writer thread, which must not call torch: a second thread entering torch's OpenMP regions gets its own
        # team of threads, and on a small CPU they take cores from the fit (measured: +40-50 % time per step).
        picture = self.template.with_pixels(image)
        self._pending.append(self._writer.submit(self._write, snapshot, picture))

    def _write(self, snapshot: Snapshot, picture: Picture) -> None:
        if self.reference is not None:
            snapshot.psnr, snapshot.ssim = psnr(picture.pixels, self.reference), ssim(picture.pixels, self.reference)
        write_image(self.folder / snapshot.file, picture)

    def finish(self, result) -> list[Snapshot]:
        """Adds the returned and the last iterate, waits for every write, and returns the snapshots in order.

        Re-raises the first write error (an OutputError) after all writes have ended.
        """
        try:
            at = result.best_iteration - 1
            self._keep(
                result.best_iteration,
                result.losses[at] if at < len(result.losses) else result.final_loss,
                result.statistics[at] if at < len(result.statistics) else None,
                result.image,
                "returned",
            )
            last = self.last_step
            if last is not None:
                image = last.average if self.averaged and last.average is not None else last.x
                statistic = result.statistics[-1] if result.statistics else None
                self._keep(last.iteration, last.loss, statistic, image, "last")
        finally:
            self._writer.shutdown(wait=True)
        for future in self._pending:
            future.result()
        return [self.snapshots[i] for i in sorted(self.snapshots)]

    def close(self) -> None:
        """Stops the writer without adding anything (the fit failed); writes already queued still complete."""
        self._writer.shutdown(wait=True)


def read_snapshot(folder: Path, snapshot: Snapshot) -> np.ndarray:
    """The snapshot's pixels as written (HWC float32), for the sheet and the animation."""
    return read_image(folder / snapshot.file).pixels


def _metrics_caption(psnr_value: float | None, ssim_value: float | None, loss: float | None = None) -> str:
    if psnr_value is not None and math.isfinite(psnr_value):
        text = f"{psnr_value:.2f} dB"
        return text + (f" · SSIM {ssim_value:.3f}" if ssim_value is not None and math.isfinite(ssim_value) else "")
    return "" if loss is None else f"loss {loss:.2e}"


def make_pictures(
    restoration,
    corrupted: np.ndarray,
    *,
    zoom: tuple[int, int, int, int] | None = None,
    animate: bool = False,
    reference: np.ndarray | None = None,
    input_title: str = "input",
) -> dict[str, Path]:
    """The contact sheet, the curves and (``animate``) the animation of a run with snapshots, in its folder.

    Sheet tiles: the corrupted input, every kept snapshot in order, the returned image, the reference if given.
    Returns {"sheet": path, "curves": path[, "animation": path]}.
    """
    from .curves import save_curves
    from .visuals import Tile, save_animation, save_sheet

    folder: Path = restoration.snapshot_dir
    metrics = restoration.metrics
    result = restoration.result
    in_order = [s for s in restoration.snapshots if s.roles != ["returned"]]

    def title(snapshot: Snapshot) -> str:
        extra = [role for role in ("returned", "last") if role in snapshot.roles]
        return f"it {snapshot.iteration}" + "".join(f" · {role}" for role in extra)

    tiles = [Tile(corrupted, input_title, _metrics_caption(metrics.get("input_psnr"), metrics.get("input_ssim")))]
    frames = []
    for snapshot in restoration.snapshots:
        tile = Tile(read_snapshot(folder, snapshot), title(snapshot), _metrics_caption(snapshot.psnr, snapshot.ssim))
        frames.append(tile)
        if snapshot in in_order:
            tiles.append(Tile(tile.image, tile.title, _metrics_caption(snapshot.psnr, snapshot.ssim, snapshot.loss)))
    tiles.append(
        Tile(
            restoration.picture.pixels,
            f"returned · it {result.best_iteration}",
            _metrics_caption(metrics.get("psnr"), metrics.get("ssim")),
        )
    )
    if reference is not None:
        tiles.append(Tile(reference, "reference"))

    made = {"sheet": folder / "sheet.png", "curves": folder / "curves.png"}
    save_sheet(tiles, made["sheet"], zoom=zoom)
    rule = restoration.preset.stop.resolved_rule
    save_curves(
        made["curves"],
        losses=result.losses,
        statistics=result.statistics or None,
        statistic_name={
            "spread": "spread around the average",
            "wmv": "windowed variance",
            "emv": "exponential variance",
        }.get(rule, ""),
        psnr=restoration.psnr_curve() or None,
        returned_iteration=result.best_iteration,
        peak_iteration=metrics.get("peak_iteration"),
        snapshot_iterations=[s.iteration for s in restoration.snapshots],
    )
    if animate:
        made["animation"] = folder / "animation.gif"
        save_animation(frames, made["animation"])
    return made
