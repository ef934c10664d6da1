"""Lease records: the files `<lock>.lease.<generation>` beside a session's lock, which tell hosts
sharing a sessions folder who holds the session and until when (the rules are in `store/lock.py`).

A record is published by linking a whole file into place (`link` refuses an existing name, so of
two hosts taking the same generation exactly one wins), renewed by replacing the holder's own file,
and pruned below the newest generation.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weprompt_cli.atomic import TMP_PREFIX
from weprompt_cli.errors import DiskError
from weprompt_cli.store.host import host_id, pid_alive

LEASE_FORMAT = "weprompt-lease"
LEASE_SCHEMA = 1
_LEASE_RE = re.compile(r"\.lease\.(\d+)$")


@dataclass(frozen=True)
class LeaseRecord:
    """One lease file: who holds (held) the lock, and until when."""

    generation: int
    token: str
    host: str
    host_id: str
    pid: int
    pid_start: str | None
    holder: str
    acquired_at: float
    expires_at: float
    released: bool
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LEASE_FORMAT,
            "schema": LEASE_SCHEMA,
            "generation": self.generation,
            "token": self.token,
            "host": self.host,
            "host_id": self.host_id,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "holder": self.holder,
            "acquired_at": self.acquired_at,
            "expires_at": self.expires_at,
            "released": self.released,
        }

    @classmethod
    def from_dict(cls, obj: Any, path: Path) -> LeaseRecord:
        if not isinstance(obj, dict) or obj.get("format") != LEASE_FORMAT:
            raise ValueError("not a lease record")
        if int(obj.get("schema", 0)) > LEASE_SCHEMA:
            raise ValueError("a newer lease schema")
        return cls(
            generation=int(obj["generation"]),
            token=str(obj["token"]),
            host=str(obj.get("host", "")),
            host_id=str(obj["host_id"]),
            pid=int(obj["pid"]),
            pid_start=None if obj.get("pid_start") is None else str(obj["pid_start"]),
            holder=str(obj.get("holder", "")),
            acquired_at=float(obj.get("acquired_at", 0.0)),
            expires_at=float(obj["expires_at"]),
            released=bool(obj.get("released", False)),
            path=path,
        )

    def replace(self, **changes: Any) -> LeaseRecord:
        fields = {**self.__dict__, **changes}
        return LeaseRecord(**fields)

    @property
    def local(self) -> bool:
        """Held from this host (and pid namespace): its pid can be checked here."""
        return self.host_id == host_id()

    def describe(self) -> str:
        """'pid N' on this host, 'pid N on HOST' elsewhere (the holder named in messages)."""
        return f"pid {self.pid}" if self.local else f"pid {self.pid} on {self.host or self.host_id}"


def _lease_files(lock_path: Path) -> dict[int, Path]:
    prefix = lock_path.name + ".lease."
    found: dict[int, Path] = {}
    try:
        names = os.listdir(lock_path.parent)
    except OSError:
        return found
    for name in names:
        if name.startswith(prefix):
            m = _LEASE_RE.search(name)
            if m and name == prefix + m.group(1):
                found[int(m.group(1))] = lock_path.parent / name
    return found


def _read_record(path: Path) -> LeaseRecord | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return _parse(raw, path)


def _parse(raw: bytes, path: Path) -> LeaseRecord | None:
    try:
        return LeaseRecord.from_dict(json.loads(raw), path)
    except (ValueError, KeyError, TypeError):
        return None


def latest_record(lock_path: Path) -> LeaseRecord | None:
    """The record of the newest lease generation of `lock_path`, or None (never leased)."""
    return _latest(lock_path)[0]


def _latest(lock_path: Path) -> tuple[LeaseRecord | None, int]:
    """The newest readable record and the newest generation of one listing (0: none).

    A newest file that vanished while we read it was pruned by a newer holder: look again.
    A damaged one (never written by `_publish`, which links whole files) gives way to the
    newest readable record before it; the next holder still takes the generation after it.
    """
    for _ in range(50):
        files = _lease_files(lock_path)
        if not files:
            return None, 0
        newest = max(files)
        try:
            raw = files[newest].read_bytes()
        except FileNotFoundError:
            continue
        except OSError:
            raw = b""
        record = _parse(raw, files[newest])
        if record is None:
            for gen in sorted(files, reverse=True)[1:]:
                record = _read_record(files[gen])
                if record is not None:
                    break
        return record, newest
    raise DiskError("the lock's lease records keep changing", path=lock_path)


def _newest_generation(lock_path: Path) -> int:
    files = _lease_files(lock_path)
    return max(files) if files else 0


def holder_of(lock_path: Path) -> LeaseRecord | None:
    """The live holder of `lock_path` from its lease record (None when free, released or expired)."""
    record = latest_record(lock_path)
    if record is None or record.released or time.time() > record.expires_at:
        return None
    if record.local and not pid_alive(record.pid, record.pid_start):
        return None
    return record


def lease_path(lock_path: Path, generation: int) -> Path:
    """The file of lease generation `generation` of the lock `lock_path`."""
    return lock_path.parent / f"{lock_path.name}.lease.{generation}"


def _publish(lock_path: Path, record: LeaseRecord) -> bool:
    """Link `record` into place as its generation's file; False when that generation exists."""
    target = lease_path(lock_path, record.generation)
    tmp = _tmp_path(lock_path)
    data = json.dumps(record.to_dict(), sort_keys=True).encode("utf-8")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)  # close flushes it to an NFS server (close-to-open)
        try:
            os.link(tmp, target)
        except (FileExistsError, FileNotFoundError):
            return False  # taken first, or our temp file was cleared by the session's new holder
        except OSError as exc:
            if exc.errno != errno.EPERM:
                raise
            # No hard links (some FUSE filesystems): exclusive create is the next best test.
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                return False
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        if _newest_generation(lock_path) > record.generation:
            # We judged an old listing and linked a generation that had been pruned since:
            # a newer holder exists. Withdraw (a holder never prunes above its own generation).
            target.unlink(missing_ok=True)
            return False
        return True
    except OSError as exc:
        raise DiskError(f"cannot write the lock's lease: {exc.strerror or exc}", path=target) from exc
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _rewrite(lock_path: Path, record: LeaseRecord) -> bool:
    """Replace our own record file (renewal, release); False when its folder is gone.

    Not `atomic.atomic_write_json`: that one creates a missing folder, and a session folder
    deleted (renamed away) under a renewal must not come back holding only a lease file.
    No fsync either: a lease only matters while its host is up, and close() publishes it.
    """
    target = lease_path(lock_path, record.generation)
    tmp = _tmp_path(lock_path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError:
        return False
    try:
        try:
            os.write(fd, json.dumps(record.to_dict(), sort_keys=True).encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(tmp, target)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


def _tmp_path(lock_path: Path) -> Path:
    """A temp file beside the lock for a record about to be linked or replaced; its name holds our pid."""
    return lock_path.parent / f"{TMP_PREFIX}{lock_path.name}.lease.{os.getpid()}.{secrets.token_hex(6)}"


def sweep_temp_records(lock_path: Path) -> None:
    """Remove record temp files a killed writer left beside `lock_path` (call it holding the lock).

    While we hold the lock only this process writes its records, so every temp file of another pid
    (or of the older unnumbered form) is a leftover; our own may be a renewal in progress.
    """
    prefix = f"{TMP_PREFIX}{lock_path.name}.lease."
    mine = f"{prefix}{os.getpid()}."
    try:
        names = os.listdir(lock_path.parent)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and not name.startswith(mine):
            try:
                (lock_path.parent / name).unlink()
            except OSError:
                pass


def _prune(lock_path: Path, below: int) -> None:
    """Remove lease files of generations older than `below` (best effort)."""
    for gen, path in _lease_files(lock_path).items():
        if gen < below:
            try:
                path.unlink()
            except OSError:
                pass
