"""dip.visuals: sheet geometry, zoom boxes, every animation frame kept, curves that survive odd values, a report
that refers to nothing outside itself, and no file (or temp file) left behind by a failed write."""

from __future__ import annotations

import math
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dip.curves import save_curves
from dip.errors import InputError, OutputError
from dip.report import save_report
from dip.visuals import (
    Tile,
    contact_sheet,
    parse_zoom,
    save_animation,
    save_sheet,
    sheet_layout,
)

H, W = 31, 37  # odd and not square: catches (H, W) / (W, H) mix-ups
SMALL = 64  # the smallest tile size: keeps the pictures, and the tests, small


def _image(seed: int = 0, h: int = H, w: int = W, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, channels), dtype=np.float32)


def _tiles(count: int, **size) -> list[Tile]:
    return [Tile(_image(i, **size), f"it {50 * i}", f"{20 + i:.2f} dB · SSIM 0.8{i}") for i in range(count)]


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}  # hidden temp files included


# ------------------------------------------------------------------------------------------------------ sheet


def test_sheet_size_is_the_layouts_and_encodes_the_tile_count():
    tiles = _tiles(7)
    width, height, columns, rows = sheet_layout(7, (W, H), columns=3, tile_size=SMALL)
    assert (columns, rows) == (3, 3)
    sheet = contact_sheet(tiles, columns=3, tile_size=SMALL)
    assert sheet.mode == "RGB"
    assert sheet.size == (width, height)

    # one more row is one more cell height, so the height gives the number of rows back
    one_row = sheet_layout(3, (W, H), columns=3, tile_size=SMALL)
    two_rows = sheet_layout(4, (W, H), columns=3, tile_size=SMALL)
    cell_and_margin = two_rows[1] - one_row[1]
    assert (height - one_row[1]) / cell_and_margin == rows - 1


def test_sheet_default_columns_and_more_columns_than_tiles():
    assert sheet_layout(4, (W, H), tile_size=SMALL)[2:] == (4, 1)
    assert sheet_layout(13, (W, H), tile_size=SMALL)[2:] == (6, 3)
    assert sheet_layout(2, (W, H), columns=5, tile_size=SMALL) == sheet_layout(2, (W, H), columns=2, tile_size=SMALL)
    assert contact_sheet(_tiles(2), columns=5, tile_size=SMALL).size == sheet_layout(2, (W, H), tile_size=SMALL)[:2]


def test_zoom_makes_the_sheet_taller_and_is_drawn():
    tiles = [Tile(np.full((H, W, 1), 0.5, np.float32), "gray"), Tile(np.full((H, W, 3), 0.2, np.float32), "dark")]
    plain = contact_sheet(tiles, tile_size=SMALL)
    box = (5, 4, 10, 8)
    zoomed = contact_sheet(tiles, zoom=box, tile_size=SMALL)
    assert zoomed.size == sheet_layout(2, (W, H), zoom=box, tile_size=SMALL)[:2]
    assert zoomed.width == plain.width and zoomed.height > plain.height
    # gray tiles and black-on-white labels contain no saturated colour; the zoom outlines do
    saturated = lambda im: int((np.ptp(np.asarray(im, dtype=np.int16), axis=2) > 150).sum())  # noqa: E731
    assert saturated(plain) == 0
    assert saturated(zoomed) > 0


def test_enlarging_is_nearest_neighbour_so_pixels_stay_sharp():
    checker = (np.indices((16, 16)).sum(axis=0) % 2).astype(np.float32)[..., None]
    sheet = np.asarray(contact_sheet([Tile(checker, "checker")], tile_size=SMALL))
    image = sheet[8 : 8 + SMALL, 8 : 8 + SMALL]  # the first cell starts after one margin
    assert set(np.unique(image)) == {0, 255}  # no blended grays
    assert (image[::4, ::4, 0] == np.asarray(checker[..., 0] * 255, np.uint8)).all()


def test_out_of_range_and_nan_pixels_are_clipped_not_fatal():
    wild = _image() * 3 - 1
    wild[0, 0] = np.nan
    assert contact_sheet([Tile(wild, "diverged")], tile_size=SMALL).mode == "RGB"


def test_sheet_rejects_tiles_of_different_sizes_and_no_tiles():
    with pytest.raises(InputError, match="same image size"):
        contact_sheet([Tile(_image(0), "a"), Tile(_image(1, h=H + 1), "b")], tile_size=SMALL)
    with pytest.raises(InputError, match="no tiles"):
        contact_sheet([], tile_size=SMALL)
    with pytest.raises(InputError, match="not inside"):
        contact_sheet(_tiles(2), zoom=(30, 0, 10, 10), tile_size=SMALL)


