"""`kill -9` at any instant leaves every finished turn intact and the session resumable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_helpers import FP, make_store

from weprompt_cli.store import as_state_list

TESTS = str(Path(__file__).parent)

# Appends turns with real (1 MB) states as fast as it can, reporting each finished one.
APPENDER = """
import sys
sys.path.insert(0, {tests!r})
import torch
from store_helpers import FP, make_session, make_store, make_turn
from weprompt_cli.errors import NotFoundError
store = make_store()
try:
    s = store.open("crash")
except NotFoundError:
    s = make_session(store, name="crash")
    s.save_state(0, [torch.zeros(8)], fingerprint=FP)
n = len(s.turns())
while True:
    n += 1
    s.append_turn(make_turn(n), [torch.full((256 * 1024,), float(n))], fingerprint=FP)
    print(n, flush=True)
"""

# Creates, forks and deletes sessions in a loop.
CREATOR = """
import sys
sys.path.insert(0, {tests!r})
from store_helpers import make_session, make_store
import os
store = make_store()
i = 0
tag = os.getpid()
while True:
    i += 1
    with make_session(store, name=f"s{{tag}}-{{i}}") as s:
        pass
    store.fork(f"s{{tag}}-{{i}}", 0, f"f{{tag}}-{{i}}")
    store.delete(f"f{{tag}}-{{i}}")
    print(i, flush=True)
"""


def _run_and_kill(code: str, *, after_lines: int, rng: random.Random) -> int:
    """Start `code`, wait for `after_lines` progress lines, SIGKILL it mid-flight; the last count seen."""
    proc = subprocess.Popen([sys.executable, "-c", code.format(tests=TESTS)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    last = 0
    try:
        for _ in range(after_lines):
            line = proc.stdout.readline()
            assert line, "the child died early"
            last = int(line)
        time.sleep(rng.uniform(0, 0.03))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # Lines already written but not read are finished turns too.
    for line in proc.stdout.read().split():
        last = int(line)
    return last


def _hidden_leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.slow
def test_kill_9_while_appending_keeps_every_finished_turn() -> None:
    rng = random.Random(4)
    store = make_store()
    reported = 0
    for _round in range(3):
        reported = _run_and_kill(APPENDER, after_lines=rng.randint(2, 6), rng=rng)
        metas, problems = store.list()
        assert problems == []
        assert [m.name for m in metas] == ["crash"]  # no temp file or folder lists as a session
        assert metas[0].turns >= reported
        with store.open("crash") as s:
            turns = s.turns()
            n = len(turns)
            assert n >= reported and [t.index for t in turns] == list(range(1, n + 1))
            assert s.meta.turns == n and s.meta.tokens == sum(t.token_count for t in turns)
            assert max(s.state_turns()) == n  # no state newer than the transcript
            last = as_state_list(s.load_state(n, fingerprint=FP))[0]
            assert float(last[0]) == float(n)
            assert _hidden_leftovers(s.path) == []  # opening removed a killed write's temp file
        (s.path / "session.json").read_text()  # session.json is whole
    assert reported >= 3


def test_kill_9_while_creating_forking_and_deleting_leaves_no_half_sessions() -> None:
    rng = random.Random(7)
    store = make_store()
    for _round in range(2):
        _run_and_kill(CREATOR, after_lines=rng.randint(2, 5), rng=rng)
        metas, problems = store.list()
        assert problems == []
        names = {m.name for m in metas}
        assert all(n is not None and n[0] in "sf" for n in names)
        for m in metas:
            store.open(m.id).close()
    # The next creator, under the store lock, sweeps hidden leftovers away.
    store.create(
        name="after", persona="p", model_path="m", fingerprint=FP, arch="v7", chat_format="world", sampling={}
    ).close()
    assert [p.name for p in store.root.iterdir() if p.name.startswith((".tmp-", ".trash-"))] == []
