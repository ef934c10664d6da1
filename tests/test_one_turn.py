"""One turn serves every entry point: the same question, greedy, on the embedded demo model,
asked in the REPL (a real pseudo-terminal), with `chat -m`, through `POST /generate-response`
and through `POST /v1/chat/completions` (bound to a session, and stateless), gives the same
answer and, where it is stored, the same turn on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from test_server import Server

pexpect = pytest.importorskip("pexpect")

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "weprompt_cli" / "demo" / "weprompt-demo-rwkv7.pth"
QUESTION = "How many customers are there?"
SECOND = "Which products cost more than 50?"
# What a turn is, independent of when and how fast it ran.
SAME = ("user", "assistant", "prompt_text", "reply_text", "prompt_tokens", "reply_tokens", "stop_reason")


def stored_turns(home: Path, name: str) -> list[dict[str, Any]]:
    sessions = home / "sessions"
    for folder in sessions.iterdir():
        meta = folder / "session.json"
        if meta.is_file() and json.loads(meta.read_text())["name"] == name:
            lines = (folder / "transcript.jsonl").read_text().splitlines()
            return [{k: json.loads(line)[k] for k in SAME} for line in lines]
    raise AssertionError(f"no session {name} in {home}")


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WEPROMPT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "weprompt_cli", *args], env=env, cwd=str(ROOT), capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)


def test_the_repl_the_cli_and_both_endpoints_answer_with_the_same_turn(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()

    # chat -m: two turns, the second one resumed in a new process.
    first = cli(home, "chat", "--persona", "sql", "--model", "demo", "-s", "cli", "-t", "0", "-m", QUESTION)
    assert first.returncode == 0, first.stderr
    second = cli(home, "resume", "cli", "-m", SECOND)
    assert second.returncode == 0, second.stderr

    # The REPL in a pseudo-terminal.
    env = {**os.environ, "WEPROMPT_HOME": str(home), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    child = pexpect.spawn(sys.executable, ["-m", "weprompt_cli", "chat", "--persona", "sql", "--model", "demo",
                                           "-s", "repl", "-t", "0"],
                          env=env, cwd=str(ROOT), dimensions=(40, 120), encoding="utf-8", timeout=180)
    try:
        prompt = "sql · repl ›"
        child.expect_exact(prompt)
        child.sendline(QUESTION)
        child.expect(r"tokens · .* tok/s")
        child.expect_exact(prompt)
        child.sendline(SECOND)
        child.expect(r"tokens · .* tok/s")
        child.expect_exact(prompt)
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)

    # The HTTP API on the same home.
    server = Server(home, DEMO)
    try:
        with httpx.Client(base_url=server.url, timeout=300) as client:
            answers = []
            for text in (QUESTION, SECOND):
                body = {"user_message": text, "user_id": "ana", "discussion_id": "d1", "prompt_file": "SQLAdvisor",
                        "temperature": 0}
                r = client.post("/generate-response", json=body)
                assert r.status_code == 200, r.text
                answers.append(r.json()["generated_text"])
            bound = []
            for text in (QUESTION, SECOND):
                r = client.post("/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": text}], "session": "oa", "persona": "sql",
                    "temperature": 0})
                assert r.status_code == 200, r.text
                bound.append(r.json()["choices"][0]["message"]["content"])
            # Stateless: the client sends the whole conversation each time.
            history: list[dict[str, str]] = []
            stateless = []
            for text in (QUESTION, SECOND):
                history.append({"role": "user", "content": text})
                r = client.post("/v1/chat/completions", json={"messages": history, "persona": "sql", "temperature": 0})
                assert r.status_code == 200, r.text
                reply = r.json()["choices"][0]["message"]["content"]
                stateless.append(reply)
                history.append({"role": "assistant", "content": reply})
    finally:
        server.stop()

    reference = stored_turns(home, "cli")
    assert len(reference) == 2 and reference[0]["assistant"].strip() and reference[0]["stop_reason"] == "stop"
    assert stored_turns(home, "repl") == reference
    assert stored_turns(home, "u-ana--d1") == reference
    assert stored_turns(home, "oa") == reference
    assert answers == bound == stateless == [t["assistant"] for t in reference]
    # What was printed is what was stored.
    assert first.stdout.strip().replace("\n", "") .startswith(reference[0]["assistant"].splitlines()[0].strip()[:20])
