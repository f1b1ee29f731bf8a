"""``dip doctor``: the devices dip finds, what it would do on each, and the versions; for bug reports."""

from __future__ import annotations

from .options import JsonOption, emit


def doctor(as_json: JsonOption = False) -> None:
    """Say what dip would run on: devices (CUDA with name and free memory, MPS, CPU threads), what --preset auto,
    restarts and tiles would be on each, and the versions of dip and its libraries. Paste it into a bug report."""
    from ..doctor import lines, report

    found = report()
    emit(found, as_json, "\n".join(lines(found)))
