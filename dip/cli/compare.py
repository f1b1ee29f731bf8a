"""``dip compare``: images side by side with labels, and their scores against a reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .options import JsonOption, check_output, emit, existing_file


def compare(
    images: Annotated[list[Path], typer.Argument(help="Images of the same size, in the order to show them.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the side-by-side sheet (PNG).")],
    reference: Annotated[
        Path | None, typer.Option(help="Clean image: adds PSNR/SSIM under each tile and a reference tile.")
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated tile titles, one per image [default: the file names].")
    ] = None,
    zoom: Annotated[str | None, typer.Option(help="X,Y,W,H: add this crop, enlarged, under every tile.")] = None,
    columns: Annotated[int | None, typer.Option(help="Tiles per row [default: up to 6].")] = None,
    as_json: JsonOption = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Put images side by side with labels (and metrics against a reference): runs, snapshots, other tools."""
    for path in images:
        existing_file(path, "image")
    if reference is not None:
        existing_file(reference, "reference")
    titles = [path.name for path in images]
    if labels is not None:
        titles = [label.strip() for label in labels.split(",")]
        if len(titles) != len(images):
            raise UsageError(f"--labels gives {len(titles)} title(s) for {len(images)} image(s); give one per image")
    if columns is not None and columns < 1:
        raise UsageError(f"--columns must be at least 1, not {columns}")
    check_output(output, [*images, *([reference] if reference else [])], overwrite=overwrite)

    from ..errors import InputError
    from ..io import read_image
    from ..metrics import psnr, ssim
    from ..visuals import Tile, parse_zoom, save_sheet

    pictures = [read_image(path) for path in images]
    clean = read_image(reference) if reference is not None else None
    first = pictures[0]
    for path, picture in [*zip(images, pictures, strict=True), *([(reference, clean)] if clean else [])]:
        if picture.size != first.size:
            (w, h), (w0, h0) = picture.size, first.size
            raise InputError(f"'{path}' is {w}x{h} but '{images[0]}' is {w0}x{h0}; compare images of the same size")
    zoom_box = None if zoom is None else parse_zoom(zoom, first.size)

    def as_shown(pixels):
        # Gray beside colour: show gray as three equal channels so that every tile has the same shape.
        colour = max(p.channels for p in [*pictures, *([clean] if clean else [])])
        return pixels if pixels.shape[2] == colour else pixels.repeat(colour, axis=2)

    tiles, entries = [], []
    for path, title, picture in zip(images, titles, pictures, strict=True):
        entry = {"image": str(path), "label": title}
        caption = ""
        if clean is not None:
            if picture.channels != clean.channels:
                raise InputError(
                    f"'{path}' has {picture.channels} channel(s) but the reference has {clean.channels}; "
                    "compare gray with gray and colour with colour"
                )
            entry["psnr"], entry["ssim"] = psnr(picture.pixels, clean.pixels), ssim(picture.pixels, clean.pixels)
            caption = f"{entry['psnr']:.2f} dB · SSIM {entry['ssim']:.3f}"
        tiles.append(Tile(as_shown(picture.pixels), title, caption))
        entries.append(entry)
    if clean is not None:
        tiles.append(Tile(as_shown(clean.pixels), "reference"))
    save_sheet(tiles, output, zoom=zoom_box, columns=columns)
    record = {"output": str(output), "reference": str(reference) if reference else None, "images": entries}
    scores = "".join(f", {e['label']} {e['psnr']:.2f} dB" for e in entries if "psnr" in e)
    emit(record, as_json, f"{len(images)} image(s) -> {output}{scores}")
