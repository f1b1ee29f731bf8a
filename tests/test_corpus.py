"""Bad and odd inputs through the real command line: what a user gets for each, and loading across modes.

Every file is made here, in tmp_path. A refusal must be one "dip: error:" line, the documented exit code (2 a wrong
command line, 1 a failed run) and nothing written; an odd but valid file must come out whole, at its bit depth and
with its alpha, with at most one "dip: warning:" line per thing worth saying. test_io.py checks the same readers at
the library level; here it is what `dip restore` makes of them.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dip.errors import MaskError
from dip.io import read_image, read_mask

from conftest import run, small_image

USAGE, FAILURE = 2, 1
FAST = ("--preset", "light", "--stop", "off", "--quiet")  # with --iters 3: well under a second at 32 px


@pytest.fixture(autouse=True)
def _pixel_limit_left_as_found(monkeypatch):
    # dip.io copies DIP_MAX_PIXELS into Pillow's global limit, which would otherwise outlive the test
    monkeypatch.delenv("DIP_MAX_PIXELS", raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


def _sidecar(output: Path) -> Path:
    return output.with_name(output.name + ".json")


def _photo(path: Path, size: int = 32) -> Path:
    """A noisy photograph: mostly mid-tones, which is what matters when it is mistaken for a mask."""
    noisy = small_image(size) + np.random.default_rng(0).normal(0, 0.1, (size, size, 3))
    Image.fromarray(np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def _random_u8(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _gray(path: Path, value: int, size: tuple[int, int] = (32, 32)) -> Path:
    width, height = size
    Image.fromarray(np.full((height, width), value, np.uint8)).save(path)
    return path


def _cut_in_half(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _png_header_claiming(path: Path, width: int, height: int) -> Path:
    """A 100-byte PNG whose header says width x height: a decompression bomb without allocating one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    pixels = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


# --- refusals: one line, the right exit code, nothing written ------------------------------------------------

# Each builder gets the folder to put inputs in and the output to ask for, and returns the arguments of `restore`.
Arguments = Callable[[Path, Path], list]


def _zero_byte_file(folder, output):
    (path := folder / "empty.png").write_bytes(b"")
    return [path, "-o", output]


def _truncated_png(folder, output):
    Image.fromarray(_random_u8((32, 32, 3))).save(path := folder / "cut.png")
    return [_cut_in_half(path), "-o", output]


def _truncated_jpeg(folder, output):
    Image.fromarray(_random_u8((32, 32, 3))).save(path := folder / "cut.jpg", quality=90)
    return [_cut_in_half(path), "-o", output]


def _text_named_png(folder, output):
    (path := folder / "notes.png").write_text("shopping list: eggs, milk\n")
    return [path, "-o", output]


def _folder_as_input(folder, output):
    (path := folder / "holiday.png").mkdir()
    return [path, "-o", output]


def _header_claiming_ten_billion_pixels(folder, output):
    # over twice Pillow's limit: Pillow itself refuses to open it
    return [_png_header_claiming(folder / "bomb.png", 100_000, 100_000), "-o", output]


def _header_claiming_a_hundred_million_pixels(folder, output):
    # between Pillow's limit and twice it, where Pillow only warns: dip's own check must refuse
    return [_png_header_claiming(folder / "big.png", 10_000, 10_000), "-o", output]


def _more_pixels_than_dip_max_pixels(folder, output):
    return [_photo(folder / "photo.png"), "-o", output]  # 1024 pixels; the case sets DIP_MAX_PIXELS=1000


def _dip_max_pixels_not_a_number(folder, output):
    return [_photo(folder / "photo.png"), "-o", output]  # the case sets DIP_MAX_PIXELS=lots


def _mask_of_wrong_size(folder, output):
    return [_photo(folder / "photo.png"), "--mask", _gray(folder / "mask.png", 255, (32, 16)), "-o", output]


def _mask_all_zero(folder, output):
    return [_photo(folder / "photo.png"), "--mask", _gray(folder / "mask.png", 0), "-o", output]


