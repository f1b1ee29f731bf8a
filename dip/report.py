"""What is written beside every output: ``<output>.json`` with the settings and the metrics, and on request a
self-contained HTML page of the run."""

from __future__ import annotations

import base64
import dataclasses
import enum
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import InputError, OutputError
from .files import atomic_output


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


_MIME_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


_REPORT_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.3em 0; }
th, td { text-align: left; vertical-align: top; padding: 0.2em 0.8em 0.2em 0; }
th { font-weight: 600; color: #444; } td td, td th { font-size: 0.95em; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
"""


def save_report(
    path: str | Path,
    *,
    title: str,
    images: Sequence[tuple[str, str | Path]],
    settings: Mapping,
    metrics: Mapping,
    notes: Sequence[str] = (),
) -> None:
    """One self-contained HTML5 page: title, metrics, the images with their captions, settings, notes.

    Images are embedded as base64 data: URIs (.png, .jpg/.jpeg, .gif, .webp); the page refers to no other
    file, site or script. Nested settings become nested tables. All text is escaped.

    Raises InputError when an image is missing, unreadable or of another type, OutputError on a failed write.
    """
    path = Path(path)
    figures = [_figure(caption, Path(image)) for caption, image in images]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_REPORT_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if metrics:
        parts += ["<section>", "<h2>Metrics</h2>", _html_table(metrics), "</section>"]
    if figures:
        parts += ["<section>", "<h2>Pictures</h2>", *figures, "</section>"]
    if settings:
        parts += ["<section>", "<h2>Settings</h2>", _html_table(settings), "</section>"]
    if notes:
        items = "".join(f"<li>{html.escape(str(note))}</li>" for note in notes)
        parts += ["<section>", "<h2>Notes</h2>", f"<ul>{items}</ul>", "</section>"]
    parts += ["</body>", "</html>", ""]
    with atomic_output(path) as tmp:
        try:
            tmp.write_text("\n".join(parts), encoding="utf-8")
        except OSError as e:
            raise OutputError(f"cannot write '{path}': {e}", path=path) from e


def _figure(caption: str, image: Path) -> str:
    mime = _MIME_TYPES.get(image.suffix.lower())
    if mime is None:
        raise InputError(
            f"cannot embed '{image}' in the report: unknown image type '{image.suffix}'; "
            f"use one of {', '.join(sorted(_MIME_TYPES))}",
            path=image,
        )
    try:
        data = image.read_bytes()
    except OSError as e:
        raise InputError(f"cannot embed '{image}' in the report: {e.strerror or e}", path=image) from e
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    text = html.escape(str(caption))
    return f'<figure><img src="{uri}" alt="{text}"><figcaption>{text}</figcaption></figure>'


def _html_table(mapping: Mapping) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{_html_value(value)}</td></tr>" for key, value in mapping.items()
    )
    return f"<table>{rows}</table>"


def _html_value(value) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return _html_table(value) if value else "<em>none</em>"
    if isinstance(value, (list, tuple)):
        if all(_is_scalar(item) for item in value):
            return html.escape(", ".join(_plain(item) for item in value)) or "<em>none</em>"
        return "<ol>" + "".join(f"<li>{_html_value(item)}</li>" for item in value) + "</ol>"
    return html.escape(_plain(value))


def _is_scalar(value) -> bool:
    return not isinstance(value, (Mapping, list, tuple)) and not dataclasses.is_dataclass(value)


def _plain(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
