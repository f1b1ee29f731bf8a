"""Files written whole or not at all, and one-line reasons for what went wrong with a file."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import OutputError


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`, with the same suffix; move it onto `path` on success.

    The temporary file already exists (empty) when yielded, which proves the folder is writable before any
    work is done. On any exception, including Ctrl-C, it is removed and `path` is left as it was. Missing
    folders are created. Raises OutputError when the folder cannot be made or written to.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write '{path}': it is a folder; give a file name", path=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(
            f"cannot write '{path}': cannot create the folder '{path.parent}' ({os_reason(e)})", path=path
        ) from e
    tmp = _claim_temp(path)
    try:
        yield tmp
    except BaseException:
        _discard(tmp)
        raise
    try:
        os.replace(tmp, path)  # atomic within one file system, which is why the temp file sits beside `path`
    except OSError as e:
        _discard(tmp)
        raise OutputError(f"cannot write '{path}': {os_reason(e)}", path=path) from e


def _claim_temp(path: Path) -> Path:
    for _ in range(8):
        # hidden, and ending in the real suffix so that format detection from the name still works
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            with open(tmp, "xb"):  # created through open(), so the final file gets the user's umask
                return tmp
        except FileExistsError:
            continue
        except OSError as e:
            reason = os_reason(e)
            raise OutputError(
                f"cannot write '{path}': the folder '{path.parent}' is not writable ({reason})", path=path
            ) from e
    raise OutputError(f"cannot write '{path}': could not create a temporary file beside it", path=path)


def _discard(tmp: Path) -> None:
    with suppress(OSError):  # the original error matters more than a failed clean-up
        tmp.unlink(missing_ok=True)


def os_reason(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "permission denied"
    return one_line(e.strerror or e)


def one_line(e: object) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."


def format_for(path: Path, formats: Mapping[str, str], what: str) -> str:
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"cannot write {what} to '{path}': unknown type '{path.suffix}'; use one of {', '.join(formats)}",
            path=path,
        )
    return fmt
