import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from dip.config import FitConfig, NetConfig
from dip.degradations import add_gaussian_noise, drop_pixels, jpeg_compress
from dip.fit import fit, iterate
from dip.metrics import psnr
from dip.nets import build_net, make_input
from dip.operators import Identity, Mask, Observation, Operator

from conftest import small_image

SMALL = NetConfig(scales=4, channels_down=16, channels_up=16, channels_skip=4, input_depth=8)
SMALL_JPEG = NetConfig(
    scales=4, channels_down=(8, 16, 32, 32), channels_up=(8, 16, 32, 32), channels_skip=(0, 0, 4, 4), input_depth=3
)


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()


def test_same_seed_gives_the_same_image_bit_for_bit(clean48):
    y = _tensor(add_gaussian_noise(clean48, 25, np.random.default_rng(0)))
    cfg = FitConfig(iterations=15)
    a, b = (fit(Observation(y), SMALL, cfg, seed=4) for _ in range(2))
    assert torch.equal(a.image, b.image)
    assert a.losses == b.losses
    c = fit(Observation(y), SMALL, cfg, seed=5)
    assert not torch.equal(a.image, c.image)


def test_odd_sized_gray_image_keeps_its_shape():
    y = torch.rand((1, 1, 37, 31), generator=torch.Generator().manual_seed(0))
    result = fit(Observation(y), SMALL, FitConfig(iterations=3), seed=0)
    assert result.image.shape == (1, 1, 37, 31)


def test_returned_image_is_the_average_or_the_last_iterate(clean48):
    y = _tensor(clean48)
    seen = []
    averaged = fit(Observation(y), SMALL, FitConfig(iterations=5, average=0.9), seed=0, observe=seen.append)
    assert torch.equal(averaged.image, seen[-1].average)
    expected = seen[0].x
    for step in seen[1:]:
        expected = expected * 0.9 + step.x * 0.1
    assert torch.allclose(averaged.image, expected)
    raw = fit(Observation(y), SMALL, FitConfig(iterations=5, average=None), seed=0)
    assert torch.equal(raw.image, seen[-1].x) and raw.returned == "iterate 5, the last"


def test_stop_predicate_ends_the_run(clean48):
    result = fit(
        Observation(_tensor(clean48)), SMALL, FitConfig(iterations=50), seed=0, stop=lambda step: step.iteration == 7
    )
    assert result.iterations == 7 and result.stop_reason == "stopped" and len(result.losses) == 7


class _Poisoned(torch.nn.Module):
    """Wraps a net and makes its output NaN on chosen calls: a blow-up injected from outside."""

    def __init__(self, net, bad_calls):
        super().__init__()
        self.net, self.bad_calls, self.calls = net, set(bad_calls), 0

    def forward(self, z):
        self.calls += 1
        out = self.net(z)
        return out * float("nan") if self.calls in self.bad_calls else out


def test_divergence_rolls_back_to_good_weights_and_halves_the_learning_rate(clean48):
    y = _tensor(clean48)
    cfg = FitConfig(iterations=30, guard_every=5, average=None)
    net = _Poisoned(build_net(SMALL, 3, seed=0), bad_calls={12})
    z = make_input(SMALL, 48, 48, generator=torch.Generator().manual_seed(0))
    steps = list(iterate(Observation(y), net, z, cfg, generator=torch.Generator().manual_seed(1)))
    assert [s.iteration for s in steps] == [i for i in range(1, 31) if i != 12]
    assert all(math.isfinite(s.loss) for s in steps)
    assert steps[-1].rollbacks == 1 and steps[-1].lr == pytest.approx(cfg.lr / 2)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_a_fit_that_keeps_diverging_stops_with_what_it_had(clean48, monkeypatch):
    import dip.fit as fit_module

    build = fit_module.build_net
    monkeypatch.setattr(fit_module, "build_net", lambda *a, **k: _Poisoned(build(*a, **k), range(9, 100)))
    cfg = FitConfig(iterations=40, guard_every=5, max_rollbacks=2, average=None)
    result = fit(Observation(_tensor(clean48)), SMALL, cfg, seed=0)
    assert result.stop_reason == "diverged" and result.iterations == 8
    assert torch.isfinite(result.image).all()


