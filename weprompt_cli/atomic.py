"""Crash-safe writes: every file WePrompt stores goes through here.

A write goes to a temporary file in the same folder, is fsync'd, then renamed over the
target, and the folder is fsync'd, so a crash at any instant leaves either the old or
the new file, never a torn one. Appends (the transcript) are one fsync'd write each.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from weprompt_cli.errors import DiskError

TMP_PREFIX = ".tmp-"


def _disk_error(exc: OSError, path: Path) -> DiskError:
    if exc.errno == errno.ENOSPC:
        return DiskError("the disk is full; nothing was changed", path=path, hint="free some space and try again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DiskError("cannot write here (permission denied or read-only)", path=path)
    return DiskError(f"cannot write: {exc.strerror or exc}", path=path)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably."""
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        fsync_dir(path.parent)
    except OSError as exc:
        raise _disk_error(exc, path) from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def append_line_durably(path: Path, line: str) -> None:
    """Append one line (no newline inside) and fsync before returning.

    A crash mid-append can leave a partial last line; readers skip a final line
    without its newline, so the previous lines stay the truth.
    """
    if "\n" in line:
        raise ValueError("a line may not contain a newline")
    data = (line + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(path.parent)
    except OSError as exc:
        raise _disk_error(exc, path) from exc
