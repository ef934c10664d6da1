"""Check the SQL of an answer: sqlglot parses it in the database's dialect, the database EXPLAINs it.

EXPLAIN plans a statement without running it, on a read-only connection, so unknown tables and
columns, wrong types and the dialect's own syntax are caught and nothing changes. A statement the
database cannot EXPLAIN (PostgreSQL's CREATE INDEX, say) is checked by sqlglot's parse alone,
and the mark says so. When the database is unreachable or slow the check says it could not run;
it never raises for a bad query: a failed check is a result, shown under the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from weprompt_cli.db.blocks import sql_blocks
from weprompt_cli.db.connect import Database, execute, is_timeout
from weprompt_cli.db.errors import driver_message
from weprompt_cli.db.statements import Statement, split_statements
from weprompt_cli.errors import WePromptError

DEFAULT_CHECK_TIMEOUT_S = 5.0

VALID = "valid"  # parsed and EXPLAINed by the database
PARSED = "parsed"  # parsed by sqlglot; the database cannot EXPLAIN this kind of statement
INVALID = "invalid"  # rejected by the parser or the database: `problem` says why
UNCHECKED = "unchecked"  # the check could not run (database unreachable, timeout): `problem` says why
_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MySQL"}


@dataclass(frozen=True)
class QueryCheck:
    """The verdict on one SQL block."""

    sql: str
    status: str  # VALID, PARSED, INVALID or UNCHECKED
    problem: str | None = None  # why INVALID or UNCHECKED (or what PARSED could not check), one line
    kinds: tuple[str, ...] = ()  # the statements' kinds: ("SELECT",), ("UPDATE", "SELECT")
    database: str = ""  # "SQLite", "PostgreSQL", "MySQL"
    writes: tuple[str, ...] = ()  # kinds of the statements that change data (a run needs write mode)

    @property
    def ok(self) -> bool:
        """False only when the query is known to be wrong."""
        return self.status != INVALID

    @property
    def mark(self) -> str:
        """The one line shown under the answer."""
        changes = f"; it changes data: {', '.join(self.writes)}" if self.writes else ""
        if self.status == VALID:
            return f"✓ SQL valid (checked with EXPLAIN on {self.database}{changes})"
        if self.status == PARSED:
            return f"✓ SQL syntax valid ({self.problem}{changes})"
        if self.status == INVALID:
            return f"✗ SQL error: {self.problem}"
        return f"? SQL not checked: {self.problem}"


@dataclass(frozen=True)
class AnswerCheck:
    """The verdicts on every SQL block of one answer (none when it has no SQL)."""

    checks: tuple[QueryCheck, ...]

    @property
    def ok(self) -> bool:
        """False when any block is known to be wrong."""
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> QueryCheck | None:
        """The first block known to be wrong."""
        return next((c for c in self.checks if not c.ok), None)

    @property
    def mark(self) -> str | None:
        """One line for the whole answer; None when it has no SQL."""
        if not self.checks:
            return None
        if len(self.checks) == 1:
            return self.checks[0].mark
        bad = self.failed
        if bad is not None:
            number = self.checks.index(bad) + 1
            return f"✗ SQL error in block {number} of {len(self.checks)}: {bad.problem}"
        unchecked = next((c for c in self.checks if c.status == UNCHECKED), None)
        if unchecked is not None:
            return unchecked.mark
        return f"✓ SQL valid: all {len(self.checks)} blocks ({self.checks[0].database})"

    def fix_request(self) -> str | None:
        """The follow-up turn that asks the model to fix a failed query; None when nothing failed."""
        bad = self.failed
        if bad is None:
            return None
        problem = bad.problem or "it is not valid"
        return f"The query failed: {problem.rstrip('.')}. Fix it."

    def record(self) -> dict[str, Any]:
        """What the transcript stores with the turn."""
        return {
            "ok": self.ok,
            "mark": self.mark,
            "checks": [{"status": c.status, "problem": c.problem} for c in self.checks],
        }


def check_answer(db: Database, answer: str, *, timeout_s: float = DEFAULT_CHECK_TIMEOUT_S) -> AnswerCheck:
    """The check of every SQL block in `answer` (an empty check when it has none)."""
    return AnswerCheck(tuple(check_query(db, block.sql, timeout_s=timeout_s) for block in sql_blocks(answer)))


def check_query(db: Database, sql: str, *, timeout_s: float = DEFAULT_CHECK_TIMEOUT_S) -> QueryCheck:
    """The verdict on one SQL block: parsed in the dialect, then EXPLAINed read-only."""
    database = _NAMES.get(db.kind, db.kind)
    statements = split_statements(sql, db.dialect)
    kinds = tuple(s.kind for s in statements)
    writes = tuple(dict.fromkeys(s.kind for s in statements if not s.reads_only))
    if not statements:
        return QueryCheck(sql, INVALID, "the block has no SQL statement", kinds, database)

    def verdict(status: str, problem: str | None = None) -> QueryCheck:
        return QueryCheck(sql, status, problem, kinds, database, writes if status != INVALID else ())

    to_explain = [s for s in statements if s.explainable(db.kind)]
    not_explained = [s for s in statements if not s.explainable(db.kind)]
    for st in not_explained:
        if st.syntax_error:
            return verdict(INVALID, _numbered(st.syntax_error, statements, st))
    from sqlalchemy.exc import DBAPIError

    looked_up = True  # every statement not EXPLAINed had its tables and columns looked up
    try:
        with db.explaining(timeout_s=timeout_s) as conn:
            for st in statements:
                if any(st is e for e in to_explain):
                    problem = _explain(conn, st, db)
                else:
                    problem, looked = _schema_problem(conn, st)
                    looked_up = looked_up and looked
                if problem is not None:
                    return verdict(INVALID, _numbered(problem, statements, st))
    except WePromptError as exc:  # the connection failed (mapped by Database)
        return verdict(UNCHECKED, exc.message)
    except _Timeout:
        return verdict(UNCHECKED, f"the check took longer than {timeout_s:g} s")
    except DBAPIError as exc:
        if is_timeout(exc, db.kind):
            return verdict(UNCHECKED, f"the check took longer than {timeout_s:g} s")
        return verdict(UNCHECKED, driver_message(exc, db.target))
    if not_explained:
        what = ", ".join(sorted({s.kind for s in not_explained}))
        found = "the tables it names exist" if looked_up else "tables and columns not checked"
        return verdict(PARSED, f"{database} cannot EXPLAIN {what}; {found}")
    return verdict(VALID)


def _schema_problem(conn: Any, st: Statement) -> tuple[str | None, bool]:
    """For a statement the database cannot EXPLAIN: a missing table or column it names, and whether it looked.

    CREATE INDEX (table and columns), ALTER TABLE, DROP TABLE and TRUNCATE (the table, unless IF EXISTS)
    are looked up with the inspector; other kinds are left to the parse.
    """
    from sqlalchemy import inspect
    from sqlglot import exp

    ast = st.ast
    if ast is None:
        return None, False
    if st.kind == "CREATE INDEX" and isinstance(ast.this, exp.Index):
        found = [ast.this.args.get("table")]
    elif st.kind == "ALTER TABLE" and not ast.args.get("exists"):
        found = [ast.this]  # only the altered table: ALTER ... RENAME TO names a table that does not exist yet
    elif st.kind == "TRUNCATE" or (st.kind == "DROP TABLE" and not ast.args.get("exists")):
        found = list(ast.args.get("tables") or ast.expressions or [ast.this])
    else:
        return None, False
    tables: list[Any] = [t for t in found if t is not None and t.name]
    if not tables or len(tables) != len(found):
        return None, False
    insp = inspect(conn)
    # Names compare without case: a best-effort lookup must not fail a query the database would take.
    for table in tables:
        names = {n.lower() for n in insp.get_table_names(schema=table.db or None)}
        if table.name.lower() not in names:
            return f'table "{table.name}" does not exist', True
    if st.kind == "CREATE INDEX":
        table = tables[0]
        actual = next(n for n in insp.get_table_names(schema=table.db or None) if n.lower() == table.name.lower())
        known = {c["name"].lower() for c in insp.get_columns(actual, schema=table.db or None)}
        for column in ast.this.find_all(exp.Column):
            if column.name.lower() not in known:
                return f'column "{column.name}" does not exist in table "{table.name}"', True
    return None, True

class _Timeout(Exception):
    pass


def _explain(conn: Any, st: Statement, db: Database) -> str | None:
    """None when the database accepts `st` under EXPLAIN, else its reason (or sqlglot's, for a syntax error)."""
    from sqlalchemy.exc import DBAPIError

    try:
        execute(conn, f"EXPLAIN {st.sql}").fetchall()
    except DBAPIError as exc:
        if is_timeout(exc, db.kind):
            raise _Timeout from None
        if exc.connection_invalidated:
            raise WePromptError(f"lost the connection: {driver_message(exc, db.target)}") from None
        reason = driver_message(exc, db.target)
        # SQLite's "incomplete input" says less than sqlglot's line, column and missing part.
        return st.syntax_error if reason == "incomplete input" and st.syntax_error else reason
    return None


def _numbered(problem: str, statements: tuple[Statement, ...], st: Statement) -> str:
    """`problem`, prefixed with the statement's number when the block has several."""
    if len(statements) == 1:
        return problem
    return f"statement {statements.index(st) + 1}: {problem}"
