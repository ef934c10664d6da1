"""The db layer on a real MariaDB (MySQL) server started by the tests (tests/mysql_server.py).

The same contract as on PostgreSQL (tests/test_db_postgres.py), and the two places where MySQL
differs: its READ ONLY transaction refuses to EXPLAIN a write, and it commits DDL at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from mysql_server import PASSWORD, MySqlServer, mysql_demo_shop_script, mysql_server  # noqa: F401  (fixture)

from weprompt_cli.db import (
    PASSWORD_ENV,
    Database,
    QueryError,
    QueryTimeoutError,
    check_answer,
    check_query,
    open_database,
    parse_target,
    read_schema,
    run_query,
)
from weprompt_cli.errors import NetworkError, UnsafeError, UsageError


def open_my(server: MySqlServer, database: str) -> Database:
    """Open `database` the way a resumed session does: the stored URL, the password from the environment."""
    return open_database(parse_target(server.url(database), environ={PASSWORD_ENV: server.password}))


@pytest.fixture(scope="module")
def shop(mysql_server: MySqlServer) -> Iterator[Database]:  # noqa: F811
    mysql_server.create_database("shop", mysql_demo_shop_script())
    with open_my(mysql_server, "shop") as db:
        yield db


@pytest.fixture()
def scratch(mysql_server: MySqlServer) -> Iterator[Database]:  # noqa: F811
    mysql_server.create_database("scratch", mysql_demo_shop_script())
    with open_my(mysql_server, "scratch") as db:
        yield db


def count(db: Database, sql: str) -> object:
    return run_query(db, sql).rows[0][0]


def test_schema_text_from_mysql(shop: Database) -> None:
    schema = read_schema(shop)
    assert schema.database == "MySQL"
    lines = schema.text.splitlines()
    assert [line.split("(", 1)[0] for line in lines] == ["customers", "employees", "order_items", "orders", "products"]
    assert "customer_id INTEGER(11) -> customers.id" in lines[3] and lines[0].startswith("customers(id INTEGER(11) PK")


def test_check_valid_unknown_column_and_syntax_error(shop: Database) -> None:
    assert check_query(shop, "SELECT name FROM customers WHERE city = 'Paris';").mark == (
        "✓ SQL valid (checked with EXPLAIN on MySQL)")
    column = check_query(shop, "SELECT nme FROM customers")
    assert not column.ok and column.problem is not None and column.problem.startswith("Unknown column 'nme'")
    syntax = check_query(shop, "SELEC name FROM customers")
    assert not syntax.ok and "error in your SQL syntax" in (syntax.problem or "")


def test_writes_are_explained_not_refused_and_never_run(shop: Database) -> None:
    # MySQL's READ ONLY transaction will not even EXPLAIN a write: the check must still judge it.
    for sql, kind in (("DELETE FROM orders WHERE id = 1", "DELETE"),
                      ("UPDATE products SET price = 35 WHERE id = 4", "UPDATE"),
                      ("INSERT INTO customers (name, email, city) VALUES ('Ada', 'ada@x.org', 'Oslo')", "INSERT")):
        verdict = check_query(shop, sql)
        assert verdict.ok and verdict.mark == f"✓ SQL valid (checked with EXPLAIN on MySQL; it changes data: {kind})"
    wrong = check_query(shop, "UPDATE products SET cost = 3 WHERE id = 4")
    assert not wrong.ok and (wrong.problem or "").startswith("Unknown column 'cost'")
    assert count(shop, "SELECT count(*) FROM orders WHERE id = 1") == 1  # nothing ran
    assert count(shop, "SELECT count(*) FROM customers") == 40
    index = check_query(shop, "CREATE INDEX idx_orders_status ON orders(status)")
    assert index.status == "parsed" and "cannot EXPLAIN CREATE INDEX; the tables it names exist" in index.mark


def test_checks_of_an_answer_and_its_fix_request(shop: Database) -> None:
    verdict = check_answer(shop, "```sql\nSELECT nme FROM customers;\n```\nThis lists the names.")
    request = verdict.fix_request()
    assert request is not None and request.startswith("The query failed: Unknown column 'nme'")


def test_run_read_only_shows_rows_and_refuses_writes(shop: Database) -> None:
    result = run_query(shop, "SELECT id, status FROM orders ORDER BY id", max_rows=3)
    assert result.columns == ("id", "status") and [r[0] for r in result.rows] == [1, 2, 3]
    assert result.row_count == 150
    with pytest.raises(UnsafeError, match=r"changes the database \(DELETE\)"):
        run_query(shop, "DELETE FROM orders")
    with pytest.raises(UnsafeError, match="read-only"):  # a locking read is refused by the READ ONLY transaction
        run_query(shop, "SELECT * FROM orders FOR UPDATE")
    assert count(shop, "SELECT count(*) FROM orders") == 150


def test_write_with_confirmation_and_rollback_on_error(scratch: Database) -> None:
    update = "UPDATE products SET price = 35 WHERE id = 4"
    assert not run_query(scratch, update, write=True, confirm=lambda q: False).ran
    assert count(scratch, "SELECT price FROM products WHERE id = 4") != 35
    done = run_query(scratch, update, write=True, confirm=lambda q: True)
    assert done.wrote and done.summary == "1 row changed, committed"
    assert count(scratch, "SELECT price FROM products WHERE id = 4") == 35
    with pytest.raises(QueryError, match="nothing was changed"):
        run_query(scratch, "UPDATE products SET price = 0; SELECT * FROM nosuch", write=True, confirm=lambda q: True)
    assert count(scratch, "SELECT count(*) FROM products WHERE price = 0") == 0


def test_a_block_mixing_ddl_is_refused_because_mysql_commits_it_at_once(scratch: Database) -> None:
    asked: list[str] = []
    with pytest.raises(UnsafeError, match="MySQL commits CREATE INDEX at once") as info:
        run_query(scratch, "UPDATE products SET price = 1; CREATE INDEX i ON products(price); SELECT * FROM nosuch",
                  write=True, confirm=lambda q: asked.append(q) or True)
    assert info.value.hint == "run its statements one at a time" and not asked  # refused before asking
    assert count(scratch, "SELECT count(*) FROM products WHERE price = 1") == 0
    alone = run_query(scratch, "CREATE INDEX i ON products(price)", write=True, confirm=lambda q: True)
    assert alone.wrote
    assert count(scratch, "SELECT count(*) FROM information_schema.statistics "
                          "WHERE table_schema = 'scratch' AND index_name = 'i'") == 1


def test_statement_timeout(shop: Database) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="ran longer than 0.5 s and was cancelled"):
        run_query(shop, "SELECT COUNT(*) FROM orders a, orders b, orders c, orders d", timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert count(shop, "SELECT 1") == 1


def test_wrong_password_is_one_line_without_the_password(mysql_server: MySqlServer) -> None:  # noqa: F811
    wrong = "Wr0ng-Pa55word"
    with pytest.raises(UsageError) as info:
        open_database(parse_target(mysql_server.url("shop", password=wrong), environ={}))
    err = info.value
    shown = f"{err.one_line()} {err.hint} {err!r} {err!s}"
    assert "refused the login" in err.message
    assert wrong not in shown and PASSWORD not in shown and "\n" not in err.one_line()


def test_unreachable_server() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkError) as info:
        open_database(parse_target(f"mysql://bob:{PASSWORD}@127.0.0.1:{port}/shop", environ={}))
    assert "cannot reach the database server" in info.value.message
    assert PASSWORD not in info.value.one_line()


def test_the_sql_advisor_checks_answers_on_mysql_end_to_end(mysql_server: MySqlServer, tmp_path) -> None:  # noqa: F811
    import os
    import subprocess
    import sys
    from pathlib import Path

    mysql_server.create_database("advisor", mysql_demo_shop_script())
    env = {**os.environ, "WEPROMPT_HOME": str(tmp_path), PASSWORD_ENV: mysql_server.password}
    root = Path(__file__).resolve().parent.parent
    for n, (question, mark) in enumerate((("How many customers are there?", "✓ SQL valid (checked with EXPLAIN on MySQL)"),
                           ("Delete customer 12.", "✓ SQL valid (checked with EXPLAIN on MySQL; it changes data: DELETE)"))):
        proc = subprocess.run([sys.executable, "-m", "weprompt_cli", "chat", "--persona", "sql", "--model", "demo",
                               "--db", mysql_server.url("advisor"), "-t", "0", "-s", f"my{n}", "-m", question],
                              capture_output=True, text=True, env=env, cwd=root, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert mark in proc.stderr, proc.stderr[-2000:]
        assert mysql_server.password not in proc.stdout + proc.stderr
    assert mysql_server.password not in "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.json*"))
    with open_my(mysql_server, "advisor") as db:
        assert count(db, "SELECT count(*) FROM customers WHERE id = 12") == 1  # checked, never run
