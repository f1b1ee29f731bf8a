"""Several images fitted at once must give what their single fits give.

The fits are compared with oneDNN switched off. With it on, PyTorch computes a grouped 3x3 convolution with
oneDNN but the single nets' small convolutions with im2col and a matrix product: the sums run in another order
and differ by about 1e-7. Adam then turns rounding into real steps where a gradient is only rounding (the conv
biases before a BatchNorm have an exact gradient of 0, and the first Adam step moves them by up to lr whatever
the gradient's size), and a fit at lr 0.01 lets such differences grow: after 20 steps the returned images differ
by up to 8e-3, about as much as a single fit differs from itself run on an image changed by 1e-7. With both on
the same kernels there is nothing left to differ, so the comparisons below can be tight.
"""

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from dip.config import FitConfig, Loss, NetConfig
from dip.degradations import add_gaussian_noise, drop_pixels
from dip.errors import InputError, UsageError
from dip.fit import fit, fit_parallel
from dip.nets import build_net, make_input
from dip.operators import Mask, Observation
from dip.parallel import stack_inputs, stack_nets, unstack, unstack_output
from dip.stopping import WindowedVariance

from conftest import small_image

# Three scales, one of them without a skip branch: every path of SkipNet's structure is stacked.
TINY = NetConfig(scales=3, channels_down=8, channels_up=8, channels_skip=(4, 0, 4), input_depth=4)
TINY_NEAREST = NetConfig(
    scales=2, channels_down=(4, 8), channels_up=6, channels_skip=2, kernel_down=5, upsample="nearest", input_depth=3
)
SEEDS = [0, 1, 2]
# Switched off only around the fits being compared; the stacked forward is checked with it on.
same_kernels = pytest.mark.filterwarnings("ignore:TF32 acceleration")


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()


def _observations(size: int = 24) -> list[Observation]:
    """Two noisy images and one with holes: different images, and a masked loss among them."""
    clean = small_image(size)
    noisy = [Observation(_tensor(add_gaussian_noise(clean, 25, np.random.default_rng(s)))) for s in (0, 1)]
    dropped, known = drop_pixels(clean, 0.3, np.random.default_rng(2))
    mask = torch.from_numpy(known.astype(np.float32))[None, None]
    return [*noisy, Observation(_tensor(dropped), Mask(mask))]


