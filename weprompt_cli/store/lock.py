"""One holder per session: a local `flock` plus a lease record that other hosts can read.

Two layers, both needed to hold `<dir>/lock`:

- The flock on `lock` itself, as before: exact between processes of one host, dropped by
  the kernel when its holder dies (even by `kill -9`). The holder writes its pid into the
  file, so a second process can say who holds it. The file is never replaced (the flock
  lives on its inode). On a filesystem without flock (ENOLCK, EOPNOTSUPP) only the lease
  below protects the session.
- The lease record, for a sessions folder shared by many hosts (NFS, EFS, CephFS), where
  flock may be per host or absent. Records are files `lock.lease.<generation>` beside the
  lock, JSON: the holder's host (name and an id that tells hosts and pid namespaces apart),
  pid and process start time, a token, and `expires_at`. A holder renews its record every
  `lease_s / 3` seconds from a background thread.

Who may take a session (the rules `acquire` applies to the newest record):

1. no record, or a released one: anyone (after the flock);
2. a record of this host id: its holder is known dead when we got the flock (a live
   holder keeps it) or, without flock, when its pid is gone or runs another process
   (start time differs); a dead holder's record is taken over at once;
3. any other record: only once `expires_at + SKEW_S` has passed on our clock.

Taking a session means linking the next generation's file into place (`link` refuses an
existing name, on NFS too), so of two hosts taking over at once exactly one wins. A holder
that missed its own expiry (its host slept, or the process was stopped) writes nothing:
`held` turns False until it links the next generation itself, which fails once anyone else
did. Clocks of the hosts must agree to well within `SKEW_S` (NTP does).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import secrets
import socket
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weprompt_cli.atomic import TMP_PREFIX
from weprompt_cli.errors import DiskError, LockedError, WePromptError

log = logging.getLogger("weprompt.store.lock")

LEASE_FORMAT = "weprompt-lease"
LEASE_SCHEMA = 1
DEFAULT_LEASE_S = 15.0
SKEW_S = 2.0  # a foreign lease is taken over only this long after it expired (clock skew)
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_LEASE_RE = re.compile(r"\.lease\.(\d+)$")


# --------------------------------------------------------------------------- settings
@dataclass
class _Settings:
    lease_s: float
    use_flock: bool = True
    holder: str = ""  # what holds it, for messages and handover decisions ("weprompt-replica ...")
    host_id: str | None = None  # None: computed from this machine


def _env_lease() -> float:
    raw = os.environ.get("WEPROMPT_LOCK_LEASE_S", "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_LEASE_S
    return value if value >= 0.5 else DEFAULT_LEASE_S


_settings = _Settings(lease_s=_env_lease(), holder=os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "")


def configure(
    *,
    lease_s: float | None = None,
    use_flock: bool | None = None,
    holder: str | None = None,
    host_id: str | None = None,
) -> None:
    """Set this process's lease length, flock use, holder tag and host id (for later locks).

    `WEPROMPT_LOCK_LEASE_S` sets the default lease. `host_id` and `use_flock=False` let a
    test play several hosts on one machine.
    """
    if lease_s is not None:
        if lease_s < 0.5:
            raise ValueError("a lease must last at least 0.5 s")
        _settings.lease_s = float(lease_s)
    if use_flock is not None:
        _settings.use_flock = use_flock
    if holder is not None:
        _settings.holder = holder
    if host_id is not None:
        _settings.host_id = host_id
    _Renewer._wake.set()


def lease_seconds() -> float:
    """How long a lease taken now lasts without renewal."""
    return _settings.lease_s


def _read_small(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


_HOST_ID: str | None = None


def host_name() -> str:
    return socket.gethostname() or "localhost"


def host_id() -> str:
    """This host (and pid namespace): hostname/boot id/pid-namespace inode; pids compare only within one."""
    global _HOST_ID
    if _settings.host_id is not None:
        return _settings.host_id
    if _HOST_ID is None:
        boot = _read_small("/proc/sys/kernel/random/boot_id")[:8] or "noboot"
        try:
            pidns = str(os.stat("/proc/self/ns/pid").st_ino)
        except OSError:
            pidns = "0"
        _HOST_ID = f"{host_name()}/{boot}/{pidns}"
    return _HOST_ID


def process_start(pid: int) -> str | None:
    """The start time of `pid` (clock ticks since boot, Linux), or None when unknown."""
    text = _read_small(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of the whole line


def pid_alive(pid: int, start: str | None) -> bool:
    """True when process `pid` runs and (if `start` is known) is the same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    except OSError:
        return True
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused
    return True


