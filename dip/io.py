"""Files <-> float pictures in [0, 1], and masks (True = known pixel).

Everything past this module sees float32 (H, W, C) arrays in [0, 1] (or (1, C, H, W) tensors), C being 1 for
gray and 3 for colour. What a file stores beyond that is kept on the `Picture` so that writing the result can
give it back: the alpha channel (never restored, re-attached on write), the bit depth (16-bit in, 16-bit out)
and the ICC profile.

Decoders: Pillow for everything it reads without loss. Pillow 13 still has no 16-bit colour mode: it opens
16-bit RGB(A) and gray+alpha PNG/TIFF as 8-bit, silently dropping the low byte, and cannot write them. So
those files are decoded again with pypng (PNG) or tifffile (TIFF, which scikit-image brings), and written with
the same two. imageio cannot help: its PNG writer is Pillow.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from dip.errors import InputError, MaskError, OutputError, UsageError

if TYPE_CHECKING:  # torch is imported where it is used, so that `import dip.io` stays light for the CLI
    import torch

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
_PIXEL_LIMIT_ENV = "DIP_MAX_PIXELS"
_ORIENTATION_TAG = 0x0112
_ICC_TAG = 34675  # TIFF InterColorProfile
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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


class _Decoded(NamedTuple):
    pixels: np.ndarray  # float32 (H, W, C), as stored (orientation not applied yet)
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    notes: tuple[str, ...] = ()  # things worth a warning, e.g. clipped float values


class _Unsupported(Exception):
    """tifffile met something this module does not interpret; the reason is for a message."""


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
            raise fail(_too_many_pixels(None, limit)) from e
    for note in notes + [f"'{path}': {n}" for n in decoded.notes]:
        warnings.warn(note, stacklevel=3)
    return _oriented_picture(decoded, orientation, icc, path)


def _decode(path: Path, limit: int | None, fail) -> tuple[_Decoded, int, bytes | None, list[str]]:
    """(pixels as stored, EXIF-style orientation, ICC profile, things worth a warning)."""
    try:
        if path.stat().st_size == 0:
            raise fail("the file is empty (0 bytes)")
        im = Image.open(path)
    except UnidentifiedImageError as e:
        if _looks_like_tiff(path):  # Pillow cannot open float RGB or 16-bit gray+alpha TIFFs; tifffile can
            return _decode_with_tifffile(path, limit, fail)
        raise fail("not an image file (not a format Pillow can identify)") from e
    except OSError as e:
        if e.errno is None:  # Pillow reports bad content (a JPEG cut inside its header) as a bare OSError
            raise fail(f"not an image file (truncated or corrupt: {_one_line(e)})") from e
        raise fail(_os_reason(e)) from e

    with im:
        width, height = im.size
        if limit and width * height > limit:
            raise fail(_too_many_pixels(width * height, limit))
        notes: list[str] = []
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            notes.append(f"'{path}' has {frames} frames; dip uses the first only")
        icc = im.info.get("icc_profile") or None
        try:
            im.load()  # decode everything now, so a truncated file fails here and not halfway through a run
            decoded = _from_pillow(im)
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
            raise fail(f"not an image file (truncated or corrupt: {_one_line(e)})") from e
        if im.mode == "CMYK":
            icc = None  # a CMYK profile does not describe the RGB pixels we made
        if im.format == "PNG" and _png_is_deep_colour(path):
            decoded = _read_png16(path, fail)
        elif im.format == "TIFF" and _tiff_is_deep_colour(im):
            try:
                decoded = _tiff_arrays(path)[0]
            except (_Unsupported, ValueError, KeyError, NotImplementedError) as e:
                # e.g. LZW or JPEG compression needs the optional imagecodecs package; 8 bits beat failing
                notes.append(f"'{path}': 16-bit colour TIFF read as 8-bit ({_one_line(e)})")
        orientation = _exif_orientation(im, notes, path)
    return decoded, orientation, icc, notes


def _oriented_picture(decoded: _Decoded, orientation: int, icc: bytes | None, path: Path) -> Picture:
    return Picture(
        pixels=_orient(decoded.pixels, orientation),
        alpha=None if decoded.alpha is None else _orient(decoded.alpha, orientation),
        bit_depth=decoded.bit_depth,
        mode=decoded.mode,
        icc_profile=icc,
        path=path,
    )


def _pixel_limit() -> int | None:
    """DIP_MAX_PIXELS when it is set (0 = no limit, None), else Pillow's MAX_IMAGE_PIXELS."""
    raw = os.environ.get(_PIXEL_LIMIT_ENV, "").strip()
    if raw:
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            value = -1
        if value < 0:
            raise UsageError(
                f"{_PIXEL_LIMIT_ENV}={raw!r} is not a pixel count; set it to a whole number such as "
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


def _too_many_pixels(count: int | None, limit: int | None) -> str:
    what = "it has more pixels" if count is None else f"its {count} pixels are more"
    return (
        f"{what} than the limit of {limit} that guards against decompression bombs; if you trust the file, "
        f"set {_PIXEL_LIMIT_ENV} to a larger number (0 for no limit)"
    )


def _os_reason(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "permission denied"
    return _one_line(e.strerror or e)


def _one_line(e: object) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _from_pillow(im: Image.Image) -> _Decoded:
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
        arr, notes = _clip_float(arr)
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
    alpha_unit = None if alpha is None else _to_unit(alpha, scale)
    return _Decoded(_to_unit(arr, scale), alpha_unit, depth, source_mode, notes)


def _to_unit(arr: np.ndarray, scale: float) -> np.ndarray:
    return arr.astype(np.float32) / np.float32(scale)


def _clip_float(arr: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    arr = arr.astype(np.float32)
    finite = np.isfinite(arr)
    if arr.size == 0 or (finite.all() and arr.min() >= 0.0 and arr.max() <= 1.0):
        return arr, ()
    span = f"span [{arr[finite].min():.4g}, {arr[finite].max():.4g}]" if finite.any() else "are all NaN"
    extra = "" if finite.all() else " (some NaN or infinite, taken as 0 or 1)"
    note = f"float image values {span}{extra}; dip expects [0, 1] and clipped them"
    return np.clip(np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0), (note,)


def _exif_orientation(im: Image.Image, notes: list[str], path: Path) -> int:
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        # the pixels decoded fine; a broken EXIF block should not cost the user the image
        notes.append(f"'{path}': ignoring unreadable EXIF data ({_one_line(e)})")
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


# PNG with 16-bit colour or gray+alpha: Pillow keeps only the high byte, so pypng decodes it.


def _png_is_deep_colour(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(26)
    # IHDR is always the first chunk: bit depth at byte 24, colour type at 25 (2 RGB, 4 gray+alpha, 6 RGBA)
    return head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6)


def _read_png16(path: Path, fail) -> _Decoded:
    png = _import_pypng(lambda msg: fail(msg))
    try:
        with open(path, "rb") as f:  # pypng's Reader(filename=) never closes its file
            width, height, rows, info = png.Reader(file=f).read()
            planes = info["planes"]
            flat = np.empty((height, width * planes), dtype=np.uint16)
            for y, row in enumerate(rows):  # one Python step per row; pypng may reuse its row buffer
                flat[y] = row
    except (png.Error, zlib.error, ValueError, EOFError, OSError) as e:
        raise fail(f"not an image file (truncated or corrupt: {_one_line(e)})") from e
    arr = flat.reshape(height, width, planes)
    alpha = None
    if info["alpha"]:
        arr, alpha = arr[..., :-1], arr[..., -1]
    elif info.get("transparent") is not None:
        alpha = np.where((arr == np.asarray(info["transparent"])).all(axis=2), 0, 65535)
    mode = ("L" if arr.shape[2] == 1 else "RGB") + ("A" if info["alpha"] else "") + ";16"
    return _Decoded(_to_unit(arr, 65535), None if alpha is None else _to_unit(alpha, 65535), 16, mode)


def _import_pypng(fail):
    try:
        import png
    except ImportError as e:
        raise fail("16-bit colour PNG needs the 'pypng' package; install it with: pip install pypng") from e
    return png


# TIFF with 16-bit colour, float colour or 16-bit gray+alpha: Pillow truncates or refuses; tifffile reads.


def _looks_like_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


def _tiff_is_deep_colour(im: Image.Image) -> bool:
    bits = im.tag_v2.get(258, 8)  # BitsPerSample
    bits = bits if isinstance(bits, tuple) else (bits,)
    return int(im.tag_v2.get(277, 1)) > 1 and max(bits) > 8  # SamplesPerPixel


def _decode_with_tifffile(path: Path, limit: int | None, fail) -> tuple[_Decoded, int, bytes | None, list[str]]:
    import tifffile

    try:
        decoded, frames, icc, orientation = _tiff_arrays(path, limit, fail)
    except _Unsupported as e:
        raise fail(f"{e}; save it as 8- or 16-bit gray or RGB") from e
    except (tifffile.TiffFileError, ValueError, KeyError, NotImplementedError, OSError) as e:
        # truncated, corrupt, or compressed with a codec that needs the optional imagecodecs package
        raise fail(f"cannot decode this TIFF ({_one_line(e)})") from e
    notes = [f"'{path}' has {frames} pages; dip uses the first only"] if frames > 1 else []
    return decoded, orientation, icc, notes


def _tiff_arrays(path: Path, limit: int | None = None, fail=None) -> tuple[_Decoded, int, bytes | None, int]:
    """The first page of a TIFF as (decoded, page count, ICC profile, EXIF-style orientation)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        if limit and fail is not None and page.imagewidth * page.imagelength > limit:
            raise fail(_too_many_pixels(page.imagewidth * page.imagelength, limit))
        photometric = int(page.photometric)
        if photometric not in (0, 1, 2):  # MINISWHITE, MINISBLACK, RGB
            raise _Unsupported(f"TIFF photometric interpretation {page.photometric.name} is not supported")
        arr = page.asarray()
        if page.axes.startswith("S"):  # planar configuration: samples first
            arr = np.moveaxis(arr, 0, -1)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3:
            raise _Unsupported(f"TIFF page with axes {page.axes!r} is not a 2-D image")
        colours = 3 if photometric == 2 else 1
        extras = tuple(int(x) for x in page.extrasamples)
        icc_tag = page.tags.get(_ICC_TAG)
        orientation_tag = page.tags.get(274)
        frames = len(tif.pages)

    if arr.dtype == np.uint8:
        scale, depth, suffix, notes = 255, 8, "", ()
    elif arr.dtype == np.uint16:
        scale, depth, suffix, notes = 65535, 16, ";16", ()
    elif arr.dtype.kind == "f":
        arr, notes = _clip_float(arr)
        scale, depth, suffix = 1, 16, f";{8 * arr.itemsize}F"
    else:
        raise _Unsupported(f"TIFF with {arr.dtype} samples is not supported")
    colour = arr[..., :colours].astype(np.float32) / np.float32(scale)
    alpha = None
    if extras and extras[0] in (1, 2) and arr.shape[2] > colours:  # 1 = premultiplied, 2 = straight alpha
        alpha = arr[..., colours].astype(np.float32) / np.float32(scale)
        if extras[0] == 1:
            a = alpha[..., None]
            colour = np.clip(np.divide(colour, a, out=np.zeros_like(colour), where=a > 0), 0.0, 1.0)
    if photometric == 0:
        colour = 1.0 - colour
    mode = ("RGB" if colours == 3 else "L") + ("A" if alpha is not None else "") + suffix
    icc = bytes(icc_tag.value) if icc_tag is not None else None
    orientation = int(orientation_tag.value) if orientation_tag is not None else 1
    return _Decoded(colour, alpha, depth, mode, notes), frames, icc, orientation


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
                _write_tiff(tmp, data, alpha is not None, icc)
            elif fmt == "PNG" and depth == 16 and data.shape[2] > 1:
                _write_png16(tmp, data, alpha is not None, icc, path)
            else:
                _write_pillow(tmp, data, fmt, icc)
        except OSError as e:
            raise OutputError(f"cannot write '{path}': {_os_reason(e)}", path=path) from e


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


def _write_png16(tmp: Path, data: np.ndarray, has_alpha: bool, icc: bytes | None, path: Path) -> None:
    png = _import_pypng(lambda msg: OutputError(f"cannot write '{path}': {msg}", path=path))
    height, width, planes = data.shape
    writer = png.Writer(width, height, greyscale=planes - has_alpha == 1, alpha=has_alpha, bitdepth=16)
    buffer = BytesIO()
    # packed big-endian rows skip pypng's per-value packing in Python, the slow part of writer.write
    packed = data.astype(">u2").reshape(height, width * planes)
    writer.write_packed(buffer, (row.tobytes() for row in packed))
    chunks = list(png.Reader(bytes=buffer.getvalue()).chunks())
    if icc:  # pypng's writer has no option for it; iCCP must come before IDAT, right after IHDR is fine
        chunks.insert(1, (b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    with open(tmp, "wb") as f:
        png.write_chunks(f, chunks)


def _write_tiff(tmp: Path, data: np.ndarray, has_alpha: bool, icc: bytes | None) -> None:
    import tifffile

    colours = data.shape[2] - has_alpha
    tifffile.imwrite(
        tmp,
        data if data.shape[2] > 1 else data[..., 0],
        photometric="rgb" if colours == 3 else "minisblack",
        planarconfig="contig" if data.shape[2] > 1 else None,
        extrasamples=("unassalpha",) if has_alpha else None,
        compression="zlib",  # deflate: lossless, needs no optional codec to read back
        metadata=None,  # no tifffile JSON description in the file
        extratags=[(_ICC_TAG, 7, len(icc), icc, True)] if icc else (),
    )


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`, with the same suffix; move it onto `path` on success.

    The temporary file already exists (empty) when yielded, which proves the folder is writable before any
    work is done. On any exception, including Ctrl-C, it is removed and `path` is left as it was. Missing
    folders are created. Raises OutputError when the folder cannot be made or written to.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write '{path}': it is a folder; give a file name", path=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(
            f"cannot write '{path}': cannot create the folder '{path.parent}' ({_os_reason(e)})", path=path
        ) from e
    tmp = _claim_temp(path)
    try:
        yield tmp
    except BaseException:
        _discard(tmp)
        raise
    try:
        os.replace(tmp, path)  # atomic within one file system, which is why the temp file sits beside `path`
    except OSError as e:
        _discard(tmp)
        raise OutputError(f"cannot write '{path}': {_os_reason(e)}", path=path) from e


def _claim_temp(path: Path) -> Path:
    for _ in range(8):
        # hidden, and ending in the real suffix so that format detection from the name still works
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            with open(tmp, "xb"):  # created through open(), so the final file gets the user's umask
                return tmp
        except FileExistsError:
            continue
        except OSError as e:
            reason = _os_reason(e)
            raise OutputError(
                f"cannot write '{path}': the folder '{path.parent}' is not writable ({reason})", path=path
            ) from e
    raise OutputError(f"cannot write '{path}': could not create a temporary file beside it", path=path)


def _discard(tmp: Path) -> None:
    with suppress(OSError):  # the original error matters more than a failed clean-up
        tmp.unlink(missing_ok=True)


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
