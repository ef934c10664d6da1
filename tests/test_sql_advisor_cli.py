"""The SQL advisor as a user runs it (issue 20): `chat --persona sql --db ...` in a real terminal and
as one-shot commands, on the embedded demo model (greedy), with SQLite files and a real PostgreSQL
server; `resume` reconnecting with the password from the environment; the bad inputs, one line each.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pg_server import PgServer, demo_shop_script, pg_server  # noqa: F401  (fixture)

pexpect = pytest.importorskip("pexpect")

ROOT = Path(__file__).resolve().parent.parent
DEMO = ("--persona", "sql", "--model", "demo", "-t", "0")


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "WEPROMPT_HOME": str(home), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    for key in ("WEPROMPT_RAISE_ERRORS", "WEPROMPT_DB_PASSWORD"):
        env.pop(key, None)
    return {**env, **extra}


def run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "weprompt_cli", *args], env=env_for(home, **env), cwd=str(ROOT),
                          input="", capture_output=True, text=True, timeout=300, check=False)


def spawn(home: Path, *args: str) -> Any:
    return pexpect.spawn(sys.executable, ["-m", "weprompt_cli", *args], env=env_for(home), cwd=str(ROOT),
                         dimensions=(40, 120), encoding="utf-8", codec_errors="replace", timeout=180)


def flat(text: str) -> str:
    """`text` with rich's wrapping undone (it wraps long status lines at spaces)."""
    return " ".join(text.split())


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert lines and lines[0].startswith("weprompt: error: "), lines
    assert len([ln for ln in lines if not ln.startswith("  hint:")]) == 1, lines
    assert "Traceback" not in stderr
    return lines[0]


def session_dirs(home: Path) -> list[Path]:
    folder = home / "sessions"
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


def meta_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "session.json").read_text())


def turns_of(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "transcript.jsonl").read_text().splitlines()]


def every_file_text(home: Path) -> str:
    """Everything WePrompt wrote under the home that is text (sessions, history, config)."""
    out = []
    for path in home.rglob("*"):
        if path.is_file() and path.suffix not in (".safetensors", ".sqlite", ".pth"):
            out.append(path.read_text(errors="replace"))
    return "\n".join(out)


# ---- the demo path, in a terminal ----------------------------------------------------------------


