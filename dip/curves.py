"""The loss, the stopping statistic and the PSNR of a run over its iterations, as one figure.

matplotlib is imported only inside ``save_curves``: it takes about half a second to import, and the CLI's
``--help`` goes through modules that import this one. Written through ``dip.files.atomic_output``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import InputError, OutputError
from .files import atomic_output, format_for

_CURVE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def save_curves(
    path: str | Path,
    *,
    losses: Sequence[float],
    statistics: Sequence[float] | None = None,
    statistic_name: str = "",
    psnr: Sequence[tuple[int, float]] | None = None,
    returned_iteration: int | None = None,
    peak_iteration: int | None = None,
    snapshot_iterations: Sequence[int] = (),
) -> None:
    """Stacked panels sharing the iteration axis, written as PNG (or SVG/PDF, from the suffix).

    Iteration i is index i - 1 of the per-step lists. Panels: the data loss (log y); the early-stopping
    statistic (log y; NaN, undefined during its first window, is not drawn; no panel when there is nothing to
    draw); PSNR against a reference from `psnr`, (iteration, dB) samples, when given. Vertical lines mark the
    returned iteration and the PSNR peak, faint ones the snapshots. Values a log axis cannot show (zero,
    negative, NaN, infinite) are left out rather than failing.

    Raises InputError when `losses` is empty and OutputError for an unknown suffix or a failed write.
    """
    path = Path(path)
    fmt = format_for(path, _CURVE_FORMATS, "the curves")
    loss_values = _log_plottable(losses)
    if loss_values.size == 0:
        raise InputError("there are no loss values to plot")
    statistic_values = _log_plottable(statistics or ())
    has_statistic = bool(np.isfinite(statistic_values).any())
    psnr_points = [(int(it), float(db)) for it, db in (psnr or ()) if math.isfinite(float(db))]

    # Figure + an explicit Agg canvas rather than pyplot or matplotlib.use("Agg"): pyplot keeps every figure
    # in a global registry until closed, and use() would switch the backend of a notebook that called us.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 1 + has_statistic + bool(psnr_points)
    figure = Figure(figsize=(8.0, 0.6 + 2.2 * panels), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]

    loss_axis = axes[0]
    loss_axis.plot(np.arange(1, loss_values.size + 1), loss_values, color="C0", linewidth=1.0, label="data loss")
    _log_scale_if_possible(loss_axis, loss_values)
    loss_axis.set_ylabel("data loss")
    panel = 1
    if has_statistic:
        axis = axes[panel]
        axis.plot(np.arange(1, statistic_values.size + 1), statistic_values, color="C2", linewidth=1.0)
        _log_scale_if_possible(axis, statistic_values)
        axis.set_ylabel(statistic_name or "stopping statistic")
        panel += 1
    if psnr_points:
        axis = axes[panel]
        iterations, values = zip(*psnr_points, strict=True)
        axis.plot(iterations, values, color="C1", linewidth=1.0, marker="o" if len(values) <= 60 else None, ms=3)
        axis.set_ylabel("PSNR (dB)")

    for index, axis in enumerate(axes):
        first = index == 0  # one legend entry per kind of line, not one per panel
        for number, iteration in enumerate(snapshot_iterations):
            label = "snapshots" if first and number == 0 else None
            axis.axvline(iteration, color="C4", linewidth=0.8, linestyle=":", alpha=0.6, zorder=0, label=label)
        if returned_iteration is not None:
            label = f"returned (it {returned_iteration})" if first else None
            axis.axvline(returned_iteration, color="C3", linewidth=1.3, label=label)
        if peak_iteration is not None:
            label = f"peak PSNR (it {peak_iteration})" if first else None
            axis.axvline(peak_iteration, color="C1", linewidth=1.3, linestyle="--", label=label)
        axis.grid(True, which="major", alpha=0.3)
    axes[-1].set_xlabel("iteration")
    loss_axis.legend(loc="upper right", fontsize="small", framealpha=0.85)

    with atomic_output(path) as tmp:
        try:
            figure.savefig(tmp, format=fmt)
        except OSError as e:
            raise OutputError(f"cannot write '{path}': {e}", path=path) from e


def _log_plottable(values: Sequence[float | None]) -> np.ndarray:
    # None becomes NaN, and NaN is a gap in a matplotlib line: the natural way to "not draw" a value.
    array = np.asarray(values, dtype=np.float64).ravel()
    return np.where(np.isfinite(array) & (array > 0), array, np.nan)


def _log_scale_if_possible(axis, values: np.ndarray) -> None:
    if np.isfinite(values).any():  # an empty log axis warns and picks meaningless limits
        axis.set_yscale("log")