@pytest.mark.parametrize("sync_every", [4, 7])
def test_reading_losses_in_blocks_changes_nothing(clean48, sync_every):
    y = _tensor(add_gaussian_noise(clean48, 25, np.random.default_rng(0)))
    every_step = fit(Observation(y), SMALL, FitConfig(iterations=15, sync_every=1), seed=3)
    seen = []
    blocks = fit(Observation(y), SMALL, FitConfig(iterations=15, sync_every=sync_every), seed=3, observe=seen.append)
    assert [step.iteration for step in seen] == list(range(1, 16))  # the last block is a short one
    assert blocks.losses == every_step.losses
    assert torch.equal(blocks.image, every_step.image)


@pytest.mark.gpu
def test_on_a_gpu_the_default_reads_losses_in_blocks_and_changes_nothing(clean48, monkeypatch):
    from dip.config import DEVICE_SYNC_EVERY

    assert FitConfig().sync_interval("cuda") == DEVICE_SYNC_EVERY > 1
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    y = _tensor(add_gaussian_noise(clean48, 25, np.random.default_rng(0)))
    cfg = FitConfig(iterations=40)
    every_step = fit(Observation(y), SMALL, replace(cfg, sync_every=1), seed=3, device="cuda")
    blocks = fit(Observation(y), SMALL, cfg, seed=3, device="cuda")
    assert blocks.losses == pytest.approx(every_step.losses, rel=1e-5)
    assert torch.allclose(blocks.image, every_step.image, atol=1e-5)


@pytest.mark.parametrize("bad_call", [11, 13])  # first step of a block; a step after a copy staged in its block
def test_a_blow_up_inside_a_block_rolls_back_as_when_every_loss_is_read(clean48, bad_call):
    # Without jitter no random draw depends on the blocks, so the rolled-back run must equal the step-by-step one.
    y = _tensor(clean48)
    runs = []
    for sync_every in (1, 8):
        cfg = FitConfig(iterations=30, guard_every=5, average=0.9, reg_noise_std=0, sync_every=sync_every)
        net = _Poisoned(build_net(SMALL, 3, seed=0), bad_calls={bad_call})
        z = make_input(SMALL, 48, 48, generator=torch.Generator().manual_seed(0))
        runs.append((list(iterate(Observation(y), net, z, cfg, generator=torch.Generator().manual_seed(1))), net))
    (one_by_one, _), (blocks, net) = runs
    assert [s.iteration for s in blocks] == [i for i in range(1, 31) if i != bad_call]
    assert [s.loss for s in blocks] == [s.loss for s in one_by_one]
    assert torch.equal(blocks[-1].average, one_by_one[-1].average)
    assert blocks[-1].rollbacks == 1 and blocks[-1].lr == pytest.approx(0.005)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def _gain(clean, corrupted, mask=None, *, net=SMALL, iterations, average=0.99) -> float:
    operator = Identity() if mask is None else Mask(torch.from_numpy(mask.astype(np.float32))[None, None])
    cfg = FitConfig(iterations=iterations, average=average)
    result = fit(Observation(_tensor(corrupted), operator), net, cfg, seed=0)
    return psnr(result.image, clean) - psnr(corrupted, clean)


def test_denoising_raises_psnr(clean48):
    noisy = add_gaussian_noise(clean48, 25, np.random.default_rng(0))
    assert _gain(clean48, noisy, iterations=300) > 2.5


def test_inpainting_fills_missing_pixels(clean48):
    dropped, known = drop_pixels(clean48, 0.5, np.random.default_rng(0))
    assert _gain(clean48, dropped, known, iterations=300, average=None) > 10


