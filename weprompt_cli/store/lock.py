"""One process per session: an advisory `flock` on `<session>/lock`.

The holder writes its pid into the file so a second process can say who holds it.
The kernel drops a flock when its file is closed, including when the process dies
(even by `kill -9`), so a crash never leaves a session locked. The lock file is not
written through `atomic`: replacing it would swap the inode the lock lives on.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from weprompt_cli.errors import DiskError, LockedError


def _read_pid(path: Path) -> int | None:
    # The holder writes its pid just after it locks; give it a moment to do so.
    for _ in range(20):
        try:
            text = path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.005)
    return None


class FileLock:
    """An exclusive flock held on `path` until `release()` (or process exit)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, *, label: str, wait: bool = False) -> FileLock:
        """Lock `path` (created if needed); a holder elsewhere -> `LockedError` naming its pid.

        `wait=True` blocks until free instead (used for the short store-wide lock).
        """
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise DiskError(f"cannot open the lock file: {exc.strerror or exc}", path=path) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            pid = _read_pid(path)
            holder = f"pid {pid}" if pid is not None else "another process"
            raise LockedError(
                f"{label} is in use by {holder}",
                hint="close the other weprompt first (or wait for it to finish)",
                path=path,
            ) from None
        except OSError as exc:
            os.close(fd)
            raise DiskError(f"cannot lock: {exc.strerror or exc}", path=path) from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            pass  # the pid is only for the message; the lock itself holds
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent). The pid is cleared so the file does not name a stale holder."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