def _mask_all_just_below_half(folder, output):
    return [_photo(folder / "photo.png"), "--mask", _gray(folder / "mask.png", 127), "-o", output]


def _inverted_mask_all_just_above_half(folder, output):
    mask = _gray(folder / "mask.png", 128)
    return [_photo(folder / "photo.png"), "--mask", mask, "--mask-invert", "-o", output]


def _output_is_the_input(folder, output):
    return [photo := _photo(folder / "photo.png"), "-o", photo]


def _output_is_the_input_with_overwrite(folder, output):
    return [photo := _photo(folder / "photo.png"), "-o", photo, "--overwrite"]


def _output_is_the_mask(folder, output):
    mask = _gray(folder / "mask.png", 255)
    return [_photo(folder / "photo.png"), "--mask", mask, "-o", mask, "--overwrite"]


def _output_folder_is_a_file(folder, output):
    # unwritable for root too, unlike a read-only folder
    return [photo := _photo(folder / "photo.png"), "-o", photo / "sub" / "restored.png"]


REFUSALS = [
    pytest.param(_zero_byte_file, {}, FAILURE, "the file is empty (0 bytes)", id="zero-byte file"),
    pytest.param(_truncated_png, {}, FAILURE, "truncated or corrupt", id="truncated PNG"),
    pytest.param(_truncated_jpeg, {}, FAILURE, "truncated or corrupt", id="truncated JPEG"),
    pytest.param(_text_named_png, {}, FAILURE, "not an image file", id="text file named .png"),
    pytest.param(_folder_as_input, {}, USAGE, "is a folder", id="folder as input"),
    pytest.param(
        _header_claiming_ten_billion_pixels, {}, FAILURE, "set DIP_MAX_PIXELS", id="PNG header of 10 billion pixels"
    ),
    pytest.param(
        _header_claiming_a_hundred_million_pixels,
        {},
        FAILURE,
        "its 100000000 pixels are more than the limit",
        id="PNG header of 100 million pixels",
    ),
    pytest.param(
        _more_pixels_than_dip_max_pixels,
        {"DIP_MAX_PIXELS": "1000"},
        FAILURE,
        "limit of 1000",
        id="image over DIP_MAX_PIXELS",
    ),
    pytest.param(
        _dip_max_pixels_not_a_number,
        {"DIP_MAX_PIXELS": "lots"},
        USAGE,
        "DIP_MAX_PIXELS='lots' is not a pixel count",
        id="DIP_MAX_PIXELS not a number",
    ),
    pytest.param(_mask_of_wrong_size, {}, FAILURE, "is 32x16 but the image is 32x32", id="mask of wrong size"),
    pytest.param(_mask_all_zero, {}, FAILURE, "marks no pixel as known", id="mask all zero"),
    pytest.param(_mask_all_just_below_half, {}, FAILURE, "marks no pixel as known", id="mask all 127 of 255"),
    pytest.param(
        _inverted_mask_all_just_above_half, {}, FAILURE, "drop --mask-invert", id="inverted mask all 128 of 255"
    ),
    pytest.param(_output_is_the_input, {}, USAGE, "is an input file", id="output is the input"),
    pytest.param(_output_is_the_input_with_overwrite, {}, USAGE, "is an input file", id="output is the input, forced"),
    pytest.param(_output_is_the_mask, {}, USAGE, "is an input file", id="output is the mask"),
    pytest.param(_output_folder_is_a_file, {}, FAILURE, "cannot create output folder", id="output folder is a file"),
]


