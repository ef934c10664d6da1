"""The db layer on real SQLite files: schema text, checks, read-only runs, writes, timeouts, bad inputs."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from weprompt_cli.db import (
    Database,
    QueryError,
    QueryTimeoutError,
    check_answer,
    check_query,
    demo_database,
    open_database,
    read_schema,
    run_query,
)
from weprompt_cli.errors import InvalidFileError, NotFoundError, UnsafeError

SLOW = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_database(tmp_path_factory.mktemp("db-cache"))


@pytest.fixture()
def shop(demo_file: Path, tmp_path: Path) -> Iterator[Database]:
    """A private copy of the demo shop database, opened."""
    path = tmp_path / "shop.db"
    shutil.copy(demo_file, path)
    with open_database(str(path)) as db:
        yield db


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# ---- schema -------------------------------------------------------------------------------------------


def test_schema_text_lists_tables_columns_types_and_keys(shop: Database) -> None:
    schema = read_schema(shop)
    assert schema.text.splitlines() == [
        "customers(id INTEGER PK, name TEXT, email TEXT, city TEXT, created_at TEXT)",
        "employees(id INTEGER PK, name TEXT, department TEXT, salary REAL, manager_id INTEGER -> employees.id)",
        "order_items(order_id INTEGER -> orders.id, product_id INTEGER -> products.id, quantity INTEGER)",
        "orders(id INTEGER PK, customer_id INTEGER -> customers.id, total REAL, status TEXT, created_at TEXT)",
        "products(id INTEGER PK, name TEXT, price REAL, category TEXT, stock INTEGER)",
    ]
    assert schema.left_out == () and schema.database == "SQLite" and len(schema.short_hash) == 16


def test_schema_hash_changes_with_the_schema(shop: Database) -> None:
    before = read_schema(shop)
    assert read_schema(shop).sha256 == before.sha256  # stable: same schema, same cache key
    run_query(shop, "ALTER TABLE products ADD COLUMN weight REAL", write=True, confirm=lambda q: True)
    after = read_schema(shop)
    assert "weight REAL" in after.text and after.sha256 != before.sha256


def test_composite_keys_views_and_untyped_columns(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE a (x INTEGER, y INTEGER, note, PRIMARY KEY (x, y));"
        "CREATE TABLE b (id INTEGER PRIMARY KEY, ax INTEGER, ay INTEGER, FOREIGN KEY (ax, ay) REFERENCES a(x, y));"
        "CREATE VIEW v AS SELECT id FROM b;"
    )
    conn.close()
    with open_database(str(path)) as db:
        assert read_schema(db).text.splitlines() == [
            "a(x INTEGER, y INTEGER, note, PRIMARY KEY (x, y))",
            "b(id INTEGER PK, ax INTEGER, ay INTEGER, (ax, ay) -> a(x, y))",
            "view v(id INTEGER)",
        ]


def test_a_database_with_500_tables_is_capped_with_a_note_naming_what_was_left_out(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    conn = sqlite3.connect(path)
    conn.executescript("".join(
        f"CREATE TABLE t{i:03d} (id INTEGER PRIMARY KEY, name TEXT, parent_id INTEGER REFERENCES t000(id));"
        for i in range(500)))
    conn.close()
    started = time.monotonic()
    with open_database(str(path)) as db:
        schema = read_schema(db, max_tables=60, max_chars=6000)
    assert time.monotonic() - started < 10
    assert len(schema.text) <= 6000
    assert 0 < len(schema.tables) <= 60 and len(schema.tables) + len(schema.left_out) == 500
    note = schema.text.splitlines()[-1]
    assert note.startswith(f"-- {len(schema.left_out)} tables not shown (schema too large): ")
    assert schema.left_out[0] in note and note.endswith("more")
    assert "t499" in schema.left_out and "t499(" not in schema.text


# ---- checks -------------------------------------------------------------------------------------------


def test_check_a_valid_query(shop: Database) -> None:
    verdict = check_query(shop, "SELECT name FROM customers WHERE city = 'Paris';")
    assert verdict.ok and verdict.status == "valid"
    assert verdict.mark == "✓ SQL valid (checked with EXPLAIN on SQLite)"


def test_check_an_unknown_column_and_table(shop: Database) -> None:
    column = check_query(shop, "SELECT nme FROM customers")
    assert not column.ok and column.mark == "✗ SQL error: no such column: nme"
    table = check_query(shop, "SELECT * FROM clients")
    assert table.problem == "no such table: clients"


def test_check_a_syntax_error(shop: Database) -> None:
    assert check_query(shop, "SELEC name FROM customers").mark == '✗ SQL error: near "SELEC": syntax error'
    cut = check_query(shop, "SELECT name FROM customers WHERE")
    assert not cut.ok and "syntax error at line 1" in (cut.problem or "")


def test_checking_a_write_changes_nothing_and_says_it_would(shop: Database) -> None:
    before = rows(Path(shop.display), "SELECT count(*) FROM orders")
    verdict = check_query(shop, "DELETE FROM orders WHERE status = 'cancelled';")
    assert verdict.ok and verdict.writes == ("DELETE",) and "it changes data: DELETE" in verdict.mark
    assert rows(Path(shop.display), "SELECT count(*) FROM orders") == before


def test_answer_check_marks_the_failing_block_and_asks_for_a_fix(shop: Database) -> None:
    answer = "```sql\nSELECT name FROM customers;\n```\nand\n```sql\nSELECT total FROM order;\n```"
    verdict = check_answer(shop, answer)
    assert not verdict.ok
    assert verdict.mark is not None and verdict.mark.startswith("✗ SQL error in block 2 of 2: ")
    assert verdict.fix_request() == f"The query failed: {verdict.checks[1].problem}. Fix it."
    assert verdict.record()["ok"] is False


def test_an_answer_without_sql_gets_no_mark(shop: Database) -> None:
    verdict = check_answer(shop, "I can only help with SQL for the shop database.")
    assert verdict.mark is None and verdict.ok and verdict.fix_request() is None


# ---- runs ---------------------------------------------------------------------------------------------


def test_run_shows_the_first_rows_and_the_row_count(shop: Database) -> None:
    result = run_query(shop, "SELECT id, total FROM orders ORDER BY id", max_rows=5)
    assert result.columns == ("id", "total")
    assert [r[0] for r in result.rows] == [1, 2, 3, 4, 5]
    assert result.row_count == 150 and result.summary == "first 5 of 150 rows" and not result.wrote


def test_run_refuses_a_write_without_write_mode(shop: Database) -> None:
    path = Path(shop.display)
    with pytest.raises(UnsafeError, match=r"changes the database \(DELETE\)"):
        run_query(shop, "DELETE FROM orders")
    # SQL that only the database knows writes (a PRAGMA) is refused by the read-only connection itself.
    with pytest.raises(UnsafeError, match="readonly database"):
        run_query(shop, "PRAGMA user_version = 7")
    assert rows(path, "SELECT count(*) FROM orders") == [(150,)]
    assert rows(path, "PRAGMA user_version") == [(0,)]


def test_read_only_runs_cannot_create_files_through_attach(shop: Database, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with pytest.raises((UnsafeError, QueryError)):
        run_query(shop, f"ATTACH DATABASE '{other}' AS o")
    assert not other.exists()


def test_a_write_runs_only_after_confirmation(shop: Database) -> None:
    path = Path(shop.display)
    asked: list[str] = []

    def say_no(question: str) -> bool:
        asked.append(question)
        return False

    declined = run_query(shop, "UPDATE products SET price = 35 WHERE id = 4", write=True, confirm=say_no)
    assert not declined.ran and declined.summary == "not run"
    assert asked == [f"Run this UPDATE on {path}? It changes the database."]
    assert rows(path, "SELECT price FROM products WHERE id = 4") != [(35.0,)]
    done = run_query(shop, "UPDATE products SET price = 35 WHERE id = 4", write=True, confirm=lambda q: True)
    assert done.wrote and done.row_count == 1 and done.summary == "1 row changed, committed"
    assert rows(path, "SELECT price FROM products WHERE id = 4") == [(35.0,)]


def test_a_failing_write_block_is_rolled_back_whole(shop: Database) -> None:
    path = Path(shop.display)
    with pytest.raises(QueryError, match=r"statement 3: no such table: nope; nothing was changed \(rolled back\)"):
        run_query(shop, "CREATE INDEX idx_status ON orders(status); UPDATE products SET price = 0; "
                        "INSERT INTO nope VALUES (1)", write=True, confirm=lambda q: True)
    assert rows(path, "SELECT count(*) FROM products WHERE price = 0") == [(0,)]
    assert rows(path, "SELECT name FROM sqlite_master WHERE type = 'index'") == []


def test_statement_timeout_cancels_a_runaway_query(shop: Database) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="ran longer than 0.3 s and was cancelled"):
        run_query(shop, SLOW, timeout_s=0.3)
    assert time.monotonic() - started < 5
    assert check_query(shop, "SELECT 1").ok  # the connection is usable afterwards


# ---- bad inputs ---------------------------------------------------------------------------------------


def test_a_missing_sqlite_file_is_an_error_and_is_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "shop.db"
    with pytest.raises(NotFoundError) as info:
        open_database(str(missing))
    assert info.value.one_line() == f"no SQLite database here (nothing was created) ({missing})"
    assert not missing.exists() and not missing.parent.exists()


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("these are not tables\n" * 100)
    with pytest.raises(InvalidFileError, match="not an SQLite database"):
        open_database(str(junk))
    with pytest.raises(InvalidFileError):
        open_database(str(tmp_path))
