"""The library entry point, as a researcher's script would call it."""

import numpy as np
import pytest

import dip
from dip.errors import InputError, UsageError
from dip.io import Picture, read_image, write_image

from conftest import small_image

FAST = dict(preset="light", iterations=3)


def test_restore_from_a_path_keeps_alpha_and_16_bits(tmp_path):
    rgb = small_image(32)
    alpha = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    write_image(tmp_path / "in.png", Picture(rgb, alpha, 16, "RGBA", None))
    result = dip.restore(tmp_path / "in.png", **FAST)
    assert result.task.value == "denoise" and result.preset.name == "light-denoise"
    assert result.picture.bit_depth == 16 and result.picture.pixels.shape == (32, 32, 3)
    assert np.array_equal(result.picture.alpha, read_image(tmp_path / "in.png").alpha)
    write_image(tmp_path / "out.png", result.picture)
    back = read_image(tmp_path / "out.png")
    assert back.bit_depth == 16 and back.alpha is not None


def test_restore_takes_a_picture_and_a_mask_array():
    picture = Picture(small_image(32), None, 8, "RGB", None)
    known = np.ones((32, 32), bool)
    known[8:16] = False
    result = dip.restore(picture, mask=known, **FAST)
    assert result.task.value == "inpaint" and result.result.iterations == 3
    with pytest.raises(InputError, match="mask"):
        dip.restore(picture, mask=known[:10], **FAST)


def test_the_paper_family_takes_its_scattered_preset_for_scattered_masks_and_light_keeps_one_net():
    picture = Picture(small_image(32), None, 8, "RGB", None)
    scattered = np.random.default_rng(0).random((32, 32)) > 0.5
    hole = np.ones((32, 32), bool)
    hole[8:16, 8:16] = False
    paper = dict(preset="paper", iterations=1)
    for restarts in (1, 2):
        assert dip.restore(picture, mask=scattered, restarts=restarts, **paper).preset.name == "paper-scattered"
    assert dip.restore(picture, mask=hole, **paper).preset.name == "paper-inpaint"
    assert dip.restore(picture, mask=scattered, **FAST).preset.name == "light-inpaint"
    assert dip.restore(picture, mask=scattered, preset="light-scattered", iterations=3).preset.name == "light-scattered"


def test_jpeg_input_defaults_to_the_jpeg_task(tmp_path):
    write_image(tmp_path / "photo.jpg", Picture(small_image(32), None, 8, "RGB", None))
    assert dip.restore(tmp_path / "photo.jpg", **FAST).task.value == "jpeg"


def test_reference_metrics_and_record(tmp_path):
    clean = Picture(small_image(32), None, 8, "RGB", None)
    noisy = clean.with_pixels(np.clip(clean.pixels + 0.1, 0, 1))
    result = dip.restore(noisy, reference=clean, seed=2, **FAST)
    assert set(result.metrics) == {"psnr", "ssim", "input_psnr", "input_ssim", "peak_psnr", "peak_iteration"}
    record = result.record()
    assert record["seed"] == 2 and record["iterations"] == 3 and record["net"]["scales"] == 5
    with pytest.raises(InputError, match="reference"):
        dip.restore(noisy, reference=Picture(small_image(16), None, 8, "RGB", None), **FAST)


def test_overrides_and_bad_values():
    picture = Picture(small_image(32), None, 8, "RGB", None)
    result = dip.restore(picture, preset="light", iterations=2, lr=0.02, loss="l1")
    assert result.preset.fit.lr == 0.02 and result.preset.fit.loss.value == "l1"
    with pytest.raises(UsageError):
        dip.restore(picture, preset="light", iterations=2, loss="huber")
    with pytest.raises(UsageError):
        dip.restore(picture, task="deblur")


