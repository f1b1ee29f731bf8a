"""--restarts K: K fits from different seeds, each stopped on its own, averaged."""

import numpy as np
import pytest
import torch

from dip.api import restart_seed, restore
from dip.errors import UsageError
from dip.io import Picture

from conftest import small_image


def _pair(size: int = 24) -> tuple[Picture, Picture]:
    clean = small_image(size)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    return Picture(noisy, None, 8, "RGB", None), Picture(clean, None, 8, "RGB", None)


def test_restarts_return_the_mean_of_the_single_fits():
    noisy, clean = _pair()
    # the mean of the nets' images, before the filter that would finish it
    settings = dict(preset="light", iterations=6, stop="off", reference=clean, wiener=False)
    averaged = restore(noisy, seed=4, restarts=3, **settings)
    singles = [restore(noisy, seed=restart_seed(4, k), **settings) for k in range(3)]
    expected = torch.stack([single.result.image for single in singles]).mean(dim=0)
    assert torch.allclose(averaged.result.image, expected, atol=1e-7)
    assert [r.seed for r in averaged.restarts] == [4, restart_seed(4, 1), restart_seed(4, 2)]
    record = averaged.record()
    assert len(record["restarts"]) == 3 and record["seed"] == 4
    assert record["psnr"] == pytest.approx(float(averaged.metrics["psnr"]), abs=5e-5)  # the record keeps 4 decimals


def test_one_restart_is_the_plain_run_and_seeds_differ_between_runs():
    noisy, _ = _pair()
    assert torch.equal(
        restore(noisy, preset="light", iterations=4, stop="off", seed=1, restarts=1).result.image,
        restore(noisy, preset="light", iterations=4, stop="off", seed=1).result.image,
    )
    assert restart_seed(1, 1) not in {restart_seed(0, 1), restart_seed(2, 1), 1, 2}


def test_restarts_refuse_what_they_cannot_average(tmp_path):
    noisy, _ = _pair()
    with pytest.raises(UsageError, match="at least 1"):
        restore(noisy, restarts=0)
    with pytest.raises(UsageError, match="snapshots or checkpoints"):
        restore(noisy, restarts=2, snapshots="log:2", snapshot_dir=tmp_path)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # what switching oneDNN off says on a CPU build
def test_restarts_at_once_give_the_restarts_in_turn():
    noisy, clean = _pair()
    settings = dict(preset="light", iterations=6, stop="off", reference=clean, seed=4, restarts=3, wiener=False)
    seen = []
    # the same kernels both ways (oneDNN picks others for the stacked net), so that only the summation order differs
    with torch.backends.mkldnn.flags(enabled=False):
        at_once = restore(noisy, restarts_at_once=True, observe=lambda step: seen.append(step.iteration), **settings)
        in_turn = restore(noisy, restarts_at_once=False, **settings)
    assert (at_once.result.image - in_turn.result.image).abs().max() < 1e-6
    assert [r.seed for r in at_once.restarts] == [r.seed for r in in_turn.restarts]
    assert at_once.metrics["psnr"] == pytest.approx(in_turn.metrics["psnr"], abs=1e-4)
    assert sorted(seen) == sorted(list(range(1, 7)) * 3)  # every restart's every step, interleaved
    assert (at_once.record()["restarts_at_once"], in_turn.record()["restarts_at_once"]) == (True, False)
    assert at_once.result.seconds == max(r.result.seconds for r in at_once.restarts)
    assert in_turn.result.seconds == pytest.approx(sum(r.result.seconds for r in in_turn.restarts))
