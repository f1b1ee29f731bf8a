"""Files <-> float pictures in [0, 1], and masks (True = known pixel).

Everything past this module sees float32 (H, W, C) arrays in [0, 1] (or (1, C, H, W) tensors), C being 1 for
gray and 3 for colour. What a file stores beyond that is kept on the `Picture` so that writing the result can
give it back: the alpha channel (never restored, re-attached on write), the bit depth (16-bit in, 16-bit out)
and the ICC profile.

Decoders: Pillow for everything it reads without loss; 16-bit colour PNG and 16-bit or float TIFF, which Pillow
reads as 8-bit or not at all, go through ``dip.codecs``.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from .codecs import (
    PIXEL_LIMIT_ENV,
    Decoded,
    Unsupported,
    clip_float,
    decode_with_tifffile,
    looks_like_tiff,
    png_is_deep_colour,
    read_png16,
    tiff_arrays,
    tiff_is_deep_colour,
    to_unit,
    too_many_pixels,
    write_png16,
    write_tiff,
)
from .errors import InputError, MaskError, OutputError, UsageError
from .files import atomic_output, one_line, os_reason

if TYPE_CHECKING:  # torch is imported where it is used, so that `import dip.io` stays light for the CLI
    import torch

    from .jpeg import Coding

_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
IMAGE_SUFFIXES: frozenset[str] = frozenset(_FORMATS)

_DEEP_FORMATS = frozenset({"PNG", "TIFF"})  # the others hold 8 bits per sample at most
_ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})  # JPEG has no alpha; BMP alpha is ignored by most readers
_ORIENTATION_TAG = 0x0112
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's convert("L")
# A mask is black and white, with soft edges at most; a photograph given as one (often the input itself) is
# mostly mid-tones, and thresholding it would silently make a random pattern of holes.
_MASK_MID_GRAY = (0.1, 0.9)
_MASK_MOSTLY_MID_GRAY = 0.5


@dataclass(eq=False)  # eq on arrays is ambiguous; identity is the only equality that means something here
class Picture:
    """An image as the rest of dip sees it, plus what the file had that restoration must not touch.

    `pixels` is float32 (H, W, C), C = 1 (gray) or 3 (colour), in [0, 1]. `alpha` is float32 (H, W) in
    [0, 1] or None. `bit_depth` (8 or 16) is what the file stored, and what `write_image` writes by default.
    `mode` describes the source (Pillow's mode, or e.g. "RGB;16") for the record only.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    icc_profile: bytes | None
    path: Path | None = None
    jpeg: Coding | None = None  # how a JPEG file was coded (dip.jpeg), for its restoration; None for the rest

    def __post_init__(self) -> None:
        self.pixels = np.asarray(self.pixels, dtype=np.float32)
        if self.pixels.ndim != 3 or self.pixels.shape[2] not in (1, 3):
            raise ValueError(f"Picture.pixels must be (H, W, 1) or (H, W, 3), got shape {self.pixels.shape}")
        if self.alpha is not None:
            self.alpha = np.asarray(self.alpha, dtype=np.float32)
            if self.alpha.shape != self.pixels.shape[:2]:
                raise ValueError(f"Picture.alpha has shape {self.alpha.shape} but pixels are {self.pixels.shape[:2]}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"Picture.bit_depth must be 8 or 16, got {self.bit_depth}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), Pillow's order."""
        return self.pixels.shape[1], self.pixels.shape[0]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]

    def to_tensor(self) -> torch.Tensor:
        """(1, C, H, W) float32, contiguous, sharing no memory with `pixels`."""
        import torch

        # np.array copies even when the transpose is already contiguous (C = 1), so that the net's input can
        # be changed in place without changing the picture.
        chw = np.array(self.pixels.transpose(2, 0, 1), dtype=np.float32, order="C")
        return torch.from_numpy(chw).unsqueeze(0)

    def with_pixels(self, pixels: np.ndarray | torch.Tensor) -> Picture:
        """Same metadata, new pixels: numpy (H, W, C) or (H, W), or a tensor (1, C, H, W) or (C, H, W).

        Values are clamped to [0, 1]. If the new pixels have another size (super-resolution), the alpha is
        resized to match with bicubic interpolation, since it is never restored.
        """
        new = _as_hwc(pixels)
        alpha = self.alpha
        if alpha is not None and alpha.shape != new.shape[:2]:
            alpha = _resize_plane(alpha, (new.shape[1], new.shape[0]))
        return dataclasses.replace(self, pixels=new, alpha=alpha)


