"""`weprompt list-sessions` and `weprompt sessions ...`, driven the way a user runs them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from store_helpers import add_turns, make_session, make_store

from weprompt_cli.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run `weprompt ARGS` in this process through the real entry point (error contract included)."""
    monkeypatch.setenv("COLUMNS", "200")

    def _run(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _run


def _assert_one_line_error(r: Result, code: int, *words: str) -> None:
    assert r.code == code, (r.code, r.err)
    lines = r.err.splitlines()
    assert lines[0].startswith("weprompt: error: ") and all(w in lines[0] for w in words), r.err
    assert len(lines) <= 2 and all(line.startswith("  hint: ") for line in lines[1:]), r.err
    assert "Traceback" not in r.err


@pytest.fixture
def three_sessions() -> list[str]:
    store = make_store()
    ids = []
    for name, persona, n in [("alpha", "sql", 2), ("beta", "project", 0), ("gamma", "sql", 3)]:
        with make_session(store, name=name, persona=persona) as s:
            add_turns(s, n)
            ids.append(s.meta.id)
    return ids


def test_list_sessions_table_newest_first(run, three_sessions: list[str]) -> None:  # type: ignore[no-untyped-def]
    r = run("list-sessions")
    assert r.code == 0 and r.err == ""
    rows = [line for line in r.out.splitlines() if line.strip()]
    assert rows[0].split()[:7] == ["name", "id", "persona", "model", "turns", "tokens", "last"]
    assert [row.split()[0] for row in rows[1:]] == ["gamma", "beta", "alpha"]
    gamma = rows[1].split()
    assert gamma[1] == three_sessions[2] and gamma[2:6] == ["sql", "tiny-v7.pth", "3", "18"]
    assert "just now" in rows[1]


def test_list_sessions_json_and_persona_filter(run, three_sessions: list[str]) -> None:  # type: ignore[no-untyped-def]
    r = run("list-sessions", "--json")
    data = json.loads(r.out)
    assert [d["name"] for d in data] == ["gamma", "beta", "alpha"]
    assert data[0]["id"] == three_sessions[2] and data[0]["turns"] == 3 and data[0]["model"]["arch"] == "v7"
    r = run("list-sessions", "--json", "--persona", "sql")
    assert [d["name"] for d in json.loads(r.out)] == ["gamma", "alpha"]


def test_list_sessions_empty(run) -> None:  # type: ignore[no-untyped-def]
    r = run("list-sessions")
    assert r.code == 0 and r.out == "" and "no sessions yet" in r.err
    assert json.loads(run("list-sessions", "--json").out) == []


def test_list_sessions_reports_damage_and_lists_the_rest(run, three_sessions: list[str]) -> None:  # type: ignore[no-untyped-def]
    store = make_store()
    beta = store.session_dir(three_sessions[1])
    (beta / "session.json").write_text("{")
    gamma = store.session_dir(three_sessions[2])
    lines = (gamma / "transcript.jsonl").read_text().splitlines()
    lines[1] = lines[1][:20]
    (gamma / "transcript.jsonl").write_text("\n".join(lines) + "\n")
    r = run("list-sessions")
    assert r.code == 0
    names = [line.split()[0] for line in r.out.splitlines()[1:] if line.strip()]
    assert names == ["gamma", "alpha"]
    warnings = r.err.splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings)
    assert any(f"{beta / 'session.json'}: damaged session.json" in w for w in warnings)
    assert any(f"{gamma / 'transcript.jsonl'}:2: damaged transcript line" in w for w in warnings)


def test_show_renders_the_transcript(run, three_sessions: list[str]) -> None:  # type: ignore[no-untyped-def]
    store = make_store()
    with store.open("alpha") as s:
        from store_helpers import FP, make_state, make_turn

        s.append_turn(make_turn(3, stop="interrupted"), make_state(3), fingerprint=FP)
    r = run("sessions", "show", "alpha")
    assert r.code == 0, r.err
    out = r.out
    assert out.startswith("alpha") and three_sessions[0] in out.splitlines()[0]
    assert "You · turn 1" in out and "question 1" in out and "answer 2" in out
    assert "(interrupted)" in out and "checkpoints after turns 0, 1, 2, 3" in out