def test_demo_database_in_a_terminal_ask_see_the_check_run_the_table(weprompt_home: Path) -> None:
    prompt = "sql · demo1 ›"
    child = spawn(weprompt_home, "chat", *DEMO, "--db", "demo", "-s", "demo1")
    try:
        child.expect_exact("database demo (SQLite, 5 tables)")
        child.expect_exact(prompt)
        child.sendline("/run")
        child.expect_exact("the last answer has no SQL to run")
        child.expect_exact(prompt)

        child.sendline("How many customers are there?")  # (the answer's code is highlighted: checked below)
        child.expect_exact("✓ SQL valid (checked with EXPLAIN on SQLite)")
        child.expect_exact(prompt)
        child.sendline("/run")
        child.expect(r"COUNT\(\*\)(\x1b\[0m)?\s+─+\s+40\s")  # the table: header, rule, the one row
        child.expect_exact("1 row (")
        child.expect_exact(prompt)
        child.sendline("/run 9")
        child.expect_exact("there is no SQL block 9: the last answer has 1 SQL block")
        child.expect_exact(prompt)
        child.sendline("/schema")
        child.expect_exact("as the model sees it in the sql persona's prompt")
        child.expect_exact("customers(id, name, email, city, created_at), orders(")
        child.expect_exact(prompt)

        child.sendline("Delete customer 12.")
        child.expect_exact("✓ SQL valid (checked with EXPLAIN on SQLite; it changes data: DELETE)")
        child.expect_exact(prompt)
        child.sendline("/run")
        child.expect_exact("this query changes the database (DELETE); a plain run only reads")
        child.expect_exact("/run --write runs it after asking you")
        child.expect_exact(prompt)
        child.sendline("/run --write")
        child.expect_exact("Run this DELETE on demo? It changes the database. [y/N]")
        child.sendline("n")
        child.expect_exact("not run: nothing was changed")
        child.expect_exact(prompt)
        child.sendline("/run --write")
        child.expect_exact("[y/N]")
        child.sendline("y")
        child.expect_exact("1 row changed, committed")
        child.expect_exact(prompt)

        child.sendline("Tell me a joke.")
        child.expect(r"\d+ tokens")  # the status line under an answer with no SQL (and so no mark)
        child.expect_exact(prompt)
        child.sendline("/run")
        child.expect_exact("the last answer has no SQL to run")
        child.expect_exact(prompt)
        child.sendline("/history")  # the marks come back with the answers they checked
        child.expect_exact("How many customers are there?")
        child.expect_exact("✓ SQL valid (checked with EXPLAIN on SQLite)")
        child.expect_exact("Delete customer 12.")
        child.expect_exact("✓ SQL valid (checked with EXPLAIN on SQLite; it changes data: DELETE)")
        child.expect_exact("Tell me a joke.")
        child.expect_exact(prompt)
        child.sendline("/quit")
        child.expect_exact("saved: weprompt resume demo1")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0

    [folder] = session_dirs(weprompt_home)
    assert meta_of(folder)["extra"]["db"]["target"] == "demo"
    turns = turns_of(folder)
    assert [t["user"] for t in turns] == ["How many customers are there?", "Delete customer 12.",
                                          "Tell me a joke."]
    assert "SELECT COUNT(*) FROM customers;" in turns[0]["assistant"]
    assert "DELETE FROM customers WHERE id = 12;" in turns[1]["assistant"]
    assert turns[0]["checks"] == [{"kind": "sql", "db": "demo", "ok": True,
                                   "mark": "✓ SQL valid (checked with EXPLAIN on SQLite)",
                                   "checks": [{"status": "valid", "problem": None}]}]
    assert "```" not in turns[2]["assistant"] and turns[2]["checks"] == []  # no SQL, no mark
    shown = run(weprompt_home, "sessions", "show", "demo1")
    assert shown.returncode == 0, shown.stderr
    assert flat(shown.stdout).count("✓ SQL valid") == 2
    exported = run(weprompt_home, "sessions", "export", "demo1")
    assert "- ✓ SQL valid (checked with EXPLAIN on SQLite; it changes data: DELETE)" in exported.stdout
    assert exported.stdout.count("✓") == 2
    [demo_copy] = (weprompt_home / "cache" / "db").glob("demo-shop-*.sqlite")
    conn = sqlite3.connect(demo_copy)
    assert conn.execute("SELECT count(*) FROM customers WHERE id = 12").fetchone() == (0,)  # the confirmed write
    conn.close()


def test_a_failed_check_is_fed_back_as_a_visible_fix_turn(weprompt_home: Path, tmp_path: Path) -> None:
    # The user's own database names its columns differently from the demo schema the demo model knows,
    # so its first answer (`SELECT name FROM customers ...`) fails the check.
    db = tmp_path / "crm.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT, town TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'Ann Lee', 'Paris')")
    conn.commit()
    conn.close()
    question = "Show the names of customers who live in Paris."
    result = run(weprompt_home, "chat", *DEMO, "--db", str(db), "-m", question)
    assert result.returncode == 0, result.stderr
    assert "✗ SQL error: " in result.stderr
    fix_lines = [ln for ln in result.stderr.splitlines() if ln.startswith("› The query failed: ")]
    assert len(fix_lines) == 1 and fix_lines[0].endswith(". Fix it.")
    [folder] = session_dirs(weprompt_home)
    turns = turns_of(folder)
    assert len(turns) == 2 and turns[1]["user"] == fix_lines[0].removeprefix("› ")
    assert turns[0]["checks"][0]["ok"] is False

    again = run(weprompt_home, "chat", *DEMO, "--db", str(db), "--fix", "0", "-m", question)
    assert again.returncode == 0 and "✗ SQL error: " in again.stderr and "› The query failed" not in again.stderr


