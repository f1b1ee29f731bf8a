"""dip.io: every mode in and out, 16-bit kept exact, errors that name the file, masks, atomic writes."""

from __future__ import annotations

import os
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageOps

from dip.errors import InputError, MaskError, OutputError, UsageError
from dip.io import IMAGE_SUFFIXES, Picture, atomic_output, read_image, read_mask, write_image

H, W = 24, 37  # odd width on purpose: catches (H, W) / (W, H) mix-ups


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _u8(shape, seed=0) -> np.ndarray:
    return _rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _u16(shape, seed=0) -> np.ndarray:
    return _rng(seed).integers(0, 65536, shape, dtype=np.uint16)


def _smooth_rgb(h=H, w=W) -> np.ndarray:
    """A photo-like image, for lossy codecs (noise would make JPEG tolerances meaningless)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    return (np.stack([x, y, (x + y) / 2], axis=2) * 255).round().astype(np.uint8)


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _png16(path: Path, arr: np.ndarray, *, filters=(0, 1, 2, 3, 4), exif: bytes | None = None) -> None:
    """Write a 16-bit PNG independently of dip.io, cycling through all five row filters.

    Real encoders filter rows (Paeth above all); a reader tested only on filter 0 would prove little.
    """
    h, w, c = arr.shape
    bpp = 2 * c
    raw = arr.astype(">u2").reshape(h, w * c).view(np.uint8).astype(np.int16)
    a = np.zeros_like(raw)
    a[:, bpp:] = raw[:, :-bpp]
    b = np.zeros_like(raw)
    b[1:] = raw[:-1]
    cc = np.zeros_like(raw)
    cc[1:, bpp:] = raw[:-1, :-bpp]
    p = a + b - cc
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, cc))
    predictions = [np.zeros_like(raw), a, b, (a + b) // 2, paeth]
    out = np.zeros((h, 1 + raw.shape[1]), np.uint8)
    for y in range(h):
        f = filters[y % len(filters)]
        out[y, 0] = f
        out[y, 1:] = (raw[y] - predictions[f][y]) % 256

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
    if exif is not None:
        body += chunk(b"eXIf", exif)
    body += chunk(b"IDAT", zlib.compress(out.tobytes())) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def _read_png16_reference(path: Path) -> np.ndarray:
    with open(path, "rb") as f:  # pypng's Reader(filename=) leaves its file open
        w, h, rows, info = png.Reader(file=f).read()
        return np.vstack([np.array(r, dtype=np.uint16) for r in rows]).reshape(h, w, info["planes"])


def _picture(pixels: np.ndarray, alpha=None, bit_depth=8, icc=None) -> Picture:
    return Picture(pixels=pixels.astype(np.float32), alpha=alpha, bit_depth=bit_depth, mode="test", icc_profile=icc)


# ------------------------------------------------------------------------------------- 8-bit modes, via PNG


def _pillow_mode_image(mode: str) -> tuple[Image.Image, np.ndarray, np.ndarray | None]:
    """(source image, expected pixels as uint8 (H, W, C), expected alpha as uint8 (H, W) or None)."""
    if mode in ("RGB", "RGBA", "LA", "L"):
        channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
        arr = _u8((H, W, channels))
        im = Image.fromarray(arr if channels > 1 else arr[..., 0])
        alpha = arr[..., -1] if mode in ("LA", "RGBA") else None
        colour = arr[..., :-1] if alpha is not None else arr
        return im, colour, alpha
    if mode == "1":
        arr = _u8((H, W)) > 127
        im = Image.fromarray(arr)
        return im, (arr * 255).astype(np.uint8)[..., None], None
    # palette, optionally with one transparent index
    im = Image.fromarray(_smooth_rgb()).quantize(16)
    if mode == "P+transparency":
        im.info["transparency"] = 3
        rgba = np.asarray(im.convert("RGBA"))
        return im, rgba[..., :3], rgba[..., 3]
    return im, np.asarray(im.convert("RGB")), None


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "P+transparency", "1"])
def test_png_round_trip_every_mode(tmp_path, mode):
    im, colour, alpha = _pillow_mode_image(mode)
    src = tmp_path / "src.png"
    im.save(src, transparency=im.info["transparency"]) if "transparency" in im.info else im.save(src)

    pic = read_image(src)
    assert pic.size == (W, H) and pic.bit_depth == 8 and pic.path == src
    assert pic.mode == im.mode
    assert pic.pixels.dtype == np.float32 and pic.pixels.shape == (H, W, colour.shape[2])
    np.testing.assert_array_equal(np.round(pic.pixels * 255).astype(np.uint8), colour)
    if alpha is None:
        assert pic.alpha is None
    else:
        assert pic.alpha is not None and pic.alpha.dtype == np.float32
        np.testing.assert_array_equal(np.round(pic.alpha * 255).astype(np.uint8), alpha)

    out = tmp_path / "out.png"
    write_image(out, pic)
    again = read_image(out)
    np.testing.assert_array_equal(again.pixels, pic.pixels)
    if alpha is not None:
        np.testing.assert_array_equal(again.alpha, pic.alpha)


def test_rgb_colour_key_becomes_alpha(tmp_path):
    arr = _u8((H, W, 3))
    arr[0, 0] = (1, 2, 3)
    Image.fromarray(arr).save(tmp_path / "k.png", transparency=(1, 2, 3))
    pic = read_image(tmp_path / "k.png")
    assert pic.alpha is not None
    expected = np.where((arr == (1, 2, 3)).all(axis=2), 0.0, 1.0)
    np.testing.assert_array_equal(pic.alpha, expected)


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    cmyk = np.zeros((H, W, 4), np.uint8)
    cmyk[..., 0] = 255  # pure cyan
    Image.frombytes("CMYK", (W, H), cmyk.tobytes()).save(tmp_path / "c.jpg", quality=95)
    pic = read_image(tmp_path / "c.jpg")
    assert pic.mode == "CMYK" and pic.channels == 3 and pic.icc_profile is None
    mean = pic.pixels.reshape(-1, 3).mean(axis=0)
    assert mean[0] < 0.1 and mean[1] > 0.9 and mean[2] > 0.9


# ------------------------------------------------------------------------------------------------- 16 bits


def test_16bit_gray_png_exact(tmp_path):
    arr = _u16((H, W))
    Image.fromarray(arr).save(tmp_path / "g.png")
    pic = read_image(tmp_path / "g.png")
    assert pic.bit_depth == 16 and pic.channels == 1 and pic.mode.startswith("I;16")
    np.testing.assert_array_equal(np.round(pic.pixels[..., 0] * 65535).astype(np.uint16), arr)

    write_image(tmp_path / "out.png", pic)
    with Image.open(tmp_path / "out.png") as back:
        assert back.mode.startswith("I;16")
        np.testing.assert_array_equal(np.asarray(back), arr)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16bit_colour_png_exact(tmp_path, channels):
    arr = _u16((H, W, channels))
    _png16(tmp_path / "c.png", arr)
    with Image.open(tmp_path / "c.png") as im:  # the reason for the pypng path: Pillow keeps 8 bits only
        assert np.asarray(im).dtype == np.uint8
    pic = read_image(tmp_path / "c.png")
    colours = 3 if channels >= 3 else 1
    assert pic.bit_depth == 16 and pic.channels == colours
    assert pic.mode == ("RGB" if colours == 3 else "L") + ("A" if channels in (2, 4) else "") + ";16"
    np.testing.assert_array_equal(np.round(pic.pixels * 65535).astype(np.uint16), arr[..., :colours])
    if channels in (2, 4):
        np.testing.assert_array_equal(np.round(pic.alpha * 65535).astype(np.uint16), arr[..., -1])

    write_image(tmp_path / "out.png", pic)
    np.testing.assert_array_equal(_read_png16_reference(tmp_path / "out.png"), arr)


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_tiff_exact(tmp_path, channels):
    arr = _u16((H, W, channels))
    extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
    tifffile.imwrite(tmp_path / "c.tif", arr, photometric="rgb", **extra)
    pic = read_image(tmp_path / "c.tif")
    assert pic.bit_depth == 16 and pic.channels == 3
    np.testing.assert_array_equal(np.round(pic.pixels * 65535).astype(np.uint16), arr[..., :3])

    write_image(tmp_path / "out.tiff", pic)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tiff"), arr)


def test_16bit_gray_alpha_tiff_pillow_cannot_open(tmp_path):
    arr = _u16((H, W, 2))
    tifffile.imwrite(tmp_path / "ga.tif", arr, photometric="minisblack", extrasamples=["unassalpha"])
    pic = read_image(tmp_path / "ga.tif")
    assert pic.mode == "LA;16" and pic.channels == 1 and pic.alpha is not None
    write_image(tmp_path / "out.tif", pic)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), arr)


def test_16bit_tiff_without_codec_falls_back_to_8bit(tmp_path, monkeypatch):
    import dip.io

    arr = _u16((H, W, 3))
    tifffile.imwrite(tmp_path / "c.tif", arr, photometric="rgb")

    def no_codec(*args, **kwargs):
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(dip.io, "tiff_arrays", no_codec)
    with pytest.warns(UserWarning, match="read as 8-bit"):
        pic = read_image(tmp_path / "c.tif")
    assert pic.bit_depth == 8
    np.testing.assert_array_equal(np.round(pic.pixels * 255).astype(np.uint8), (arr >> 8).astype(np.uint8))


def test_bit_depth_override_and_8bit_only_formats(tmp_path):
    pic = _picture(_u16((H, W, 3)) / 65535.0, bit_depth=16)
    write_image(tmp_path / "eight.png", pic, bit_depth=8)
    with Image.open(tmp_path / "eight.png") as im:
        assert im.mode == "RGB"
    write_image(tmp_path / "x.bmp", pic)  # BMP cannot hold 16 bits: silently 8
    assert read_image(tmp_path / "x.bmp").bit_depth == 8
    with pytest.raises(OutputError, match="bit depth 12"):
        write_image(tmp_path / "x.png", pic, bit_depth=12)


# ------------------------------------------------------------------------------------------------ float TIFF


def test_float_gray_tiff_read_and_clipped(tmp_path):
    arr = _rng().random((H, W), dtype=np.float32)
    Image.fromarray(arr).save(tmp_path / "f.tif")  # Pillow mode F
    pic = read_image(tmp_path / "f.tif")
    assert pic.mode == "F" and pic.bit_depth == 16
    np.testing.assert_array_equal(pic.pixels[..., 0], arr)

    Image.fromarray(arr * 2 - 0.5).save(tmp_path / "wide.tif")
    with pytest.warns(UserWarning, match="clipped"):
        pic = read_image(tmp_path / "wide.tif")
    assert pic.pixels.min() == 0.0 and pic.pixels.max() == 1.0


def test_float_rgb_tiff_via_tifffile(tmp_path):
    arr = _rng().random((H, W, 3), dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tif", arr, photometric="rgb")
    pic = read_image(tmp_path / "f.tif")
    assert pic.mode == "RGB;32F" and pic.bit_depth == 16
    np.testing.assert_array_equal(pic.pixels, arr)


# ---------------------------------------------------------------------------------------- other formats


def test_bmp_round_trip_and_alpha_dropped(tmp_path):
    arr = _u8((H, W, 3))
    Image.fromarray(arr).save(tmp_path / "a.bmp")
    pic = read_image(tmp_path / "a.bmp")
    np.testing.assert_array_equal(np.round(pic.pixels * 255).astype(np.uint8), arr)
    with_alpha = pic.with_pixels(pic.pixels)
    with_alpha.alpha = np.zeros((H, W), np.float32)
    write_image(tmp_path / "b.bmp", with_alpha)
    back = read_image(tmp_path / "b.bmp")
    assert back.alpha is None
    np.testing.assert_array_equal(back.pixels, pic.pixels)


def test_webp_lossless_round_trip_with_alpha(tmp_path):
    arr = _u8((H, W, 4))
    arr[..., 3] = np.where(arr[..., 3] < 40, 0, arr[..., 3])  # some fully transparent pixels
    pic = _picture(arr[..., :3] / 255.0, alpha=arr[..., 3] / 255.0)
    write_image(tmp_path / "a.webp", pic)
    back = read_image(tmp_path / "a.webp")
    np.testing.assert_array_equal(back.pixels, pic.pixels)
    np.testing.assert_array_equal(back.alpha, pic.alpha)


def test_gray_webp_comes_back_as_rgb(tmp_path):
    pic = _picture(_u8((H, W, 1)) / 255.0)
    write_image(tmp_path / "g.webp", pic)
    back = read_image(tmp_path / "g.webp")
    assert back.channels == 3
    np.testing.assert_array_equal(back.pixels, np.repeat(pic.pixels, 3, axis=2))


def test_jpeg_within_tolerance_and_alpha_dropped(tmp_path):
    arr = _smooth_rgb()
    pic = _picture(arr / 255.0, alpha=np.ones((H, W), np.float32))
    write_image(tmp_path / "a.jpg", pic)
    back = read_image(tmp_path / "a.jpg")
    assert back.alpha is None and back.bit_depth == 8 and back.mode == "RGB"
    assert np.abs(back.pixels - pic.pixels).mean() < 1.5 / 255
    assert np.abs(back.pixels - pic.pixels).max() < 8 / 255


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((H, W), v, np.uint8)) for v in (10, 200, 90)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    with pytest.warns(UserWarning, match="3 frames; dip uses the first only"):
        pic = read_image(tmp_path / "a.gif")
    assert np.allclose(pic.pixels, 10 / 255)


# ------------------------------------------------------------------------------------ EXIF and ICC metadata


def test_exif_orientation_6_swaps_width_and_height(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_smooth_rgb(16, 40)).save(tmp_path / "o.jpg", exif=exif)
    pic = read_image(tmp_path / "o.jpg")
    assert pic.size == (16, 40)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    arr = _u8((H, W, 3))
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    pic = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(np.round(pic.pixels * 255).astype(np.uint8), expected)

    # the 16-bit colour path orients its pixels itself; it must agree
    deep = _u16((H, W, 3))
    _png16(tmp_path / "d.png", deep, exif=exif.tobytes())
    pic16 = read_image(tmp_path / "d.png")
    hi = Image.fromarray((deep >> 8).astype(np.uint8))
    hi.getexif()[0x0112] = orientation
    expected16 = np.asarray(ImageOps.exif_transpose(hi))
    np.testing.assert_array_equal((np.round(pic16.pixels * 65535).astype(np.uint16) >> 8), expected16)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp"])
def test_icc_profile_carried(tmp_path, suffix):
    icc = _srgb_icc()
    pic = _picture(_smooth_rgb() / 255.0, icc=icc)
    write_image(tmp_path / f"a{suffix}", pic)
    assert read_image(tmp_path / f"a{suffix}").icc_profile == icc


def test_icc_profile_carried_by_16bit_colour_png(tmp_path):
    icc = _srgb_icc()
    pic = _picture(_u16((H, W, 3)) / 65535.0, bit_depth=16, icc=icc)
    write_image(tmp_path / "a.png", pic)
    back = read_image(tmp_path / "a.png")
    assert back.icc_profile == icc and back.bit_depth == 16


def test_rgb_icc_profile_not_put_on_gray_output(tmp_path):
    pic = _picture(_u8((H, W, 1)) / 255.0, icc=_srgb_icc())
    write_image(tmp_path / "g.png", pic)
    assert read_image(tmp_path / "g.png").icc_profile is None


# ------------------------------------------------------------------------------------------------ bad input


def _zero_byte(tmp_path):
    (p := tmp_path / "empty.png").write_bytes(b"")
    return p


def _truncated_png(tmp_path):
    Image.fromarray(_u8((48, 48, 3))).save(p := tmp_path / "cut.png")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p


def _truncated_jpeg(tmp_path):
    Image.fromarray(_u8((48, 48, 3))).save(p := tmp_path / "cut.jpg", quality=90)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p


def _jpeg_cut_in_header(tmp_path):
    Image.fromarray(_u8((48, 48, 3))).save(p := tmp_path / "head.jpg")
    p.write_bytes(p.read_bytes()[:100])
    return p


def _text_png(tmp_path):
    (p := tmp_path / "notes.png").write_text("this is not a picture\n")
    return p


def _directory(tmp_path):
    (p := tmp_path / "folder.png").mkdir()
    return p


def _missing(tmp_path):
    return tmp_path / "nowhere.png"


@pytest.mark.parametrize(
    "make, reason",
    [
        (_zero_byte, "empty"),
        (_truncated_png, "truncated or corrupt"),
        (_truncated_jpeg, "truncated or corrupt"),
        (_jpeg_cut_in_header, "truncated or corrupt"),
        (_text_png, "not an image file"),
        (_directory, "folder"),
        (_missing, "no such file"),
    ],
)
def test_unreadable_inputs_raise_one_line_input_error(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        read_image(path)
    message = str(info.value)
    assert f"'{path}'" in message and reason in message and "\n" not in message
    assert info.value.path == path
    assert not isinstance(info.value, MaskError)


def test_pixel_limit_from_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    Image.fromarray(_u8((16, 16))).save(p := tmp_path / "a.png")
    for limit in ("100", "200"):  # Pillow raises above twice its limit, only warns below: both refused
        monkeypatch.setenv("DIP_MAX_PIXELS", limit)
        with pytest.raises(InputError, match="DIP_MAX_PIXELS"):
            read_image(p)
    monkeypatch.setenv("DIP_MAX_PIXELS", "0")
    assert read_image(p).size == (16, 16)
    monkeypatch.setenv("DIP_MAX_PIXELS", "lots")
    with pytest.raises(UsageError, match="DIP_MAX_PIXELS"):
        read_image(p)


# ----------------------------------------------------------------------------------------------------- masks


def _mask_file(tmp_path, arr, name="m.png") -> Path:
    Image.fromarray(arr).save(p := tmp_path / name)
    return p


def test_mask_known_is_white_and_invert_flips(tmp_path):
    arr = np.zeros((H, W), np.uint8)
    arr[:, : W // 2] = 255
    path = _mask_file(tmp_path, arr)
    known = read_mask(path, (W, H))
    assert known.dtype == bool and known.shape == (H, W)
    np.testing.assert_array_equal(known, arr == 255)
    np.testing.assert_array_equal(read_mask(path, (W, H), invert=True), arr == 0)


@pytest.mark.filterwarnings("ignore:.*does not look like a mask")  # mid-gray on purpose
def test_mask_threshold_is_half_range(tmp_path):
    arr = np.array([[0, 127, 128, 255]], np.uint8)
    np.testing.assert_array_equal(read_mask(_mask_file(tmp_path, arr), (4, 1)), [[False, False, True, True]])
    arr16 = np.array([[32767, 32768]], np.uint16)
    np.testing.assert_array_equal(read_mask(_mask_file(tmp_path, arr16, "m16.png"), (2, 1)), [[False, True]])


@pytest.mark.filterwarnings("ignore:.*does not look like a mask")  # mid-gray on purpose
def test_colour_mask_uses_luminance_and_ignores_alpha(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = (255, 255, 255, 0)  # white but transparent: still known
    rgba[0, 1] = (0, 0, 255, 255)  # pure blue: luminance 29, unknown
    rgba[0, 2] = (0, 255, 0, 255)  # pure green: luminance 150, known
    np.testing.assert_array_equal(read_mask(_mask_file(tmp_path, rgba), (3, 1)), [[True, False, True]])


def test_bilevel_mask(tmp_path):
    arr = _u8((H, W)) > 100
    np.testing.assert_array_equal(read_mask(_mask_file(tmp_path, arr), (W, H)), arr)


def test_mask_of_wrong_size(tmp_path):
    path = _mask_file(tmp_path, np.full((48, 64), 255, np.uint8))
    with pytest.raises(MaskError) as info:
        read_mask(path, (64, 64))
    assert str(info.value) == (f"mask '{path}' is 64x48 but the image is 64x64; give a mask the same size as the image")
    assert info.value.mask_size == (64, 48) and info.value.image_size == (64, 64)


def test_mask_with_nothing_known(tmp_path):
    path = _mask_file(tmp_path, np.zeros((H, W), np.uint8))
    with pytest.raises(MaskError, match="marks no pixel as known .*--mask-invert"):
        read_mask(path, (W, H))
    white = _mask_file(tmp_path, np.full((H, W), 255, np.uint8), "white.png")
    with pytest.raises(MaskError, match="drop --mask-invert"):
        read_mask(white, (W, H), invert=True)


def test_unreadable_mask_is_a_mask_error(tmp_path):
    path = _text_png(tmp_path)
    with pytest.raises(MaskError, match=f"cannot read mask '{path}'"):
        read_mask(path, (W, H))


# ------------------------------------------------------------------------------------------ writing safely


def test_atomic_output_leaves_nothing_on_exception(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != target
        tmp.write_bytes(b"half a file")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_atomic_output_replaces_on_success(tmp_path):
    target = tmp_path / "out.tif"
    with atomic_output(target) as tmp:
        assert tmp.exists()  # claimed up front, which proves the folder is writable
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    import dip.io

    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def explode(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dip.io, "_write_pillow", explode)
    with pytest.raises(OutputError, match="No space left on device"):
        write_image(target, _picture(_u8((H, W, 3)) / 255.0))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_write_creates_missing_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.png"
    write_image(target, _picture(_u8((H, W, 3)) / 255.0))
    assert read_image(target).size == (W, H)


def test_write_where_a_folder_cannot_be_made(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create the folder") as info:
        write_image(tmp_path / "file" / "out.png", _picture(_u8((H, W, 3)) / 255.0))
    assert "\n" not in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_write_into_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            write_image(folder / "out.png", _picture(_u8((H, W, 3)) / 255.0))
    finally:
        folder.chmod(0o700)


def test_unwritable_folder_simulated(tmp_path, monkeypatch):
    """The same path as above, for runs as root (where chmod does not stop writing)."""
    import dip.files

    def denied(file, mode="r", *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    # shadows the builtin inside dip.files only, where the temporary file beside the output is claimed
    monkeypatch.setattr(dip.files, "open", denied, raising=False)
    with pytest.raises(OutputError, match=f"the folder '{tmp_path}' is not writable"):
        write_image(tmp_path / "out.png", _picture(_u8((H, W, 3)) / 255.0))


def test_unknown_suffix(tmp_path):
    with pytest.raises(OutputError) as info:
        write_image(tmp_path / "new" / "out.gif", _picture(_u8((H, W, 3)) / 255.0))
    assert "'.gif'" in str(info.value) and ".png" in str(info.value) and ".tiff" in str(info.value)
    assert not (tmp_path / "new").exists()  # refused before anything was created
    assert IMAGE_SUFFIXES == {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}


def test_uppercase_suffix(tmp_path):
    write_image(tmp_path / "OUT.JPG", _picture(_smooth_rgb() / 255.0))
    with Image.open(tmp_path / "OUT.JPG") as im:
        assert im.format == "JPEG"


def test_nan_pixels_are_refused(tmp_path):
    pixels = np.zeros((H, W, 3), np.float32)
    pixels[1, 1, 1] = np.nan
    with pytest.raises(OutputError, match="NaN"):
        write_image(tmp_path / "out.png", _picture(pixels))
    assert not (tmp_path / "out.png").exists()


def test_quantisation_rounds(tmp_path):
    pixels = np.array([[[0.5 / 255], [0.49 / 255], [254.51 / 255]]], np.float32)  # 0.5 rounds to even: 0
    write_image(tmp_path / "q.png", _picture(pixels))
    with Image.open(tmp_path / "q.png") as im:
        np.testing.assert_array_equal(np.asarray(im), [[0, 0, 255]])


# ----------------------------------------------------------------------------------------- Picture itself


def test_to_tensor_shape_and_no_shared_memory():
    pic = _picture(_u8((H, W, 1)) / 255.0)
    t = pic.to_tensor()
    assert t.shape == (1, 1, H, W) and t.is_contiguous() and str(t.dtype) == "torch.float32"
    t.fill_(0.5)
    assert pic.pixels.max() > 0.5
    rgb = _picture(_u8((H, W, 3)) / 255.0)
    np.testing.assert_array_equal(rgb.to_tensor()[0].permute(1, 2, 0).numpy(), rgb.pixels)


def test_with_pixels_accepts_arrays_and_tensors():
    import torch

    pic = _picture(np.zeros((H, W, 3)), alpha=np.ones((H, W)), icc=b"x" * 20)
    t = torch.rand(1, 3, H, W) * 2 - 0.5
    new = pic.with_pixels(t.requires_grad_())
    assert new.pixels.shape == (H, W, 3) and new.pixels.min() == 0 and new.pixels.max() == 1
    assert new.icc_profile == pic.icc_profile and new.alpha is pic.alpha and new.bit_depth == 8
    np.testing.assert_allclose(pic.with_pixels(t[0].detach()).pixels, new.pixels)
    gray = pic.with_pixels(np.full((H, W), 2.0))
    assert gray.channels == 1 and gray.pixels.max() == 1.0
    with pytest.raises(ValueError):
        pic.with_pixels(torch.rand(2, 3, H, W))


def test_with_pixels_resizes_alpha_for_a_new_size():
    pic = _picture(np.zeros((H, W, 3)), alpha=np.full((H, W), 0.25))
    bigger = pic.with_pixels(np.zeros((2 * H, 2 * W, 3)))
    assert bigger.alpha.shape == (2 * H, 2 * W)
    np.testing.assert_allclose(bigger.alpha, 0.25, atol=1e-6)


def test_picture_validates_shape():
    with pytest.raises(ValueError, match="pixels"):
        _picture(np.zeros((H, W, 2)))
    with pytest.raises(ValueError, match="alpha"):
        _picture(np.zeros((H, W, 3)), alpha=np.zeros((W, H)))


# -------------------------------------------------------------------------------------------- properties

_MODES = {"L": (1, 8), "RGB": (3, 8), "RGBA": (4, 8), "I;16": (1, 16)}


@settings(max_examples=25, deadline=None)
@given(
    mode=st.sampled_from(sorted(_MODES)),
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    suffix=st.sampled_from([".png", ".tif"]),
)
def test_round_trip_is_exact(mode, width, height, seed, suffix):
    channels, depth = _MODES[mode]
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 2**depth, (height, width, channels)).astype(np.uint8 if depth == 8 else np.uint16)
    with tempfile.TemporaryDirectory() as folder:
        src, out = Path(folder, "src" + suffix), Path(folder, "out" + suffix)
        Image.fromarray(arr[..., 0] if channels == 1 else arr).save(src)
        pic = read_image(src)
        assert pic.size == (width, height) and pic.bit_depth == depth
        write_image(out, pic)
        again = read_image(out)
    top = 2**depth - 1
    colours = 3 if channels >= 3 else 1
    np.testing.assert_array_equal(np.round(again.pixels * top).astype(arr.dtype), arr[..., :colours])
    if channels == 4:
        np.testing.assert_array_equal(np.round(again.alpha * top).astype(arr.dtype), arr[..., 3])


@settings(max_examples=15, deadline=None)
@given(
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    channels=st.sampled_from([2, 3, 4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_16bit_colour_png_reader_matches_filters(width, height, channels, seed):
    arr = np.random.default_rng(seed).integers(0, 65536, (height, width, channels)).astype(np.uint16)
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder, "src.png")
        _png16(src, arr)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing to warn about in a plain file
            pic = read_image(src)
    colours = 3 if channels >= 3 else 1
    np.testing.assert_array_equal(np.round(pic.pixels * 65535).astype(np.uint16), arr[..., :colours])