# --------------------------------------------------------------------------- records
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
    tmp = lock_path.parent / f"{TMP_PREFIX}{lock_path.name}.lease.{secrets.token_hex(6)}"
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
    tmp = lock_path.parent / f"{TMP_PREFIX}{lock_path.name}.lease.{secrets.token_hex(6)}"
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


def _prune(lock_path: Path, below: int) -> None:
    """Remove lease files of generations older than `below` (best effort)."""
    for gen, path in _lease_files(lock_path).items():
        if gen < below:
            try:
                path.unlink()
            except OSError:
                pass


# --------------------------------------------------------------------------- the lock
class FileLock:
    """An exclusive flock plus a renewed lease on `path`, held until `release()` (or process exit)."""

    def __init__(self, path: Path, fd: int | None, record: LeaseRecord | None = None, label: str = "") -> None:
        self.path = path
        self.label = label
        self._fd: int | None = fd
        self._record = record
        self._active = True
        self._lost: LeaseRecord | None = None  # who took it over, once known
        self._mutex = threading.Lock()
        if record is not None:
            _Renewer.add(self)

    @classmethod
    def acquire(cls, path: Path, *, label: str, wait: bool = False) -> FileLock:
        """Lock `path` (created if needed); a holder elsewhere -> `LockedError` naming its pid (and host).

        `wait=True` blocks until free instead (used for the short store-wide lock).
        """
        fd = cls._flock(path, label=label, wait=wait)
        record: LeaseRecord | None
        try:
            record = cls._take_lease(path, label=label, wait=wait, flocked=fd is not None)
        except DiskError as exc:
            cause = exc.__cause__
            if fd is None or not (isinstance(cause, OSError) and cause.errno == errno.ENOSPC):
                if fd is not None:
                    os.close(fd)
                raise
            # A full disk: the flock alone guards this host (nobody can write a lease anywhere on this
            # disk now), so removing an empty session or reading one still works.
            log.warning("no lease record for %s: the disk is full; the local lock alone holds it", label)
            record = None
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            except OSError:
                pass  # the pid is only for the message; the lock itself holds
        return cls(path, fd, record, label)

    @staticmethod
    def _flock(path: Path, *, label: str, wait: bool) -> int | None:
        """The flocked descriptor of `path`, or None where flock is off or unsupported."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise DiskError(f"cannot open the lock file: {exc.strerror or exc}", path=path) from exc
        if not _settings.use_flock:
            os.close(fd)
            return None
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
            if exc.errno in _NO_FLOCK:
                return None  # e.g. NFS mounted without locking: the lease alone decides
            raise DiskError(f"cannot lock: {exc.strerror or exc}", path=path) from exc
        return fd

    @staticmethod
    def _take_lease(path: Path, *, label: str, wait: bool, flocked: bool) -> LeaseRecord:
        """Link the next generation's lease record, following the takeover rules (module docstring)."""
        delay = 0.02
        while True:
            current, newest = _latest(path)
            blocker = _blocking(current, flocked=flocked)
            if blocker is None:
                now = time.time()
                # Exactly the generation after the one judged: whoever links it first holds the lock.
                generation = newest + 1
                record = LeaseRecord(
                    generation=generation,
                    token=secrets.token_hex(8),
                    host=host_name(),
                    host_id=host_id(),
                    pid=os.getpid(),
                    pid_start=process_start(os.getpid()),
                    holder=_settings.holder,
                    acquired_at=now,
                    expires_at=now + _settings.lease_s,
                    released=False,
                    path=lease_path(path, generation),
                )
                if _publish(path, record):
                    if current is not None and not current.released and current.token:
                        log.info("took over %s from %s (%s)", label, current.describe(), current.holder)
                    _prune(path, record.generation)
                    return record
                continue  # another process linked that generation first: look again
            if not wait:
                until = time.strftime("%H:%M:%S", time.localtime(blocker.expires_at))
                raise LockedError(
                    f"{label} is in use by {blocker.describe()}",
                    hint=(
                        "close the other weprompt first (or wait for it to finish)"
                        if blocker.local
                        else f"it is held from another host; its lease runs until {until} unless renewed"
                    ),
                    path=path,
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    # ------------------------------------------------------------------ state
    @property
    def held(self) -> bool:
        """True while this lock is ours: not released, not taken over, and its lease unexpired.

        A lease that expired without renewal (the host slept, the process was stopped) is
        taken again here if nobody else took it meanwhile; otherwise the lock is lost and
        this stays False, so the session refuses to write.
        """
        if not self._active:
            return False
        if self._record is None:
            return True  # no lease (never the case after `acquire`)
        if self._lost is not None:
            return False
        if time.time() < self._record.expires_at:
            return True
        return self._reclaim()

    @property
    def record(self) -> LeaseRecord | None:
        """The lease record this lock wrote (its generation, token and expiry)."""
        return self._record

    def verify(self) -> None:
        """Raise `LockedError` naming the new holder unless the lease on disk is still ours.

        Reads the records (cheap, but I/O): call it before a write that must not happen twice.
        """
        if not self._active:
            raise LockedError(f"{self.label or 'the lock'} was released", path=self.path)
        if not self.held or not self._check_disk():
            taker = self._lost or latest_record(self.path)
            who = taker.describe() if taker is not None else "another process"
            raise LockedError(
                f"{self.label or 'the lock'} was taken over by {who} after this process's lease expired",
                hint="its last saved turn is kept; open it again to continue",
                path=self.path,
            )

    def _check_disk(self) -> bool:
        """True when no newer generation exists and our record still names us (marks the lock lost otherwise)."""
        mine = self._record
        if mine is None:
            return True
        newest = _newest_generation(self.path)
        on_disk = _read_record(lease_path(self.path, mine.generation)) if newest <= mine.generation else None
        if newest > mine.generation:
            self._lost = latest_record(self.path) or mine
            return False
        if on_disk is not None and on_disk.token != mine.token:
            self._lost = on_disk
            return False
        return True  # missing file and no newer one: the folder was moved (create, delete)

    def _reclaim(self) -> bool:
        """After our own expiry: take the next generation if the newest record is still ours."""
        with self._mutex:
            mine = self._record
            if mine is None or self._lost is not None or not self._active:
                return False
            if time.time() < mine.expires_at:
                return True
            if not self._check_disk():
                return False
            now = time.time()
            fresh = mine.replace(
                generation=mine.generation + 1,
                acquired_at=now,
                expires_at=now + _settings.lease_s,
                path=lease_path(self.path, mine.generation + 1),
            )
            try:
                won = _publish(self.path, fresh)
            except WePromptError:
                won = False
            if not won:
                self._lost = latest_record(self.path) or mine
                log.warning("%s: lease expired and was taken by another holder", self.label)
                return False
            self._record = fresh
            _prune(self.path, fresh.generation)
            return True

    def renew(self) -> bool:
        """Extend the lease (the background thread calls this every lease/3 s); False once lost."""
        with self._mutex:
            mine = self._record
            if mine is None or not self._active or self._lost is not None:
                return False
            if time.time() >= mine.expires_at:
                pass  # missed our own expiry: only a new generation may revive it (below)
            elif self._check_disk():
                fresh = mine.replace(expires_at=time.time() + _settings.lease_s)
                if _rewrite(self.path, fresh):
                    self._record = fresh
                # else: the folder is being moved (create, delete); `held` stops writes at expiry
                return True
            else:
                return False
        return self._reclaim()

    def release(self) -> None:
        """Drop the lock (idempotent). The pid is cleared and the lease marked released."""
        with self._mutex:
            if not self._active:
                return
            self._active = False
            fd, self._fd = self._fd, None
            mine = self._record
        _Renewer.discard(self)
        try:
            if mine is not None and self._lost is None and self._check_disk():
                _rewrite(self.path, mine.replace(released=True, expires_at=time.time()))  # else it expires
        finally:
            if fd is not None:
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
        try:
            self.release()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


def _blocking(current: LeaseRecord | None, *, flocked: bool) -> LeaseRecord | None:
    """The record that stops us from taking the lock now, or None (free, released, expired, dead)."""
    if current is None or current.released:
        return None
    if current.local:
        if flocked:
            return None  # a live holder on this host would hold the flock we just got
        return current if pid_alive(current.pid, current.pid_start) else None
    if time.time() > current.expires_at + SKEW_S:
        return None
    return current


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


class _Renewer:
    """One daemon thread per process that renews every held lease every lease/3 seconds."""

    _locks: weakref.WeakSet[FileLock] = weakref.WeakSet()
    _guard = threading.Lock()
    _thread: threading.Thread | None = None
    _wake = threading.Event()

    @classmethod
    def add(cls, lock: FileLock) -> None:
        with cls._guard:
            cls._locks.add(lock)
            if cls._thread is None or not cls._thread.is_alive():
                cls._thread = threading.Thread(target=cls._run, name="weprompt-lease", daemon=True)
                cls._thread.start()

    @classmethod
    def discard(cls, lock: FileLock) -> None:
        with cls._guard:
            cls._locks.discard(lock)

    @classmethod
    def _run(cls) -> None:
        while True:
            cls._wake.wait(max(0.1, _settings.lease_s / 3))  # configure() wakes it to pick up a new length
            cls._wake.clear()
            with cls._guard:
                locks = list(cls._locks)
            for lock in locks:
                try:
                    if not lock.renew():
                        cls.discard(lock)
                except Exception:
                    log.exception("renewing %s", lock.path)
