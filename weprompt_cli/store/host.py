"""Who this process is, for session leases: the lease settings, this host's name and id, and
whether a pid still runs the same process (`store/lock.py` decides with them who may take a session).
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

DEFAULT_LEASE_S = 15.0


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
