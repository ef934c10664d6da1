"""One process per session: a second opener is told who holds it; death releases the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from store_helpers import add_turns, make_session, make_store

from weprompt_cli.errors import LockedError

TESTS = str(Path(__file__).parent)

HOLDER = """
import sys
sys.path.insert(0, {tests!r})
from store_helpers import make_store
s = make_store().open("demo")
print("ready", flush=True)
sys.stdin.readline()
s.close()
print("closed", flush=True)
sys.stdin.readline()
"""


def _holder() -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(tests=TESTS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_second_process_is_told_the_holders_pid() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 1)
    proc = _holder()
    try:
        with pytest.raises(LockedError) as err:
            store.open("demo")
        assert err.value.message == f"session demo is in use by pid {proc.pid}"
        assert err.value.hint
        with pytest.raises(LockedError):
            store.delete("demo")
        with pytest.raises(LockedError):
            store.rename("demo", "other")
        # Reading, listing and forking do not need the lock.
        assert store.read("demo")[0].turns == 1
        assert [m.name for m in store.list()[0]] == ["demo"]
        assert store.fork("demo", 1).turns == 1
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "closed"
        with store.open("demo") as s:  # released on close
            assert len(s.turns()) == 1
    finally:
        proc.kill()
        proc.wait()


def test_lock_is_released_when_the_holder_is_killed() -> None:
    store = make_store()
    make_session(store).close()
    proc = _holder()
    with pytest.raises(LockedError):
        store.open("demo")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with store.open("demo") as s:
        assert s.meta.name == "demo"


def test_same_process_second_open_is_refused_until_closed() -> None:
    store = make_store()
    first = make_session(store)
    with pytest.raises(LockedError) as err:
        store.open("demo")
    assert f"pid {os.getpid()}" in err.value.message
    first.close()
    first.close()  # idempotent
    with pytest.raises(ValueError):
        first.append_turn(None, None, fingerprint="x")  # type: ignore[arg-type]
    store.open("demo").close()
