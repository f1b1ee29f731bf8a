"""Checkpoints: the whole state of a run in one file, so that a long fit can stop and continue exactly."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from .config import Preset
from .errors import InputError, UsageError
from .io import atomic_output
from .operators import Operator
from .report import to_json

CHECKPOINT_FORMAT = "dip-checkpoint/1"


def fingerprint_of(y: torch.Tensor, operator: Operator, preset: Preset, seed: int, snapshots: str | None) -> dict:
    """What a checkpoint must share with the run that resumes it, as plain values."""
    # The cap is left out: running a resumed fit further (or less far) does not change the steps already taken.
    fit_settings = {k: v for k, v in asdict(preset.fit).items() if k != "iterations"}
    stop_settings = {k: v for k, v in asdict(preset.stop).items() if k != "cap"}
    settings = json.loads(to_json({"net": asdict(preset.net), "fit": fit_settings, "stop": stop_settings}))
    image = hashlib.sha256(y.cpu().numpy().tobytes()).hexdigest()
    return {"image": image, **operator.fingerprint(), "settings": settings, "seed": seed, "snapshots": snapshots}


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Written whole or not at all: a kill during the save leaves the previous checkpoint."""
    with atomic_output(path) as temporary:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, temporary)


def load_checkpoint(path: str | Path | None, fingerprint: dict) -> dict:
    if path is None or not Path(path).is_file():
        raise UsageError(f"nothing to resume: no checkpoint at '{path}' (make one with --checkpoint-every N)")
    try:
        # weights_only: a checkpoint is data; unpickling arbitrary objects from a file is never needed here
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file; all mean the same to the user
        raise InputError(f"cannot read checkpoint '{path}': {str(error).splitlines()[0]}") from None
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"'{path}' is not a dip checkpoint")
    differences = [key for key in fingerprint if saved["fingerprint"].get(key) != fingerprint[key]]
    if differences:
        raise UsageError(
            f"checkpoint '{path}' belongs to another run (different {', '.join(differences)}); "
            "resume with the same image, mask, options and seed"
        )
    return saved
