"""A SQL block split into statements and parsed with sqlglot in the database's dialect.

Each statement keeps its original text (the database runs what the model wrote, not sqlglot's
rewrite of it), what kind it is (SELECT, DELETE, CREATE INDEX, ...), whether it only reads, and
sqlglot's syntax error when it could not parse it. sqlglot is lenient in places and strict in
others, so its verdict is a first opinion: the database's EXPLAIN has the last word.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Statement:
    """One statement of a block: its text, its kind, and what sqlglot made of it."""

    sql: str  # as written, without the closing ';'
    kind: str  # "SELECT", "INSERT", "CREATE INDEX", ...; the first word when sqlglot could not parse it
    reads_only: bool  # sqlglot found nothing that writes (the database still enforces read-only)
    syntax_error: str | None = None  # sqlglot's reason, one line
    ast: Any = None  # the sqlglot expression (None when it did not parse)

    @property
    def parsed(self) -> bool:
        """True when sqlglot parsed it."""
        return self.syntax_error is None

    def explainable(self, kind: str) -> bool:
        """True when the database `kind` ("sqlite", "postgresql", "mysql") can EXPLAIN this statement."""
        if self.kind in ("EXPLAIN", "SHOW", "DESCRIBE", "PRAGMA"):
            return kind == "sqlite" and self.kind == "PRAGMA"
        if kind == "sqlite" or self.ast is None:
            return True  # SQLite compiles anything; an unparsed statement is for the database to judge
        from sqlglot import exp

        if isinstance(self.ast, (exp.Query, exp.Insert, exp.Update, exp.Delete)):
            return True
        if kind == "postgresql" and isinstance(self.ast, exp.Merge):
            return True
        # PostgreSQL: CREATE TABLE ... AS SELECT and CREATE MATERIALIZED VIEW ... AS are EXPLAINable.
        return (
            kind == "postgresql"
            and isinstance(self.ast, exp.Create)
            and isinstance(self.ast.args.get("expression"), exp.Query)
            and (self.kind == "CREATE TABLE" or self.ast.find(exp.MaterializedProperty) is not None)
        )


def split_statements(sql: str, dialect: str) -> tuple[Statement, ...]:
    """The statements of `sql` (empty ones dropped), each parsed in sqlglot's `dialect`."""
    return tuple(parse_statement(text, dialect) for text in _split(sql, dialect) if text.strip())


def parse_statement(sql: str, dialect: str) -> Statement:
    """One statement parsed in `dialect`; a syntax error is recorded, not raised."""
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    text = sql.strip().rstrip(";").strip()
    try:
        with _quiet_sqlglot():
            ast = sqlglot.parse_one(text, read=dialect)
    except ParseError as exc:
        return Statement(text, _first_word(text), False, syntax_error=_parse_error_text(exc))
    except TokenError:
        return Statement(text, _first_word(text), False, syntax_error="syntax error: an unclosed quote or comment")
    kind = _kind(ast, text)
    return Statement(text, kind, _reads_only(ast, kind), ast=ast)


def _split(sql: str, dialect: str) -> list[str]:
    """`sql` cut at its top-level semicolons (not those in strings or comments)."""
    import sqlglot
    from sqlglot.errors import TokenError
    from sqlglot.tokens import TokenType

    try:
        with _quiet_sqlglot():
            tokens = sqlglot.tokenize(sql, read=dialect)
    except TokenError:
        return [sql]  # unreadable: one statement, and the parse reports why
    pieces: list[str] = []
    start: int | None = None  # where the current statement's first token starts
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            if start is not None:
                pieces.append(sql[start:token.start])
            start = None
        elif start is None:
            start = token.start
    if start is not None:
        pieces.append(sql[start:])
    return pieces


def _kind(ast: Any, text: str) -> str:
    from sqlglot import exp

    if isinstance(ast, (exp.Query, exp.Values)):
        return "SELECT"
    if isinstance(ast, (exp.Create, exp.Drop, exp.Alter)):
        verb = {exp.Create: "CREATE", exp.Drop: "DROP", exp.Alter: "ALTER"}[type(ast)]
        what = str(ast.args.get("kind") or "").upper()
        return f"{verb} {what}".strip()
    if isinstance(ast, exp.TruncateTable):
        return "TRUNCATE"
    if isinstance(ast, exp.Command):
        return _first_word(text)
    if isinstance(ast, exp.Describe):
        return "DESCRIBE"
    return type(ast).__name__.upper()


def _reads_only(ast: Any, kind: str) -> bool:
    from sqlglot import exp

    if kind in ("EXPLAIN", "SHOW", "DESCRIBE", "PRAGMA"):
        return True
    if not isinstance(ast, (exp.Query, exp.Values)):
        return False
    writes = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.TruncateTable,
              exp.Into, exp.Command)
    return ast.find(*writes) is None


def _first_word(text: str) -> str:
    words = text.split(None, 1)
    return words[0].upper().strip("(") if words else ""


def _parse_error_text(exc: Any) -> str:
    errors = getattr(exc, "errors", None) or []
    if errors:
        e = errors[0]
        near = (e.get("highlight") or "").strip()
        where = f" at line {e.get('line')}, column {e.get('col')}"
        near_text = f" near '{near}'" if near and near != "SENTINEL" else " at the end"
        description = str(e.get("description") or "invalid SQL").split(". Line")[0]
        description = re.sub(r"<class '[\w.]*?(\w+)'>", lambda m: m.group(1).upper(), description)
        description = re.sub(r"^Required keyword: '\w+' missing for (\w+)$", r"incomplete \1", description)
        if "<Token" in description:
            description = description.split(" but got")[0]
        return f"syntax error{where}{near_text}: {description}"
    return "syntax error: " + str(exc).splitlines()[0]


@contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    """sqlglot logs a warning when it falls back to a generic command; nothing below the CLI prints."""
    logger = logging.getLogger("sqlglot")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)