@pytest.mark.parametrize("arguments, environment, exit_code, message", REFUSALS)
def test_refusal_is_one_line_and_writes_nothing(
    capsys, monkeypatch, tmp_path, arguments: Arguments, environment, exit_code, message
):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    argv = arguments(inputs, outputs / "restored.png")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    before = sorted(tmp_path.rglob("*"))

    code, out, err = run(capsys, "restore", *argv, "--iters", "3", *FAST)

    assert code == exit_code, err
    assert err.startswith("dip: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err
    assert out == ""
    assert sorted(outputs.iterdir()) == []  # no image, no .json, no hidden temporary file
    assert sorted(tmp_path.rglob("*")) == before


def test_refusal_leaves_no_new_output_folder(capsys, tmp_path):
    (empty := tmp_path / "empty.png").write_bytes(b"")
    code, _, _ = run(capsys, "restore", empty, "-o", tmp_path / "new" / "restored.png", "--iters", "3", *FAST)
    assert code == FAILURE
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, out, err = run(capsys, "restore", _photo(tmp_path / "photo.png"), "-o", locked / "r.png", "--iters", 3, *FAST)
    assert code == FAILURE and err.startswith("dip: error: ") and err.count("\n") == 1 and "not writable" in err
    assert out == "" and sorted(locked.iterdir()) == []


# --- odd but valid inputs: they come out whole ---------------------------------------------------------------


def _restore_works(capsys, source: Path, output: Path, *extra: object, iters: int = 3) -> list[str]:
    """Runs `dip restore`, checks it succeeded and wrote the image and its settings; returns the warning lines."""
    code, out, err = run(capsys, "restore", source, "-o", output, *extra, "--iters", iters, *FAST)
    assert code == 0, err
    assert output.is_file() and _sidecar(output).is_file()
    assert out.startswith(f"{source} -> {output}: ")
    warnings_shown = err.splitlines()
    assert all(line.startswith("dip: warning: ") for line in warnings_shown), err
    return warnings_shown


def test_1x1_image(capsys, tmp_path):
    Image.fromarray(_random_u8((1, 1, 3))).save(source := tmp_path / "dot.png")
    assert _restore_works(capsys, source, output := tmp_path / "out.png") == []
    with Image.open(output) as restored:
        assert (restored.size, restored.mode) == ((1, 1), "RGB")


def test_2x4000_strip(capsys, tmp_path):
    # The net pads the 2 px side to 64 (its coarsest scale), so one step costs as much as 64 x 4000 px: one step.
    Image.fromarray(_random_u8((4000, 2, 3))).save(source := tmp_path / "strip.png")
    assert _restore_works(capsys, source, output := tmp_path / "out.png", iters=1) == []
    with Image.open(output) as restored:
        assert (restored.size, restored.mode) == ((2, 4000), "RGB")


def test_cmyk_jpeg_comes_out_rgb(capsys, tmp_path):
    Image.fromarray(_random_u8((32, 32, 4)), "CMYK").save(source := tmp_path / "print.jpg", quality=95)
    assert _restore_works(capsys, source, output := tmp_path / "out.png") == []
    with Image.open(output) as restored:
        assert (restored.size, restored.mode) == ((32, 32), "RGB")
    assert json.loads(_sidecar(output).read_text())["task"] == "jpeg"  # chosen by the .jpg suffix


def _la(path: Path) -> np.ndarray:
    Image.fromarray(pixels := _random_u8((32, 32, 2))).save(path)
    return pixels[..., 1]


def _palette_with_transparency(path: Path) -> np.ndarray:
    indices = _random_u8((32, 32))
    image = Image.fromarray(indices)
    image.putpalette(_random_u8((768,), seed=1).tobytes())
    image.save(path, transparency=7)
    return np.where(indices == 7, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "write, mode_out", [(_la, "LA"), (_palette_with_transparency, "RGBA")], ids=["LA", "P with transparency"]
)
def test_alpha_is_kept_exactly(capsys, tmp_path, write, mode_out):
    alpha = write(source := tmp_path / "in.png")
    assert _restore_works(capsys, source, output := tmp_path / "out.png") == []
    with Image.open(output) as restored:
        assert (restored.size, restored.mode) == ((32, 32), mode_out)
        np.testing.assert_array_equal(np.asarray(restored)[..., -1], alpha)  # never restored, re-attached as it was


def _gray_16bit_png(folder: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 65536, (32, 32), dtype=np.uint16)).save(
        path := folder / "scan16.png"
    )
    return path