def test_save_sheet_writes_the_sheet(tmp_path):
    sheet = save_sheet(_tiles(3), tmp_path / "sheet.png", columns=2, tile_size=SMALL)
    with Image.open(tmp_path / "sheet.png") as written:
        assert written.format == "PNG" and written.size == sheet.size
    assert _names(tmp_path) == {"sheet.png"}


@pytest.mark.parametrize(
    ("name", "tiles", "error"),
    [
        ("sheet.tga", _tiles(2), OutputError),
        ("sheet.png", [Tile(_image(0), "a"), Tile(_image(1, w=W + 1), "b")], InputError),
    ],
)
def test_failed_save_sheet_leaves_nothing(tmp_path, name, tiles, error):
    with pytest.raises(error):
        save_sheet(tiles, tmp_path / name, tile_size=SMALL)
    assert _names(tmp_path) == set()


# ------------------------------------------------------------------------------------------------------- zoom


def test_parse_zoom_accepts_a_box_inside_the_image():
    assert parse_zoom("10,20,8,4", (W, H)) == (10, 20, 8, 4)
    assert parse_zoom(" 0, 0, 37, 31 ", (W, H)) == (0, 0, W, H)  # the whole image is a valid box


@pytest.mark.parametrize("spec", ["", "1,2,3", "1,2,3,4,5", "a,b,c,d", "1.5,2,3,4", "1;2;3;4"])
def test_parse_zoom_rejects_malformed_text(spec):
    with pytest.raises(InputError, match="X,Y,W,H"):
        parse_zoom(spec, (W, H))


@pytest.mark.parametrize("spec", ["0,0,0,4", "0,0,4,-1"])
def test_parse_zoom_rejects_empty_boxes(spec):
    with pytest.raises(InputError, match="empty"):
        parse_zoom(spec, (W, H))


@pytest.mark.parametrize("spec", ["30,0,8,4", "0,28,4,4", "-1,0,4,4", "0,0,38,31"])
def test_parse_zoom_rejects_boxes_outside_and_says_the_image_size(spec):
    with pytest.raises(InputError, match=f"{W}x{H}"):
        parse_zoom(spec, (W, H))


# -------------------------------------------------------------------------------------------------- animation


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animation_keeps_every_frame_even_identical_ones(tmp_path, suffix):
    tiles = _tiles(3)
    # the same pixels and title twice in a row: both encoders would merge these two frames into one
    tiles = [tiles[0], tiles[1], tiles[1], Tile(tiles[1].image, tiles[1].title), tiles[2]]
    path = tmp_path / f"animation{suffix}"
    assert save_animation(tiles, path, frame_ms=100, last_frame_ms=700, tile_size=SMALL) == 5
    with Image.open(path) as written:
        assert written.n_frames == 5
        assert written.info.get("loop") == 0  # forever
        durations = []
        for index in range(written.n_frames):
            written.seek(index)
            written.load()  # WebP sets a frame's duration when it decodes it
            durations.append(written.info["duration"])
    assert durations == [100, 100, 100, 100, 700]
    assert _names(tmp_path) == {path.name}


def test_animation_of_one_tile(tmp_path):
    assert save_animation(_tiles(1), tmp_path / "one.gif", tile_size=SMALL) == 1


@pytest.mark.parametrize(
    ("name", "options", "error"),
    [
        ("animation.mp4", {}, OutputError),
        ("animation.gif", {"frame_ms": 5}, InputError),
    ],
)
def test_failed_animation_leaves_nothing(tmp_path, name, options, error):
    with pytest.raises(error):
        save_animation(_tiles(2), tmp_path / name, tile_size=SMALL, **options)
    assert _names(tmp_path) == set()


# ----------------------------------------------------------------------------------------------------- curves


def _losses(steps: int = 120) -> list[float]:
    losses = list(np.exp(-np.linspace(0, 4, steps)) + 1e-3)
    losses[5] = 0.0  # a perfect fit of the data: log scale must not choke on it
    losses[9] = float("nan")
    return losses


def _statistics(steps: int = 120, window: int = 20) -> list[float]:
    return [math.nan] * window + list(np.exp(-np.linspace(0, 2, steps - window)))


def _height(path: Path) -> int:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.height