def _as_hwc(pixels: np.ndarray | torch.Tensor) -> np.ndarray:
    if hasattr(pixels, "detach"):  # a torch tensor, recognised without importing torch
        t = pixels.detach()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"with_pixels takes one image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.ndim != 3:
            raise ValueError(f"with_pixels takes a (1, C, H, W) or (C, H, W) tensor, got {tuple(t.shape)}")
        # cpu() before float() so a half-precision GPU tensor is not first widened on the device
        return t.cpu().float().clamp(0, 1).permute(1, 2, 0).contiguous().numpy()
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"with_pixels takes an (H, W, C) or (H, W) array, got shape {arr.shape}")
    return np.clip(arr, 0.0, 1.0)  # a new array: the caller's cannot alias the picture's


def _resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    resized = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32)).resize(size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------- reading


def read_image(path: str | Path) -> Picture:
    """Read an image file into a `Picture`, EXIF orientation applied.

    Reads whatever Pillow decodes (PNG, JPEG, TIFF, WebP, BMP, GIF, ...), by content, not by suffix:
    gray and palette images stay gray or become RGB; CMYK is converted to RGB naively and its (CMYK) ICC
    profile dropped; 16-bit files keep 16 bits (`bit_depth` 16). Float TIFFs are taken to hold values in
    [0, 1]: anything outside is clipped, with a warning, and they count as 16-bit. 32-bit integer gray is
    taken as 16-bit data and clipped to 0..65535. Of an animated or multi-page file the first frame is used,
    with a warning.

    Images over the pixel limit (Pillow's, about 89 million, or the environment variable DIP_MAX_PIXELS; 0 for
    none) are refused, as a guard against decompression bombs.

    Raises InputError with one line naming the path and the reason.
    """
    return _read(Path(path), InputError, "")


def _read(path: Path, error: type[InputError], noun: str) -> Picture:
    def fail(reason: str) -> InputError:
        return error(f"cannot read {noun}'{path}': {reason}", path=path)

    limit = _pixel_limit()
    if not path.exists():
        raise fail("no such file")
    if path.is_dir():
        raise fail("it is a folder, not an image file")
    # Pillow checks its limit on opening, and again on frames and pages as it reads them (GIF, TIFF, WebP, MPO):
    # all must be dip's. It only warns between the limit and twice that; one limit, checked in _decode, is easier
    # to explain.
    with _pillow_pixel_limit(limit), warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            decoded, orientation, icc, notes = _decode(path, limit, fail)
        except Image.DecompressionBombError as e:
            raise fail(too_many_pixels(None, limit)) from e
    for note in notes + [f"'{path}': {n}" for n in decoded.notes]:
        warnings.warn(note, stacklevel=3)
    return _oriented_picture(decoded, orientation, icc, path)


def _decode(path: Path, limit: int | None, fail) -> tuple[Decoded, int, bytes | None, list[str]]:
    """(pixels as stored, EXIF-style orientation, ICC profile, things worth a warning)."""
    try:
        if path.stat().st_size == 0:
            raise fail("the file is empty (0 bytes)")
        im = Image.open(path)
    except UnidentifiedImageError as e:
        if looks_like_tiff(path):  # Pillow cannot open float RGB or 16-bit gray+alpha TIFFs; tifffile can
            return decode_with_tifffile(path, limit, fail)
        raise fail("not an image file (not a format Pillow can identify)") from e
    except OSError as e:
        if e.errno is None:  # Pillow reports bad content (a JPEG cut inside its header) as a bare OSError
            raise fail(f"not an image file (truncated or corrupt: {one_line(e)})") from e
        raise fail(os_reason(e)) from e

    with im:
        width, height = im.size
        if limit and width * height > limit:
            raise fail(too_many_pixels(width * height, limit))
        notes: list[str] = []
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            notes.append(f"'{path}' has {frames} frames; dip uses the first only")
        icc = im.info.get("icc_profile") or None
        try:
            im.load()  # decode everything now, so a truncated file fails here and not halfway through a run
            decoded = _from_pillow(im)
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
            raise fail(f"not an image file (truncated or corrupt: {one_line(e)})") from e
        if im.mode == "CMYK":
            icc = None  # a CMYK profile does not describe the RGB pixels we made
        if im.format == "PNG" and png_is_deep_colour(path):
            decoded = read_png16(path, fail)
        elif im.format == "TIFF" and tiff_is_deep_colour(im):
            try:
                decoded = tiff_arrays(path)[0]
            except (Unsupported, ValueError, KeyError, NotImplementedError) as e:
                # e.g. LZW or JPEG compression needs the optional imagecodecs package; 8 bits beat failing
                notes.append(f"'{path}': 16-bit colour TIFF read as 8-bit ({one_line(e)})")
        orientation = _exif_orientation(im, notes, path)
        if im.format == "JPEG" and orientation == 1:  # the blocks of a turned picture are not on its grid
            from .jpeg import coding_of

            decoded = decoded._replace(coding=coding_of(im))
    return decoded, orientation, icc, notes


def _oriented_picture(decoded: Decoded, orientation: int, icc: bytes | None, path: Path) -> Picture:
    return Picture(
        pixels=_orient(decoded.pixels, orientation),
        alpha=None if decoded.alpha is None else _orient(decoded.alpha, orientation),
        bit_depth=decoded.bit_depth,
        mode=decoded.mode,
        icc_profile=icc,
        path=path,
        jpeg=decoded.coding,
    )


def _pixel_limit() -> int | None:
    """DIP_MAX_PIXELS when it is set (0 = no limit, None), else Pillow's MAX_IMAGE_PIXELS."""
    raw = os.environ.get(PIXEL_LIMIT_ENV, "").strip()
    if raw:
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            value = -1
        if value < 0:
            raise UsageError(
                f"{PIXEL_LIMIT_ENV}={raw!r} is not a pixel count; set it to a whole number such as "
                f"200000000, or 0 for no limit"
            )
        return value or None
    return Image.MAX_IMAGE_PIXELS


@contextmanager
def _pillow_pixel_limit(limit: int | None) -> Iterator[None]:
    # Pillow's limit is a global: set for good, it would outlive the variable and refuse images for every other
    # user of Pillow in the process (an application embedding dip, scikit-image's sample data).
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _from_pillow(im: Image.Image) -> Decoded:
    source_mode = im.mode
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("P", "PA"):
        im = im.convert("RGBA" if im.has_transparency_data else "RGB")
    elif im.mode == "La":
        im = im.convert("LA")
    elif im.mode == "RGBa":
        im = im.convert("RGBA")
    elif not (im.mode in ("L", "LA", "RGB", "RGBA", "I", "F") or im.mode.startswith("I;16")):
        im = im.convert("RGB")  # CMYK, RGBX, YCbCr, LAB, HSV
    arr = np.asarray(im)
    notes: tuple[str, ...] = ()
    if im.mode.startswith("I;16"):
        scale, depth = 65535, 16
    elif im.mode == "I":  # 32-bit integers; in practice 16-bit data
        arr, scale, depth = np.clip(arr, 0, 65535), 65535, 16
    elif im.mode == "F":
        arr, notes = clip_float(arr)
        scale, depth = 1, 16
    else:
        scale, depth = 255, 8
    if arr.ndim == 2:
        arr = arr[..., None]
    alpha = None
    if im.mode in ("LA", "RGBA"):
        arr, alpha = arr[..., :-1], arr[..., -1]
    elif "transparency" in im.info and isinstance(im.info["transparency"], (int, tuple)):
        # a tRNS colour key on a gray or RGB image: that one colour is transparent
        key = np.asarray(im.info["transparency"]).reshape(-1)
        alpha = np.where((arr == key).all(axis=2), 0, scale)
    alpha_unit = None if alpha is None else to_unit(alpha, scale)
    return Decoded(to_unit(arr, scale), alpha_unit, depth, source_mode, notes)


def _exif_orientation(im: Image.Image, notes: list[str], path: Path) -> int:
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        # the pixels decoded fine; a broken EXIF block should not cost the user the image
        notes.append(f"'{path}': ignoring unreadable EXIF data ({one_line(e)})")
        return 1
    return value if value in range(1, 9) else 1


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels the way EXIF says they are shown; the same mapping as ImageOps.exif_transpose."""
    if orientation in (5, 6, 7, 8):
        a = a.swapaxes(0, 1)
    a = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        6: lambda x: x[:, ::-1],
        7: lambda x: x[::-1, ::-1],
        8: lambda x: x[::-1],
    }.get(orientation, lambda x: x)(a)
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------------- writing


def write_image(path: str | Path, picture: Picture, *, bit_depth: int | None = None) -> None:
    """Write `picture` to `path` in the format its suffix names (see IMAGE_SUFFIXES).

    `bit_depth` (8 or 16) defaults to the picture's. PNG and TIFF hold 16 bits; JPEG, WebP and BMP are
    written with 8 whatever was asked. Alpha is re-attached for PNG, TIFF and WebP and dropped for JPEG and
    BMP. The ICC profile is carried by PNG, JPEG, TIFF and WebP when it matches the channels written (a gray
    profile on a gray image, an RGB one on colour). JPEG is written at quality 95 without chroma
    subsampling, WebP losslessly (gray WebP becomes RGB: the format has no gray mode), TIFF with deflate.

    The file appears complete or not at all (see `atomic_output`); missing folders are created.
    Raises OutputError.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"cannot write '{path}': unknown image type '{path.suffix}'; use one of "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}",
            path=path,
        )
    depth = picture.bit_depth if bit_depth is None else bit_depth
    if depth not in (8, 16):
        raise OutputError(f"cannot write '{path}': bit depth {depth} is not supported; use 8 or 16", path=path)
    if fmt not in _DEEP_FORMATS:
        depth = 8
    alpha = picture.alpha if fmt in _ALPHA_FORMATS else None
    if not np.isfinite(picture.pixels).all():
        raise OutputError(
            f"cannot write '{path}': the pixels contain NaN or infinity (did the fit diverge?)", path=path
        )
    colour = picture.pixels
    if fmt == "WEBP" and colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    data = _quantise(colour, depth)
    if alpha is not None:
        data = np.concatenate([data, _quantise(alpha, depth)[..., None]], axis=2)
    icc = picture.icc_profile if _icc_fits(picture.icc_profile, colour.shape[2]) else None

    with atomic_output(path) as tmp:
        try:
            if fmt == "TIFF":
                write_tiff(tmp, data, alpha is not None, icc)
            elif fmt == "PNG" and depth == 16 and data.shape[2] > 1:
                write_png16(tmp, data, alpha is not None, icc, path)
            else:
                _write_pillow(tmp, data, fmt, icc)
        except OSError as e:
            raise OutputError(f"cannot write '{path}': {os_reason(e)}", path=path) from e


