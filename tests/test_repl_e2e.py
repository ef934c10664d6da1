"""The REPL in a real pseudo-terminal: type, read the screen, check what was saved."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from checkpoints import tiny_model

pexpect = pytest.importorskip("pexpect")

TIMEOUT = 120


@pytest.fixture(scope="module")
def v7(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model("v7", tmp_path_factory.getbasetemp() / "tiny-models")


def spawn(*args: str) -> "pexpect.spawn":
    child = pexpect.spawn(
        sys.executable,
        ["-m", "weprompt_cli", *args],
        env={**os.environ, "TERM": "xterm-256color", "PYTHONUNBUFFERED": "1", "COLUMNS": "100", "LINES": "30"},
        dimensions=(30, 100),
        encoding="utf-8",
        codec_errors="replace",
        timeout=TIMEOUT,
    )
    return child


def transcript(home: Path) -> list[dict]:
    [folder] = [p for p in (home / "sessions").iterdir() if p.is_dir()]
    lines = (folder / "transcript.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_chat_in_the_repl_then_resume(v7: Path, weprompt_home: Path) -> None:
    prompt = "sql · r ›"
    child = spawn("chat", "--persona", "sql", "--model", str(v7), "--session", "r", "-t", "0", "--max-tokens", "6")
    try:
        child.expect_exact(prompt)
        child.sendline("list every customer")
        child.expect(r"6 tokens .* hit max tokens")
        child.expect_exact(prompt)
        child.sendline("only those in Paris")
        child.expect(r"6 tokens .* hit max tokens")
        child.expect_exact(prompt)

        child.sendline("/undo")
        child.expect("dropped turn 2")
        child.expect_exact(prompt)
        child.sendline("/retry")
        child.expect(r"6 tokens .* hit max tokens")
        child.expect_exact(prompt)

        child.sendline("/bogus")
        child.expect("unknown command /bogus")
        child.sendline("/set temperature warm")
        child.expect("temperature must be a number from 0 to 10, not 'warm'")
        child.sendline("/set max_tokens 100000")
        child.expect(r"max_tokens = 100000 \(saved with this session\)")
        child.expect_exact(prompt)

        child.sendline("write a very long report")
        child.expect_exact("write a very long report")  # the echo of the line...
        # ...then the live answer redrawing itself (rich's erase-line), so the prompt is gone
        # and the reply is streaming: a Ctrl-C now must stop it.
        child.expect_exact("\x1b[2K")
        child.sendcontrol("c")
        child.expect(r"tokens .* interrupted")
        child.expect_exact(prompt)

        child.sendline("/info")
        child.expect(r"turns\s+2")
        child.sendline("/quit")
        child.expect("saved: weprompt resume r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0

    turns = transcript(weprompt_home)
    assert [t["user"] for t in turns] == ["list every customer", "write a very long report"]
    assert [t["stop_reason"] for t in turns] == ["length", "interrupted"]

    child = spawn("resume", "r")
    try:
        child.expect("list every customer")  # the last turns are shown on resume
        child.expect("write a very long report")
        child.expect_exact(prompt)
        child.sendline("/set max_tokens 3")
        child.expect_exact(prompt)
        child.sendline("go on")
        child.expect(r"3 tokens .* hit max tokens")
        child.expect_exact(prompt)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    turns = transcript(weprompt_home)
    assert len(turns) == 3 and turns[2]["prompt_text"].startswith("\n\n")


def test_ctrl_c_twice_on_an_empty_line_quits(v7: Path) -> None:
    child = spawn("chat", "--model", str(v7), "--session", "q")
    try:
        child.expect_exact("general · q ›")
        child.send("half typed")
        child.sendcontrol("c")  # clears the line
        child.expect_exact("general · q ›")
        child.sendcontrol("c")
        child.expect("Ctrl-C again")
        child.sendcontrol("c")
        child.expect("saved: weprompt resume q")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
