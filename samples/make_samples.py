"""Makes the sample images from photographs that ship inside scikit-image, with their corrupted versions.

    python samples/make_samples.py

Deterministic: the same files every time (fixed crops, seeds and Pillow's built-in font).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import data, transform

from dip.degradations import add_gaussian_noise, jpeg_bytes, through_operator
from dip.io import Picture, write_image
from dip.operators import Blur, blur_kernel

HERE = Path(__file__).resolve().parent
SIZE = 160


def _square(image: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    crop = image[top : top + side, left : left + side].astype(np.float32) / 255.0
    return transform.resize(crop, (SIZE, SIZE), anti_aliasing=True).astype(np.float32)


def _picture(pixels: np.ndarray) -> Picture:
    return Picture(pixels, None, 8, "RGB", None)


def _text_mask(seed: int) -> np.ndarray:
    """Captions and scratches drawn over the image: True = known pixel."""
    canvas = Image.new("L", (SIZE, SIZE), 255)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=15)
    for row, words in enumerate(["Deep Image", "Prior 2018", "no training", "data needed"]):
        draw.text((10, 12 + 37 * row), words, fill=0, font=font)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, SIZE, 4))
        draw.line((x0, y0, x1, y1), fill=0, width=2)
    return np.asarray(canvas) > 127


def main() -> None:
    astronaut = _square(data.astronaut(), 20, 120, 280)
    chelsea = _square(data.chelsea(), 20, 60, 280)
    coffee = _square(data.coffee(), 40, 180, 340)

    write_image(HERE / "astronaut.png", _picture(astronaut))
    noisy = add_gaussian_noise(astronaut, 25, np.random.default_rng(0))
    write_image(HERE / "astronaut_noisy25.png", _picture(noisy))

    write_image(HERE / "chelsea.png", _picture(chelsea))
    (HERE / "chelsea_q10.jpg").write_bytes(jpeg_bytes(chelsea, 10))
    # a quarter of the size, made as a user's small image is made: Pillow's bicubic downscaling, 8 bits
    small = Image.fromarray(np.round(chelsea * 255).astype(np.uint8)).resize((SIZE // 4,) * 2, Image.Resampling.BICUBIC)
    small.save(HERE / "chelsea_x4.png")

    # a known blur (gaussian, sigma 2 px) with a little sensor noise on top (sigma 2 on the 0-255 scale)
    blurred = through_operator(astronaut, Blur(blur_kernel("gaussian:2")))
    write_image(HERE / "astronaut_blur2.png", _picture(add_gaussian_noise(blurred, 2, np.random.default_rng(1))))

    write_image(HERE / "coffee.png", _picture(coffee))
    known = _text_mask(seed=0)
    write_image(HERE / "coffee_text.png", _picture(coffee * known[..., None]))
    write_image(HERE / "coffee_text_mask.png", Picture(known[..., None].astype(np.float32), None, 8, "L", None))


if __name__ == "__main__":
    main()