def test_the_second_start_on_the_same_database_feeds_nothing(weprompt_home: Path, tmp_path: Path) -> None:
    from weprompt_cli.chat.params import effective_params
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.chat.sql_advisor import SqlAdvisor
    from weprompt_cli.config import Config
    from weprompt_cli.db import demo_database
    from weprompt_cli.demo import DEMO_MODEL_PATH
    from weprompt_cli.engine import load_engine
    from weprompt_cli.paths import resolve_home
    from weprompt_cli.personas import find_persona
    from weprompt_cli.store import SessionStore

    home = resolve_home()
    engine = load_engine(DEMO_MODEL_PATH, "cpu fp32", cache_dir=home.cache)
    store = SessionStore(home)
    path = tmp_path / "shop.db"
    path.write_bytes(demo_database(tmp_path / "cache").read_bytes())

    def start() -> int:
        before = engine.counters.fed
        with SqlAdvisor.open(str(path), cache_dir=home.cache) as advisor:
            persona = advisor.persona(find_persona("sql", home=home))
            params = effective_params(Config(), persona, None, {})
            ChatSession.start(engine, store, persona, params, extra=advisor.session_extra(persona)).close()
        return engine.counters.fed - before

    assert start() > 100  # the persona's prompt with this database's schema, fed once...
    assert start() == 0  # ...and cached under a key with the schema in it
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    assert start() > 100  # another schema is another prompt


def test_db_in_the_repl_connects_shows_and_drops_a_database(weprompt_home: Path, tmp_path: Path) -> None:
    from weprompt_cli.db import demo_database

    path = tmp_path / "mine.db"
    path.write_bytes(demo_database(tmp_path / "cache").read_bytes())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = spawn(weprompt_home, "chat", *DEMO, "-s", "first")
    try:
        child.expect_exact("sql · first ›")
        child.sendline("/db")
        child.expect_exact("no database connected; /db PATH|URL|demo connects one")
        child.sendline("/schema")
        child.expect_exact("no database connected: the sql persona's default schema")
        child.expect_exact("sql · first ›")
        child.sendline(f"/db postgresql://me:hunter2@127.0.0.1:{port}/shop")
        child.expect_exact("cannot reach the database server")
        child.expect_exact("sql · first ›")
        child.sendline(f"/db {path}")
        # (a long line: the terminal may wrap it at any space)
        child.expect(r"connected\s+\S+mine\.db\s+\(SQLite,\s+5\s+tables\);[\s\S]*?new\s+session\s+(sql-\w+)")
        new_name = child.match.group(1)
        child.expect_exact(f"sql · {new_name} ›")
        child.sendline("/schema")
        child.expect_exact("the SQLite tables below")
        child.expect_exact("customers(id INTEGER PK, name TEXT, email TEXT, city TEXT, created_at TEXT)")
        child.expect_exact(f"sql · {new_name} ›")
        child.sendline("How many customers are there?")
        child.expect_exact("✓ SQL valid (checked with EXPLAIN on SQLite)")
        child.expect_exact(f"sql · {new_name} ›")
        child.sendline("/db off")
        child.expect(r"disconnected\s+\S+mine\.db;\s+new\s+session\s+(sql-\w+)")
        last_name = child.match.group(1)
        child.expect_exact(f"sql · {last_name} ›")
        child.sendline("/run")
        child.expect_exact("no database connected to run it on")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    by_name = {meta_of(f)["name"]: f for f in session_dirs(weprompt_home)}
    assert set(by_name) == {"first", new_name, last_name}
    assert meta_of(by_name[new_name])["extra"]["db"]["target"] == str(path)
    assert "db" not in meta_of(by_name[last_name])["extra"]
    history = (weprompt_home / "history").read_text()  # the REPL's input history keeps the line, not the password
    assert f"/db postgresql://me@127.0.0.1:{port}/shop" in history and "hunter2" not in every_file_text(weprompt_home)


# ---- PostgreSQL: credentials stay out of every file, resume reconnects ----------------------------


