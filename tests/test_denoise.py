"""The collaborative Wiener filter that finishes Gaussian denoising, and the noise model that picks loss and preset."""

import numpy as np
import pytest
import torch

from dip.api import restore
from dip.config import Overrides, resolve_preset
from dip.degradations import add_gaussian_noise, add_salt_and_pepper, add_shot_noise
from dip.denoise import choose_noise, finish, impulse_share
from dip.errors import UsageError
from dip.io import Picture
from dip.metrics import psnr
from dip.wiener import collaborative_wiener

from conftest import small_image


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def _noisy(size=48, sigma=25.0, gray=False, seed=0):
    clean = small_image(size, gray=gray)
    return clean, add_gaussian_noise(clean, sigma, np.random.default_rng(seed))


@pytest.mark.parametrize("gray", [False, True])
def test_wiener_with_a_good_pilot_removes_most_of_the_noise(gray):
    clean, noisy = _noisy(gray=gray)
    pilot = _tensor(clean) * 0.9 + 0.05  # a pilot that is right about the structure, wrong in level and contrast
    out = collaborative_wiener(_tensor(noisy), pilot, 25 / 255)
    assert out.shape == _tensor(noisy).shape
    assert psnr(out, clean) > psnr(noisy, clean) + 6


def test_hard_thresholding_alone_denoises_and_finish_does_better():
    clean, noisy = _noisy()
    basic = collaborative_wiener(_tensor(noisy), _tensor(noisy), 25 / 255, shrink="hard", group=16, match=2500)
    assert psnr(basic, clean) > psnr(noisy, clean) + 3
    assert psnr(finish(_tensor(noisy), basic, 25 / 255), clean) > psnr(basic, clean) + 0.3


def test_filtering_a_band_of_references_at_a_time_changes_nothing():
    _, noisy = _noisy(size=32)
    whole = collaborative_wiener(_tensor(noisy), _tensor(noisy), 0.1, band=100000)
    banded = collaborative_wiener(_tensor(noisy), _tensor(noisy), 0.1, band=20)  # one row of references a band
    torch.testing.assert_close(banded, whole, rtol=1e-5, atol=1e-6)


def test_tiny_and_noiseless_images_pass_through():
    _, noisy = _noisy(size=6)
    small = collaborative_wiener(_tensor(noisy), _tensor(noisy), 0.1)  # smaller than a patch
    assert small.shape == (3, 6, 6) and torch.isfinite(small).all()
    assert torch.equal(collaborative_wiener(_tensor(noisy), _tensor(noisy), 0.0), _tensor(noisy))
    fitted = torch.rand(3, 16, 16)
    assert finish(torch.rand(3, 16, 16), fitted, 0.0) is fitted  # no noise seen: the net's image as it is
    flat = torch.full((3, 24, 24), 0.5)
    assert torch.isfinite(collaborative_wiener(flat, flat, 1e-4)).all()


def test_impulses_are_told_from_gaussian_and_photon_noise():
    clean = small_image(64)
    rng = np.random.default_rng(0)
    as_tensor = lambda image: _tensor(image)[None]  # noqa: E731
    assert impulse_share(as_tensor(add_salt_and_pepper(clean, 0.3, rng))) > 0.1
    for quiet in (clean, add_gaussian_noise(clean, 50, rng), add_shot_noise(clean, 30, rng)):
        assert impulse_share(as_tensor(quiet)) == 0.0
    assert choose_noise("auto", "denoise", as_tensor(add_salt_and_pepper(clean, 0.3, rng))) == "impulse"
    assert choose_noise("auto", "denoise", as_tensor(clean)) == "gaussian"
    assert choose_noise("poisson", "denoise", as_tensor(clean)) == "poisson"
    with pytest.raises(UsageError, match="--noise"):
        choose_noise("impulse", "inpaint", as_tensor(clean))


def test_auto_takes_light_for_small_fits_and_other_noise_fast_for_large_gaussian_fits():
    assert resolve_preset("auto", "denoise", "cpu", area=256 * 256).name == "fast-denoise"
    assert resolve_preset("auto", "denoise", "cpu", area=64 * 64).name == "light-denoise"
    assert resolve_preset("auto", "denoise", "cpu", noise="impulse", area=256 * 256).name == "light-denoise"
    assert resolve_preset("auto", "denoise", "cpu", noise="poisson").name == "light-denoise"
    assert resolve_preset("auto", "denoise", "cuda", area=64 * 64).name == "paper-denoise"
    assert resolve_preset("fast", "denoise", "cpu", area=64 * 64).name == "fast-denoise"  # asked by name: kept
    for bad in (dict(noise="pink"), dict(sigma=0), dict(sigma=300)):
        with pytest.raises(UsageError):
            Overrides(**bad)


def _picture(pixels):
    return Picture(pixels, None, 8, "RGB", None)


def test_a_gaussian_denoise_is_finished_by_the_filter_and_says_so():
    clean, noisy = _noisy(size=48, sigma=25)
    reference = _picture(clean)
    run = restore(_picture(noisy), task="denoise", iterations=40, device="cpu", reference=reference, sigma=25)
    record = run.record()
    assert record["refinement"]["sigma"] == 25 and record["refinement"]["sigma_from"] == "given"
    assert run.preset.name == "light-denoise" and record["fit"]["loss"] == "l2"
    assert record["psnr"] > record["refinement"]["fit_psnr"] + 0.5  # a 40-step net is a poor pilot alone
    assert psnr(run.fitted, clean) == pytest.approx(record["refinement"]["fit_psnr"], abs=1e-4)
    plain = restore(_picture(noisy), task="denoise", iterations=40, device="cpu", wiener=False)
    assert "refinement" not in plain.record()
    np.testing.assert_array_equal(plain.picture.pixels, run.fitted)  # the same fit, unfinished


def test_impulse_noise_is_fitted_with_l1_and_not_filtered():
    clean = small_image(48)
    noisy = add_salt_and_pepper(clean, 0.3, np.random.default_rng(0))
    run = restore(_picture(noisy), task="denoise", iterations=30, device="cpu")
    assert run.preset.fit.loss.value == "l1" and run.refinement is None
    assert run.preset.name == "light-denoise"
    asked = restore(_picture(noisy), task="denoise", iterations=5, device="cpu", loss="l2")
    assert asked.preset.fit.loss.value == "l2"  # the user's loss wins