def test_curves_with_every_panel_and_with_the_loss_only(tmp_path):
    full = tmp_path / "full.png"
    save_curves(
        full,
        losses=_losses(),
        statistics=_statistics(),
        statistic_name="windowed variance",
        psnr=[(it, 20 + it / 20) for it in range(1, 121, 10)] + [(121, math.inf)],
        returned_iteration=80,
        peak_iteration=90,
        snapshot_iterations=[25, 50, 100],
    )
    loss_only = tmp_path / "loss.png"
    save_curves(loss_only, losses=_losses())
    assert _height(full) > _height(loss_only)
    assert _names(tmp_path) == {"full.png", "loss.png"}


def test_curves_leave_out_a_statistic_that_is_never_defined(tmp_path):
    save_curves(tmp_path / "loss.png", losses=_losses())
    save_curves(tmp_path / "nan.png", losses=_losses(), statistics=[math.nan] * 120, returned_iteration=3)
    save_curves(tmp_path / "empty.png", losses=_losses(), statistics=[])
    assert _height(tmp_path / "nan.png") == _height(tmp_path / "loss.png") == _height(tmp_path / "empty.png")


def test_curves_of_a_loss_that_is_zero_throughout(tmp_path):
    save_curves(tmp_path / "zero.png", losses=[0.0, 0.0, 0.0])
    assert _height(tmp_path / "zero.png") > 0


def test_curves_fail_cleanly(tmp_path):
    with pytest.raises(InputError, match="no loss"):
        save_curves(tmp_path / "none.png", losses=[])
    with pytest.raises(OutputError, match="unknown type"):
        save_curves(tmp_path / "curves.bmp", losses=_losses())
    assert _names(tmp_path) == set()


# ----------------------------------------------------------------------------------------------------- report


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.references: list[tuple[str, str, str]] = []  # (tag, attribute, value) for every src/href
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.references += [(tag, name, value or "") for name, value in attrs if name in ("src", "href")]

    def handle_data(self, data):
        self.text.append(data)


def _pictures(folder: Path) -> list[tuple[str, Path]]:
    save_sheet(_tiles(2), folder / "sheet.png", tile_size=SMALL)
    save_animation(_tiles(2), folder / "animation.gif", tile_size=SMALL)
    save_animation(_tiles(2), folder / "animation.webp", tile_size=SMALL)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "photo.jpeg")
    return [
        ("The contact sheet", folder / "sheet.png"),
        ("The snapshots <in order>", folder / "animation.gif"),
        ("Same, as WebP", folder / "animation.webp"),
        ("A photo", folder / "photo.jpeg"),
    ]


def test_report_is_one_self_contained_page(tmp_path):
    images = _pictures(tmp_path)
    path = tmp_path / "run.report.html"
    save_report(
        path,
        title="dip: <noisy>.png -> out.png",
        images=images,
        settings={"net": {"depth": 5, "channels": [16, 32]}, "lr": 0.01, "mask": None, "note": "a & b"},
        metrics={"psnr": 27.3141, "ssim": 0.812, "best_iteration": 840},
        notes=["The run was interrupted: <this> is the best image up to that point."],
    )
    page = path.read_text(encoding="utf-8")
    collector = _Collector()
    collector.feed(page)
    collector.close()
    text = " ".join(collector.text)

    assert page.startswith("<!DOCTYPE html>")
    assert "dip: <noisy>.png -> out.png" in text and "<noisy>" not in page  # escaped, shown as typed
    for expected in ("27.3141", "0.812", "840", "depth", "16, 32", "0.01", "a & b", "interrupted: <this>"):
        assert expected in text
    assert collector.tags.count("img") == len(images)
    mimes = [value.split(";")[0] for tag, name, value in collector.references]
    assert mimes == ["data:image/png", "data:image/gif", "data:image/webp", "data:image/jpeg"]
    assert all(name == "src" and tag == "img" for tag, name, _ in collector.references)  # no href at all
    assert "src=" not in page.replace('<img src="data:image/', "")
    assert "href=" not in page
    assert _names(tmp_path) == {path.name} | {p.name for _, p in images}


@pytest.mark.parametrize("picture", ["missing.png", "clip.mp4"])
def test_report_with_a_bad_picture_leaves_nothing(tmp_path, picture):
    (tmp_path / "clip.mp4").write_bytes(b"not a picture")
    with pytest.raises(InputError, match="cannot embed"):
        save_report(tmp_path / "r.html", title="t", images=[("x", tmp_path / picture)], settings={}, metrics={})
    assert _names(tmp_path) == {"clip.mp4"}


# ------------------------------------------------------------------------------------------------- import cost


def test_importing_visuals_loads_neither_matplotlib_nor_torch():
    code = "import sys, dip.visuals; print(sorted({'matplotlib', 'torch'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