def _rgb_16bit_png(folder: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 65536, (32, 32 * 3), dtype=np.uint16)
    with open(path := folder / "photo16.png", "wb") as f:
        png.Writer(32, 32, greyscale=False, bitdepth=16).write(f, pixels.tolist())
    return path


def _float32_tiff(folder: Path) -> Path:
    pixels = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    tifffile.imwrite(path := folder / "linear.tif", pixels, photometric="rgb")
    return path


def _samples_16bit(path: Path) -> np.ndarray:
    if path.suffix == ".tif":
        return tifffile.imread(path)
    width, height, rows, info = png.Reader(filename=str(path)).read()
    assert info["bitdepth"] == 16
    return np.array([list(row) for row in rows], dtype=np.uint16).reshape(height, width, info["planes"])


@pytest.mark.parametrize(
    "write, suffix, channels",
    [(_gray_16bit_png, ".png", 1), (_rgb_16bit_png, ".png", 3), (_float32_tiff, ".tif", 3)],
    ids=["I;16 PNG", "16-bit RGB PNG", "float32 TIFF"],
)
def test_deep_inputs_come_out_16bit(capsys, tmp_path, write, suffix, channels):
    source = write(tmp_path)
    assert _restore_works(capsys, source, output := tmp_path / f"out{suffix}") == []
    samples = _samples_16bit(output)
    assert samples.dtype == np.uint16 and samples.reshape(32, 32, -1).shape[2] == channels
    assert (samples % 257 != 0).any()  # real 16-bit values, not 8-bit ones scaled up


def test_float_tiff_out_of_range_is_clipped_with_one_warning(capsys, tmp_path):
    tifffile.imwrite(source := tmp_path / "hdr.tif", np.linspace(-0.5, 2.0, 32 * 32, dtype=np.float32).reshape(32, 32))
    shown = _restore_works(capsys, source, tmp_path / "out.png")
    assert len(shown) == 1 and "clipped" in shown[0]


