"""What a hard test of WePrompt found (issue 15), each as a user meets it.

The CLI runs as users run it: a subprocess, or the REPL in a pseudo-terminal, on the
embedded demo model (greedy, fast) or a tiny random model. A full disk is a real small
tmpfs mounted for the test (skipped, with the reason, where mounting is not allowed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pexpect = pytest.importorskip("pexpect")

ROOT = Path(__file__).resolve().parent.parent


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "WEPROMPT_HOME": str(home), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    env.pop("WEPROMPT_RAISE_ERRORS", None)
    return {**env, **extra}


def run(home: Path, *args: Any, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "weprompt_cli", *args], env=env_for(home), cwd=str(ROOT),
                          input=stdin if stdin is not None else b"", capture_output=True, timeout=300, check=False)


def spawn(home: Path, *args: str) -> Any:
    return pexpect.spawn(sys.executable, ["-m", "weprompt_cli", *args], env=env_for(home), cwd=str(ROOT),
                         dimensions=(40, 120), encoding="utf-8", codec_errors="replace", timeout=180)


def sessions(home: Path) -> list[dict[str, Any]]:
    folder = home / "sessions"
    if not folder.is_dir():
        return []
    return [json.loads((p / "session.json").read_text()) for p in sorted(folder.iterdir())
            if p.is_dir() and not p.name.startswith(".")]


def transcript(home: Path, name: str) -> list[dict[str, Any]]:
    for p in (home / "sessions").iterdir():
        if (p / "session.json").is_file() and json.loads((p / "session.json").read_text())["name"] == name:
            return [json.loads(line) for line in (p / "transcript.jsonl").read_text().splitlines()]
    raise AssertionError(f"no session {name}")


def one_error_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    assert lines and lines[0].startswith("weprompt: error: "), lines
    assert len([ln for ln in lines if not ln.startswith("  hint:")]) == 1, lines
    assert "Traceback" not in stderr.decode("utf-8", "replace")
    return lines[0]


# ---------------------------------------------------------------------------- input
@pytest.mark.parametrize("how", ["stdin", "-m"])
def test_text_that_is_not_utf8_is_one_usage_error_and_creates_nothing(how: str, weprompt_home: Path) -> None:
    if how == "stdin":
        result = run(weprompt_home, "chat", "--model", "demo", stdin=b"hi \xff there")
    else:
        result = run(weprompt_home, "chat", "--model", "demo", "-m", b"hi \xff there")
    assert result.returncode == 2
    assert "not UTF-8" in one_error_line(result.stderr)
    assert sessions(weprompt_home) == []


def test_an_empty_stdin_is_refused_like_an_empty_message(weprompt_home: Path) -> None:
    piped = run(weprompt_home, "chat", "--model", "demo", stdin=b"")
    assert piped.returncode == 2 and "empty" in one_error_line(piped.stderr)
    blank = run(weprompt_home, "chat", "--model", "demo", "-m", "  ")
    assert blank.returncode == 2 and "empty" in one_error_line(blank.stderr)
    assert sessions(weprompt_home) == []


def test_a_max_tokens_flag_beyond_the_limit_is_refused_before_loading(weprompt_home: Path) -> None:
    result = run(weprompt_home, "chat", "--model", "demo", "--max-tokens", "1000000000", "-m", "hi")
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "--max-tokens" in line and "1000000" in line
    assert sessions(weprompt_home) == []


def test_a_persona_nested_too_deeply_is_skipped_with_a_warning(weprompt_home: Path) -> None:
    (weprompt_home / "personas").mkdir()
    (weprompt_home / "personas" / "deep.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    listing = run(weprompt_home, "personas")
    assert listing.returncode == 0
    out = listing.stdout.decode()
    assert "sql" in out and "project" in out and "general" in out
    assert "nested too deeply" in listing.stderr.decode() and "deep.toml" in listing.stderr.decode()
    chat = run(weprompt_home, "chat", "--persona", "sql", "--model", "demo", "-t", "0", "-m", "How many customers are there?")
    assert chat.returncode == 0 and b"customers" in chat.stdout
    unknown = run(weprompt_home, "chat", "--persona", "nope", "--model", "demo", "-m", "hi")
    assert unknown.returncode == 3 and "deep" not in one_error_line(unknown.stderr)  # only usable personas offered


# ---------------------------------------------------------------------------- settings
def test_switching_persona_takes_the_new_personas_settings(weprompt_home: Path) -> None:
    child = spawn(weprompt_home, "chat", "--persona", "general", "--model", "demo", "-s", "first")
    try:
        child.expect_exact("general · first ›")
        child.sendline("/persona project")
        child.expect("with persona project")
        child.expect_exact("project · ")
        child.sendline("/info")
        child.expect(r"sampling\s+temperature=0.3 top_p=0.6")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    [project] = [s for s in sessions(weprompt_home) if s["persona"] == "project"]
    assert (project["sampling"]["temperature"], project["sampling"]["top_p"]) == (0.3, 0.6)


def test_set_is_saved_with_the_session_and_kept_on_resume(weprompt_home: Path) -> None:
    child = spawn(weprompt_home, "chat", "--persona", "sql", "--model", "demo", "-s", "tuned")
    try:
        child.expect_exact("sql · tuned ›")
        child.sendline("/set temperature 0.05")
        child.expect(r"temperature = 0.05 \(saved with this session\)")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    [meta] = sessions(weprompt_home)
    assert meta["sampling"]["temperature"] == 0.05
    child = spawn(weprompt_home, "resume", "tuned")
    try:
        child.expect_exact("sql · tuned ›")
        child.sendline("/info")
        child.expect(r"sampling\s+temperature=0.05 ")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


# ---------------------------------------------------------------------------- files
def test_export_into_a_missing_folder_is_an_error_and_creates_nothing(weprompt_home: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "dir" / "x.md"
    child = spawn(weprompt_home, "chat", "--persona", "sql", "--model", "demo", "-s", "ex")
    try:
        child.expect_exact("sql · ex ›")
        child.sendline(f"/export {target}")
        child.expect("no folder")
        child.expect_exact("sql · ex ›")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    result = run(weprompt_home, "sessions", "export", "ex", "-o", str(target))
    assert result.returncode == 3 and "no such folder" in one_error_line(result.stderr)
    assert not (tmp_path / "missing").exists()


def test_rebuild_replays_and_rewrites_every_state(weprompt_home: Path) -> None:
    assert run(weprompt_home, "chat", "--persona", "sql", "--model", "demo", "-s", "rb", "-t", "0",
               "-m", "How many customers are there?").returncode == 0
    assert run(weprompt_home, "resume", "rb", "-m", "And products?").returncode == 0
    [folder] = [p for p in (weprompt_home / "sessions").iterdir() if p.is_dir() and not p.name.startswith(".")]
    states = sorted((folder / "states").iterdir())
    from safetensors.torch import load_file

    before = {p.name: (p.stat().st_mtime_ns, load_file(p)) for p in states}
    assert sorted(before) == ["000000.safetensors", "000001.safetensors", "000002.safetensors"]
    result = run(weprompt_home, "resume", "rb", "--rebuild", "-m", "And orders?")
    assert result.returncode == 0, result.stderr
    assert "replaying 2 turns" in result.stderr.decode()
    for name, (mtime, tensors) in before.items():
        path = folder / "states" / name
        assert path.stat().st_mtime_ns != mtime  # written again...
        again = load_file(path)  # ...with the same state: the same model replays the same tokens
        assert sorted(again) == sorted(tensors)
        # Replaying feeds a turn in one chunk where the live turn fed its reply token by token: the same math in
        # another order, equal to float32 rounding.
        assert all(float((again[k].float() - tensors[k].float()).abs().max()) < 1e-4 for k in tensors)


def test_resume_folds_a_long_past_answer(weprompt_home: Path) -> None:
    from weprompt_cli.paths import Home
    from weprompt_cli.store import SessionStore, Turn, utc_now

    assert run(weprompt_home, "chat", "--persona", "sql", "--model", "demo", "-s", "long", "-t", "0",
               "-m", "How many customers are there?").returncode == 0
    store = SessionStore(Home(weprompt_home, "test"))
    answer = "\n".join(f"line {i} of a very long answer" for i in range(1, 61))
    with store.open("long") as opened:
        first = opened.turns()[0]
        # A long turn as a real model could write it (no state saved: resume replays it).
        opened.append_turn(Turn(2, "write a long report", answer, "\n\nUser: write a long report\n\nAssistant:",
                                " " + answer, first.prompt_tokens, first.reply_tokens, "length", utc_now(), utc_now()),
                           None, fingerprint="")
    child = spawn(weprompt_home, "resume", "long")
    try:
        child.expect("line 1 of a very long answer")
        child.expect(r"more lines")
        child.expect_exact("sql · long ›")
        screen = child.before
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert "line 60 of a very long answer" not in screen


# ---------------------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs: a disk that really fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up here ({done.stderr.strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk`; the file to delete to free it again."""
    for name, block in (("filler", 65536), ("filler-small", 512)):  # then the last partial block
        fd = os.open(disk / name, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\0" * block)
        except OSError:
            pass
        finally:
            os.close(fd)
    return disk / "filler"


def test_a_full_disk_in_the_repl_is_one_line_and_the_repl_stays(small_disk: Path) -> None:
    home = small_disk / "home"
    home.mkdir()
    child = spawn(home, "chat", "--persona", "sql", "--model", "demo", "-s", "full", "-t", "0")
    try:
        child.expect_exact("sql · full ›")
        filler = fill(small_disk)
        child.sendline("How many customers are there?")
        child.expect("input history not saved")
        child.expect("disk is full")
        child.expect_exact("sql · full ›")
        assert "Traceback" not in child.before
        child.sendline("/info")  # still here, and the failed turn was not recorded
        child.expect(r"turns\s+0")
        child.expect_exact("sql · full ›")
        filler.unlink()
        (small_disk / "filler-small").unlink()
        child.sendline("How many customers are there?")
        child.expect(r"tokens · .* tok/s")
        child.expect_exact("sql · full ›")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert [t["user"] for t in transcript(home, "full")] == ["How many customers are there?"]


def test_a_new_session_whose_first_turn_could_not_be_saved_is_not_left_behind(small_disk: Path) -> None:
    home = small_disk / "home"
    home.mkdir()
    child = spawn(home, "chat", "--persona", "sql", "--model", "demo", "-s", "gone", "-t", "0")
    try:
        child.expect_exact("sql · gone ›")
        fill(small_disk)
        child.sendline("How many customers are there?")
        child.expect("disk is full")
        child.expect_exact("sql · gone ›")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert sessions(home) == []
