"""What identifies an image's content, and when a cached hash may stand for it.

An image is identified by the SHA-256 of its bytes (streamed, never the whole
file in memory). A cached hash is reused only while the file's ``stat``
signature (size, modification and change times in nanoseconds, inode, device)
is unchanged and the file had not been modified within :data:`RACY_SECONDS`
before it was hashed, as ``git`` does with its index: a write in the same clock
tick as the hash could otherwise go unseen. Any write to a file changes its
change time, which no program can set back, so a rewrite in place (even one that
restores the modification time, as ``cp -p`` does) is hashed again.

References
----------
git documentation, "Use of index and Racy Git problem" (technical/racy-git.txt).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

__all__ = ["RACY_SECONDS", "FileIdentity", "StatSignature", "file_identity", "hash_file"]

# A cached hash is trusted only for files last modified this long before they were hashed.
RACY_SECONDS = 2.0
_HASH_BLOCK = 1 << 20


class FileIdentity(NamedTuple):
    """What identifies an image's content: its SHA-256, size and modification time."""

    sha256: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class StatSignature:
    """What ``stat`` says of a file that a rewrite would change."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, status: os.stat_result) -> StatSignature:
        return cls(status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino, status.st_dev)


def hash_file(path: str | Path) -> tuple[str, os.stat_result]:
    """SHA-256 of a file, streamed in 1 MiB blocks, and its ``stat`` taken on the open file."""
    digest = hashlib.sha256()
    buffer = bytearray(_HASH_BLOCK)
    view = memoryview(buffer)
    with open(path, "rb") as handle:
        status = os.fstat(handle.fileno())
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
    return digest.hexdigest(), status


def file_identity(path: str | Path) -> FileIdentity:
    """The SHA-256 (streamed, never the whole file in memory), size and modification time of a file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    FileIdentity

    Raises
    ------
    OSError
        The file cannot be read.
    """
    sha256, status = hash_file(path)
    return FileIdentity(sha256, status.st_size, status.st_mtime_ns)
