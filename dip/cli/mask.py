"""``dip mask``: an inpainting mask (white = known) from a painted copy, a painted copy and its original, bright or
dark marks, or transparency; with a preview to check it before a long fit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .options import JsonOption, check_output, emit, existing_file


def mask(
    image: Annotated[
        Path, typer.Argument(help="The painted copy (or, with --above/--below/--from-alpha, the photo).")
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Where to write the mask [default: <stem>_mask.png].")
    ] = None,
    color: Annotated[
        str | None, typer.Option(help="The damage is painted in this colour: red | #RRGGBB | another name.")
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(help="Levels (0-255) a pixel may stray from --color [60] or differ from --original [24]."),
    ] = None,
    original: Annotated[
        Path | None, typer.Option(help="The photo before painting: holes where the painted copy differs from it.")
    ] = None,
    above: Annotated[float | None, typer.Option(help="Holes where the gray level (0-255) is above V.")] = None,
    below: Annotated[float | None, typer.Option(help="Holes where the gray level (0-255) is below V.")] = None,
    from_alpha: Annotated[bool, typer.Option("--from-alpha", help="Holes where the image is transparent.")] = False,
    grow: Annotated[int, typer.Option(help="Widen the holes by N pixels (soft stroke edges, halos).")] = 0,
    preview: Annotated[
        Path | None, typer.Option(help="Also write the photo with the holes tinted magenta, to check the mask.")
    ] = None,
    as_json: JsonOption = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")] = False,
) -> None:
    """Make an inpainting mask (white = known, black = to fill in) for dip restore --mask: from a copy with the
    damage painted over (--color, or --original PHOTO), bright or dark marks (--above / --below V), or the
    image's transparent pixels (--from-alpha)."""
    existing_file(image, "image")
    modes = {"--color": color is not None, "--original": original is not None, "--above": above is not None,
             "--below": below is not None, "--from-alpha": from_alpha}  # fmt: skip
    chosen = [name for name, given in modes.items() if given]
    if len(chosen) != 1:
        given = f"got {' and '.join(chosen)}" if chosen else "got none"
        raise UsageError(f"give one of --color, --original, --above, --below and --from-alpha ({given})")
    if tolerance is not None and chosen[0] not in ("--color", "--original"):
        raise UsageError("--tolerance applies to --color and --original")
    for level, name in ((above, "--above"), (below, "--below")):
        if level is not None and not 0 <= level <= 255:
            raise UsageError(f"{name} is a gray level from 0 to 255, not {level}")
    if original is not None:
        existing_file(original, "original")
    output = output if output is not None else image.with_name(f"{image.stem}_mask.png")
    sources = [image, *([original] if original else [])]
    check_output(output, sources, overwrite=overwrite)
    if preview is not None:
        check_output(preview, sources + [output], overwrite=overwrite)

    from .. import masks
    from ..io import Picture, read_image, write_image

    picture = read_image(image)
    photo = picture
    if color is not None:
        known = masks.painted_in(picture.pixels, masks.parse_color(color), _or(tolerance, masks.COLOR_TOLERANCE))
    elif original is not None:
        photo = read_image(original)
        known = masks.changed_from(picture.pixels, photo.pixels, _or(tolerance, masks.DIFFERENCE_TOLERANCE))
    elif from_alpha:
        known = masks.from_alpha(picture.alpha)
    else:
        known = masks.by_level(picture.pixels, above=above, below=below)
    known = masks.grown(known, grow)
    warning = masks.missing_warning(known)
    if warning is not None:
        typer.echo(f"dip: warning: {warning}", err=True)
    write_image(output, Picture(known[..., None].astype("float32"), None, 8, "L", None))
    if preview is not None:
        write_image(preview, Picture(masks.preview(photo.pixels, known), None, 8, "RGB", None))
    missing = float((~known).mean())
    record = {"input": str(image), "mask": str(output), "mode": chosen[0], "missing": round(missing, 6),
              "holes": int((~known).sum()), "preview": None if preview is None else str(preview)}  # fmt: skip
    emit(record, as_json, f"{image} -> {output}: {missing:.2%} of the pixels to fill in ({chosen[0]})")


def _or(value, default):
    return default if value is None else value
