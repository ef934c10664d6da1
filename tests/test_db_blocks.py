"""Finding the SQL in an answer: fenced blocks, the demo model's bare statement, and `/run K` picks."""

from __future__ import annotations

import pytest

from weprompt_cli.db import pick_block, sql_blocks
from weprompt_cli.errors import UsageError

PERSONA_STYLE = "```sql\nSELECT name FROM customers WHERE city = 'Paris';\n```\nThis filters the customers table."


def test_a_fenced_sql_block_in_the_personas_answer_format() -> None:
    (block,) = sql_blocks(PERSONA_STYLE)
    assert block.sql == "SELECT name FROM customers WHERE city = 'Paris';"
    assert block.number == 1 and block.fenced


def test_several_blocks_are_numbered_in_order_and_other_languages_are_skipped() -> None:
    answer = (
        "First:\n```sql\nSELECT 1;\n```\nIn Python:\n```python\nprint('SELECT 2')\n```\n"
        "Unlabelled SQL:\n```\nDELETE FROM orders WHERE id = 3;\n```\n~~~postgresql\nSELECT 4;\n~~~\n"
    )
    assert [(b.number, b.sql) for b in sql_blocks(answer)] == [
        (1, "SELECT 1;"), (2, "DELETE FROM orders WHERE id = 3;"), (3, "SELECT 4;")]


def test_an_answer_cut_inside_its_fence_still_yields_the_sql() -> None:
    assert [b.sql for b in sql_blocks("```sql\nSELECT name FROM customers WHERE")] == [
        "SELECT name FROM customers WHERE"]


@pytest.mark.parametrize(
    ("answer", "sql"),
    [
        ("SELECT name FROM customers WHERE city = 'Paris';\nThis filters the table.",
         "SELECT name FROM customers WHERE city = 'Paris';"),
        ("SELECT name\nFROM customers\nWHERE city = 'Paris'\nThis filters the table.",
         "SELECT name\nFROM customers\nWHERE city = 'Paris'"),
        ("select name from customers where city = 'a;b'; then read it", "select name from customers where city = 'a;b';"),
        ("Run `SELECT COUNT(*) FROM orders` to count them.", "SELECT COUNT(*) FROM orders"),
        ("DELETE FROM orders WHERE status = 'cancelled';", "DELETE FROM orders WHERE status = 'cancelled';"),
    ],
)
def test_a_bare_statement_without_fences(answer: str, sql: str) -> None:
    (block,) = sql_blocks(answer)
    assert block.sql == sql and not block.fenced


@pytest.mark.parametrize(
    "answer",
    [
        "I can only help with SQL for the shop database. Ask me about customers or orders.",
        "Select the rows you need, then delete from the list what you do not want.",
        "```python\nprint(1)\n```\nSELECT name FROM customers;",  # fenced answers: only fences count
        "",
    ],
)
def test_prose_is_not_sql(answer: str) -> None:
    assert sql_blocks(answer) == ()


def test_run_picks_a_block_or_says_why_not() -> None:
    two = "```sql\nSELECT 1;\n```\n```sql\nSELECT 2;\n```"
    assert pick_block(two).sql == "SELECT 1;"
    assert pick_block(two, 2).sql == "SELECT 2;"
    with pytest.raises(UsageError, match="no SQL block 3: the last answer has 2 SQL blocks"):
        pick_block(two, 3)
    with pytest.raises(UsageError, match="no SQL block 0"):
        pick_block(two, 0)
    with pytest.raises(UsageError, match="has no SQL to run"):
        pick_block("Hello! Ask me about your orders.")
    with pytest.raises(UsageError, match="has no SQL to run"):
        pick_block(None)
