"""`--db demo`: the shipped demo shop database is the data the demo model was trained on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from training.sqleval import NATURAL_HELDOUT, TABLES, build_db
from weprompt_cli.db import check_answer, demo_database, open_database, read_schema, run_query
from weprompt_cli.db.demo import DEMO_SQL

REGENERATE = "see weprompt_cli/db/demo.py for the command that regenerates demo_shop.sql"


def test_the_shipped_script_builds_the_training_data(tmp_path: Path) -> None:
    built = sqlite3.connect(demo_database(tmp_path / "cache"))
    reference = build_db()
    for table in TABLES:
        ours = built.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
        theirs = reference.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
        assert ours == theirs, f"{table} differs from training/sqleval.py; {REGENERATE}"
    schema = "SELECT name, sql FROM sqlite_master ORDER BY name"
    assert built.execute(schema).fetchall() == reference.execute(schema).fetchall(), REGENERATE


def test_demo_is_built_once_into_the_callers_cache_and_nowhere_else(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = demo_database(cache)
    assert path.parent == cache and path.is_file()
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary files left behind
    stamp = path.stat().st_mtime_ns
    assert demo_database(cache) == path and path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert DEMO_SQL.is_file()


def test_a_new_user_can_ask_check_and_run_on_the_demo_offline(tmp_path: Path) -> None:
    with open_database("demo", cache_dir=tmp_path / "cache") as db:
        assert db.display == "demo"
        schema = read_schema(db)
        assert "orders(id INTEGER PK, customer_id INTEGER -> customers.id" in schema.text
        # The reference answers of the plain held-out questions all check as valid and run.
        for _question, sql in NATURAL_HELDOUT:
            verdict = check_answer(db, f"```sql\n{sql}\n```\nOne sentence.")
            assert verdict.ok and verdict.mark is not None and verdict.mark.startswith("✓"), (sql, verdict.mark)
        result = run_query(db, "SELECT name FROM customers WHERE city = 'Paris';")
        expected = build_db().execute("SELECT name FROM customers WHERE city = 'Paris'").fetchall()
        assert [tuple(r) for r in result.rows] == expected and result.row_count == len(expected)
