"""`weprompt serve --db`: the sql persona on the user's database over HTTP, every answer's SQL checked.

A real server on 127.0.0.1 with the embedded demo model (greedy), on the demo database and on a
user's SQLite file whose tables differ, driven with httpx; the checks are read back from the
responses, `/health`, the transcript and `weprompt sessions show`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_server import Server, turns_of, weprompt

from weprompt_cli.chat.sql_advisor import SqlAdvisor, default_schema_hash
from weprompt_cli.paths import Home
from weprompt_cli.personas import find_persona
from weprompt_cli.store import SessionStore

GREEDY = {"temperature": 0, "max_tokens": 80}
QUESTION = "How many customers are there?"


def chat(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}], **GREEDY, **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("serve-db") / "home"
    home.mkdir()
    srv = Server(home, Path("demo"), "--db", "demo")
    yield srv
    srv.stop()


def test_sql_answers_on_the_demo_database_carry_their_check(demo_server: Server) -> None:
    assert demo_server.stats()["stats"]["db"] == "demo (SQLite, 5 tables)"
    with httpx.Client(base_url=demo_server.url, timeout=120) as client:
        answer = chat(client, session="shop", persona="sql")
        assert "SELECT COUNT(*) FROM customers" in answer["choices"][0]["message"]["content"]
        [check] = answer["checks"]
        assert check["mark"] == "✓ SQL valid (checked with EXPLAIN on SQLite)" and check["db"] == "demo"
        stateless = chat(client, persona="sql")  # no session: checked all the same, nothing stored
        assert stateless["checks"] == answer["checks"]
        r = client.post("/generate-response", json={"user_message": QUESTION, "user_id": "ana", "discussion_id": "1",
                                                   "prompt_file": "SQLAdvisor", **GREEDY})
        assert r.status_code == 200 and set(r.json()) == {"generated_text"}  # WePrompt 1.0's contract unchanged
        no_sql = chat(client, session="chat", persona="sql", messages=[{"role": "user", "content": "Tell me a joke."}])
        assert "checks" not in no_sql
        # the next turn opens the stored session again: still on this database, still checked
        again = chat(client, session="shop", messages=[{"role": "user", "content": "Delete customer 12."}])
        assert again["checks"][0]["mark"].startswith("✓ SQL valid") and "DELETE" in again["checks"][0]["mark"]
    first, second = turns_of(demo_server.home, "shop")
    assert [c["mark"] for c in first.checks] == [check["mark"]] and second.checks == tuple(again["checks"])
    assert turns_of(demo_server.home, "u-ana--1")[0].checks[0]["mark"].startswith("✓")
    meta, _turns, _ = SessionStore(Home(demo_server.home, "test")).read("shop")
    assert meta.extra["db"]["target"] == "demo"
    shown = weprompt(demo_server.home, "sessions", "show", "shop")
    assert shown.returncode == 0 and "✓ SQL valid" in shown.stdout


def test_a_users_database_is_in_the_prompt_and_a_wrong_query_gets_its_error(tmp_path: Path) -> None:
    db = tmp_path / "crm.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE clients (id INTEGER PRIMARY KEY, full_name TEXT, town TEXT);"
                       "INSERT INTO clients (full_name, town) VALUES ('Ada', 'Oslo'), ('Bo', 'Rome');")
    conn.commit()
    conn.close()
    home = tmp_path / "home"
    home.mkdir()
    srv = Server(home, Path("demo"), "--db", str(db))
    try:
        assert srv.stats()["stats"]["db"] == f"{db} (SQLite, 1 table)"
        with httpx.Client(base_url=srv.url, timeout=120) as client:
            answer = chat(client, session="crm", persona="sql")
        # the demo model knows only the shop's tables: its query fails on this database, and says why
        [check] = answer["checks"]
        assert check["ok"] is False and check["mark"].startswith("✗") and "customers" in check["mark"]
        meta, [turn], _ = SessionStore(Home(home, "test")).read("crm")
        assert meta.extra["db"]["target"] == str(db) and turn.checks[0]["mark"] == check["mark"]
        # the session's prompt was given this database's schema (its hash is recorded), not the demo's
        with SqlAdvisor.open(str(db), cache_dir=tmp_path / "c") as advisor:
            sql = advisor.persona(find_persona("sql", home=Home(home, "test")))
            assert "clients(id INTEGER PK, full_name TEXT, town TEXT)" in sql.system
            assert meta.extra["db"]["schema"] == advisor.schema_hash(sql) != default_schema_hash(sql)
    finally:
        srv.stop()


def test_a_database_that_cannot_be_opened_is_one_line_before_anything_listens(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    missing = tmp_path / "no-such.sqlite"
    proc = weprompt(home, "serve", "--port", "0", "--model", "demo", "--db", str(missing))
    assert proc.returncode != 0 and "listening" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("weprompt: error: ") and "no-such.sqlite" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not missing.exists()
