import io

import numpy as np
import pytest
import torch
from PIL import Image

from dip.config import Loss
from dip.degradations import (
    add_gaussian_noise,
    drop_pixels,
    is_scattered,
    jpeg_bytes,
    jpeg_compress,
)
from dip.errors import UsageError
from dip.operators import Identity, Mask, Observation, data_loss


def _mask(known_fraction: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((1, 1, 12, 10), generator=g) < known_fraction).float()


@pytest.mark.parametrize("kind", list(Loss))
def test_masked_loss_ignores_y_at_unknown_pixels(kind):
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand((1, 3, 12, 10), generator=g), torch.rand((1, 3, 12, 10), generator=g)
    mask = _mask(0.6)
    scribbled = torch.where(mask > 0, y, torch.full_like(y, float("nan")))
    assert torch.equal(data_loss(x, y, mask, kind), data_loss(x, scribbled, mask, kind))
    moved = torch.where(mask > 0, y, y + 5)
    assert torch.equal(data_loss(x, y, mask, kind), data_loss(x, moved, mask, kind))


@pytest.mark.parametrize("known_fraction", [0.05, 0.5, 0.95])
def test_masked_loss_is_a_mean_over_known_entries(known_fraction):
    # A constant error e gives e^2 whatever the size of the hole: the learning rate needs no retuning.
    x = torch.full((1, 3, 12, 10), 0.7)
    y = torch.full((1, 3, 12, 10), 0.5)
    loss = data_loss(x, y, _mask(known_fraction), Loss.l2)
    assert loss.item() == pytest.approx(0.04, rel=1e-5)
    assert data_loss(x, y, _mask(known_fraction), Loss.l1).item() == pytest.approx(0.2, rel=1e-5)


def test_unmasked_loss_is_plain_mse_and_the_mask_operator_is_a_mask_product():
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand((1, 1, 5, 7), generator=g), torch.rand((1, 1, 5, 7), generator=g)
    assert torch.allclose(Observation(y).loss(x), torch.mean((x - y) ** 2))
    mask = _mask(0.5)[..., :5, :7]
    assert torch.equal(Mask(mask)(x), x * mask)
    assert torch.equal(Identity()(x), x)
    assert torch.equal(Observation(y, Mask(mask)).loss(x), data_loss(x, y, mask))
    assert Observation(y, Mask(mask)).restored_shape == (1, 5, 7)


def test_masked_loss_gradient_is_zero_at_unknown_pixels():
    x = torch.rand((1, 3, 12, 10), requires_grad=True)
    mask = _mask(0.5)
    Observation(torch.rand_like(x), Mask(mask)).loss(x).backward()
    assert torch.all(x.grad[(mask == 0).expand_as(x)] == 0)


def test_gaussian_noise_has_the_asked_sigma_on_the_255_scale():
    flat = np.full((200, 200, 1), 0.5, np.float32)
    noisy = add_gaussian_noise(flat, 25, np.random.default_rng(0))
    assert np.std(noisy - flat) * 255 == pytest.approx(25, rel=0.03)
    assert noisy.dtype == np.float32 and noisy.min() >= 0 and noisy.max() <= 1


def test_drop_pixels_removes_the_fraction_in_all_channels():
    image = np.random.default_rng(0).random((100, 80, 3)).astype(np.float32) + 0.01
    dropped, known = drop_pixels(image, 0.3, np.random.default_rng(1))
    assert known.shape == (100, 80) and known.dtype == bool
    assert known.mean() == pytest.approx(0.7, abs=0.02)
    assert np.all(dropped[~known] == 0) and np.array_equal(dropped[known], image[known])


def test_jpeg_round_trip_agrees_with_pillow(clean48):
    decoded = jpeg_compress(clean48, 10)
    expected = np.asarray(Image.open(io.BytesIO(jpeg_bytes(clean48, 10))), dtype=np.float32) / 255
    assert np.array_equal(decoded, expected)
    assert 0 < np.abs(decoded - clean48).mean() < 0.1


def test_same_seed_same_corruption(clean48):
    a = add_gaussian_noise(clean48, 15, np.random.default_rng(3))
    b = add_gaussian_noise(clean48, 15, np.random.default_rng(3))
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "call",
    [
        lambda img: add_gaussian_noise(img, 0, np.random.default_rng(0)),
        lambda img: add_gaussian_noise(img, 300, np.random.default_rng(0)),
        lambda img: drop_pixels(img, 1.0, np.random.default_rng(0)),
        lambda img: drop_pixels(img, 0.0, np.random.default_rng(0)),
        lambda img: jpeg_compress(img, 0),
        lambda img: jpeg_compress(img, 101),
    ],
)
def test_impossible_corruptions_are_refused(call, clean48):
    with pytest.raises(UsageError):
        call(clean48)


def test_salt_and_pepper_hits_the_fraction_with_black_and_white():
    from dip.degradations import add_salt_and_pepper

    image = np.full((100, 100, 3), 0.5, np.float32)
    noisy = add_salt_and_pepper(image, 0.3, np.random.default_rng(0))
    hit = np.any(noisy != 0.5, axis=2)
    assert hit.mean() == pytest.approx(0.3, abs=0.02)
    assert set(np.unique(noisy[hit])) == {0.0, 1.0}
    assert np.all(noisy[hit].min(axis=1) == noisy[hit].max(axis=1))  # all channels alike


def test_shot_noise_keeps_the_mean_and_grows_with_the_brightness():
    from dip.degradations import add_shot_noise

    rng = np.random.default_rng(0)
    for level in (0.2, 0.6):
        noisy = add_shot_noise(np.full((200, 200, 1), level, np.float32), 30, rng)
        assert noisy.mean() == pytest.approx(level, abs=0.01)
        assert noisy.var() == pytest.approx(level / 30, rel=0.1)  # Poisson: variance = mean photon count
    with pytest.raises(UsageError):
        add_shot_noise(np.zeros((2, 2, 1), np.float32), 0, rng)


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.98])
def test_pixels_dropped_at_random_are_scattered(fraction):
    _, known = drop_pixels(np.zeros((64, 64, 3), np.float32), fraction, np.random.default_rng(0))
    assert is_scattered(known)


def _strokes() -> np.ndarray:
    known = np.ones((64, 64), bool)
    known[10:12, 5:60] = False  # a line of text two pixels thick
    known[20:50, 30] = False  # a scratch one pixel wide
    return known


def _hole() -> np.ndarray:
    known = np.ones((64, 64), bool)
    known[20:40, 25:45] = False
    return known


@pytest.mark.parametrize("known", [_strokes(), _hole(), np.ones((8, 8), bool), np.zeros((8, 8), bool)])
def test_strokes_holes_and_masks_with_nothing_or_everything_missing_are_not_scattered(known):
    assert not is_scattered(known)