def test_the_noise_floor_is_armed_for_noise_the_l2_loss_models_and_nowhere_else(tmp_path):
    clean = small_image(48)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    picture = Picture(noisy, None, 8, "RGB", None)
    floor = dip.restore(picture, **FAST).record()["noise_floor_loss"]
    assert floor == pytest.approx(0.8 * 0.1**2, rel=0.3)  # StopConfig.noise_floor x the estimated variance
    known = np.ones((48, 48), bool)
    known[::3] = False
    assert dip.restore(picture, mask=known, **FAST).record()["noise_floor_loss"] is None
    assert dip.restore(picture, task="jpeg", **FAST).record()["noise_floor_loss"] is None
    assert dip.restore(picture, loss="l1", **FAST).record()["noise_floor_loss"] is None
    assert dip.restore(picture, stop="off", **FAST).record()["noise_floor_loss"] is None


def test_family_names_pick_the_scattered_variant_for_inpainting_only():
    from dip.config import resolve_preset

    assert resolve_preset("auto", "inpaint", "cuda", scattered_mask=True).name == "paper-scattered"
    assert resolve_preset("auto", "inpaint", "cpu", scattered_mask=True).name == "fast-inpaint"
    assert resolve_preset("auto", "denoise", "cpu").name == "fast-denoise"
    # the fast schedule was measured on denoising, JPEG and inpainting only; the other tasks keep the light presets
    assert resolve_preset("fast", "sr", "cpu").name == "light-sr"
    assert resolve_preset("fast", "deblur", "cpu").name == "light-deblur"
    assert resolve_preset("paper", "inpaint", "cpu").name == "paper-inpaint"
    assert resolve_preset("light", "denoise", "cpu", scattered_mask=True).name == "light-denoise"


def test_overrides_are_one_checked_value_that_keeps_what_it_does_not_name():
    from dip.config import NO_OVERRIDES, Overrides, resolve_preset

    preset = resolve_preset("light", "denoise", "cpu")
    kept = NO_OVERRIDES.apply(preset)
    # with stopping on, the steps asked of the fit are the cap
    assert (kept.net, kept.stop, kept.fit.iterations) == (preset.net, preset.stop, preset.stop.cap)
    capped = Overrides(iterations=300, patience=50).apply(preset)
    assert (capped.fit.iterations, capped.stop.cap, capped.stop.patience) == (300, 300, 50)
    assert capped.stop.window == preset.stop.window and capped.fit.lr == preset.fit.lr
    exact = Overrides(iterations=40, stop="off").apply(preset)
    assert (exact.fit.iterations, exact.stop.resolved_rule) == (40, "off")
    for bad in ({"iterations": 0}, {"lr": 0}, {"loss": "huber"}, {"stop": "never"}, {"window": 1},
                {"patience": 0}, {"noise_floor": 1.0}):  # fmt: skip
        with pytest.raises(UsageError):
            Overrides(**bad)


def test_the_fast_presets_take_more_steps_for_larger_fits_unless_told_how_many():
    from dip.config import GROWN_AT_MOST, Overrides, grown, resolve_preset

    fast = resolve_preset("fast", "denoise", "cpu")
    assert grown(fast, 96, 96) == fast and grown(fast, 128, 128) == fast
    assert grown(fast, 256, 256).stop.cap == grown(fast, 256, 256).fit.iterations == fast.stop.cap + 300
    assert grown(fast, 512, 512).fit.iterations == fast.stop.cap + 600
    assert grown(fast, 64, 1024).fit.iterations == fast.stop.cap + 300  # the side of a square of that area
    assert grown(fast, 32768, 32768).fit.iterations == GROWN_AT_MOST
    asked = Overrides(iterations=900).apply(fast)
    assert grown(asked, 512, 512).fit.iterations == 900
    light = resolve_preset("light", "denoise", "cpu")
    assert grown(light, 512, 512) == light


def test_a_fit_gets_the_steps_of_its_size():
    from dip.pipeline import prepare

    picture = Picture(small_image(48), None, 8, "RGB", None)
    assert prepare(picture, preset="fast", device="cpu", tile=0).preset.fit.iterations == 700
    wide = Picture(np.zeros((128, 512, 3), np.float32), None, 8, "RGB", None)
    assert prepare(wide, preset="fast", device="cpu", tile=0).preset.fit.iterations == 1000
    tiled = prepare(wide, preset="fast", device="cpu", tile=64, tile_overlap=16)
    assert tiled.layout.split and tiled.preset.fit.iterations == 700  # each tile's size, not the image's
