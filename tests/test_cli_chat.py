"""`weprompt chat` and `weprompt resume` as a user runs them: real processes, real tiny models."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from checkpoints import build_checkpoint, tiny_model

GREEDY = ["-t", "0", "--max-tokens", "8"]


@pytest.fixture(scope="module")
def v7(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model("v7", tmp_path_factory.getbasetemp() / "tiny-models")


def weprompt(*args: str, input: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a new process, as a user would (stdin not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "weprompt_cli", *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode not in (0, None), result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("weprompt: error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def sessions() -> list[dict[str, Any]]:
    result = weprompt("list-sessions", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_one_message_streams_an_answer_and_saves_the_turn(v7: Path) -> None:
    result = weprompt("chat", "--persona", "sql", "--model", str(v7), "--session", "one", "-m", "count customers", *GREEDY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "the answer goes to stdout"
    assert "session one" in result.stderr and "8 tokens" in result.stderr
    [meta] = sessions()
    assert (meta["name"], meta["persona"], meta["turns"]) == ("one", "sql", 1)


def test_piped_stdin_is_one_turn_and_resume_continues_it(v7: Path) -> None:
    first = weprompt("chat", "--model", str(v7), "--session", "piped", *GREEDY, input="what is an index?\n")
    assert first.returncode == 0, first.stderr
    second = weprompt("resume", "piped", "-m", "and a primary key?", *GREEDY)
    assert second.returncode == 0, second.stderr
    third = weprompt("resume", "--last", "-m", "thanks", *GREEDY)
    assert third.returncode == 0, third.stderr
    [meta] = sessions()
    assert (meta["name"], meta["persona"], meta["turns"]) == ("piped", "general", 3)
    shown = weprompt("sessions", "show", "piped")
    assert "what is an index?" in shown.stdout and "and a primary key?" in shown.stdout


def test_resume_gives_the_same_answer_as_an_uninterrupted_chat(v7: Path) -> None:
    weprompt("chat", "--model", str(v7), "--session", "a", "-m", "first question", *GREEDY)
    straight = weprompt("resume", "a", "-m", "second question", *GREEDY)
    # Same two turns, but the first was answered by another process: resume must not matter.
    weprompt("chat", "--model", str(v7), "--session", "b", "-m", "first question", *GREEDY)
    resumed = weprompt("resume", "b", "-m", "second question", *GREEDY)
    assert straight.returncode == resumed.returncode == 0
    assert straight.stdout == resumed.stdout


def malicious_pickle(path: Path, marker: Path) -> Path:
    class Payload:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))

    path.write_bytes(pickle.dumps({"emb.weight": Payload()}))
    return path


@pytest.mark.parametrize(
    "case",
    ["missing", "not_checkpoint", "invalid_strategy", "v7_int8", "v7_split", "unknown_persona", "bad_name", "cuda"],
)
def test_bad_input_gets_one_line_and_a_nonzero_exit(case: str, v7: Path, tmp_path: Path) -> None:
    args = {
        "missing": ["--model", str(tmp_path / "nope.pth")],
        "not_checkpoint": ["--model", str(_text_file(tmp_path / "notes.pth"))],
        "invalid_strategy": ["--model", str(v7), "--strategy", "gpu fp99"],
        "v7_int8": ["--model", str(v7), "--strategy", "cpu fp32i8"],
        "v7_split": ["--model", str(v7), "--strategy", "cpu fp32 *1 -> cpu fp32"],
        "unknown_persona": ["--model", str(v7), "--persona", "pirate"],
        "bad_name": ["--model", str(v7), "--session", "../escape"],
        "cuda": ["--model", str(v7), "--strategy", "cuda fp16"],
    }[case]
    needles = {
        "missing": ["nope.pth"],
        "not_checkpoint": ["notes.pth"],
        "unknown_persona": ["pirate"],
        "v7_int8": ["RWKV-7"],
        "v7_split": ["RWKV-7"],
    }.get(case, [])
    result = weprompt("chat", *args, "-m", "hi", *GREEDY)
    assert_one_line_error(result, *needles)
    assert sessions() == [], "a failed start leaves no session behind"
    assert not (tmp_path.parent / "escape").exists()


def _text_file(path: Path) -> Path:
    path.write_text("this is not a model\n")
    return path


def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    model = malicious_pickle(tmp_path / "evil.pth", marker)
    result = weprompt("chat", "--model", str(model), "-m", "hi")
    assert_one_line_error(result, "evil.pth")
    assert not marker.exists()


def test_a_raven_model_without_its_tokenizer_says_what_to_do(tmp_path: Path) -> None:
    model = build_checkpoint("v4", tmp_path / "raven.pth", n_layer=1, n_embd=32, vocab_size=50277, tokenizer=None)
    result = weprompt("chat", "--model", str(model), "-m", "hi")
    assert_one_line_error(result, "20B_tokenizer.json")
    assert "hint:" in result.stderr


def test_name_taken_unknown_session_and_locked_session(v7: Path) -> None:
    assert weprompt("chat", "--model", str(v7), "--session", "mine", "-m", "hi", *GREEDY).returncode == 0
    taken = weprompt("chat", "--model", str(v7), "--session", "mine", "-m", "hi", *GREEDY)
    assert_one_line_error(taken, "mine")
    assert "weprompt resume mine" in taken.stderr
    assert_one_line_error(weprompt("resume", "nobody", "-m", "hi"), "nobody")
    assert_one_line_error(weprompt("resume", "-m", "hi"))

    from weprompt_cli.paths import resolve_home
    from weprompt_cli.store import SessionStore

    with_lock = SessionStore(resolve_home()).open("mine")
    try:
        locked = weprompt("resume", "mine", "-m", "hi", *GREEDY)
        assert_one_line_error(locked, f"pid {os.getpid()}")
    finally:
        with_lock.close()
    assert sessions()[0]["turns"] == 1


def test_kill_9_during_a_reply_keeps_every_finished_turn(v7: Path) -> None:
    assert weprompt("chat", "--model", str(v7), "--session", "k", "-m", "one", *GREEDY).returncode == 0
    assert weprompt("resume", "k", "-m", "two", *GREEDY).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "weprompt_cli", "resume", "k", "-m", "three", "-t", "0", "--max-tokens", "100000"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        proc.stdout.read(1)  # the reply has started streaming
        assert proc.poll() is None, "the reply ended too soon for this test"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    [meta] = sessions()
    assert meta["turns"] == 2
    after = weprompt("resume", "k", "-m", "four", *GREEDY)
    assert after.returncode == 0, after.stderr
    assert "warning" not in after.stderr.lower(), "the checkpoint of turn 2 is intact: no replay"
    assert sessions()[0]["turns"] == 3
    home = Path(os.environ["WEPROMPT_HOME"])
    leftovers = [p for p in (home / "sessions").rglob("*") if p.name.startswith(".tmp")]
    assert leftovers == []
