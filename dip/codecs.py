"""Decoders and encoders for what Pillow cannot do without loss: 16-bit colour PNG (pypng) and 16-bit or float
TIFF (tifffile), and the decoded form every reader of ``dip.io`` returns.

Pillow 13 still has no 16-bit colour mode: it opens 16-bit RGB(A) and gray+alpha PNG/TIFF as 8-bit, silently
dropping the low byte, and cannot write them. So those files are decoded again with pypng (PNG) or tifffile (TIFF,
which scikit-image brings), and written with the same two. imageio cannot help: its PNG writer is Pillow.
"""

from __future__ import annotations

import zlib
from io import BytesIO
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from .errors import OutputError
from .files import one_line

PIXEL_LIMIT_ENV = "DIP_MAX_PIXELS"
ICC_TAG = 34675  # TIFF InterColorProfile
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Decoded(NamedTuple):
    pixels: np.ndarray  # float32 (H, W, C), as stored (orientation not applied yet)
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    notes: tuple[str, ...] = ()  # things worth a warning, e.g. clipped float values
    coding: object = None  # a JPEG file's dip.jpeg.Coding


class Unsupported(Exception):
    """tifffile met something this module does not interpret; the reason is for a message."""


def to_unit(arr: np.ndarray, scale: float) -> np.ndarray:
    return arr.astype(np.float32) / np.float32(scale)


def clip_float(arr: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    arr = arr.astype(np.float32)
    finite = np.isfinite(arr)
    if arr.size == 0 or (finite.all() and arr.min() >= 0.0 and arr.max() <= 1.0):
        return arr, ()
    span = f"span [{arr[finite].min():.4g}, {arr[finite].max():.4g}]" if finite.any() else "are all NaN"
    extra = "" if finite.all() else " (some NaN or infinite, taken as 0 or 1)"
    note = f"float image values {span}{extra}; dip expects [0, 1] and clipped them"
    return np.clip(np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0), (note,)


def too_many_pixels(count: int | None, limit: int | None) -> str:
    what = "it has more pixels" if count is None else f"its {count} pixels are more"
    return (
        f"{what} than the limit of {limit} that guards against decompression bombs; if you trust the file, "
        f"set {PIXEL_LIMIT_ENV} to a larger number (0 for no limit)"
    )


def png_is_deep_colour(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(26)
    # IHDR is always the first chunk: bit depth at byte 24, colour type at 25 (2 RGB, 4 gray+alpha, 6 RGBA)
    return head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6)


def read_png16(path: Path, fail) -> Decoded:
    png = import_pypng(lambda msg: fail(msg))
    try:
        with open(path, "rb") as f:  # pypng's Reader(filename=) never closes its file
            width, height, rows, info = png.Reader(file=f).read()
            planes = info["planes"]
            flat = np.empty((height, width * planes), dtype=np.uint16)
            for y, row in enumerate(rows):  # one Python step per row; pypng may reuse its row buffer
                flat[y] = row
    except (png.Error, zlib.error, ValueError, EOFError, OSError) as e:
        raise fail(f"not an image file (truncated or corrupt: {one_line(e)})") from e
    arr = flat.reshape(height, width, planes)
    alpha = None
    if info["alpha"]:
        arr, alpha = arr[..., :-1], arr[..., -1]
    elif info.get("transparent") is not None:
        alpha = np.where((arr == np.asarray(info["transparent"])).all(axis=2), 0, 65535)
    mode = ("L" if arr.shape[2] == 1 else "RGB") + ("A" if info["alpha"] else "") + ";16"
    return Decoded(to_unit(arr, 65535), None if alpha is None else to_unit(alpha, 65535), 16, mode)


def import_pypng(fail):
    try:
        import png
    except ImportError as e:
        raise fail("16-bit colour PNG needs the 'pypng' package; install it with: pip install pypng") from e
    return png


def looks_like_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


def tiff_is_deep_colour(im: Image.Image) -> bool:
    bits = im.tag_v2.get(258, 8)  # BitsPerSample
    bits = bits if isinstance(bits, tuple) else (bits,)
    return int(im.tag_v2.get(277, 1)) > 1 and max(bits) > 8  # SamplesPerPixel


def decode_with_tifffile(path: Path, limit: int | None, fail) -> tuple[Decoded, int, bytes | None, list[str]]:
    import tifffile

    try:
        decoded, frames, icc, orientation = tiff_arrays(path, limit, fail)
    except Unsupported as e:
        raise fail(f"{e}; save it as 8- or 16-bit gray or RGB") from e
    except (tifffile.TiffFileError, ValueError, KeyError, NotImplementedError, OSError) as e:
        # truncated, corrupt, or compressed with a codec that needs the optional imagecodecs package
        raise fail(f"cannot decode this TIFF ({one_line(e)})") from e
    notes = [f"'{path}' has {frames} pages; dip uses the first only"] if frames > 1 else []
    return decoded, orientation, icc, notes


def tiff_arrays(path: Path, limit: int | None = None, fail=None) -> tuple[Decoded, int, bytes | None, int]:
    """The first page of a TIFF as (decoded, page count, ICC profile, EXIF-style orientation)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        if limit and fail is not None and page.imagewidth * page.imagelength > limit:
            raise fail(too_many_pixels(page.imagewidth * page.imagelength, limit))
        photometric = int(page.photometric)
        if photometric not in (0, 1, 2):  # MINISWHITE, MINISBLACK, RGB
            raise Unsupported(f"TIFF photometric interpretation {page.photometric.name} is not supported")
        arr = page.asarray()
        if page.axes.startswith("S"):  # planar configuration: samples first
            arr = np.moveaxis(arr, 0, -1)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3:
            raise Unsupported(f"TIFF page with axes {page.axes!r} is not a 2-D image")
        colours = 3 if photometric == 2 else 1
        extras = tuple(int(x) for x in page.extrasamples)
        icc_tag = page.tags.get(ICC_TAG)
        orientation_tag = page.tags.get(274)
        frames = len(tif.pages)

    if arr.dtype == np.uint8:
        scale, depth, suffix, notes = 255, 8, "", ()
    elif arr.dtype == np.uint16:
        scale, depth, suffix, notes = 65535, 16, ";16", ()
    elif arr.dtype.kind == "f":
        arr, notes = clip_float(arr)
        scale, depth, suffix = 1, 16, f";{8 * arr.itemsize}F"
    else:
        raise Unsupported(f"TIFF with {arr.dtype} samples is not supported")
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
    return Decoded(colour, alpha, depth, mode, notes), frames, icc, orientation


def write_png16(tmp: Path, data: np.ndarray, has_alpha: bool, icc: bytes | None, path: Path) -> None:
    png = import_pypng(lambda msg: OutputError(f"cannot write '{path}': {msg}", path=path))
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


def write_tiff(tmp: Path, data: np.ndarray, has_alpha: bool, icc: bytes | None) -> None:
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
        extratags=[(ICC_TAG, 7, len(icc), icc, True)] if icc else (),
    )

