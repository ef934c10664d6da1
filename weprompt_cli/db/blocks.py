"""The SQL in a model's Markdown answer: fenced SQL blocks, or one bare statement.

Fenced blocks count when labelled as SQL (```sql, ```postgresql, ...) or unlabelled with SQL
inside; a fence the answer never closed (a reply cut at its token limit) runs to the end. An
answer with no fence at all may still be a bare statement (`SELECT name FROM customers;`
followed by a sentence), as small models write: its first such statement is the one block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from weprompt_cli.errors import UsageError

SQL_LABELS = {"sql", "sqlite", "sqlite3", "postgres", "postgresql", "pgsql", "psql", "plpgsql", "mysql", "mariadb"}

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)[^`]*$")
# The start of a bare statement: an upper-case verb and the word shape that follows it in SQL, not
# in prose ("Select the rows you need" is not SQL). All-lower-case SQL is matched on the upper-cased line.
_STATEMENT = re.compile(
    r"""^\s*`?\s*(
        SELECT\s+\S.*?(\bFROM\b|;|$)
      | WITH\s+(RECURSIVE\s+)?\w+(\s*\([^)]*\))?\s+AS\s*\(
      | INSERT\s+(OR\s+\w+\s+)?INTO\b
      | UPDATE\s+\S+\s+SET\b
      | DELETE\s+FROM\b
      | (CREATE|DROP)\s+(UNIQUE\s+|OR\s+REPLACE\s+|TEMP\s+|TEMPORARY\s+)*(TABLE|INDEX|VIEW)\b
      | ALTER\s+TABLE\b
      | EXPLAIN\s+(QUERY\s+PLAN\s+|ANALYZE\s+)?(SELECT|WITH|INSERT|UPDATE|DELETE)\b
    )""",
    re.VERBOSE,
)
_CONTINUATION = re.compile(
    r"^\s*(FROM|WHERE|JOIN|INNER|LEFT|RIGHT|FULL|CROSS|ON|AND|OR|GROUP|ORDER|HAVING|LIMIT|OFFSET|UNION|"
    r"INTERSECT|EXCEPT|SET|VALUES|RETURNING|AS|SELECT|WHEN|THEN|ELSE|END|CASE|[(),]|\s)",
    re.IGNORECASE,
)
_FIRST_WORD = re.compile(r"^\s*(SELECT|WITH|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|EXPLAIN|REPLACE|MERGE|TRUNCATE|"
                         r"PRAGMA|SHOW|DESCRIBE|VALUES|BEGIN|GRANT|REVOKE)\b", re.IGNORECASE)


@dataclass(frozen=True)
class SqlBlock:
    """One piece of SQL in an answer; `number` counts from 1, as `/run K` does."""

    number: int
    sql: str
    fenced: bool


def sql_blocks(answer: str) -> tuple[SqlBlock, ...]:
    """Every SQL block of `answer` in order; a bare statement when the answer has no fence at all."""
    fenced, saw_fence = _fenced_blocks(answer)
    if saw_fence:
        texts = fenced
    else:
        bare = _bare_statement(answer)
        texts = [bare] if bare else []
    return tuple(SqlBlock(i, text, saw_fence) for i, text in enumerate(texts, 1))


def pick_block(answer: str | None, number: int | None = None) -> SqlBlock:
    """Block `number` (default: the first) of `answer`; a UsageError when there is none or it is out of range."""
    blocks = sql_blocks(answer or "")
    if not blocks:
        raise UsageError("the last answer has no SQL to run", hint="ask for a query first")
    if number is None:
        return blocks[0]
    if not 1 <= number <= len(blocks):
        count = "1 SQL block" if len(blocks) == 1 else f"{len(blocks)} SQL blocks"
        raise UsageError(f"there is no SQL block {number}: the last answer has {count}",
                         hint=f"use /run {1 if len(blocks) == 1 else f'1..{len(blocks)}'}")
    return blocks[number - 1]


def _fenced_blocks(answer: str) -> tuple[list[str], bool]:
    """The SQL bodies of fenced blocks, and whether the answer had any fence."""
    out: list[str] = []
    saw = False
    lines = answer.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        saw = True
        fence, label = m.group(1), m.group(2).lower()
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = lines[i].strip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                break
            body.append(lines[i])
            i += 1
        i += 1  # past the closing fence (or the end)
        text = "\n".join(body).strip()
        if text and (label in SQL_LABELS or (not label and _FIRST_WORD.match(text))):
            out.append(text)
    return out, saw


def _bare_statement(answer: str) -> str | None:
    """The first statement written outside any fence: from its verb to its `;` or its last SQL-like line."""
    lines = answer.splitlines()
    for i, line in enumerate(lines):
        start = _statement_start(line)
        if start is None:
            for span in re.finditer(r"`([^`]+)`", line):  # inline code anywhere on the line
                if _statement_start(span.group(1)) is not None:
                    return span.group(1).strip()
            continue
        if "`" in line[:start]:  # inline code: the statement ends at the closing backtick
            return line[start:].split("`", 1)[0].strip() or None
        taken = [line[start:]]
        j = i + 1
        while ";" not in taken[-1] and j < len(lines) and lines[j].strip() and _CONTINUATION.match(lines[j]):
            taken.append(lines[j])
            j += 1
        text = "\n".join(taken)
        if ";" in text:
            text = text[: _statement_end(text) + 1]
        return text.strip().strip("`").strip() or None
    return None


def _statement_start(line: str) -> int | None:
    """Where a bare statement starts on `line`, or None when the line is not one."""
    m = _STATEMENT.match(line)
    if m:
        return m.start(1)
    words = line.strip(" \t`").split(None, 1)
    if not words or not words[0].islower():
        return None
    m = _STATEMENT.match(line.upper())  # lower-case SQL; a lower-case select needs its FROM or ';'
    if m and (not m.group(1).startswith("SELECT") or re.search(r"\bFROM\b|;", m.group(1))):
        return m.start(1)
    return None


def _statement_end(text: str) -> int:
    """The index of the first `;` outside quotes (the last character when there is none)."""
    quote: str | None = None
    for k, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
        elif ch == ";":
            return k
    return len(text) - 1
