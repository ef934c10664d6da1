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


# ------------------------------------------------------------ the lease record, across hosts
# A holder on "another host" is a subprocess with its own host id and no flock (as on a
# shared filesystem where flock is per host or absent): only the lease record protects it.

import threading
import time
from collections.abc import Iterator

from weprompt_cli.store import lock as lockmod
from weprompt_cli.store.layout import LOCK

HOST_HOLDER = """
import sys
sys.path.insert(0, {tests!r})
from weprompt_cli.store import lock
lock.configure(lease_s={lease}, use_flock=False, host_id={host!r}, holder="test-holder")
from store_helpers import make_store, add_turns
s = make_store().open("demo")
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "append":
        try:
            add_turns(s, 1)
            print("appended", flush=True)
        except Exception as exc:
            print("refused", type(exc).__name__, flush=True)
    elif cmd == "held":
        print("held" if s._lock.held else "lost", flush=True)
    elif cmd == "verify":
        try:
            s._lock.verify()
            print("ours", flush=True)
        except Exception as exc:
            print("refused", exc.message, flush=True)
    elif cmd == "close":
        s.close()
        print("closed", flush=True)
"""


def _host_holder(host: str, lease: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOST_HOLDER.format(tests=TESTS, host=host, lease=lease)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _say(proc: subprocess.Popen[str], cmd: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(cmd + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


@pytest.fixture
def as_host() -> Iterator[None]:
    """This test process plays host "host-b" without flock; settings restored afterwards."""
    before = (lockmod._settings.lease_s, lockmod._settings.use_flock, lockmod._settings.host_id)
    lockmod.configure(lease_s=1.0, use_flock=False, host_id="host-b")
    yield
    lockmod._settings.lease_s, lockmod._settings.use_flock, lockmod._settings.host_id = before


def _lock_path(store: object, name: str = "demo") -> Path:
    return store.session_dir(store.resolve(name).id) / LOCK  # type: ignore[attr-defined]


def test_lease_record_names_host_pid_expiry_and_is_renewed_while_held(as_host: None) -> None:
    store = make_store()
    make_session(store).close()
    s = store.open("demo")
    try:
        first = lockmod.latest_record(_lock_path(store))
        assert first is not None and not first.released
        assert (first.host_id, first.pid, first.pid_start) == ("host-b", os.getpid(), lockmod.process_start(os.getpid()))
        assert first.host == lockmod.host_name() and 0.9 < first.expires_at - first.acquired_at < 1.1
        time.sleep(1.6)  # past the first expiry: the background thread renewed it
        again = lockmod.latest_record(_lock_path(store))
        assert again is not None and again.token == first.token and again.expires_at > first.expires_at + 0.3
        assert s._lock.held
        add_turns(s, 1)
    finally:
        s.close()
    done = lockmod.latest_record(_lock_path(store))
    assert done is not None and done.released and lockmod.holder_of(_lock_path(store)) is None
    with store.open("demo") as again_open:  # a released record is free at once
        assert len(again_open.turns()) == 1


def test_other_hosts_lease_blocks_until_it_expires_then_the_stale_holder_writes_nothing(
    as_host: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lockmod, "SKEW_S", 0.5)
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 1)
    proc = _host_holder("host-a", lease=1.5)
    try:
        assert _say(proc, "append") == "appended"
        with pytest.raises(LockedError) as err:
            store.open("demo")
        assert err.value.message == f"session demo is in use by pid {proc.pid} on {lockmod.host_name()}"
        assert "another host" in (err.value.hint or "")
        os.kill(proc.pid, signal.SIGSTOP)  # a frozen host: it can no longer renew
        time.sleep(0.6)
        with pytest.raises(LockedError):  # still inside its lease
            store.open("demo")
        time.sleep(1.6)  # lease (1.5 s) + skew (0.5 s) have passed
        taken = store.open("demo")
        os.kill(proc.pid, signal.SIGCONT)
        # The old holder learns it lost the session before writing anything.
        assert _say(proc, "held") == "lost"
        assert _say(proc, "append") == "refused LockedError"  # a 409 over HTTP, naming the new holder
        verdict = _say(proc, "verify")
        assert verdict.startswith("refused session demo was taken over by pid") and "after this process's lease" in verdict
        add_turns(taken, 1)
        assert _say(proc, "close") == "closed"  # its release leaves our record alone
        record = lockmod.latest_record(_lock_path(store))
        assert record is not None and record.pid == os.getpid() and not record.released
        taken.close()
        assert [t.index for t in store.read("demo")[1]] == [1, 2, 3]
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


def test_dead_holder_on_this_host_is_taken_over_at_once_without_waiting_for_its_lease(as_host: None) -> None:
    store = make_store()
    make_session(store).close()
    proc = _host_holder("host-b", lease=30)  # our own host id: its pid can be checked
    try:
        with pytest.raises(LockedError) as err:
            store.open("demo")
        assert err.value.message == f"session demo is in use by pid {proc.pid}"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    started = time.monotonic()
    with store.open("demo") as s:
        assert s.meta.name == "demo"
    assert time.monotonic() - started < 5  # not the 30 s lease


def test_a_stopped_holder_takes_its_own_expired_lease_back_when_nobody_else_did(as_host: None) -> None:
    store = make_store()
    make_session(store).close()
    proc = _host_holder("host-a", lease=2.0)
    try:
        os.kill(proc.pid, signal.SIGSTOP)  # a laptop lid closed for longer than the lease
        time.sleep(2.6)
        os.kill(proc.pid, signal.SIGCONT)
        assert _say(proc, "append") == "appended"  # nobody took it: the next generation is its own
        assert _say(proc, "verify") == "ours"
        record = lockmod.latest_record(_lock_path(store))
        assert record is not None and record.pid == proc.pid and record.generation >= 3
    finally:
        proc.kill()
        proc.wait()


def test_hosts_racing_for_an_expired_lease_leave_exactly_one_holder(as_host: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockmod, "SKEW_S", 0.0)
    store = make_store()
    make_session(store).close()
    proc = _host_holder("host-a", lease=0.5)
    os.kill(proc.pid, signal.SIGKILL)  # on another host: only its lease's expiry frees it
    proc.wait()
    time.sleep(0.7)
    path = _lock_path(store)
    winners: list[object] = []
    refused: list[str] = []
    gate = threading.Barrier(8)

    def take() -> None:
        gate.wait()
        try:
            winners.append(lockmod.FileLock.acquire(path, label="session demo"))
        except LockedError as exc:
            refused.append(exc.message)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(refused) == 7
    assert all(m == f"session demo is in use by pid {os.getpid()}" for m in refused)
    winners[0].release()  # type: ignore[attr-defined]


WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from weprompt_cli.store import lock
lock.configure(lease_s=2.0, use_flock=False, host_id={host!r})
from weprompt_cli.errors import LockedError
from store_helpers import make_store, add_turns
store = make_store()
done = 0
deadline = time.monotonic() + 60
while done < {turns} and time.monotonic() < deadline:
    try:
        s = store.open("demo")
    except LockedError:
        time.sleep(0.002)
        continue
    try:
        add_turns(s, 1)
        done += 1
    finally:
        s.close()
print(done, flush=True)
"""


def test_two_hosts_writing_one_session_in_a_loop_never_interleave() -> None:
    store = make_store()
    with make_session(store) as s:
        add_turns(s, 1)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER.format(tests=TESTS, host=host, turns=15)],
                         stdout=subprocess.PIPE, text=True)
        for host in ("host-a", "host-b")
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outs == ["15", "15"]
    turns = store.read("demo")[1]
    assert [t.index for t in turns] == list(range(1, 32))  # 1 + 2 x 15, no index twice, none lost
