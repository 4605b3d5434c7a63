"""The data directory's lock file, held while a server runs on it.

``run_server.py`` takes an exclusive, non-blocking OS lock on ``server.lock``
(``fcntl.flock`` on Unix, ``msvcrt.locking`` on Windows) for as long as
it runs. The OS drops the lock when the process ends, also after a
crash, so a stale file never blocks anything. ``admin restore`` takes
the same lock, so it cannot replace the database under a running server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

LOCK_FILE_NAME = "server.lock"


class DataDirLocked(OSError):
    """Another process, normally a running server, holds the lock."""


class DataDirLock:
    """An exclusive lock on one data directory; release it with :meth:`release`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE_NAME
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock without waiting; raise DataDirLocked when it is held."""
        handle = open(self.path, "a+", encoding="ascii")
        try:
            _lock(handle)
        except OSError as exc:
            handle.close()
            raise DataDirLocked(
                f"{self.path} is locked: a server is running on this data directory"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _lock(handle: IO[str]) -> None:
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