def test_postgres_session_keeps_no_password_and_resume_reconnects(pg_server: PgServer,  # noqa: F811
                                                                  weprompt_home: Path) -> None:
    pg_server.create_database("cli_shop", demo_shop_script())
    with_password = pg_server.url("cli_shop", password=pg_server.password)
    first = run(weprompt_home, "chat", *DEMO, "--db", with_password, "--fix", "0", "-s", "pg",
                "-m", "How many customers are there?")
    assert first.returncode == 0, first.stderr
    shown = pg_server.url("cli_shop")  # the URL without the password
    assert f"database {shown} (PostgreSQL, 5 tables)" in flat(first.stderr)
    assert "on PostgreSQL" in flat(first.stderr)  # the mark names the database it checked on
    [folder] = session_dirs(weprompt_home)
    assert meta_of(folder)["extra"]["db"]["target"] == shown
    assert turns_of(folder)[0]["checks"][0]["db"] == shown
    assert pg_server.password not in every_file_text(weprompt_home) + first.stdout + first.stderr

    resumed = run(weprompt_home, "resume", "pg", "--fix", "0", "-m", "How many orders are there?",
                  WEPROMPT_DB_PASSWORD=pg_server.password)
    assert resumed.returncode == 0, resumed.stderr
    assert f"database {shown}" in flat(resumed.stderr) and "warning" not in resumed.stderr
    assert turns_of(folder)[1]["checks"], resumed.stderr  # checked on the reconnected database

    no_password = run(weprompt_home, "resume", "pg", "-m", "How many products are there?")
    assert no_password.returncode == 0, no_password.stderr
    assert flat(no_password.stderr).count("warning: cannot reopen the session's database: the database refused") == 1
    assert "going on without SQL checks" in flat(no_password.stderr)
    assert turns_of(folder)[2]["checks"] == []
    assert pg_server.password not in every_file_text(weprompt_home)


# ---- bad inputs: one clear line each, before the model loads --------------------------------------


def test_a_missing_sqlite_file_is_one_line_and_never_created(weprompt_home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = run(weprompt_home, "chat", *DEMO, "--db", str(missing), "-m", "hi")
    assert result.returncode == 3
    assert "no SQLite database here (nothing was created)" in one_error_line(result.stderr)
    assert not missing.exists() and session_dirs(weprompt_home) == []


def test_an_unreachable_server_is_one_line(weprompt_home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(weprompt_home, "chat", *DEMO, "--db", f"postgresql://me:hunter2@127.0.0.1:{port}/shop", "-m", "hi")
    assert result.returncode == 9
    line = one_error_line(result.stderr)
    assert "cannot reach the database server" in line and f"postgresql://me@127.0.0.1:{port}/shop" in line
    assert "hunter2" not in result.stderr + result.stdout and session_dirs(weprompt_home) == []


def test_a_wrong_password_is_one_line_that_never_shows_it(pg_server: PgServer,  # noqa: F811
                                                          weprompt_home: Path) -> None:
    result = run(weprompt_home, "chat", *DEMO, "--db", pg_server.url("postgres", password="wrong-pw-9931"), "-m", "hi")
    assert result.returncode == 2
    assert "the database refused the login" in one_error_line(result.stderr)
    assert "wrong-pw-9931" not in result.stderr + result.stdout
    from_env = run(weprompt_home, "chat", *DEMO, "--db", pg_server.url("postgres"), "-m", "hi",
                   WEPROMPT_DB_PASSWORD="wrong-pw-9931")
    assert from_env.returncode == 2 and "wrong-pw-9931" not in from_env.stderr + from_env.stdout
    assert "$WEPROMPT_DB_PASSWORD" in from_env.stderr  # the hint says where the password comes from
    assert session_dirs(weprompt_home) == []


def test_fix_without_a_database_is_a_usage_error(weprompt_home: Path) -> None:
    result = run(weprompt_home, "chat", *DEMO, "--fix", "2", "-m", "hi")
    assert result.returncode == 2 and "--fix needs a database" in one_error_line(result.stderr)
    bad = run(weprompt_home, "chat", *DEMO, "--db", "demo", "--fix", "-1", "-m", "hi")
    assert bad.returncode == 2 and "invalid --fix -1" in one_error_line(bad.stderr)


def test_a_database_with_500_tables_is_one_warning_line(weprompt_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "wide.db"
    conn = sqlite3.connect(path)
    for i in range(500):
        conn.execute(f"CREATE TABLE t{i:03d} (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    result = run(weprompt_home, "chat", *DEMO, "--db", str(path), "--fix", "0", "-m", "How many rows are in t001?")
    assert result.returncode == 0, result.stderr
    text = flat(result.stderr)
    assert text.count("warning: the schema is large: the model sees ") == 1 and "of 500 tables" in text
    assert "(SQLite, 500 tables)" in text and "Traceback" not in text
