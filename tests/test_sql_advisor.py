"""The SQL advisor's glue (issue 20) on a real SQLite file and a real PostgreSQL server: the schema in
the persona's prompt and its cache key, each answer's check recorded with the turn, the fix request,
read-only runs, confirmed writes, the statement timeout, and the bad inputs a user meets first.

No model here: answers are written out; tests/test_sql_advisor_cli.py drives the CLI and the REPL.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import PgServer, demo_shop_script, pg_server  # noqa: F401  (fixture)

from weprompt_cli.chat.sql_advisor import (
    SqlAdvisor,
    db_spec,
    default_schema_hash,
    send_checked,
    stored_target,
)
from weprompt_cli.db import PASSWORD_ENV, demo_database
from weprompt_cli.errors import NetworkError, NotFoundError, UnsafeError, UsageError, WePromptError
from weprompt_cli.paths import resolve_home
from weprompt_cli.personas import Persona, find_persona, persona_state_key
from weprompt_cli.store import Turn

SLOW_SQLITE = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
DEMO_SCHEMA_LINE = ("customers(id, name, email, city, created_at), orders(id, customer_id, total, status, created_at), "
                    "products(id, name, price, category, stock), order_items(order_id, product_id, quantity), "
                    "employees(id, name, department, salary, manager_id)")


def answer(sql: str) -> str:
    return f"```sql\n{sql}\n```\nOne short sentence."


def turn(text: str, index: int = 1, stop: str = "stop") -> Turn:
    return Turn(index=index, user="q", assistant=text, prompt_text="User: q\n\nAssistant:", reply_text=f" {text}\n\n",
                prompt_tokens=[1], reply_tokens=[2], stop_reason=stop, started_at="t", finished_at="t")  # type: ignore[arg-type]


def sql_persona() -> Persona:
    return find_persona("sql", home=resolve_home())


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_database(tmp_path_factory.mktemp("db-cache"))


@pytest.fixture(params=["sqlite", "postgresql"])
def shop(request: pytest.FixtureRequest, demo_file: Path, tmp_path: Path) -> Iterator[SqlAdvisor]:
    """A private, writable copy of the demo shop, connected the way `--db` connects it."""
    if request.param == "sqlite":
        path = tmp_path / "shop.db"
        shutil.copy(demo_file, path)
        advisor = SqlAdvisor.open(str(path), cache_dir=tmp_path / "cache")
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        url = server.create_database("advisor_shop", demo_shop_script())
        advisor = SqlAdvisor.open(url, cache_dir=tmp_path / "cache", environ={PASSWORD_ENV: server.password})
    with advisor:
        yield advisor


def count(advisor: SqlAdvisor, sql: str) -> object:
    return advisor.run(answer(sql)).rows[0][0]


# ---- the schema in the prompt ----------------------------------------------------------------------


def test_the_sql_persona_without_a_database_keeps_the_demo_models_words() -> None:
    persona = sql_persona()
    assert persona.takes_schema and persona.schema == DEMO_SCHEMA_LINE
    assert persona.system == (
        "You are SQL Advisor. You write, explain and optimise SQL for this database and nothing else: "
        f"{DEMO_SCHEMA_LINE}. Answer with one SQL query in a sql code block and one short sentence.")


def test_the_schema_text_fills_the_persona_prompt(shop: SqlAdvisor) -> None:
    persona = shop.persona(sql_persona())
    database = "SQLite" if shop.db.kind == "sqlite" else "PostgreSQL"
    assert f"nothing else: the {database} tables below\ncustomers(id INTEGER PK, name TEXT" in persona.system
    assert "orders(id INTEGER PK, customer_id INTEGER -> customers.id, total REAL" in persona.system
    assert persona.system.endswith("products(id INTEGER PK, name TEXT, price REAL, category TEXT, stock INTEGER). "
                                   "Answer with one SQL query in a sql code block and one short sentence.")
    assert "{schema}" not in persona.system and "\n\n" not in persona.system  # a blank line would end the turn
    assert shop.describe().endswith(f"({database}, 5 tables)")
    assert shop.notes() == []
    general = find_persona("general", home=resolve_home())
    assert shop.persona(general) is general  # no {schema}: nothing to fill


def test_the_demo_database_keeps_the_personas_own_schema_text(tmp_path: Path) -> None:
    with SqlAdvisor.open("demo", cache_dir=tmp_path) as demo:
        assert demo.is_demo and demo.display == "demo"
        assert demo.persona(sql_persona()).system == sql_persona().system  # the text the demo model learned
        assert demo.schema_hash(sql_persona()) == default_schema_hash(sql_persona())
        assert "customers(id INTEGER PK" in demo.schema.text  # the database itself is introspected all the same


def test_the_prompt_state_key_follows_the_schema(demo_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "mine.db"
    shutil.copy(demo_file, path)

    def key() -> str:
        with SqlAdvisor.open(str(path), cache_dir=tmp_path) as advisor:
            return persona_state_key(advisor.persona(sql_persona()), model_fingerprint="fp", chat_format="world")

    first = key()
    assert key() == first  # the same database: the same cached state, nothing fed on the next start
    assert first != persona_state_key(sql_persona(), model_fingerprint="fp", chat_format="world")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, order_id INTEGER, amount REAL)")
    conn.commit()
    conn.close()
    assert key() != first  # another schema: another state


# ---- checks ---------------------------------------------------------------------------------------


def test_an_answers_check_is_recorded_with_the_turn(shop: SqlAdvisor) -> None:
    good = shop.annotate(turn(answer("SELECT name FROM customers WHERE city = 'Paris';")))
    [record] = good.checks
    assert record["kind"] == "sql" and record["ok"] is True and record["db"] == shop.display
    assert record["mark"].startswith("✓ SQL valid (checked with EXPLAIN on ")
    assert shop.fix_request(good) is None

    column = shop.annotate(turn(answer("SELECT nme FROM customers;"), index=2))
    assert column.checks[0]["ok"] is False and column.checks[0]["mark"].startswith("✗ SQL error: ")
    assert "nme" in column.checks[0]["mark"]
    request = shop.fix_request(column)
    assert request is not None and request.startswith("The query failed: ") and request.endswith(". Fix it.")
    assert "nme" in request

    syntax = shop.annotate(turn(answer("SELEC name FROM customers;"), index=3))
    assert syntax.checks[0]["ok"] is False and "SELEC" in syntax.checks[0]["mark"]
    assert shop.fix_request(column) is None  # only the last checked turn is followed up

    assert shop.annotate(turn("No SQL in this answer.", index=4)).checks == ()
    stopped = shop.annotate(turn(answer("SELECT nme FROM customers;"), index=5, stop="interrupted"))
    assert stopped.checks == () and shop.fix_request(stopped) is None


def test_the_fix_loop_sends_the_failure_back_up_to_n_times(shop: SqlAdvisor) -> None:
    replies = iter([answer("SELECT nme FROM customers;"), answer("SELECT nam FROM customers;"),
                    answer("SELECT name FROM customers;")])
    sent: list[str] = []

    def send(text: str) -> Turn:
        sent.append(text)
        return shop.annotate(turn(next(replies), index=len(sent)))

    fixes: list[tuple[str, int]] = []
    shop.fix = 1
    turns = send_checked(shop, "Names of the customers?", send, on_fix=lambda r, n: fixes.append((r, n)))
    assert len(turns) == 2 and sent[0] == "Names of the customers?"
    assert sent[1].startswith("The query failed: ") and "nme" in sent[1] and fixes == [(sent[1], 1)]

    replies = iter([answer("SELECT nme FROM customers;"), answer("SELECT name FROM customers;"),
                    answer("SELECT 1;")])
    sent.clear()
    shop.fix = 5
    turns = send_checked(shop, "Names?", send)
    assert len(turns) == 2 and turns[-1].checks[0]["ok"]  # stops once the check passes

    sent.clear()
    shop.fix = 0
    replies = iter([answer("SELECT nme FROM customers;")])
    assert len(send_checked(shop, "Names?", send)) == 1  # --fix 0: the failure is only marked
    assert len(send_checked(None, "Hi", lambda text: turn("Hello."))) == 1  # no database: one turn


# ---- runs -----------------------------------------------------------------------------------------


def test_run_reads_and_shows_the_first_rows(shop: SqlAdvisor) -> None:
    result = shop.run(answer("SELECT name, city FROM customers ORDER BY id;"), max_rows=3)
    assert result.columns == ("name", "city") and len(result.rows) == 3
    assert result.row_count == 40 and result.summary == "first 3 of 40 rows"
    two = shop.run(answer("SELECT 1;") + "\nand\n" + answer("SELECT count(*) FROM orders;"), 2)
    assert two.rows == ((150,),)


def test_run_read_only_refuses_a_write(shop: SqlAdvisor) -> None:
    with pytest.raises(UnsafeError) as err:
        shop.run(answer("DELETE FROM orders WHERE status = 'cancelled';"))
    assert "changes the database (DELETE)" in err.value.message and "/run --write" in (err.value.hint or "")
    # A write hidden where the parser sees a read is refused by the read-only connection itself.
    assert count(shop, "SELECT count(*) FROM orders WHERE status = 'cancelled';") != 0


def test_run_write_asks_first_and_commits_only_on_yes(shop: SqlAdvisor) -> None:
    delete = answer("DELETE FROM order_items WHERE quantity = 5;")  # nothing references order_items
    before = count(shop, "SELECT count(*) FROM order_items;")
    cancelled = count(shop, "SELECT count(*) FROM order_items WHERE quantity = 5;")
    asked: list[str] = []
    no = shop.run(delete, write=True, confirm=lambda q: asked.append(q) or False)
    assert not no.ran and no.summary == "not run"
    assert asked and "DELETE" in asked[0] and shop.display in asked[0] and "changes the database" in asked[0]
    assert count(shop, "SELECT count(*) FROM order_items;") == before
    yes = shop.run(delete, write=True, confirm=lambda q: True)
    assert yes.wrote and yes.row_count == cancelled and yes.summary.endswith("changed, committed")
    assert count(shop, "SELECT count(*) FROM order_items;") == before - cancelled  # type: ignore[operator]


def test_a_failed_write_is_rolled_back(shop: SqlAdvisor) -> None:
    block = answer("UPDATE products SET price = 0 WHERE id = 1;\nUPDATE nothing SET x = 1;")
    with pytest.raises(WePromptError) as err:
        shop.run(block, write=True, confirm=lambda q: True)
    assert "rolled back" in err.value.message
    assert count(shop, "SELECT price FROM products WHERE id = 1;") != 0


def test_the_statement_timeout_cancels_a_long_query(shop: SqlAdvisor) -> None:
    shop.run_timeout_s = 0.5
    slow = SLOW_SQLITE if shop.db.kind == "sqlite" else "SELECT pg_sleep(5);"
    with pytest.raises(WePromptError) as err:
        shop.run(answer(slow))
    assert "longer than 0.5 s and was cancelled" in err.value.message
    assert count(shop, "SELECT count(*) FROM customers;") == 40  # the connection is usable after it


# ---- bad inputs -----------------------------------------------------------------------------------


def test_run_without_sql_or_out_of_range_says_so(shop: SqlAdvisor) -> None:
    with pytest.raises(UsageError, match="^the last answer has no SQL to run$"):
        shop.run("I can only help with SQL for the shop database.")
    with pytest.raises(UsageError, match="^the last answer has no SQL to run$"):
        shop.run(None)
    with pytest.raises(UsageError, match="^there is no SQL block 9: the last answer has 1 SQL block$"):
        shop.run(answer("SELECT 1;"), 9)


def test_a_missing_sqlite_file_is_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(NotFoundError) as err:
        SqlAdvisor.open(str(missing), cache_dir=tmp_path)
    assert "nothing was created" in err.value.message and not missing.exists()


def test_an_unreachable_server_is_one_network_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(NetworkError) as err:
        SqlAdvisor.open(f"postgresql://me:hunter2@127.0.0.1:{port}/shop", cache_dir=tmp_path)
    assert "cannot reach the database server" in err.value.one_line()
    assert "hunter2" not in err.value.one_line() + (err.value.hint or "")


def test_a_wrong_password_is_refused_without_showing_it(pg_server: PgServer, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(UsageError) as err:
        SqlAdvisor.open(pg_server.url("postgres", password="wrong-pw-5521"), cache_dir=tmp_path)
    line = err.value.one_line() + (err.value.hint or "")
    assert "refused the login" in line and "wrong-pw-5521" not in line and "$WEPROMPT_DB_PASSWORD" in line


def test_a_database_with_500_tables_is_capped_with_one_note(tmp_path: Path) -> None:
    path = tmp_path / "wide.db"
    conn = sqlite3.connect(path)
    for i in range(500):
        conn.execute(f"CREATE TABLE t{i:03d} (id INTEGER PRIMARY KEY, name TEXT, value REAL)")
    conn.commit()
    conn.close()
    with SqlAdvisor.open(str(path), cache_dir=tmp_path) as advisor:
        [note] = advisor.notes()
        assert f"the model sees {len(advisor.schema.tables)} of 500 tables" in note
        system = advisor.persona(sql_persona()).system
        assert len(system) < 7000 and "tables not shown (schema too large)" in system
        assert "t000(id INTEGER PK" in system and "t499(" not in system


def test_db_comes_from_the_flag_then_the_persona_then_the_config() -> None:
    persona = sql_persona()
    mine = Persona(**{**persona.__dict__, "db": "shop.db"})
    assert db_spec(None, persona, None) is None
    assert db_spec(None, persona, "config.db") == "config.db"
    assert db_spec(None, mine, "config.db") == "shop.db"
    assert db_spec("demo", mine, "config.db") == "demo"
    assert db_spec("none", mine, "config.db") is None
    assert stored_target({"db": {"target": "demo", "schema": "ab"}}) == ("demo", "ab")
    assert stored_target({}) == (None, None)


def test_persona_files_take_db_and_schema_but_no_password(weprompt_home: Path) -> None:
    from weprompt_cli.errors import InvalidFileError
    from weprompt_cli.personas import load_persona_file

    folder = weprompt_home / "personas"
    folder.mkdir(exist_ok=True)
    path = folder / "shopdb.toml"
    base = 'schema_version = 1\nname = "shopdb"\ntitle = "T"\ndescription = "D"\n'
    path.write_text(base + 'system = "Tables: {schema}. Be brief."\ndb = "postgresql://me@db/shop"\n')
    persona = load_persona_file(path)
    assert persona.db == "postgresql://me@db/shop" and persona.takes_schema
    assert persona.system == "Tables: no database is connected. Be brief."
    assert persona.with_schema("a(x)").system == "Tables: a(x). Be brief."
    path.write_text(base + 'system = "S {schema}"\ndb = "postgresql://me:secret@db/shop"\n')
    with pytest.raises(InvalidFileError, match="field 'db' holds a password") as err:
        load_persona_file(path)
    assert "secret" not in err.value.one_line()
    path.write_text(base + 'system = "No placeholder."\nschema = "a(x)"\n')
    with pytest.raises(InvalidFileError, match="has no {schema} placeholder"):
        load_persona_file(path)
    path.write_text(base + 'system = "S"\ndb = 3\n')
    with pytest.raises(InvalidFileError, match="field 'db' must be a string"):
        load_persona_file(path)


def test_config_db_refuses_a_password_without_repeating_it(weprompt_home: Path) -> None:
    from weprompt_cli.config import load_config, parse_value, set_value

    assert set_value("db", "demo", resolve_home()) == "demo"
    assert load_config(resolve_home()).db == "demo"
    with pytest.raises(UsageError) as err:
        parse_value("db", "postgresql://me:s3cret@host/shop")
    assert "s3cret" not in err.value.one_line() and "WEPROMPT_DB_PASSWORD" in err.value.one_line()