def _quantise(x: np.ndarray, depth: int) -> np.ndarray:
    top = 255 if depth == 8 else 65535
    return np.round(np.clip(x, 0.0, 1.0) * top).astype(np.uint8 if depth == 8 else np.uint16)


def _icc_fits(icc: bytes | None, channels: int) -> bool:
    # bytes 16..20 of an ICC header name the colour space it describes; a mismatched profile makes readers
    # complain or mis-colour, so we would rather write none
    return bool(icc) and len(icc) >= 20 and icc[16:20] == (b"GRAY" if channels == 1 else b"RGB ")


def _write_pillow(tmp: Path, data: np.ndarray, fmt: str, icc: bytes | None) -> None:
    im = Image.fromarray(data[..., 0] if data.shape[2] == 1 else data)  # L, I;16, LA, RGB or RGBA
    options: dict[str, object] = {
        "JPEG": {"quality": 95, "subsampling": 0},
        "WEBP": {"lossless": True, "exact": True},  # exact: keep the colour under fully transparent pixels
    }.get(fmt, {})
    if icc and fmt != "BMP":
        options["icc_profile"] = icc
    im.save(tmp, format=fmt, **options)


# ------------------------------------------------------------------------------------------------------ masks


def read_mask(path: str | Path, size: tuple[int, int], *, invert: bool = False) -> np.ndarray:
    """A mask for an image of `size` (width, height) as bool (H, W): True = known pixel, False = to fill in.

    Any image of the right size works. A pixel is known where its gray value is above half the full range
    (> 127 of 255, > 32767 of 65535); colour masks are reduced to luminance (ITU-R 601) first, and an alpha
    channel is ignored. For a black-and-white mask that is simply white = known. `invert=True` flips it.
    Warns when most pixels are mid-gray: that is a photograph (often the input itself), not a mask.

    Raises MaskError when the mask cannot be read, has another size, or marks no pixel as known.
    """
    path = Path(path)
    picture = _read(path, MaskError, "mask ")
    image_size = (int(size[0]), int(size[1]))
    if picture.size != image_size:
        (mw, mh), (iw, ih) = picture.size, image_size
        raise MaskError(
            f"mask '{path}' is {mw}x{mh} but the image is {iw}x{ih}; give a mask the same size as the image",
            path=path,
            mask_size=picture.size,
            image_size=image_size,
        )
    gray = picture.pixels[..., 0] if picture.channels == 1 else picture.pixels @ _LUMA
    known = gray > 0.5
    if invert:
        known = ~known
    if not known.any():
        hint = (
            "inverted, black = known; drop --mask-invert if yours is white = known"
            if invert
            else "white = known; use --mask-invert if yours is the other way round"
        )
        raise MaskError(
            f"mask '{path}' marks no pixel as known ({hint})",
            path=path,
            mask_size=picture.size,
            image_size=image_size,
        )
    low, high = _MASK_MID_GRAY
    mid_gray = float(np.mean((gray > low) & (gray < high)))
    if mid_gray > _MASK_MOSTLY_MID_GRAY:
        # after the refusals, so that a refused mask gets one line, the error
        warnings.warn(
            f"mask '{path}' does not look like a mask: {mid_gray:.0%} of its pixels are mid-gray (is it the photo "
            "itself?); dip takes the pixels above half gray as known",
            stacklevel=2,
        )
    return known
