"""Checkpoints: a fit stopped and resumed gives the uninterrupted fit's result bit for bit on the CPU."""

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from dip.api import restore
from dip.config import StopConfig, resolve_preset
from dip.errors import UsageError
from dip.io import Picture

from conftest import small_image


def _noisy_picture(size: int = 24) -> Picture:
    clean = small_image(size)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    return Picture(noisy, None, 8, "RGB", None)


def _preset(rule: str = "wmv", family: str = "light"):
    # A small window and patience so that the detector is live (recording minima) across the interruption.
    preset = resolve_preset(family, "denoise", "cpu")
    return replace(preset, stop=StopConfig(rule=rule, cap=40, window=5, patience=1000, warmup=3))


class _InterruptAt:
    """An observer that asks the fit to stop after a given step, as a signal handler would."""

    def __init__(self, iteration: int) -> None:
        self.iteration, self.event = iteration, threading.Event()

    def __call__(self, step) -> None:
        if step.iteration == self.iteration:
            self.event.set()


@pytest.mark.parametrize(("rule", "family"), [("spread", "light"), ("wmv", "light"), ("emv", "light"),
                                             ("spread", "fast")])  # fast: a learning-rate schedule to resume
def test_interrupted_and_resumed_fit_equals_the_uninterrupted_one(tmp_path, rule, family):
    picture, preset = _noisy_picture(), _preset(rule, family)
    whole = restore(picture, preset=preset, seed=5)

    checkpoint = tmp_path / "run.ckpt"
    stopper = _InterruptAt(17)
    first = restore(
        picture, preset=preset, seed=5, observe=stopper, interrupt=stopper.event, checkpoint=checkpoint,
        checkpoint_every=10,
    )  # fmt: skip
    assert first.result.stop_reason == "interrupted" and first.result.iterations == 17
    assert checkpoint.is_file()
    resumed = restore(picture, preset=preset, seed=5, checkpoint=checkpoint, checkpoint_every=10, resume=True)

    assert resumed.result.iterations == whole.result.iterations == 40
    assert resumed.result.best_iteration == whole.result.best_iteration
    assert resumed.result.losses == whole.result.losses
    assert np.array_equal(resumed.result.statistics, whole.result.statistics, equal_nan=True)
    assert torch.equal(resumed.result.image, whole.result.image)


def test_resume_from_a_periodic_checkpoint_after_a_hard_kill(tmp_path):
    """A kill leaves only the last periodic checkpoint: the steps after it are simply redone, identically."""
    picture, preset = _noisy_picture(), _preset()
    whole = restore(picture, preset=preset, seed=2)
    checkpoint = tmp_path / "run.ckpt"

    def killed(step):
        if step.iteration == 25:
            raise KeyboardInterrupt  # an abrupt stop mid-run: no checkpoint is written for it

    restore(picture, preset=preset, seed=2, observe=killed, checkpoint=checkpoint, checkpoint_every=10)
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["fit"]["session"]["iteration"] == 20
    resumed = restore(picture, preset=preset, seed=2, checkpoint=checkpoint, resume=True)
    assert torch.equal(resumed.result.image, whole.result.image)
    assert resumed.result.losses == whole.result.losses


def test_with_losses_read_in_blocks_checkpoints_fall_on_block_ends(tmp_path, monkeypatch):
    """With steps queued ahead of the host (sync_every), an interrupt or a checkpoint waits for the end of the
    block, where the saved weights and the steps seen agree, and the resumed fit is still exact."""
    import dip.pipeline

    picture, preset = _noisy_picture(), _preset()
    preset = replace(preset, fit=replace(preset.fit, sync_every=4))
    whole = restore(picture, preset=preset, seed=5)
    checkpoint, saved_at = tmp_path / "run.ckpt", []
    save = dip.pipeline.save_checkpoint

    def spy(path, state):
        saved_at.append(state["fit"]["session"]["iteration"])
        save(path, state)

    monkeypatch.setattr(dip.pipeline, "save_checkpoint", spy)
    stopper = _InterruptAt(17)
    first = restore(
        picture, preset=preset, seed=5, observe=stopper, interrupt=stopper.event, checkpoint=checkpoint,
        checkpoint_every=6,
    )  # fmt: skip
    assert saved_at == [8, 12, 20]  # the first block ends at or after 6 and 12, then the interrupted block's end
    assert first.result.stop_reason == "interrupted" and first.result.iterations == 20
    resumed = restore(picture, preset=preset, seed=5, checkpoint=checkpoint, resume=True)
    assert resumed.result.losses == whole.result.losses
    assert torch.equal(resumed.result.image, whole.result.image)


def test_resume_refuses_another_runs_checkpoint_and_a_missing_one(tmp_path):
    picture, preset = _noisy_picture(), _preset()
    checkpoint = tmp_path / "run.ckpt"
    stopper = _InterruptAt(5)
    restore(picture, preset=preset, seed=1, observe=stopper, interrupt=stopper.event, checkpoint=checkpoint)
    with pytest.raises(UsageError, match="different seed"):
        restore(picture, preset=preset, seed=2, checkpoint=checkpoint, resume=True)
    with pytest.raises(UsageError, match="no checkpoint"):
        restore(picture, preset=preset, seed=1, checkpoint=tmp_path / "none.ckpt", resume=True)
