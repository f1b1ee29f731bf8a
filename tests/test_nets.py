import pytest
import torch

from dip.config import PRESETS, NetConfig
from dip.errors import UsageError
from dip.nets import build_net, count_parameters, crop_to, make_input, padded_size

TINY = NetConfig(scales=3, channels_down=8, channels_up=8, channels_skip=2, input_depth=4)


@pytest.mark.parametrize("height,width", [(37, 31), (32, 32), (1, 1), (2, 70)])
def test_any_size_is_padded_then_cropped_back(height, width):
    padded_h, padded_w = padded_size(height, width, TINY)
    assert padded_h % 8 == 0 and padded_w % 8 == 0
    assert padded_h >= height and padded_w >= width
    z = make_input(TINY, height, width, generator=torch.Generator().manual_seed(0))
    out = crop_to(build_net(TINY, 3, seed=0)(z), height, width)
    assert out.shape == (1, 3, height, width)
    assert 0 < out.min() and out.max() < 1  # sigmoid output


def test_crop_is_centred():
    x = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    assert crop_to(x, 4, 4)[0, 0, 0].tolist() == [2.0, 3.0, 4.0, 5.0]


def test_input_is_uniform_times_scale():
    z = make_input(TINY, 16, 16, generator=torch.Generator().manual_seed(0))
    assert z.shape == (1, 4, 16, 16)
    assert 0 <= z.min() and z.max() <= 0.1


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (build_net(TINY, 3, seed=s) for s in (1, 1, 2))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


def test_seeded_build_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_net(TINY, 3, seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_paper_denoise_net_has_the_reference_size():
    # The reference notebook's skip net for denoising has about 2.2 M parameters (../shared/data/README.md).
    count = count_parameters(build_net(PRESETS["paper-denoise"].net, 3, seed=0))
    assert 2.1e6 < count < 2.3e6


def test_skip_channels_zero_removes_the_skip_branch():
    cfg = NetConfig(scales=2, channels_down=4, channels_up=4, channels_skip=(0, 2), input_depth=2)
    net = build_net(cfg, 1, seed=0)
    assert net.body.skip is None
    assert net.body.deeper[-2].skip is not None


@pytest.mark.parametrize(
    "kwargs",
    [dict(scales=0), dict(channels_down=(8, 8)), dict(kernel_up=4), dict(upsample="bicubic"), dict(input_depth=0)],
)
def test_impossible_net_settings_are_refused(kwargs):
    with pytest.raises(UsageError):
        NetConfig(**{"scales": 3, **kwargs})
