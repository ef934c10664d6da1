"""The db layer on a real PostgreSQL server started by the tests (tests/pg_server.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pg_server import PASSWORD, PgServer, demo_shop_script, pg_server  # noqa: F401  (fixture)

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
from weprompt_cli.errors import NetworkError, NotFoundError, UnsafeError, UsageError, WePromptError


def open_pg(server: PgServer, database: str) -> Database:
    """Open `database` the way a resumed session does: the stored URL, the password from the environment."""
    return open_database(parse_target(server.url(database), environ={PASSWORD_ENV: server.password}))


@pytest.fixture(scope="module")
def shop(pg_server: PgServer) -> Iterator[Database]:  # noqa: F811
    """The demo shop on PostgreSQL, shared by the tests that only read."""
    pg_server.create_database("shop", demo_shop_script())
    with open_pg(pg_server, "shop") as db:
        yield db


@pytest.fixture()
def scratch(pg_server: PgServer) -> Iterator[Database]:  # noqa: F811
    """A private copy of the demo shop for a test that writes."""
    pg_server.create_database("scratch", demo_shop_script())
    with open_pg(pg_server, "scratch") as db:
        yield db


def count(db: Database, sql: str) -> object:
    return run_query(db, sql).rows[0][0]


def test_schema_text_from_postgresql(shop: Database) -> None:
    schema = read_schema(shop)
    assert schema.database == "PostgreSQL"
    assert schema.text.splitlines() == [
        "customers(id INTEGER PK, name TEXT, email TEXT, city TEXT, created_at TEXT)",
        "employees(id INTEGER PK, name TEXT, department TEXT, salary REAL, manager_id INTEGER -> employees.id)",
        "order_items(order_id INTEGER -> orders.id, product_id INTEGER -> products.id, quantity INTEGER)",
        "orders(id INTEGER PK, customer_id INTEGER -> customers.id, total REAL, status TEXT, created_at TEXT)",
        "products(id INTEGER PK, name TEXT, price REAL, category TEXT, stock INTEGER)",
    ]


def test_check_valid_unknown_column_and_syntax_error(shop: Database) -> None:
    assert check_query(shop, "SELECT name FROM customers WHERE city = 'Paris';").mark == (
        "✓ SQL valid (checked with EXPLAIN on PostgreSQL)")
    column = check_query(shop, "SELECT nme FROM customers")
    assert not column.ok
    assert column.problem is not None and column.problem.startswith('column "nme" does not exist')
    assert "customers.name" in column.problem  # the server's hint, which the fix turn passes on
    assert check_query(shop, "SELEC name FROM customers").problem == 'syntax error at or near "SELEC"'
    # PostgreSQL's own dialect: a type error that a generic parser would miss.
    typed = check_query(shop, "SELECT * FROM orders WHERE created_at > now() - interval '1 day'")
    assert not typed.ok and "operator does not exist" in (typed.problem or "")


def test_statements_postgresql_cannot_explain_are_parsed_and_looked_up(shop: Database) -> None:
    index = check_query(shop, "CREATE INDEX idx_orders_status ON orders(status)")
    assert index.status == "parsed" and index.ok
    assert "cannot EXPLAIN CREATE INDEX; the tables it names exist" in index.mark
    missing = check_query(shop, "CREATE INDEX idx_orders_x ON orders(shipped_at)")
    assert not missing.ok and missing.problem == 'column "shipped_at" does not exist in table "orders"'
    assert check_query(shop, "ALTER TABLE clients ADD COLUMN vip BOOLEAN").problem == 'table "clients" does not exist'
    assert check_query(shop, "ALTER TABLE orders RENAME TO purchases").ok  # the new name need not exist
    assert check_query(shop, "DROP TABLE orders, clients").problem == 'table "clients" does not exist'
    assert check_query(shop, "REPLACE INTO orders VALUES (1)").status == "invalid"  # MySQL syntax


def test_checks_of_an_answer_and_its_fix_request(shop: Database) -> None:
    verdict = check_answer(shop, "```sql\nSELECT nme FROM customers;\n```\nThis lists the names.")
    request = verdict.fix_request()
    assert request is not None and request.startswith('The query failed: column "nme" does not exist')
    assert request.endswith("Fix it.")


def test_run_read_only_shows_rows_and_refuses_writes(shop: Database) -> None:
    result = run_query(shop, "SELECT id, status FROM orders ORDER BY id", max_rows=3)
    assert result.columns == ("id", "status") and [r[0] for r in result.rows] == [1, 2, 3]
    assert result.row_count == 150
    with pytest.raises(UnsafeError, match=r"changes the database \(DELETE\)"):
        run_query(shop, "DELETE FROM orders")
    # A SELECT that locks rows is a write to PostgreSQL: the READ ONLY transaction refuses it.
    with pytest.raises(UnsafeError, match="read-only transaction"):
        run_query(shop, "SELECT * FROM orders FOR UPDATE")
    assert count(shop, "SELECT count(*) FROM orders") == 150


def test_a_huge_result_is_counted_up_to_the_limit_without_loading_it(shop: Database) -> None:
    result = run_query(shop, "SELECT g FROM generate_series(1, 2000000) AS g", max_rows=5, count_limit=1000)
    assert len(result.rows) == 5 and result.more and result.summary == "first 5 of more than 1000 rows"


def test_write_with_confirmation_and_rollback_on_error(scratch: Database) -> None:
    update = "UPDATE products SET price = 35 WHERE id = 4"
    assert not run_query(scratch, update, write=True, confirm=lambda q: False).ran
    assert count(scratch, "SELECT price FROM products WHERE id = 4") != 35
    done = run_query(scratch, update, write=True, confirm=lambda q: True)
    assert done.wrote and done.summary == "1 row changed, committed"
    assert count(scratch, "SELECT price FROM products WHERE id = 4") == 35
    with pytest.raises(QueryError, match="nothing was changed"):
        run_query(scratch, "UPDATE products SET price = 0; CREATE INDEX i ON products(price); SELECT 1/0",
                  write=True, confirm=lambda q: True)
    assert count(scratch, "SELECT count(*) FROM products WHERE price = 0") == 0
    assert count(scratch, "SELECT count(*) FROM pg_indexes WHERE indexname = 'i'") == 0


def test_statement_timeout(shop: Database) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="ran longer than 0.5 s and was cancelled"):
        run_query(shop, "SELECT pg_sleep(30)", timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert count(shop, "SELECT 1") == 1  # the pooled connection was rolled back and works


def test_a_database_with_500_tables(pg_server: PgServer) -> None:  # noqa: F811
    script = "".join(f"CREATE TABLE t{i:03d} (id serial PRIMARY KEY, name varchar(40), created timestamp);"
                     for i in range(500))
    pg_server.create_database("big", script)
    started = time.monotonic()
    with open_pg(pg_server, "big") as db:
        schema = read_schema(db)
    assert time.monotonic() - started < 15
    assert schema.text.startswith("t000(id INTEGER PK, name VARCHAR(40), created TIMESTAMP)")
    assert len(schema.tables) + len(schema.left_out) == 500 and schema.left_out
    assert schema.text.splitlines()[-1].startswith(f"-- {len(schema.left_out)} tables not shown")


# ---- connection errors: one line each, never the password ---------------------------------------------


def test_wrong_password_is_one_line_without_the_password(pg_server: PgServer) -> None:  # noqa: F811
    wrong = "Wr0ng-Pa55word"
    with pytest.raises(UsageError) as info:
        open_database(parse_target(pg_server.url("postgres", password=wrong), environ={}))
    err = info.value
    shown = f"{err.one_line()} {err.hint} {err!r} {err!s}"
    assert "refused the login" in err.message and "password authentication failed" in err.message
    assert wrong not in shown and PASSWORD not in shown and "\n" not in err.one_line()


def test_no_password_at_all(pg_server: PgServer) -> None:  # noqa: F811
    with pytest.raises(UsageError, match="refused the login"):
        open_database(parse_target(pg_server.url("postgres"), environ={}))


def test_unreachable_server(pg_server: PgServer) -> None:  # noqa: F811
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkError) as info:
        open_database(parse_target(f"postgresql://bob:{PASSWORD}@127.0.0.1:{port}/shop", environ={}))
    assert "cannot reach the database server" in info.value.message
    assert PASSWORD not in info.value.one_line() and "\n" not in info.value.one_line()


def test_missing_database_on_the_server(pg_server: PgServer) -> None:  # noqa: F811
    with pytest.raises(NotFoundError, match='database "no_such_db" does not exist'):
        open_pg(pg_server, "no_such_db")


def test_a_check_on_a_stopped_connection_is_unchecked_not_a_crash(pg_server: PgServer) -> None:  # noqa: F811
    pg_server.create_database("doomed", "CREATE TABLE t (id int)")
    db = open_pg(pg_server, "doomed")
    try:
        with pg_server.connect() as admin:
            admin.execute("DROP DATABASE doomed WITH (FORCE)")
        verdict = check_query(db, "SELECT id FROM t")
        assert verdict.status == "unchecked" and verdict.ok and verdict.mark.startswith("? SQL not checked: ")
        with pytest.raises(WePromptError):
            run_query(db, "SELECT id FROM t")
    finally:
        db.close()
