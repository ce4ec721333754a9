"""Liveness of runs: each live run holds an exclusive ``flock`` on its own lock file.

The kernel drops a ``flock`` when its holder dies, however it dies (SIGKILL, a
crash, a power-cut reboot), so "is run N still alive?" is answered exactly by
trying the lock: no heartbeat to tune, no guessed time-out, no process-id reuse.
A forked child (a ``--jobs`` worker) inherits the lock's file descriptor, and so
the lock; it closes its copies at once (closing, unlike ``LOCK_UN``, leaves the
parent's lock in place), so that a worker outliving a killed parent does not keep
the run "alive". POSIX only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import weakref
from pathlib import Path

__all__ = ["RunLock", "lock_is_held"]

# Locks this process holds (closed in forked children).
_HELD_LOCKS: weakref.WeakSet[RunLock] = weakref.WeakSet()


class RunLock:
    """An exclusive ``flock`` on ``<folder>/<run_id>.lock``, held while the run lives."""

    def __init__(self, folder: Path, run_id: int) -> None:
        self.path = folder / f"{run_id}.lock"
        folder.mkdir(exist_ok=True)
        self.descriptor: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Another process may be testing this file's liveness for a split second.
                if time.monotonic() > deadline:
                    os.close(self.descriptor)
                    self.descriptor = None
                    raise OSError(f"run lock {self.path} is held by another process") from None
                time.sleep(0.01)
        _HELD_LOCKS.add(self)

    def release(self) -> None:
        if self.descriptor is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.descriptor)  # closing drops the flock
        self.descriptor = None
        _HELD_LOCKS.discard(self)

    def forget_in_child(self) -> None:
        if self.descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(self.descriptor)
            self.descriptor = None


def _forget_locks_in_child() -> None:
    for lock in list(_HELD_LOCKS):
        lock.forget_in_child()
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)


def lock_is_held(path: Path) -> bool:
    """Whether some live process holds the flock on ``path`` (a missing file: no)."""
    try:
        descriptor = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False