def test_export_md_and_json(run, three_sessions: list[str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = run("sessions", "export", "gamma")
    assert r.code == 0 and r.out.startswith("# gamma\n") and "## Turn 3" in r.out and "**Assistant**" in r.out
    target = tmp_path / "g.json"
    r = run("sessions", "export", "gamma", "--format", "json", "-o", str(target))
    assert r.code == 0 and r.out == "" and str(target) in r.err
    doc = json.loads(target.read_text())
    assert doc["session"]["name"] == "gamma" and [t["index"] for t in doc["turns"]] == [1, 2, 3]
    assert doc["turns"][0]["prompt_tokens"] == [10, 20, 1]
    r = run("sessions", "export", "gamma", "--format", "pdf")
    assert r.code == 2 and "Traceback" not in r.err


def test_delete_asks_then_deletes(run, three_sessions: list[str]) -> None:  # type: ignore[no-untyped-def]
    store = make_store()
    r = run("sessions", "delete", "beta", stdin="n\n")
    assert r.code == 1 and "nothing deleted" in r.err
    assert store.resolve("beta")
    r = run("sessions", "delete", "beta", stdin="y\n")
    assert r.code == 0 and "deleted session beta" in r.out
    r = run("sessions", "delete", "alpha")  # no answer at all (stdin closed)
    question, _, rest = r.err.partition("\n")
    assert question.startswith("Delete session alpha")
    _assert_one_line_error(Result(r.code, r.out, rest), 2, "not deleted")
    r = run("sessions", "delete", "alpha", "--yes")
    assert r.code == 0
    assert [m.name for m in store.list()[0]] == ["gamma"]
    assert not store.session_dir(three_sessions[0]).exists()


def test_rename(run, three_sessions: list[str]) -> None:  # type: ignore[no-untyped-def]
    r = run("sessions", "rename", "alpha", "omega")
    assert r.code == 0 and "renamed alpha to omega" in r.out
    assert make_store().resolve("omega").id == three_sessions[0]
    _assert_one_line_error(run("sessions", "rename", "omega", "gamma"), 8, "already exists")
    _assert_one_line_error(run("sessions", "rename", "omega", "../x"), 2, "invalid session name")


def test_fork(run, three_sessions: list[str]) -> None:  # type: ignore[no-untyped-def]
    r = run("sessions", "fork", "gamma", "--at", "2", "--as", "gamma2")
    assert r.code == 0 and "forked gamma at turn 2 as gamma2" in r.out
    meta = make_store().resolve("gamma2")
    assert meta.turns == 2 and meta.parent is not None and meta.parent.session == three_sessions[2]
    r = run("sessions", "fork", "gamma", "--at", "1")
    assert r.code == 0 and "as gamma-at1" in r.out
    _assert_one_line_error(run("sessions", "fork", "gamma", "--at", "7"), 2, "cannot fork at turn 7")
    _assert_one_line_error(run("sessions", "fork", "gamma", "--at", "1", "--as", "alpha"), 8, "already exists")


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("sessions", "show", "nope"), 3, ("no session named 'nope'",)),
        (("sessions", "export", "nope"), 3, ("no session",)),
        (("sessions", "delete", "nope", "--yes"), 3, ("no session",)),
        (("sessions", "rename", "nope", "x"), 3, ("no session",)),
        (("sessions", "fork", "nope", "--at", "0"), 3, ("no session",)),
        (("sessions", "show", "../etc"), 2, ("invalid", "may not be a path")),
        (("sessions", "show", "/abs"), 2, ("invalid",)),
        (("sessions", "show", "bad\x1bname"), 2, ("control characters",)),
        (("sessions", "show", "x" * 300), 2, ("300 characters",)),
    ],
)
def test_error_paths_are_one_line(run, three_sessions: list[str], args, code, words) -> None:  # type: ignore[no-untyped-def]
    r = run(*args)
    _assert_one_line_error(r, code, *words)
    if code == 3:
        assert r.err.splitlines()[1] == "  hint: weprompt list-sessions"


def test_ambiguous_prefix_lists_candidates(run, three_sessions: list[str]) -> None:  # type: ignore[no-untyped-def]
    prefix = three_sessions[0][:4]
    r = run("sessions", "show", prefix)
    _assert_one_line_error(r, 2, "matches 3 sessions", three_sessions[0], three_sessions[1])
    r = run("sessions", "show", three_sessions[1])
    assert r.code == 0 and r.out.startswith("beta")


def test_delete_of_an_open_session_names_the_holder(run, three_sessions: list[str]) -> None:  # type: ignore[no-untyped-def]
    with make_store().open("alpha"):
        r = run("sessions", "delete", "alpha", "--yes")
    _assert_one_line_error(r, 7, f"session alpha is in use by pid {os.getpid()}")


def test_list_sessions_does_not_import_torch(three_sessions: list[str]) -> None:
    code = (
        "import sys\n"
        "from weprompt_cli.cli import main\n"
        "try:\n"
        "    main(['list-sessions'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'list-sessions imported torch'\n"
        "assert 'safetensors.torch' not in sys.modules\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=os.environ.copy()
    )
    assert proc.returncode == 0, proc.stderr
    assert "alpha" in proc.stdout


def test_weprompt_command_error_in_a_real_process(three_sessions: list[str]) -> None:
    exe = Path(sys.executable).with_name("weprompt")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "weprompt_cli"]
    proc = subprocess.run([*cmd, "sessions", "show", "missing"], check=False, capture_output=True, text=True)
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[0] == "weprompt: error: no session named 'missing'"
    assert "Traceback" not in proc.stderr
