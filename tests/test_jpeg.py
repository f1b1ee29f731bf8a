"""What a JPEG file says about its picture: the coding read from the file, the quantisation intervals recovered from
the decoded pixels, the projection onto them, the finishing step and its guard."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dip import jpeg
from dip.api import restore
from dip.io import read_image
from dip.metrics import psnr
from dip.operators import Decoded, Identity
from dip.pipeline import prepare
from dip.tiles import Box

from conftest import small_image


def _encoded(pixels: np.ndarray, quality: int, **options) -> Image.Image:
    eight_bit = np.round(pixels * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(eight_bit[..., 0] if pixels.shape[2] == 1 else eight_bit).save(
        buffer, "JPEG", quality=quality, **options
    )
    buffer.seek(0)
    return Image.open(buffer)


def _decoded(image: Image.Image, channels: int) -> np.ndarray:
    return (np.asarray(image, np.float32) / 255).reshape(image.height, image.width, channels)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]


@pytest.mark.parametrize(
    ("gray", "subsampling", "described"), [(False, None, "4:2:0"), (False, 0, "4:4:4"), (True, None, "gray")]
)
def test_the_coding_is_read_from_the_file(gray, subsampling, described):
    options = {} if subsampling is None else {"subsampling": subsampling}
    image = _encoded(small_image(32, gray=gray), 50, **options)
    coding = jpeg.coding_of(image)
    assert coding.describe() == described
    # quality 50 is the standard tables themselves, in natural order
    assert coding.tables[0][0].tolist() == [16, 11, 10, 16, 24, 40, 51, 61]
    if not gray:
        assert coding.tables[1][0].tolist() == [17, 18, 24, 47, 99, 99, 99, 99]


def test_a_png_has_no_coding():
    assert jpeg.coding_of(Image.fromarray(np.zeros((8, 8, 3), np.uint8))) is None


@pytest.mark.parametrize(("gray", "quality"), [(False, 10), (False, 30), (True, 20)])
def test_the_intervals_from_the_decoded_pixels_are_the_files(gray, quality):
    """The encoder's own coefficients of the clean image, rounded to the steps, are the centres recovered from the
    decoded pixels alone, for nearly every coefficient (a few sit on a rounding boundary)."""
    clean = small_image(64, gray=gray)
    eight_bit = np.round(clean * 255) / 255
    image = _encoded(clean, quality)
    planes = jpeg.planes_of(_decoded(image, clean.shape[2]), jpeg.coding_of(image))
    x = _tensor(eight_bit).double()
    for component, plane in enumerate(planes):
        coded = torch.round(jpeg.coefficients(x, plane, component) / plane.steps.double()) * plane.steps.double()
        assert (coded == plane.centres.double()).float().mean() > 0.99


def test_a_projected_image_is_inside_the_intervals_and_the_decoded_one_stays_put():
    clean = small_image(64)
    image = _encoded(clean, 10)
    decoded = _decoded(image, 3)
    planes = jpeg.planes_of(decoded, jpeg.coding_of(image))
    smooth = torch.full((1, 3, 64, 64), 0.5)
    projected = jpeg.project(smooth, planes)
    for component, plane in enumerate(planes):
        distance = (jpeg.coefficients(projected.double(), plane, component) - plane.centres.double()).abs()
        inside = distance <= plane.steps.double() / 2 + 1.0  # clipping to [0, 1] may move a few a little
        assert inside.float().mean() > 0.99
    assert (jpeg.project(_tensor(decoded), planes) - _tensor(decoded)).abs().max() < 2 / 255


def test_blockiness_tells_a_jpeg_from_its_original():
    clean = small_image(64)
    decoded = _decoded(_encoded(clean, 10), 3)
    assert jpeg.blockiness(_tensor(decoded)) > jpeg.blockiness(_tensor(clean)) + 0.5
    assert np.isnan(jpeg.blockiness(torch.zeros(1, 1, 8, 8)))


def test_finishing_a_smooth_pilot_beats_the_file_and_the_pilot():
    clean = small_image(64)
    image = _encoded(clean, 10)
    decoded = _tensor(_decoded(image, 3))
    planes = jpeg.planes_of(_decoded(image, 3), jpeg.coding_of(image))
    from kornia.filters import gaussian_blur2d

    pilot = gaussian_blur2d(decoded, (5, 5), (1.0, 1.0), border_type="reflect")  # deblocked, and too soft
    done = jpeg.finish(decoded, pilot, planes)
    assert not done.kept_input and done.sigma > 0
    assert psnr(done.image, clean) > psnr(decoded, clean) + 0.3
    assert psnr(done.image, clean) > psnr(pilot, clean) + 0.3
    assert done.blockiness[1] < done.blockiness[0]


def test_the_guard_returns_the_input_when_the_result_is_blockier():
    clean = small_image(64)
    image = _encoded(clean, 30)
    decoded = _tensor(_decoded(image, 3))
    planes = jpeg.planes_of(_decoded(image, 3), jpeg.coding_of(image))
    steps = torch.zeros(1, 1, 64, 64)
    steps[..., (torch.arange(64) // 8) % 2 == 1, :] = 0.25  # every other block row brighter: blocks, not a picture
    steps[..., :, (torch.arange(64) // 8) % 2 == 1] += 0.25
    done = jpeg.finish(decoded, (decoded * 0.5 + steps).clamp(0, 1), planes, filtered=False)
    assert done.kept_input
    assert torch.equal(done.image, decoded)


def test_a_jpeg_file_is_restored_past_its_input(tmp_path):
    clean = small_image(64)
    path = tmp_path / "photo.jpg"
    path.write_bytes(_encoded_bytes(clean, 10))
    picture = read_image(path)
    assert picture.jpeg.describe() == "4:2:0"
    restoration = restore(path, iterations=150, seed=0)
    record = restoration.record()
    assert record["task"] == "jpeg" and record["jpeg_coding"] == "4:2:0"
    assert record["refinement"]["kept_input"] is False
    assert psnr(restoration.picture.pixels, clean) > psnr(picture.pixels, clean) + 0.3
    assert psnr(restoration.picture.pixels, clean) > psnr(restoration.fitted, clean)


def _encoded_bytes(pixels: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_a_turned_jpeg_and_a_tile_are_fitted_plainly(tmp_path):
    clean = small_image(32)
    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: its blocks are not on the shown picture's grid
    Image.fromarray(np.round(clean * 255).astype(np.uint8)).save(path, "JPEG", quality=20, exif=exif.tobytes())
    assert read_image(path).jpeg is None
    assert isinstance(prepare(path).observation.operator, Identity)
    upright = tmp_path / "upright.jpg"
    upright.write_bytes(_encoded_bytes(clean, 20))
    operator = prepare(upright).observation.operator
    assert isinstance(operator, Decoded)
    assert type(operator.crop(Box(0, 0, 16, 16))) is Identity
