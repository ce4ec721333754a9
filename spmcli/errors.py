"""The project's own error types.

Every problem with a user's input (an unreadable image, a foreign dictionary
file, a mask that does not fit) is raised as :class:`SpmcliError` or a
subclass, with a message a user can act on. The command line turns it into a
one-line ``Error: <file>: <cause>`` and exit code 3.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SpmcliError", "ImageReadError", "ImageWriteError", "DictionaryFormatError"]


class SpmcliError(Exception):
    """A problem with an input or output that the user can fix.

    Parameters
    ----------
    message : str
        The cause, in words a user understands.
    path : str or Path, optional
        The file the problem is about; it leads the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ImageReadError(SpmcliError):
    """An image file could not be read (missing, empty, corrupt, too large...)."""


class ImageWriteError(SpmcliError):
    """An output image could not be written."""


class DictionaryFormatError(SpmcliError):
    """A file is not a valid spmcli dictionary."""
