"""Errors a user can cause and fix; the CLI prints their message on one line and exits non-zero.

Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class DipError(Exception):
    """Base class. ``exit_code`` follows the shell convention: 2 for a wrong command line, 1 for a failed run."""

    exit_code = 1


class UsageError(DipError):
    """The command line asks for something impossible (bad value, conflicting options, missing argument)."""

    exit_code = 2


class InputError(DipError):
    """An input file is missing, unreadable or not an image we can restore."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class MaskError(InputError):
    """A mask does not fit its image: wrong size, nothing known, unreadable."""

    def __init__(self, message: str, *, path: object = None, mask_size=None, image_size=None) -> None:
        super().__init__(message, path=path)
        self.mask_size = mask_size
        self.image_size = image_size


class OutputError(DipError):
    """An output cannot be written where it was asked for (exists, unwritable, same as the input)."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class DeviceError(DipError):
    """The requested device is not available on this machine."""
