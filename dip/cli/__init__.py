"""The ``dip`` command: the app, assembled from one module per command. The only package that imports typer and
rich.

torch and the image stack load inside the commands, so ``dip --help`` and ``dip --version`` answer at once.
Every user mistake surfaces as a DipError, printed here as one line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import sys
import warnings
from typing import Annotated

import typer

from .. import __version__
from ..errors import DipError
from .batch import batch
from .compare import compare
from .console import EXIT_INTERRUPTED
from .degrade import degrade
from .doctor import doctor
from .mask import mask
from .restore import restore

app = typer.Typer(
    name="dip",
    help="Restore a damaged photograph with a Deep Image Prior: no training data, no downloaded weights.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say "[default: ...]"; as Rich markup those brackets would vanish
)
for command in (restore, degrade, batch, compare, mask, doctor):
    app.command()(command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


def _click_exception_type() -> type[Exception]:
    # Typer vendors click in recent releases and uses the real one in older ones; find the class either way.
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app and turns user errors into one line on stderr and an exit code."""
    command = typer.main.get_command(app)
    click_exception = _click_exception_type()
    with warnings.catch_warnings():
        # Warnings meant for the user (first frame of an animation, clipped values) as one plain line each.
        warnings.showwarning = lambda message, *_: typer.echo(f"dip: warning: {message}", err=True)
        try:
            code = command.main(args=argv, prog_name="dip", standalone_mode=False)
        except DipError as error:
            typer.echo(f"dip: error: {error}", err=True)
            code = error.exit_code
        except click_exception as error:
            typer.echo(f"dip: error: {error.format_message()}", err=True)
            code = error.exit_code
        except (KeyboardInterrupt, typer.Abort):
            typer.echo("dip: interrupted before anything could be written", err=True)
            code = EXIT_INTERRUPTED
    sys.exit(code if isinstance(code, int) else 0)
