"""Pictures of a run for people: the contact sheet, the animation, the loss curves and the HTML report.

Pure rendering: arrays and numbers in, files out, nothing here knows about nets or fitting. torch is never
imported, and matplotlib only inside `save_curves`, because it takes about half a second to import and the
CLI's `--help` goes through modules that import this one.

Every file is written through `dip.io.atomic_output`, so a failed or interrupted write leaves no partial file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dip.errors import InputError, OutputError
from dip.files import atomic_output, format_for

_SHEET_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_SHEET_OPTIONS = {"JPEG": {"quality": 92}, "WEBP": {"lossless": True}}  # a sheet is about the details: no blur
_ANIMATION_FORMATS = {".gif": "GIF", ".webp": "WEBP"}

_MARGIN = 8  # between tiles and around the sheet
_PAD = 4  # inside a label band
_MIN_TILE_SIZE = 64  # below this the labels no longer fit beside the frame counter
_BACKGROUND = (255, 255, 255)
_TITLE_COLOUR = (20, 20, 20)
_CAPTION_COLOUR = (85, 85, 85)
_ZOOM_COLOUR = (255, 60, 0)  # saturated orange: visible on most photographs, and on both white and black
_MIN_FRAME_MS = 20  # browsers show shorter GIF delays as 100 ms


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous; two tiles are equal only if they are the same
class Tile:
    """One labelled picture of a sheet or one frame of an animation.

    `image` is (H, W, C) float in [0, 1], C = 1 (gray) or 3, or (H, W) gray; values outside are clipped when
    drawn. `title` is the first label line ("it 250"), `caption` the second ("27.31 dB · SSIM 0.812"); an empty
    caption keeps its room, so that all tiles line up.
    """

    image: np.ndarray
    title: str
    caption: str = ""


# ------------------------------------------------------------------------------------------------------- zoom


def parse_zoom(spec: str, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """'X,Y,W,H' in pixels of an image of `size` (width, height) -> (x, y, w, h).

    Raises InputError when the text is not four whole numbers, the box is empty, or it is not inside the image.
    """
    parts = [part.strip() for part in str(spec).split(",")]
    if len(parts) != 4 or not all(re.fullmatch(r"[+-]?\d+", part) for part in parts):
        raise InputError(f"zoom must be X,Y,W,H in pixels (four whole numbers, e.g. 10,20,32,32), got '{spec}'")
    box = (int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]))
    _check_box(box, size, shown=str(spec))
    return box


def _check_box(box: Sequence[int], size: tuple[int, int], *, shown: str | None = None) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in box)
    width, height = int(size[0]), int(size[1])
    shown = shown if shown is not None else f"{x},{y},{w},{h}"
    if w < 1 or h < 1:
        raise InputError(f"zoom box '{shown}' is empty; its width and height (the last two numbers) must be >= 1")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise InputError(
            f"zoom box '{shown}' is not inside the {width}x{height} image; "
            f"X and Y must be >= 0, X+W <= {width} and Y+H <= {height}"
        )
    return x, y, w, h


# ------------------------------------------------------------------------------------------------------ sheet


@dataclass(frozen=True)
class _Geometry:
    """Where everything goes: one cell per tile, all cells alike, laid out in rows."""

    columns: int
    rows: int
    cell_width: int
    image_size: tuple[int, int]  # the scaled image, centred horizontally in its cell
    band_height: int
    zoom_size: tuple[int, int] | None  # the enlarged crop, under the label band
    font_size: int

    @property
    def cell_height(self) -> int:
        zoom_height = self.zoom_size[1] if self.zoom_size else 0
        return self.image_size[1] + self.band_height + zoom_height

    @property
    def sheet_size(self) -> tuple[int, int]:
        return (
            self.columns * self.cell_width + (self.columns + 1) * _MARGIN,
            self.rows * self.cell_height + (self.rows + 1) * _MARGIN,
        )

    def cell_origin(self, index: int) -> tuple[int, int]:
        row, column = divmod(index, self.columns)
        return _MARGIN + column * (self.cell_width + _MARGIN), _MARGIN + row * (self.cell_height + _MARGIN)


def _fit_longer_side(size: tuple[int, int], longer: int) -> tuple[int, int]:
    scale = longer / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _font_size(tile_size: int) -> int:
    return max(10, round(tile_size / 20))


def _line_height(font_size: int) -> int:
    return round(font_size * 1.3)


def _geometry(
    count: int,
    image_size: tuple[int, int],
    *,
    columns: int | None,
    zoom: tuple[int, int, int, int] | None,
    tile_size: int,
    label_lines: int = 2,
) -> _Geometry:
    if count < 1:
        raise InputError("there are no tiles to draw; give at least one")
    if tile_size < _MIN_TILE_SIZE:
        raise InputError(f"tile size {tile_size} px is too small for the labels; use at least {_MIN_TILE_SIZE}")
    if columns is not None and columns < 1:
        raise InputError(f"a sheet needs at least one column, got {columns}")
    width, height = int(image_size[0]), int(image_size[1])
    if width < 1 or height < 1:
        raise InputError(f"cannot draw an empty {width}x{height} image")
    # Asking for more columns than tiles would only add blank space.
    columns = min(count, 6 if columns is None else columns)
    zoom_size = None
    if zoom is not None:
        _, _, zoom_width, zoom_height = _check_box(zoom, (width, height))
        zoom_size = _fit_longer_side((zoom_width, zoom_height), tile_size)
    font_size = _font_size(tile_size)
    return _Geometry(
        columns=columns,
        rows=math.ceil(count / columns),
        # The cell is as wide as the longest side, so a tall image still leaves room for its label.
        cell_width=tile_size,
        image_size=_fit_longer_side((width, height), tile_size),
        band_height=label_lines * _line_height(font_size) + 2 * _PAD,
        zoom_size=zoom_size,
        font_size=font_size,
    )


def sheet_layout(
    count: int,
    image_size: tuple[int, int],
    *,
    columns: int | None = None,
    zoom: tuple[int, int, int, int] | None = None,
    tile_size: int = 256,
) -> tuple[int, int, int, int]:
    """(sheet width, sheet height, columns, rows) that `contact_sheet` produces for `count` tiles of an image
    of `image_size` (width, height) with the same options.

    Columns default to min(count, 6) and are never more than `count`. Each cell is `tile_size` wide; its
    height is the scaled image, a label band of fixed height and, with `zoom`, the enlarged crop.
    """
    geometry = _geometry(count, image_size, columns=columns, zoom=zoom, tile_size=tile_size)
    return (*geometry.sheet_size, geometry.columns, geometry.rows)


def contact_sheet(
    tiles: Sequence[Tile],
    *,
    columns: int | None = None,
    zoom: tuple[int, int, int, int] | None = None,
    tile_size: int = 256,
) -> Image.Image:
    """A grid of labelled tiles, in reading order, as an RGB image.

    Each image is scaled so that its longer side is `tile_size` px: nearest-neighbour when enlarging, so that
    pixels and noise stay visible, Lanczos when shrinking. Under it, a band with the title and the caption.
    With `zoom` (x, y, w, h in image pixels), the box is outlined on every image and the crop is shown under
    the label, scaled the same way (longer side `tile_size`), because the differences between iterations live
    in the details. Columns default to min(len(tiles), 6); see `sheet_layout` for the size.

    Raises InputError when there are no tiles, the tiles differ in size, or the zoom box is not inside them.
    """
    pictures = _tile_pictures(tiles)
    geometry = _geometry(len(tiles), pictures[0].size, columns=columns, zoom=zoom, tile_size=tile_size)
    sheet = Image.new("RGB", geometry.sheet_size, _BACKGROUND)
    font = ImageFont.load_default(size=geometry.font_size)
    for index, (tile, picture) in enumerate(zip(tiles, pictures, strict=True)):
        sheet.paste(_cell(tile, picture, geometry, font, zoom), geometry.cell_origin(index))
    return sheet


def _cell(
    tile: Tile,
    picture: Image.Image,
    geometry: _Geometry,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    zoom: tuple[int, int, int, int] | None,
) -> Image.Image:
    cell = Image.new("RGB", (geometry.cell_width, geometry.cell_height), _BACKGROUND)
    scaled = _resized(picture, geometry.image_size)
    if zoom is not None:
        _outline(scaled, _scaled_box(zoom, picture.size, scaled.size), width=_zoom_line_width(geometry))
    image_left = (geometry.cell_width - scaled.width) // 2
    cell.paste(scaled, (image_left, 0))
    draw = ImageDraw.Draw(cell)
    line = _line_height(geometry.font_size)
    band_top = scaled.height + _PAD
    text_width = geometry.cell_width - 2 * _PAD
    draw.text((_PAD, band_top), _fitted(tile.title, font, text_width), font=font, fill=_TITLE_COLOUR)
    draw.text((_PAD, band_top + line), _fitted(tile.caption, font, text_width), font=font, fill=_CAPTION_COLOUR)
    if zoom is not None and geometry.zoom_size is not None:
        x, y, w, h = zoom
        crop = _resized(picture.crop((x, y, x + w, y + h)), geometry.zoom_size)
        # the same colour ties the crop to its box
        _outline(crop, (0, 0, crop.width - 1, crop.height - 1), width=_zoom_line_width(geometry))
        cell.paste(crop, ((geometry.cell_width - crop.width) // 2, scaled.height + geometry.band_height))
    return cell


def save_sheet(tiles: Sequence[Tile], path: str | Path, **options) -> Image.Image:
    """`contact_sheet(tiles, **options)` written to `path` (.png, .jpg/.jpeg or .webp); returns the sheet.

    Raises InputError for bad tiles or options and OutputError for an unknown suffix or a failed write.
    """
    path = Path(path)
    fmt = format_for(path, _SHEET_FORMATS, "a contact sheet")
    sheet = contact_sheet(tiles, **options)  # before opening the file, so bad tiles leave nothing behind
    with atomic_output(path) as tmp:
        try:
            sheet.save(tmp, format=fmt, **_SHEET_OPTIONS.get(fmt, {}))
        except OSError as e:
            raise OutputError(f"cannot write '{path}': {e}", path=path) from e
    return sheet


# -------------------------------------------------------------------------------------------------- animation


def save_animation(
    tiles: Sequence[Tile],
    path: str | Path,
    *,
    frame_ms: int = 400,
    last_frame_ms: int = 1500,
    tile_size: int = 256,
) -> int:
    """An animated GIF or WebP (from the suffix), one frame per tile in order, looping forever.

    Each frame is the tile's image scaled as on the sheet, over a small band with its title and the frame
    number ("3/12"). The number is also what keeps every frame: both Pillow's GIF writer and libwebp merge
    identical consecutive frames, which would silently drop a snapshot that did not change. The last frame is
    held for `last_frame_ms`. Returns the number of frames written, checked by reading the file back.

    Raises InputError for bad tiles or timings and OutputError for an unknown suffix or a failed write.
    """
    path = Path(path)
    fmt = format_for(path, _ANIMATION_FORMATS, "an animation")
    for name, value in (("frame_ms", frame_ms), ("last_frame_ms", last_frame_ms)):
        if value < _MIN_FRAME_MS:
            raise InputError(f"{name} is {value} ms; use at least {_MIN_FRAME_MS} (browsers slow shorter frames)")
    pictures = _tile_pictures(tiles)
    geometry = _geometry(len(tiles), pictures[0].size, columns=1, zoom=None, tile_size=tile_size, label_lines=1)
    font = ImageFont.load_default(size=geometry.font_size)
    frames = [
        _frame(tile, picture, f"{number}/{len(tiles)}", geometry, font)
        for number, (tile, picture) in enumerate(zip(tiles, pictures, strict=True), start=1)
    ]
    durations = [frame_ms] * (len(frames) - 1) + [last_frame_ms]
    options = {"quality": 90, "method": 4} if fmt == "WEBP" else {}
    with atomic_output(path) as tmp:
        try:
            frames[0].save(
                tmp,
                format=fmt,
                save_all=True,
                append_images=frames[1:],
                duration=durations,
                loop=0,
                **options,
            )
            with Image.open(tmp) as written:
                written_frames = getattr(written, "n_frames", 1)
        except OSError as e:
            raise OutputError(f"cannot write '{path}': {e}", path=path) from e
        if written_frames != len(frames):
            raise OutputError(
                f"cannot write '{path}': the encoder kept {written_frames} of {len(frames)} frames", path=path
            )
    return written_frames


def _frame(
    tile: Tile,
    picture: Image.Image,
    counter: str,
    geometry: _Geometry,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> Image.Image:
    frame = Image.new("RGB", (geometry.cell_width, geometry.cell_height), _BACKGROUND)
    scaled = _resized(picture, geometry.image_size)
    frame.paste(scaled, ((geometry.cell_width - scaled.width) // 2, 0))
    draw = ImageDraw.Draw(frame)
    top = scaled.height + _PAD
    counter_width = math.ceil(font.getlength(counter))
    counter_left = geometry.cell_width - _PAD - counter_width
    draw.text((counter_left, top), counter, font=font, fill=_CAPTION_COLOUR)
    title_width = counter_left - 3 * _PAD  # the left padding, and a gap of two before the counter
    draw.text((_PAD, top), _fitted(tile.title, font, title_width), font=font, fill=_TITLE_COLOUR)
    return frame


# ---------------------------------------------------------------------------------------------------- helpers


def _tile_pictures(tiles: Sequence[Tile]) -> list[Image.Image]:
    if not tiles:
        raise InputError("there are no tiles to draw; give at least one")
    pictures = [_rgb8(tile.image, tile.title) for tile in tiles]
    sizes = {picture.size for picture in pictures}
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
        raise InputError(f"all tiles must have the same image size, got {listed}")
    return pictures


def _rgb8(image: np.ndarray, title: str) -> Image.Image:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3) or 0 in array.shape:
        raise InputError(f"tile '{title}' must be an (H, W, 1) or (H, W, 3) image, got shape {array.shape}")
    array = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=0.0)  # a diverged snapshot still gets drawn
    quantised = np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    if quantised.shape[2] == 1:
        quantised = np.repeat(quantised, 3, axis=2)
    return Image.fromarray(quantised)


def _resized(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    if picture.size == size:
        return picture.copy()  # callers draw on the result
    enlarging = size[0] >= picture.width and size[1] >= picture.height
    return picture.resize(size, Image.Resampling.NEAREST if enlarging else Image.Resampling.LANCZOS)


def _scaled_box(
    box: tuple[int, int, int, int], original: tuple[int, int], scaled: tuple[int, int]
) -> tuple[int, int, int, int]:
    x, y, w, h = box
    sx, sy = scaled[0] / original[0], scaled[1] / original[1]
    # outward rounding, so that the line surrounds the boxed pixels rather than covering them
    left, top = math.floor(x * sx), math.floor(y * sy)
    right = min(scaled[0], math.ceil((x + w) * sx)) - 1
    bottom = min(scaled[1], math.ceil((y + h) * sy)) - 1
    return left, top, max(left, right), max(top, bottom)


def _zoom_line_width(geometry: _Geometry) -> int:
    return max(1, geometry.cell_width // 128)  # 2 px on the default 256 px tiles: thin, yet visible on noise


def _outline(picture: Image.Image, corners: tuple[int, int, int, int], *, width: int) -> None:
    ImageDraw.Draw(picture).rectangle(corners, outline=_ZOOM_COLOUR, width=width)


def _fitted(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """`text` cut to `width` px with an ellipsis, so that a long label never runs into the next tile."""
    text = " ".join(str(text).split())  # one line: a newline would draw over the caption
    if font.getlength(text) <= width:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits with the ellipsis
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle].rstrip() + "…") <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + "…" if low else ""
