"""The forward operators of super-resolution and deblurring, and the two tasks end to end on small images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from dip.config import PRESETS, FitConfig, NetConfig, Preset, StopConfig
from dip.degradations import through_operator
from dip.errors import UsageError
from dip.io import Picture, write_image
from dip.metrics import psnr
from dip.operators import Blur, Downsample, Observation, blur_kernel, lanczos2_taps

from conftest import run, small_image


def _lanczos2(d: np.ndarray) -> np.ndarray:
    return np.sinc(d) * np.sinc(d / 2)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_the_downsampler_is_the_lanczos2_kernel_computed_directly(factor):
    rng = np.random.default_rng(factor)
    x = rng.random((2, 5 * factor, 4 * factor))  # channels, height, width
    # Output pixel (i, j) is centred on block (i, j) of x: the weights are Lanczos-2 of each high-resolution
    # pixel's distance from that centre, in low-resolution pixels, over a support of 2 on either side.
    reach = 2 * factor
    padded = np.pad(x, ((0, 0), (reach, reach), (reach, reach)), mode="reflect")
    expected = np.zeros((2, 5, 4))
    for i in range(5):
        for j in range(4):
            centre_i, centre_j = i * factor + (factor - 1) / 2, j * factor + (factor - 1) / 2
            rows = np.arange(int(np.floor(centre_i - reach)) + 1, int(np.ceil(centre_i + reach)))
            cols = np.arange(int(np.floor(centre_j - reach)) + 1, int(np.ceil(centre_j + reach)))
            wr, wc = _lanczos2((rows - centre_i) / factor), _lanczos2((cols - centre_j) / factor)
            weights = np.outer(wr, wc) / (wr.sum() * wc.sum())
            window = padded[:, rows[0] + reach : rows[-1] + reach + 1, cols[0] + reach : cols[-1] + reach + 1]
            expected[:, i, j] = (window * weights).sum(axis=(1, 2))
    got = Downsample(factor)(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == (2, 5, 4)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert lanczos2_taps(factor).sum().item() == pytest.approx(1.0)


def test_the_downsampler_keeps_a_flat_image_and_names_the_restored_size():
    assert torch.allclose(Downsample(4)(torch.full((1, 3, 32, 24), 0.3)), torch.full((1, 3, 8, 6), 0.3))
    assert Observation(torch.zeros(1, 3, 8, 6), Downsample(4)).restored_shape == (3, 32, 24)


@pytest.mark.parametrize("spec", ["gaussian:1.5", "motion:9,30", "box:4"])
def test_each_blur_kernel_sums_to_one_and_the_operator_is_a_direct_convolution(spec):
    from scipy.signal import convolve2d

    kernel = blur_kernel(spec)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6) and (kernel >= 0).all()
    x = np.random.default_rng(0).random((20, 23))
    k = kernel.double().numpy()
    kh, kw = k.shape
    # reflected at the border, anchored as kornia anchors an even kernel (the tap before the middle)
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(x, ((top, kh - 1 - top), (left, kw - 1 - left)), mode="reflect")
    expected = convolve2d(padded, k, mode="valid")
    got = Blur(kernel.double())(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_a_kernel_image_is_normalised_and_a_black_one_refused(tmp_path):
    pixels = np.zeros((5, 5, 1), np.float32)
    pixels[2, 1:4] = 1.0
    write_image(tmp_path / "k.png", Picture(pixels, None, 8, "L", None))
    kernel = blur_kernel(str(tmp_path / "k.png"))
    assert kernel.sum().item() == pytest.approx(1.0) and kernel[2, 2].item() == pytest.approx(1 / 3, abs=1e-6)
    write_image(tmp_path / "black.png", Picture(np.zeros((5, 5, 1), np.float32), None, 8, "L", None))
    with pytest.raises(Exception, match="all black"):
        blur_kernel(str(tmp_path / "black.png"))
    for bad in ("gaussian:0", "gaussian:x", "motion:4,10", "box:1", "box", "nothere.png"):
        with pytest.raises(UsageError):
            blur_kernel(bad)


# A narrow net and a fixed count: what the tasks give, at the size of a test.
_NET = NetConfig(scales=4, channels_down=16, channels_up=16, channels_skip=4, input_depth=8)


def _preset(task: str, iterations: int) -> Preset:
    light = PRESETS[f"light-{task}"]
    return Preset(f"test-{task}", "test", _NET, FitConfig(iterations=iterations, reg_noise_std=light.fit.reg_noise_std),
                  StopConfig(rule="off"))  # fmt: skip


def _upscaled(lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    planes = [Image.fromarray(lr[..., c]).resize(size, Image.Resampling.BICUBIC) for c in range(lr.shape[2])]
    return np.clip(np.stack([np.asarray(p) for p in planes], axis=-1), 0, 1)


def test_super_resolution_beats_bicubic_upscaling():
    import dip

    hr = small_image(64)
    # made the way a user's image was made: Pillow's bicubic downscaling, not dip's own operator
    image = Image.fromarray((hr * 255).round().astype(np.uint8))
    lr = np.asarray(image.resize((16, 16), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    result = dip.restore(Picture(lr, None, 8, "RGB", None), scale=4, preset=_preset("sr", 300),
                         reference=Picture(hr, None, 8, "RGB", None))  # fmt: skip
    assert result.picture.pixels.shape == (64, 64, 3) and result.record()["scale"] == 4
    bicubic = psnr(_upscaled(lr, (64, 64)), hr)
    assert result.metrics["input_psnr"] == pytest.approx(bicubic, abs=1e-6)  # the input, as a user sees it
    assert result.metrics["psnr"] > bicubic + 0.3


def test_deblurring_beats_the_blurred_input():
    import dip

    clean = small_image(32)
    blurred = through_operator(clean, Blur(blur_kernel("gaussian:1.5")))
    # deblurring converges slowly: the raw iterate, many steps (the output average lags it by about 100)
    preset = replace(_preset("deblur", 600), fit=FitConfig(iterations=600, reg_noise_std=1 / 30, average=None))
    result = dip.restore(Picture(blurred, None, 8, "RGB", None), blur="gaussian:1.5", preset=preset,
                         reference=Picture(clean, None, 8, "RGB", None))  # fmt: skip
    assert result.record()["blur"] == "gaussian:1.5"
    assert result.metrics["psnr"] > result.metrics["input_psnr"] + 1.0


@pytest.fixture
def pair(tmp_path):
    hr = small_image(32)
    write_image(tmp_path / "hr.png", Picture(hr, None, 8, "RGB", None))
    write_image(tmp_path / "lr.png", Picture(through_operator(hr, Downsample(4)), None, 8, "RGB", None))
    return tmp_path


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scale", "9"], "--scale must be a whole number from 2 to 8, not 9"),
        (["--scale", "1"], "--scale must be a whole number from 2 to 8, not 1"),
        (["--blur", "gaussian:-1"], "--blur gaussian:SIGMA needs 0 < SIGMA <= 50"),
        (["--blur", "motion:4,10"], "odd LENGTH"),
        (["--blur", "smudge"], "is not one of them"),
        (["--scale", "2", "--blur", "box:3"], "--scale and --blur belong to different tasks"),
        (["--task", "sr"], "--task sr needs --scale N"),
        (["--task", "denoise", "--scale", "2"], "--scale only applies to --task sr, not denoise"),
        (["--scale", "4", "--reference", "{lr}"], "reference is 8x8 but the output is 32x32"),
    ],
)
def test_bad_scales_blurs_and_references_are_one_line_errors(capsys, pair, args, message):
    args = [a.format(lr=pair / "lr.png") for a in args]
    code, out, err = run(capsys, "restore", pair / "lr.png", "-o", pair / "out.png", "--iters", "2", "-q", *args)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (pair / "out.png").exists()


def test_sr_from_the_command_line_writes_the_enlarged_image_and_its_record(capsys, pair):
    code, out, err = run(capsys, "restore", pair / "lr.png", "--scale", "4", "-o", pair / "out.png", "--iters", "3",
                         "--reference", pair / "hr.png", "--snapshots", "every:3", "-q", "--json")  # fmt: skip
    assert code == 0, err
    from dip.io import read_image
    from dip.report import sidecar_path

    assert read_image(pair / "out.png").size == (32, 32)
    import json

    record = json.loads(sidecar_path(pair / "out.png").read_text())
    assert (record["task"], record["scale"]) == ("sr", 4)
    assert (pair / "out.snapshots" / "sheet.png").exists()


def test_degrade_makes_pairs_with_the_operators(capsys, tmp_path):
    hr = small_image(30)
    write_image(tmp_path / "hr.png", Picture(hr, None, 8, "RGB", None))
    code, _, err = run(capsys, "degrade", tmp_path / "hr.png", "--downscale", "4", "-o", tmp_path / "lr.png")
    assert code == 0, err
    from dip.io import read_image

    assert read_image(tmp_path / "lr.png").size == (7, 7)  # 30 -> the centred 28 x 28, a quarter of it
    assert read_image(tmp_path / "lr_reference.png").size == (28, 28)
    code, _, err = run(capsys, "degrade", tmp_path / "hr.png", "--blur", "box:3", "--noise", "5", "-o",
                       tmp_path / "b.png")  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "degrade", tmp_path / "hr.png", "--blur", "box:3", "--jpeg", "5", "-o",
                       tmp_path / "c.png")  # fmt: skip
    assert code != 0 and "--noise may go with the last two" in err


def test_a_folder_takes_one_scale_and_a_blur_goes_through_batch_and_parallel(capsys, tmp_path):
    import json

    from dip.io import read_image

    folder = tmp_path / "in"
    for name, seed in (("a", 0), ("b", 1)):
        pixels = np.random.default_rng(seed).random((8, 8, 3)).astype(np.float32)
        write_image(folder / f"{name}.png", Picture(pixels, None, 8, "RGB", None))
    code, _, err = run(capsys, "batch", folder, tmp_path / "sr", "--scale", "3", "--iters", "2", "-q")
    assert code == 0, err
    assert read_image(tmp_path / "sr" / "a.png").size == (24, 24)
    assert json.loads((tmp_path / "sr" / "b.png.json").read_text())["scale"] == 3
    code, _, err = run(capsys, "batch", folder, tmp_path / "deblur", "--blur", "box:3", "--iters", "2", "--parallel",
                       "2", "-q")  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "deblur" / "a.png.json").read_text())["blur"] == "box:3"
    code, _, err = run(capsys, "batch", folder, tmp_path / "bad", "--blur", "box:0", "-q")
    assert code != 0 and "--blur box:N needs N from 2 to 101" in err


def test_sizes_the_operators_cannot_take_and_a_folder_scale_are_refused_in_one_line(capsys, tmp_path):
    write_image(tmp_path / "tiny.png", Picture(small_image(8), None, 8, "RGB", None))
    for args, message in (
        (["--downscale", "8"], "--downscale 8 leaves less than 2x2 pixels of the 8x8 image"),
        (["--downscale", "16"], "--downscale must be a whole number from 2 to 8, not 16"),
        (["--blur", "box:20"], "too small for a 20x20 blur kernel"),
    ):
        code, _, err = run(capsys, "degrade", tmp_path / "tiny.png", "-o", tmp_path / "d.png", *args)
        assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run(capsys, "restore", tmp_path / "tiny.png", "--blur", "box:20", "-o", tmp_path / "r.png")
    assert code != 0 and "too small for a 20x20 blur kernel" in err
    folder = tmp_path / "in"
    write_image(folder / "a.png", Picture(small_image(8), None, 8, "RGB", None))
    code, _, err = run(capsys, "batch", folder, tmp_path / "out", "--scale", "9", "-q")
    assert code == 2 and "--scale must be a whole number from 2 to 8, not 9" in err
    assert not (tmp_path / "out" / "manifest.jsonl").exists()  # refused once, before any image


def test_the_zoom_box_of_a_super_resolved_sheet_is_in_output_pixels(capsys, pair):
    code, _, err = run(capsys, "restore", pair / "lr.png", "--scale", "4", "-o", pair / "z.png", "--iters", "2",
                       "--zoom", "0,0,24,24", "-q")  # fmt: skip
    assert code == 0, err  # inside the 32x32 output, outside the 8x8 input
    assert (pair / "z.snapshots" / "sheet.png").exists()
