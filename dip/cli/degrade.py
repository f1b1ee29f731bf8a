"""``dip degrade``: a corrupted test image made from a clean one, with its settings beside it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .options import JsonOption, check_output, emit, existing_file


def degrade(
    clean: Annotated[Path, typer.Argument(help="The clean image to corrupt.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the corrupted image.")],
    noise: Annotated[float | None, typer.Option(help="Add Gaussian noise of this sigma (0-255 scale).")] = None,
    drop: Annotated[float | None, typer.Option(help="Black out this fraction of pixels at random (0-1).")] = None,
    mask_out: Annotated[
        Path | None, typer.Option(help="With --drop: where to write the mask [default: <output stem>_mask.png].")
    ] = None,
    jpeg: Annotated[int | None, typer.Option(help="Compress with JPEG at this quality (1-95).")] = None,
    downscale: Annotated[
        int | None,
        typer.Option(help="Make the low-resolution input of super-resolution: N times smaller, with dip's own "
                     "downsampler (--noise may be added)."),  # fmt: skip
    ] = None,
    blur: Annotated[
        str | None,
        typer.Option(help="Blur with gaussian:SIGMA | motion:LENGTH,ANGLE | box:N | a kernel image (--noise may "
                     "be added)."),  # fmt: skip
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random corruption.")] = 0,
    as_json: JsonOption = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
) -> None:
    """Make a corrupted test image from a clean one (noise, missing pixels, JPEG, a smaller or a blurred copy),
    with its settings beside it."""
    options = (("--noise", noise), ("--drop", drop), ("--jpeg", jpeg), ("--downscale", downscale), ("--blur", blur))
    chosen = [name for name, value in options if value is not None]
    # noise goes on top of a downscaled or blurred image, as a camera adds it after the optics
    with_noise = len(chosen) == 2 and chosen[0] == "--noise" and chosen[1] in ("--downscale", "--blur")
    if len(chosen) != 1 and not with_noise:
        raise UsageError(
            "give one of --noise SIGMA, --drop P, --jpeg Q, --downscale N, --blur SPEC (--noise may go with the last "
            "two)" + (f"; got {', '.join(chosen)}" if chosen else "")
        )
    if mask_out is not None and drop is None:
        raise UsageError("--mask-out only goes with --drop")
    existing_file(clean, "input")
    if drop is not None and mask_out is None:
        mask_out = output.with_name(f"{output.stem}_mask.png")
    outputs = [output] + ([mask_out] if mask_out is not None else [])
    for path in outputs:
        check_output(path, [clean], overwrite=overwrite)
    if mask_out is not None and mask_out.resolve() == output.resolve():
        raise UsageError("--mask-out must differ from the output")

    import numpy as np

    from .. import degradations
    from ..io import Picture, atomic_output, read_image, write_image
    from ..metrics import psnr
    from ..report import write_sidecar

    picture = read_image(clean)
    rng = np.random.default_rng(seed)
    record: dict = {"input": str(clean), "output": str(output), "seed": seed}
    if downscale is not None or blur is not None:
        _through_operator(picture, clean, output, downscale, blur, noise, rng, record, overwrite=overwrite)
        emit(record, as_json, f"{clean} -> {output}: {record['corruption']['kind']}"
             + ("" if record["psnr"] is None else f", PSNR {record['psnr']:.2f} dB"))  # fmt: skip
        return
    if noise is not None:
        corrupted = degradations.add_gaussian_noise(picture.pixels, noise, rng)
        record["corruption"] = {"kind": "gaussian", "sigma": noise}
        write_image(output, picture.with_pixels(corrupted))
    elif drop is not None:
        corrupted, known = degradations.drop_pixels(picture.pixels, drop, rng)
        record["corruption"] = {"kind": "drop", "fraction": drop, "known_fraction": round(float(known.mean()), 6)}
        record["mask"] = str(mask_out)
        mask_picture = Picture(known[..., None].astype(np.float32), None, 8, "L", None)
        write_image(mask_out, mask_picture)
        write_image(output, picture.with_pixels(corrupted))
    else:
        record["corruption"] = {"kind": "jpeg", "quality": jpeg}
        if output.suffix.lower() in (".jpg", ".jpeg"):
            # A real JPEG file at quality q: re-encoding the decoded pixels at another quality would add artifacts.
            data = degradations.jpeg_bytes(picture.pixels, jpeg)
            with atomic_output(output) as temporary:
                temporary.write_bytes(data)
        else:
            write_image(output, picture.with_pixels(degradations.jpeg_compress(picture.pixels, jpeg)))
    # Scored as written (quantised to the file's bit depth), so it matches what `restore` reports as input_psnr.
    record["psnr"] = round(psnr(read_image(output).pixels, picture.pixels), 4)
    write_sidecar(output, record)
    emit(record, as_json, f"{clean} -> {output}: {record['corruption']['kind']}, PSNR {record['psnr']:.2f} dB")


def _through_operator(picture, clean: Path, output: Path, downscale, blur, noise, rng, record, *, overwrite) -> None:
    """A super-resolution or deblurring input, made with the operator the fit inverts (and noise on top)."""
    from .. import degradations
    from ..io import read_image, write_image
    from ..metrics import psnr
    from ..operators import SCALES, Blur, Downsample, blur_kernel
    from ..report import write_sidecar

    pixels = picture.pixels
    if downscale is not None:
        if downscale not in SCALES:
            raise UsageError(f"--downscale must be a whole number from {SCALES[0]} to {SCALES[-1]}, not {downscale}")
        operator = Downsample(downscale)
        pixels, box = degradations.crop_to_multiple(pixels, downscale)
        if min(pixels.shape[:2]) < 2 * downscale:
            width, height = picture.size
            raise UsageError(f"--downscale {downscale} leaves less than 2x2 pixels of the {width}x{height} image")
        record["corruption"] = {"kind": "downscale", "scale": downscale}
        x, y, w, h = box
        alpha = None if picture.alpha is None else picture.alpha[y : y + h, x : x + w]
        if pixels.shape != picture.pixels.shape:
            # the clean image the output is N times smaller than, for --reference
            cropped = output.with_name(f"{output.stem}_reference.png")
            check_output(cropped, [clean], overwrite=overwrite)
            picture = dataclasses.replace(picture, pixels=pixels, alpha=alpha)
            write_image(cropped, picture)
            record["corruption"].update(crop=list(box), reference=str(cropped))
    else:
        operator = Blur(blur_kernel(blur), blur)
        operator.check(*pixels.shape[:2])
        record["corruption"] = {"kind": "blur", "blur": blur, "kernel_size": list(operator.kernel.shape)}
    corrupted = degradations.through_operator(pixels, operator)
    if noise is not None:
        corrupted = degradations.add_gaussian_noise(corrupted, noise, rng)
        record["corruption"]["sigma"] = noise
    write_image(output, picture.with_pixels(corrupted))  # alpha resized with the picture, from the crop
    record["psnr"] = None if downscale is not None else round(psnr(read_image(output).pixels, picture.pixels), 4)
    write_sidecar(output, record)
