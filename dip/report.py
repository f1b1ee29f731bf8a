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
