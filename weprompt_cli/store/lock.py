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
import logging
import os
import secrets
import threading
import time
import weakref
from pathlib import Path

from weprompt_cli.errors import DiskError, LockedError, WePromptError

# The lease's parts, re-exported: callers and tests know them as `lock.<name>`.
from weprompt_cli.store.host import (  # noqa: F401
    DEFAULT_LEASE_S,
    _settings,
    host_id,
    host_name,
    lease_seconds,
    pid_alive,
    process_start,
)
from weprompt_cli.store.lease import (  # noqa: F401
    LEASE_FORMAT,
    LEASE_SCHEMA,
    LeaseRecord,
    _latest,
    _newest_generation,
    _prune,
    _publish,
    _read_record,
    _rewrite,
    holder_of,
    latest_record,
    lease_path,
)

log = logging.getLogger("weprompt.store.lock")

SKEW_S = 2.0  # a foreign lease is taken over only this long after it expired (clock skew)
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


# --------------------------------------------------------------------------- settings
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