def test_animated_gif_uses_the_first_frame_with_one_warning(capsys, tmp_path):
    frames = [Image.fromarray(np.full((32, 32, 3), value, np.uint8)) for value in (40, 120, 200)]
    frames[0].save(source := tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    shown = _restore_works(capsys, source, output := tmp_path / "out.png")
    assert shown == [f"dip: warning: '{source}' has 3 frames; dip uses the first only"]
    with Image.open(output) as restored:
        assert restored.size == (32, 32)


# --- masks that work ---------------------------------------------------------------------------------------------


def test_soft_edged_mask_works_without_a_warning(capsys, tmp_path):
    mask = np.full((32, 32), 255, np.uint8)
    mask[8:24, 8:24] = 0
    mask[7, 7:25] = mask[24, 7:25] = mask[7:25, 7] = mask[7:25, 24] = 128  # an anti-aliased border: still known
    Image.fromarray(mask).save(mask_path := tmp_path / "mask.png")
    assert _restore_works(capsys, _photo(tmp_path / "photo.png"), tmp_path / "out.png", "--mask", mask_path) == []


@pytest.mark.parametrize("value, invert", [(128, False), (127, True)], ids=["128 of 255", "127 of 255, inverted"])
def test_uniform_gray_mask_on_the_known_side_of_half_works_with_a_warning(capsys, tmp_path, value, invert):
    # with 127 or inverted 128 it is refused (see REFUSALS): half range is the threshold, as documented
    mask = _gray(tmp_path / "mask.png", value)
    extra = ["--mask", mask, *(["--mask-invert"] if invert else [])]
    shown = _restore_works(capsys, _photo(tmp_path / "photo.png"), tmp_path / "out.png", *extra)
    assert len(shown) == 1 and "does not look like a mask: 100% of its pixels are mid-gray" in shown[0]


def test_input_given_as_its_own_mask_is_refused(capsys, tmp_path):
    # Almost certainly a slip: any photo "works" as a mask, as a random pattern of holes.
    photo = _photo(tmp_path / "photo.png")
    code, out, err = run(capsys, "restore", photo, "-o", tmp_path / "out.png", "--mask", photo, *FAST)
    assert code == USAGE and err.count("\n") == 1 and "is the input image itself" in err
    assert not (tmp_path / "out.png").exists()


# --- paths and limits ----------------------------------------------------------------------------------------


def test_unicode_and_spaces_in_every_path(capsys, tmp_path):
    folder = tmp_path / "Fotos de l'été 写真"
    folder.mkdir()
    photo = _photo(folder / "grand-mère 1.png")
    mask = _gray(folder / "masque ø.png", 255)
    output = folder / "sortie à créer" / "résultat final.png"
    assert _restore_works(capsys, photo, output, "--mask", mask) == []
    record = json.loads(_sidecar(output).read_text(encoding="utf-8"))
    assert (record["input"], record["mask"], record["output"]) == (str(photo), str(mask), str(output))


def test_missing_output_folders_are_created(capsys, tmp_path):
    output = tmp_path / "a" / "b" / "c" / "out.png"
    assert _restore_works(capsys, _photo(tmp_path / "photo.png"), output) == []
    assert sorted(p.name for p in output.parent.iterdir()) == ["out.png", "out.png.json"]


@pytest.mark.parametrize("limit", ["1024", "0"], ids=["limit equal to the image", "no limit"])
def test_raising_dip_max_pixels_lets_the_image_through(capsys, monkeypatch, tmp_path, limit):
    # the same 32x32 image is refused with DIP_MAX_PIXELS=1000 (see REFUSALS)
    monkeypatch.setenv("DIP_MAX_PIXELS", limit)
    assert _restore_works(capsys, _photo(tmp_path / "photo.png"), tmp_path / "out.png") == []


def test_dip_max_pixels_does_not_outlive_the_command(capsys, monkeypatch, tmp_path):
    # Pillow's limit is a global of the process: it must not keep the variable's value once dip has read its files
    photo, pillow_limit = _photo(tmp_path / "photo.png"), Image.MAX_IMAGE_PIXELS
    monkeypatch.setenv("DIP_MAX_PIXELS", "1000")
    assert run(capsys, "restore", photo, "-o", tmp_path / "out.png", "--iters", 3, *FAST)[0] == FAILURE
    assert Image.MAX_IMAGE_PIXELS == pillow_limit
    monkeypatch.delenv("DIP_MAX_PIXELS")
    assert _restore_works(capsys, photo, tmp_path / "out.png") == []


def test_no_limit_also_holds_for_every_frame(capsys, monkeypatch, tmp_path):
    # Pillow checks each GIF frame as it counts them; a host application's lower limit must not apply there either
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    monkeypatch.setenv("DIP_MAX_PIXELS", "0")
    frames = [Image.fromarray(np.full((32, 32, 3), value, np.uint8)) for value in (40, 200)]
    frames[0].save(source := tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert len(_restore_works(capsys, source, tmp_path / "out.png")) == 1  # the first-frame warning only


# --- properties: loading across modes, sizes and bit depths --------------------------------------------------

# mode -> (samples per pixel in the file, colour channels dip reads, bits per sample)
_MODES = {
    "L": (1, 1, 8),
    "LA": (2, 1, 8),
    "RGB": (3, 3, 8),
    "RGBA": (4, 3, 8),
    "P": (1, 3, 8),
    "P+transparency": (1, 3, 8),
    "I;16": (1, 1, 16),
    "RGB;16": (3, 3, 16),
    "RGBA;16": (4, 3, 16),
}
_TRANSPARENT_INDEX = 3


def _write_png(path: Path, mode: str, samples: np.ndarray, palette: np.ndarray) -> None:
    height, width = samples.shape[:2]
    if mode.endswith(";16") and samples.shape[2] > 1:  # Pillow cannot write 16-bit colour
        with open(path, "wb") as f:
            writer = png.Writer(width, height, greyscale=False, alpha=samples.shape[2] == 4, bitdepth=16)
            writer.write(f, samples.reshape(height, -1).tolist())
        return
    image = Image.fromarray(samples[..., 0] if samples.shape[2] == 1 else samples)
    if mode.startswith("P"):
        image.putpalette(palette.tobytes())
    image.save(path, **({"transparency": _TRANSPARENT_INDEX} if mode == "P+transparency" else {}))


def _expected(mode: str, samples: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour, alpha) as the file's integers, (H, W, C) and (H, W) or None."""
    if mode.startswith("P"):
        alpha = np.where(samples[..., 0] == _TRANSPARENT_INDEX, 0, 255) if mode == "P+transparency" else None
        return palette.reshape(256, 3)[samples[..., 0]], alpha
    colours = _MODES[mode][1]
    return samples[..., :colours], samples[..., colours] if samples.shape[2] > colours else None


def _random_file(folder: str, mode: str, width: int, height: int, seed: int, near_half: bool):
    planes, _, depth = _MODES[mode]
    top = 2**depth - 1
    rng = np.random.default_rng(seed)
    # near_half crowds the values around the mask threshold, where an off-by-one would show
    low, high = (top // 2 - 2, top // 2 + 3) if near_half else (0, top + 1)
    samples = rng.integers(low, high, (height, width, planes)).astype(np.uint16 if depth == 16 else np.uint8)
    palette = rng.integers(low, high, 768).astype(np.uint8)
    path = Path(folder, "image.png")
    _write_png(path, mode, samples, palette)
    colour, alpha = _expected(mode, samples, palette)
    return path, colour, alpha, top


picture_files = {
    "mode": st.sampled_from(sorted(_MODES)),
    "width": st.integers(1, 40),
    "height": st.integers(1, 40),
    "seed": st.integers(0, 2**32 - 1),
    "near_half": st.booleans(),
}


@settings(max_examples=40, deadline=None)
@given(**picture_files)
def test_read_image_gives_the_file_values_over_full_range(mode, width, height, seed, near_half):
    with tempfile.TemporaryDirectory() as folder:
        path, colour, alpha, top = _random_file(folder, mode, width, height, seed, near_half)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing to warn about in a plain file
            picture = read_image(path)
    assert picture.pixels.dtype == np.float32 and picture.pixels.shape == (height, width, _MODES[mode][1])
    assert picture.bit_depth == _MODES[mode][2]
    assert 0.0 <= picture.pixels.min() and picture.pixels.max() <= 1.0
    np.testing.assert_array_equal(picture.pixels, colour.astype(np.float32) / np.float32(top))
    if alpha is None:
        assert picture.alpha is None
    else:
        assert picture.alpha.dtype == np.float32
        np.testing.assert_array_equal(picture.alpha, alpha.astype(np.float32) / np.float32(top))


_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as documented for colour masks


@settings(max_examples=40, deadline=None)
@given(**picture_files, invert=st.booleans())
def test_read_mask_is_true_exactly_above_half_range(mode, width, height, seed, near_half, invert):
    with tempfile.TemporaryDirectory() as folder:
        path, colour, _, top = _random_file(folder, mode, width, height, seed, near_half)
        gray = colour[..., 0] / top if colour.shape[2] == 1 else (colour / top) @ _LUMA
        if colour.shape[2] == 1:
            certain = np.ones(gray.shape, bool)
            expected = (colour[..., 0] > top // 2) != invert  # > 127 of 255, > 32767 of 65535
        else:  # a luminance within rounding of the threshold may fall either side
            certain = np.abs(gray - 0.5) > 1e-4
            expected = (gray > 0.5) != invert
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            try:
                known = read_mask(path, (width, height), invert=invert)
            except MaskError as error:
                assert "marks no pixel as known" in str(error)
                assert not expected[certain].any()
                return
    assert known.dtype == bool and known.shape == (height, width)
    np.testing.assert_array_equal(known[certain], expected[certain])
    if colour.shape[2] == 1:  # gray values have no rounding question: the warning follows the rule exactly
        mostly_mid_gray = 2 * np.count_nonzero((gray > 0.1) & (gray < 0.9)) > gray.size
        assert any("does not look like a mask" in str(w.message) for w in shown) == mostly_mid_gray
