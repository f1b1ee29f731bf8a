"""What is written beside every output: ``<output>.json`` with the settings and the metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .io import atomic_output


def sidecar_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".json")


def _finite(value):
    # JSON has no inf/NaN (a perfect PSNR is inf); write them as strings rather than emit invalid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(record: dict) -> str:
    return json.dumps(_finite(record), indent=2, allow_nan=False)


def write_sidecar(output: str | Path, record: dict) -> Path:
    path = sidecar_path(output)
    with atomic_output(path) as temporary:
        temporary.write_text(to_json(record) + "\n", encoding="utf-8")
    return path


def report_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}.report.html")


def write_report(path: str | Path, record: dict, pictures: dict[str, Path]) -> Path:
    """One self-contained HTML page for a run: the sheet, the curves, the animation, the settings and metrics."""
    from .visuals import save_report

    metric_keys = ("psnr", "ssim", "input_psnr", "input_ssim", "peak_psnr", "peak_iteration")
    outcome_keys = ("task", "best_iteration", "stopped_at", "stop_reason", "returned", "seconds", "device", "seed")
    metrics = {key: record[key] for key in (*outcome_keys, *metric_keys) if key in record}
    settings = {key: value for key, value in record.items() if key not in metrics}
    captions = {
        "sheet": "Input, snapshots in order, the returned image (and the reference)",
        "curves": "Loss, early-stopping statistic and PSNR over the iterations",
        "animation": "The snapshots in order",
    }
    images = [(captions.get(name, name), file) for name, file in pictures.items()]
    notes = []
    if record.get("stop_reason") == "interrupted":
        notes.append("The run was interrupted: this is the best image up to that point.")
    if record.get("stop_reason") == "diverged":
        notes.append("The fit diverged: this is the last good image.")
    title = f"dip: {Path(record.get('input', '')).name} -> {Path(record.get('output', '')).name}"
    save_report(path, title=title, images=images, settings=_finite(settings), metrics=_finite(metrics), notes=notes)
    return Path(path)
