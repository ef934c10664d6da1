"""What the throwaway database servers of the tests share (tests/pg_server.py, tests/mysql_server.py):
a free loopback port, the account a server runs as when the tests run as root, and a child that dies
with the test process."""

from __future__ import annotations

import ctypes  # imported here, not in the child: after the switch to the server's account /root may be unreadable
import os
import pwd
import signal
import socket
from collections.abc import Callable
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_account(*names: str, server: str) -> pwd.struct_passwd | None:
    """The first of `names` that exists, to run `server` as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip(f"running as root and there is no {' or '.join(names)} account to run {server} as")


def as_user(account: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess arguments that run a child as `account` (none for None)."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A preexec function: the child gets `sig` if the test process dies (Linux; it survives the user switch)."""

    def arm() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    return arm
