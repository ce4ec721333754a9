"""Atomic file writes: a temporary file in the target folder, then a rename.

A reader never sees a half-written file: either the old file (or none) or the
complete new one. An interrupted or failed write leaves no temporary behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "forget_written", "written_paths"]

# Absolute paths this process has renamed into place since forget_written():
# a batch worker told to stop asks whether its task's outputs are all in
# place, and then lets the task finish and report instead of unwinding it.
# None until a first forget_written(), so that a library user's writes are not kept.
_written: set[str] | None = None


def written_paths() -> frozenset[str]:
    """Absolute paths :func:`atomic_path` has completed since :func:`forget_written`."""
    return frozenset(_written or ())


def forget_written() -> None:
    """Start a new record of completed paths (a batch engine, before each task)."""
    global _written
    _written = set()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary name keeps the final suffix, so writers that choose a format
    from the extension still work. On any exception (including
    ``KeyboardInterrupt``) the temporary file is removed and ``path`` is left
    as it was.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=folder)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        # mkstemp creates the file 0600; give the result the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary_path, 0o666 & ~umask)
        # Recorded before the rename, so no signal can fall between the two.
        written, key = _written, os.path.abspath(path)
        if written is not None:
            written.add(key)
        try:
            os.replace(temporary_path, path)
        except BaseException:
            if written is not None:
                written.discard(key)
            raise
    except BaseException:
        with contextlib.suppress(OSError):
            temporary_path.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
