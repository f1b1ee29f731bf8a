"""dip mask: every way of making a mask, on small synthetic images, and its warnings and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dip.io import Picture, read_image, write_image

from conftest import run, small_image


def _photo(size: int = 40) -> np.ndarray:
    return small_image(size) * 0.6 + 0.2  # no pure black, white or red in it


def _save(path, pixels, alpha=None):
    write_image(path, Picture(pixels.astype(np.float32), alpha, 8, "RGB", None))
    return path


def _holes(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) < 128


def _stroke(size: int = 40) -> np.ndarray:
    where = np.zeros((size, size), bool)
    where[10:13, 5:30] = True
    where[20:30, 25:28] = True
    return where


def test_a_copy_painted_in_a_colour_gives_the_strokes_as_holes(capsys, tmp_path):
    painted = _photo()
    painted[_stroke()] = (1.0, 0.0, 0.0)
    _save(tmp_path / "painted.png", painted)
    code, out, err = run(capsys, "mask", tmp_path / "painted.png", "--color", "red", "--preview", tmp_path / "p.png")
    assert code == 0, err
    np.testing.assert_array_equal(_holes(tmp_path / "painted_mask.png"), _stroke())
    assert "to fill in (--color)" in out
    shown = read_image(tmp_path / "p.png").pixels
    assert shown.shape == (40, 40, 3) and np.allclose(shown[~_stroke()], painted[~_stroke()], atol=1 / 255)
    # saved as JPEG the stroke's colour bleeds (chroma is stored at half resolution): --grow takes its edges
    Image.fromarray((painted * 255).round().astype(np.uint8)).save(tmp_path / "painted.jpg", quality=90)
    code, out, err = run(capsys, "mask", tmp_path / "painted.jpg", "--color", "#ff0000", "--grow", "2", "-o",
                         tmp_path / "j.png")  # fmt: skip
    assert code == 0, err
    holes = _holes(tmp_path / "j.png")
    assert holes[_stroke()].all() and holes.sum() < 3 * _stroke().sum()


def test_a_painted_copy_beside_its_original_gives_what_changed(capsys, tmp_path):
    photo = _photo()
    painted = photo.copy()
    painted[_stroke()] = (0.0, 1.0, 0.0)  # any colour unlike the photo's: what matters is the change
    _save(tmp_path / "photo.png", photo)
    _save(tmp_path / "painted.png", painted)
    code, out, err = run(capsys, "mask", tmp_path / "painted.png", "--original", tmp_path / "photo.png", "-o",
                         tmp_path / "m.png")  # fmt: skip
    assert code == 0, err
    np.testing.assert_array_equal(_holes(tmp_path / "m.png"), _stroke())


@pytest.mark.parametrize("option, value, level", [("--above", "240", 1.0), ("--below", "15", 0.0)])
def test_bright_or_dark_marks_are_the_holes(capsys, tmp_path, option, value, level):
    marked = _photo()
    marked[_stroke()] = level
    _save(tmp_path / "marked.png", marked)
    code, out, err = run(capsys, "mask", tmp_path / "marked.png", option, value)
    assert code == 0, err
    np.testing.assert_array_equal(_holes(tmp_path / "marked_mask.png"), _stroke())


def test_transparent_pixels_are_the_holes_and_grow_widens_them(capsys, tmp_path):
    alpha = np.ones((40, 40), np.float32)
    alpha[20, 20] = 0.0
    _save(tmp_path / "cut.png", _photo(), alpha)
    code, out, err = run(capsys, "mask", tmp_path / "cut.png", "--from-alpha", "--grow", "2", "--json")
    assert code == 0, err
    holes = _holes(tmp_path / "cut_mask.png")
    y, x = np.nonzero(holes)
    assert holes.sum() == 13 and ((y - 20) ** 2 + (x - 20) ** 2 <= 4).all()  # the disc of radius 2
    assert '"holes": 13' in out


def test_a_mask_with_no_hole_or_nearly_no_known_pixel_gets_a_warning(capsys, tmp_path):
    _save(tmp_path / "photo.png", _photo())
    code, out, err = run(capsys, "mask", tmp_path / "photo.png", "--color", "red", "-o", tmp_path / "none.png")
    assert code == 0 and "warning: the mask has no hole" in err
    code, out, err = run(capsys, "mask", tmp_path / "photo.png", "--above", "1", "-o", tmp_path / "all.png")
    assert code == 0 and "warning: the mask marks 100% of the pixels as missing" in err


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give one of --color, --original, --above, --below and --from-alpha (got none)"),
        (["--color", "red", "--above", "200"], "(got --color and --above)"),
        (["--color", "ochre"], "--color 'ochre' is neither #RRGGBB nor one of"),
        (["--above", "300"], "--above is a gray level from 0 to 255, not 300"),
        (["--above", "200", "--tolerance", "5"], "--tolerance applies to --color and --original"),
        (["--from-alpha"], "--from-alpha needs an image with transparency"),
        (["--color", "red", "--grow", "-1"], "--grow must be 0 or more pixels"),
        (["--original", "{small}"], "the painted copy is 40x40 but the original is 20x20"),
    ],
)
def test_impossible_requests_are_one_line_errors(capsys, tmp_path, args, message):
    _save(tmp_path / "photo.png", _photo())
    _save(tmp_path / "small.png", _photo(20))
    args = [a.format(small=tmp_path / "small.png") for a in args]
    code, out, err = run(capsys, "mask", tmp_path / "photo.png", "-o", tmp_path / "m.png", *args)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "m.png").exists()


def test_holes_made_from_transparency_come_back_filled_and_opaque(capsys, tmp_path):
    alpha = np.ones((40, 40), np.float32)
    alpha[_stroke()] = 0.0
    _save(tmp_path / "erased.png", _photo(), alpha)
    code, out, err = run(capsys, "mask", tmp_path / "erased.png", "--from-alpha", "-o", tmp_path / "m.png")
    assert code == 0, err
    code, out, err = run(capsys, "restore", tmp_path / "erased.png", "--mask", tmp_path / "m.png", "-o",
                         tmp_path / "out.png", "--iters", "5", "-q")  # fmt: skip
    assert code == 0, err
    restored = read_image(tmp_path / "out.png")
    assert (restored.alpha[_stroke()] == 1).all()  # the fill is shown, not hidden behind the old transparency
    np.testing.assert_array_equal(restored.alpha[~_stroke()], alpha[~_stroke()])