@pytest.mark.parametrize("cfg", [TINY, TINY_NEAREST], ids=["bilinear", "nearest"])
def test_stacked_net_computes_each_net_in_its_own_channel_block(cfg):
    nets = [build_net(cfg, 3, seed=seed) for seed in SEEDS]
    zs = [make_input(cfg, 16, 16, generator=torch.Generator().manual_seed(seed)) for seed in SEEDS]
    stacked = stack_nets(nets)
    assert [name for name, _ in stacked.named_parameters()] == [name for name, _ in nets[0].named_parameters()]
    outputs = unstack_output(stacked(stack_inputs(zs)), len(nets))  # train mode: BatchNorm uses batch statistics
    for net, z, output in zip(nets, zs, outputs, strict=True):
        torch.testing.assert_close(output, net(z), rtol=0, atol=1e-5)
    # The forward also moved every BatchNorm's running statistics, each net's by its own activations only.
    for net, back in zip(nets, unstack(stacked), strict=True):
        for name, value in net.state_dict().items():
            torch.testing.assert_close(back.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_unstack_gives_back_the_nets_it_was_made_of():
    nets = [build_net(TINY, 1, seed=seed) for seed in SEEDS]
    stacked = stack_nets(nets)
    for net, back in zip(nets, unstack(stacked), strict=True):
        assert all(torch.equal(back.state_dict()[name], v) for name, v in net.state_dict().items())
    [last, first] = unstack(stacked, [2, 0])
    assert torch.equal(last.head[0].weight, nets[2].head[0].weight)
    assert torch.equal(first.head[0].weight, nets[0].head[0].weight)


def test_a_blow_up_in_one_net_stays_in_that_net():
    nets = [build_net(TINY, 3, seed=seed) for seed in SEEDS]
    zs = [make_input(TINY, 16, 16, generator=torch.Generator().manual_seed(seed)) for seed in SEEDS]
    zs[1] = zs[1] * float("nan")
    stacked = stack_nets(nets)
    outputs = unstack_output(stacked(stack_inputs(zs)), len(nets))
    assert outputs[1].isnan().all() and outputs[[0, 2]].isfinite().all()
    (outputs[0].mean() + outputs[2].mean()).backward()
    for parameter in stacked.parameters():
        blocks = parameter.grad.unflatten(0, (len(nets), -1))
        assert blocks[[0, 2]].isfinite().all()


@same_kernels
def test_losses_read_in_blocks_change_nothing():
    observations = _observations()
    with torch.backends.mkldnn.flags(enabled=False):
        step_by_step = fit_parallel(observations, TINY, FitConfig(iterations=11), seeds=SEEDS)
        in_blocks = fit_parallel(observations, TINY, FitConfig(iterations=11, sync_every=4), seeds=SEEDS)
    for one, other in zip(step_by_step, in_blocks, strict=True):
        assert torch.equal(one.image, other.image) and one.losses == other.losses


@same_kernels
def test_parallel_fit_gives_each_image_its_single_fit():
    observations = _observations()
    cfg = FitConfig(iterations=20)
    with torch.backends.mkldnn.flags(enabled=False):
        seen = []
        results = fit_parallel(observations, TINY, cfg, seeds=SEEDS, observe=lambda k, step: seen.append(k))
        singles = [fit(o, TINY, cfg, seed=seed) for o, seed in zip(observations, SEEDS, strict=True)]
    assert seen == [0, 1, 2] * 20
    for result, single in zip(results, singles, strict=True):
        assert (result.image - single.image).abs().max() < 1e-6
        assert result.losses == pytest.approx(single.losses, rel=1e-6)
        assert (result.returned, result.iterations, result.stop_reason) == (single.returned, 20, "cap")


@same_kernels
def test_the_stack_is_computed_in_the_configured_memory_layout():
    observations = _observations(16)
    cfg = FitConfig(iterations=6, channels_last=True)
    with torch.backends.mkldnn.flags(enabled=False):
        results = fit_parallel(observations, TINY, cfg, seeds=SEEDS)
        singles = [fit(o, TINY, cfg, seed=seed) for o, seed in zip(observations, SEEDS, strict=True)]
    for result, single in zip(results, singles, strict=True):
        # Not bit for bit: in NHWC the stacked and the single convolutions take different CPU kernels.
        assert (result.image - single.image).abs().max() < 1e-5


@same_kernels
@pytest.mark.parametrize("sync_every", [1, 4])
def test_each_image_stops_where_its_single_fit_stops(sync_every):
    observations = _observations()
    cfg = FitConfig(iterations=30, sync_every=sync_every)

    def detectors():
        return [
            WindowedVariance(window=3, patience=4, warmup=2),
            WindowedVariance(window=3, patience=4, warmup=2),
            None,
        ]

    with torch.backends.mkldnn.flags(enabled=False):
        results = fit_parallel(observations, TINY, cfg, seeds=SEEDS, detectors=detectors())
        singles = [
            fit(o, TINY, cfg, seed=seed, detector=detector)
            for o, seed, detector in zip(observations, SEEDS, detectors(), strict=True)
        ]
    # The first two leave the stack at different steps; the last, without a detector, runs to the cap.
    assert [(s.iterations, s.stop_reason) for s in singles] == [(16, "patience"), (10, "patience"), (30, "cap")]
    for result, single in zip(results, singles, strict=True):
        assert (result.iterations, result.best_iteration, result.stop_reason, result.returned) == (
            single.iterations,
            single.best_iteration,
            single.stop_reason,
            single.returned,
        )
        assert (result.image - single.image).abs().max() < 1e-6
        assert result.statistics == pytest.approx(single.statistics, rel=1e-6, nan_ok=True)


@dataclass(frozen=True)
class _BlowsUp(Observation):
    """Reports a NaN loss on the chosen calls of its loss: a divergence injected from outside."""

    bad_calls: frozenset = frozenset()
    calls: list = field(default_factory=lambda: [0])

    def loss(self, x: torch.Tensor, kind: Loss = Loss.l2) -> torch.Tensor:
        self.calls[0] += 1
        loss = super().loss(x, kind)
        return loss * float("nan") if self.calls[0] in self.bad_calls else loss

    def to(self, device: torch.device) -> Observation:
        return self  # CPU only: a copy would lose the count


@same_kernels
@pytest.mark.parametrize("sync_every, bad_call", [(1, 8), (4, 8), (4, 9), (7, 12)])
def test_a_blow_up_rolls_back_only_its_image(sync_every, bad_call):
    # With blocks of several steps the blow-up is found only when the block's losses are read: the image's
    # later steps in the block are dropped and it goes on alone from its last healthy copy, as its single fit
    # with the same blocks does (8: the last step of a block of 4 after the copy at 5; 9: a block's first step).
    cfg = FitConfig(iterations=20, guard_every=5, sync_every=sync_every)

    def observations():
        plain = _observations()
        return [plain[0], _BlowsUp(plain[1].y, bad_calls=frozenset({bad_call})), plain[2]]

    with torch.backends.mkldnn.flags(enabled=False):
        results = fit_parallel(observations(), TINY, cfg, seeds=SEEDS)
        singles = [fit(o, TINY, cfg, seed=seed) for o, seed in zip(observations(), SEEDS, strict=True)]
    assert [r.rollbacks for r in results] == [0, 1, 0]
    assert [len(r.losses) for r in results] == [20, 19, 20]  # the step that blew up is not taken
    for result, single in zip(results, singles, strict=True):
        assert result.rollbacks == single.rollbacks
        assert (result.image - single.image).abs().max() < 1e-6
        assert result.losses == pytest.approx(single.losses, rel=1e-6)


def test_images_of_different_sizes_are_refused():
    a = Observation(torch.rand(1, 3, 16, 16))
    b = Observation(torch.rand(1, 3, 16, 20))
    with pytest.raises(InputError, match="one size and channel count.*16x16 with 3 channels, 20x16 with 3"):
        fit_parallel([a, b], TINY, FitConfig(iterations=1), seeds=[0, 1])
    with pytest.raises(InputError, match="channel count"):
        fit_parallel([a, Observation(torch.rand(1, 1, 16, 16))], TINY, FitConfig(iterations=1), seeds=[0, 1])
    with pytest.raises(UsageError, match="one seed"):
        fit_parallel([a, a], TINY, FitConfig(iterations=1), seeds=[0])


def test_a_stack_of_one_is_the_single_fit_bit_for_bit():
    """One step loop for both: K = 1 computes exactly what the single fit computes, stopping included."""
    observation = _observations()[2]  # the masked one
    cfg = FitConfig(iterations=60)
    detector = lambda: WindowedVariance(10, 15, 20)  # noqa: E731
    [stacked] = fit_parallel([observation], TINY, cfg, seeds=[5], detectors=[detector()])
    single = fit(observation, TINY, cfg, seed=5, detector=detector())
    assert torch.equal(stacked.image, single.image) and stacked.losses == single.losses
    assert (stacked.best_iteration, stacked.iterations, stacked.stop_reason) == (
        single.best_iteration,
        single.iterations,
        single.stop_reason,
    )


def test_an_interrupt_ends_every_image_with_its_best_so_far_in_the_stack_and_after_it():
    import threading

    def run(stop_at: int, image: int | None = None) -> list:
        interrupt = threading.Event()

        def watch(k: int, step) -> None:
            if step.iteration == stop_at and image in (None, k):
                interrupt.set()

        plain = _observations(16)
        # image 1 blows up at its 8th step and is finished alone once the other two reach the cap of 12
        observations = [plain[0], _BlowsUp(plain[1].y, bad_calls=frozenset({8})), plain[2]]
        cfg = FitConfig(iterations=12, guard_every=5)
        return fit_parallel(observations, TINY, cfg, seeds=SEEDS, observe=watch, interrupt=interrupt)

    # in the stack: every image has seen step 4 when the interrupt is honoured
    assert [(r.stop_reason, r.iterations) for r in run(4)] == [("interrupted", 4)] * 3
    # image 1 alone, after the others ended at the cap
    assert [(r.stop_reason, r.iterations) for r in run(10, image=1)] == [("cap", 12), ("interrupted", 10), ("cap", 12)]