def test_jpeg_artifacts_are_reduced():
    clean = small_image(64)
    compressed = jpeg_compress(clean, 10)
    assert _gain(clean, compressed, net=SMALL_JPEG, iterations=600) > 0.4


def test_gray_denoising_raises_psnr():
    clean = small_image(40, gray=True)
    noisy = add_gaussian_noise(clean, 25, np.random.default_rng(1))
    assert (
        _gain(
            clean,
            noisy,
            net=NetConfig(scales=3, channels_down=16, channels_up=16, channels_skip=4, input_depth=8),
            iterations=300,
        )
        > 2.0
    )


class _HalfSize(Operator):
    """A toy operator whose observation is half the restored image's size (a 2x2 mean): the fit must draw the
    image at the size the operator names, and compare A(x), not x, with y."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 2)

    def restored_size(self, height: int, width: int) -> tuple[int, int]:
        return 2 * height, 2 * width


def test_the_fit_draws_the_image_at_the_size_the_operator_names(clean48):
    clean = _tensor(clean48[:32, :40])
    observed = torch.nn.functional.avg_pool2d(clean, 2)  # 16 x 20
    observation = Observation(observed, _HalfSize())
    assert observation.restored_shape == (3, 32, 40)
    seen = []
    result = fit(observation, SMALL, FitConfig(iterations=150, average=None), seed=0, observe=seen.append)
    assert result.image.shape == (1, 3, 32, 40) and seen[0].x.shape == (1, 3, 32, 40)
    # the loss is the operator's, A(x) against y, and A(x) comes to match y far better than at the start
    assert float(observation.loss(seen[-1].x)) == pytest.approx(seen[-1].loss, rel=1e-5)
    assert result.final_loss < seen[0].loss / 5


def test_cosine_schedule_warms_up_then_decays_to_its_floor():
    cfg = FitConfig(iterations=101, lr=0.08, lr_schedule="cosine", lr_warmup=10, lr_floor=0.05)
    factors = [cfg.lr_factor(i) for i in range(1, 102)]
    assert factors[0] < factors[4] < factors[9]
    assert max(factors) == pytest.approx(factors[9])
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert factors[-1] == pytest.approx(0.05)
    assert FitConfig(lr_schedule="constant").lr_factor(7) == 1.0


def test_the_fit_steps_with_the_scheduled_learning_rate_and_the_guard_halves_it(clean48):
    y = _tensor(clean48)
    cfg = FitConfig(iterations=30, guard_every=5, average=None, lr_schedule="cosine", lr_warmup=5)
    net = _Poisoned(build_net(SMALL, 3, seed=0), bad_calls={12})
    z = make_input(SMALL, 48, 48, generator=torch.Generator().manual_seed(0))
    steps = list(iterate(Observation(y), net, z, cfg, generator=torch.Generator().manual_seed(1)))
    before, after = [s for s in steps if s.rollbacks == 0], [s for s in steps if s.rollbacks == 1]
    assert [s.lr for s in before] == pytest.approx([cfg.lr * cfg.lr_factor(s.iteration) for s in before])
    assert [s.lr for s in after] == pytest.approx([cfg.lr / 2 * cfg.lr_factor(s.iteration) for s in after])


def test_an_unknown_schedule_is_refused():
    from dip.errors import UsageError

    with pytest.raises(UsageError, match="lr_schedule"):
        FitConfig(lr_schedule="step")


def test_fused_adam_takes_the_same_steps_up_to_rounding(clean48):
    y = _tensor(add_gaussian_noise(clean48, 25, np.random.default_rng(0)))
    plain, fused = (fit(Observation(y), SMALL, FitConfig(iterations=15, fused_adam=f), seed=3) for f in (False, True))
    assert torch.allclose(plain.image, fused.image, atol=1e-4)
    assert plain.losses == pytest.approx(fused.losses, rel=1e-4)
