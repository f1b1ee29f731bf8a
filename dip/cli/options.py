"""What the commands share: their options, declared once, and the checks every command makes of its paths.

typer and the configs only: ``dip --help`` builds every command's help from here without loading torch.
"""

from __future__ import annotations

import functools
import inspect
import os
from pathlib import Path
from typing import Annotated

import typer

from ..config import PRESET_FAMILIES, PRESETS, Overrides
from ..errors import OutputError, UsageError

TaskOption = Annotated[
    str,
    typer.Option(
        help="denoise | inpaint | jpeg | sr | deblur | auto (inpaint with a mask, sr with --scale, deblur with "
        "--blur, jpeg for a .jpg input)."
    ),
]
ScaleOption = Annotated[
    int | None, typer.Option(help="Super-resolution: the output is N times the input in each direction (2-8).")
]
BlurOption = Annotated[
    str | None,
    typer.Option(
        help="Deblurring: the known blur, gaussian:SIGMA | motion:LENGTH,ANGLE | box:N (pixels) | a kernel image."
    ),
]
MaskInvertOption = Annotated[bool, typer.Option("--mask-invert", help="The mask marks missing pixels instead.")]
PresetOption = Annotated[
    str,
    typer.Option(
        help=f"auto (paper net on a GPU, fast elsewhere) | {' | '.join([*PRESET_FAMILIES[1:], *PRESETS])}"
    ),
]
DeviceOption = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N | mps")]
SnapshotsOption = Annotated[
    str | None,
    typer.Option(
        help="Keep these iterates: 100,500,2400 | every:N | log:N (plus the returned and the last), "
        "with a contact sheet and curves."
    ),
]
RestartsOption = Annotated[
    int, typer.Option(help="Fit K nets from different seeds, each stopped on its own, and average their images.")
]
AnimateOption = Annotated[bool, typer.Option("--animate", help="Also write the snapshots as an animated GIF.")]
RestartsAtOnceOption = Annotated[
    bool | None,
    typer.Option(
        "--restarts-at-once/--restarts-in-turn",
        help="Fit the restarts together, as one stacked net, or one after another [default: together on a GPU].",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
TileOption = Annotated[
    str,
    typer.Option(
        help="auto (whole if it fits the device's memory, tiles otherwise) | N (tiles of N output pixels; for "
        "inpainting, windows around the holes of at most N) | 0 (always whole)."
    ),
]
TileOverlapOption = Annotated[
    int | None, typer.Option(help="Pixels that neighbouring tiles share and crossfade over [32, at most tile/4].")
]
KeepKnownOption = Annotated[
    bool | None,
    typer.Option(
        "--keep-known/--no-keep-known",
        help="Inpainting: the pixels the mask marks as known are the input's own, bit for bit; with "
        "--no-keep-known the net's image everywhere (and the whole image is fitted) [on for inpainting].",
        show_default=False,
    ),
]

# The fit's overrides, handed to a command as one Overrides value (see takes_overrides), in --help's order.
_OVERRIDES = {
    "iters": Annotated[
        int | None, typer.Option("--iters", help="The most steps with stopping on; exactly this many with --stop off.")
    ],
    "stop": Annotated[
        str | None,
        typer.Option(
            help="Early stopping: auto (the preset's) | spread (of the iterates around their average) | wmv "
            "(windowed variance) | emv (exponential) | off [auto]."
        ),
    ],
    "window": Annotated[int | None, typer.Option(help="spread, wmv: steps in the window [preset's].")],
    "patience": Annotated[
        int | None, typer.Option(help="Steps without a new minimum of the statistic before stopping [preset's].")
    ],
    "noise_floor": Annotated[
        float | None,
        typer.Option(
            help="Denoising with l2: also stop once the loss falls below this fraction of the input's estimated "
            "noise variance (0 = off) [0.8]."
        ),
    ],
    "noise": Annotated[
        str,
        typer.Option(
            help="Denoising: gaussian | poisson (photon noise) | impulse (salt and pepper: fitted with l1) | auto "
            "(impulse where the input shows impulses, gaussian otherwise) [auto]."
        ),
    ],
    "sigma": Annotated[
        float | None,
        typer.Option(help="Gaussian noise's standard deviation on the 0-255 scale, where known [estimated]."),
    ],
    "wiener": Annotated[
        bool | None,
        typer.Option(
            "--wiener/--no-wiener",
            help="Finish the net's image with a collaborative Wiener filter: Gaussian denoising, and a .jpg (which is "
            "still put inside its quantisation intervals without it) [on].",
            show_default=False,
        ),
    ],
    "lr": Annotated[float | None, typer.Option(help="Adam learning rate [default: the preset's].")],
    "loss": Annotated[str | None, typer.Option(help="l2 (default) or l1 (robust to impulse noise).")],
}


def takes_overrides(command):
    """Gives a command the fit's override options in place of its ``overrides`` parameter, and calls it with them
    as one checked :class:`dip.config.Overrides` value."""
    signature = inspect.signature(command, eval_str=True)
    parameters = []
    for parameter in signature.parameters.values():
        if parameter.name != "overrides":
            parameters.append(parameter)
            continue
        parameters += [
            inspect.Parameter(name, parameter.kind, default="auto" if name == "noise" else None, annotation=annotation)
            for name, annotation in _OVERRIDES.items()
        ]

    @functools.wraps(command)
    def with_overrides(**options):
        chosen = {name: options.pop(name) for name in _OVERRIDES}
        return command(**options, overrides=Overrides(iterations=chosen.pop("iters"), **chosen))

    with_overrides.__signature__ = signature.replace(parameters=parameters)
    with_overrides.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_overrides


def existing_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise UsageError(f"{what} '{path}' does not exist")
    if path.is_dir():
        raise UsageError(f"{what} '{path}' is a folder; give an image file (use 'dip batch' for folders)")
    return path


def check_output(output: Path, inputs: list[Path], *, overwrite: bool) -> None:
    """Refuses before any work is done what would fail or destroy something after it."""
    from ..io import IMAGE_SUFFIXES

    if output.suffix.lower() not in IMAGE_SUFFIXES:
        known = " ".join(sorted(IMAGE_SUFFIXES))
        raise UsageError(f"cannot tell the output format from '{output.name}'; end it with one of: {known}")
    for source in inputs:
        if source.exists() and output.exists() and output.resolve() == source.resolve():
            raise UsageError(f"output '{output}' is an input file; dip never overwrites its inputs")
    if output.exists() and not overwrite:
        raise UsageError(f"output '{output}' already exists; pass --overwrite to replace it")
    # Checked without creating anything: a run refused later (an unreadable input) must leave no empty folder.
    # Missing folders are made when the first file is written.
    folder = output.parent
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists() or parent == parent.parent)
    if not existing.is_dir():
        raise OutputError(f"cannot create output folder '{folder}': '{existing}' is a file", path=folder)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output folder '{existing}' is not writable", path=folder)


def emit(record: dict, as_json: bool, line: str) -> None:
    if as_json:
        from ..report import to_json

        typer.echo(to_json(record))
    else:
        typer.echo(line)
