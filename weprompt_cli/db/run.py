"""Run a SQL block: read-only by default, a write only in write mode after the caller's confirmation.

A read runs on a read-only connection (the database refuses any write, whatever the SQL says)
with a statement timeout; the first `max_rows` rows come back, and the rest are counted up to
`count_limit`. A write runs every statement of the block in one transaction that commits when
all succeed and rolls back on any error, so a failed block changes nothing.
"""

from __future__ import annotations

import datetime
import decimal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from weprompt_cli.db.connect import Database, execute, is_timeout
from weprompt_cli.db.errors import QueryError, QueryTimeoutError, driver_message
from weprompt_cli.db.statements import Statement, split_statements
from weprompt_cli.errors import UnsafeError, UsageError, WePromptError

DEFAULT_MAX_ROWS = 20
DEFAULT_COUNT_LIMIT = 10_000
DEFAULT_RUN_TIMEOUT_S = 10.0
_READ_ONLY_REFUSALS = ("read-only transaction", "readonly database", "read only transaction", "read-only")


@dataclass(frozen=True)
class RunResult:
    """What a run gave: the first rows of its last result set, and how many rows there were or changed."""

    sql: str
    columns: tuple[str, ...]  # empty when the last statement returns no rows
    rows: tuple[tuple[Any, ...], ...]  # at most max_rows
    row_count: int  # rows returned (counted up to count_limit), or rows changed by a write (-1: unknown)
    more: bool  # True when there were more than count_limit rows (row_count is a lower bound)
    wrote: bool  # ran in write mode and committed
    ran: bool = True  # False when the write was not confirmed (nothing ran)
    elapsed_s: float = 0.0

    @property
    def returns_rows(self) -> bool:
        """True when the result is a table (columns and rows)."""
        return bool(self.columns)

    @property
    def summary(self) -> str:
        """One line: "3 rows", "first 20 of 150 rows", "more than 10000 rows", "2 rows changed", "not run"."""
        if not self.ran:
            return "not run"
        if self.returns_rows:
            noun = "row" if self.row_count == 1 else "rows"
            if self.more:
                return f"first {len(self.rows)} of more than {self.row_count} rows"
            if len(self.rows) < self.row_count:
                return f"first {len(self.rows)} of {self.row_count} rows"
            return f"{self.row_count} {noun}"
        if self.row_count < 0:
            return "done, committed" if self.wrote else "done"
        noun = "row" if self.row_count == 1 else "rows"
        return f"{self.row_count} {noun} changed" + (", committed" if self.wrote else "")


def cell_text(value: Any, *, width: int = 60) -> str:
    """A value as a table cell: NULL, numbers and dates as the database shows them, long text cut."""
    if value is None:
        return "NULL"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (decimal.Decimal, datetime.date, datetime.time, datetime.timedelta)):
        text = str(value)
    else:
        text = str(value)
    text = " ".join(text.split()) if "\n" in text or "\t" in text else text
    return text if len(text) <= width else text[: width - 1] + "…"


# Statements MySQL/MariaDB commit implicitly, ending the transaction around them (by their first word).
IMPLICIT_COMMIT = frozenset({"CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "GRANT", "REVOKE", "LOCK", "UNLOCK"})


def run_query(
    db: Database,
    sql: str,
    *,
    write: bool = False,
    confirm: Callable[[str], bool] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    count_limit: int = DEFAULT_COUNT_LIMIT,
    timeout_s: float = DEFAULT_RUN_TIMEOUT_S,
) -> RunResult:
    """Run `sql`; a block that changes data runs only with `write=True` and after `confirm(question)` says yes."""
    statements = split_statements(sql, db.dialect)
    if not statements:
        raise UsageError("the block has no SQL statement to run")
    writes = [s for s in statements if not s.reads_only and s.parsed]
    if writes and not write:
        kinds = ", ".join(dict.fromkeys(s.kind for s in writes))
        raise UnsafeError(f"this query changes the database ({kinds}); a plain run only reads",
                          hint="/run --write runs it after asking you", path=db.display)
    if not write or (not writes and all(s.parsed for s in statements)):
        return _run(db, sql, statements, write=False, max_rows=max_rows, count_limit=count_limit,
                    timeout_s=timeout_s)
    committed_at_once = [s for s in statements if (s.kind.split() or [""])[0].upper() in IMPLICIT_COMMIT]
    if db.kind == "mysql" and committed_at_once and len(statements) > 1:
        # MySQL commits DDL on the spot: a later failure could not roll the block back.
        raise UnsafeError(f"MySQL commits {committed_at_once[0].kind} at once, so this block could not be undone if a "
                          "later statement failed", hint="run its statements one at a time", path=db.display)
    if confirm is None:
        raise ValueError("a write needs a confirm callback")
    kinds = ", ".join(dict.fromkeys(s.kind for s in (writes or statements)))
    if not confirm(f"Run this {kinds} on {db.display}? It changes the database."):
        return RunResult(sql, (), (), 0, False, wrote=False, ran=False)
    return _run(db, sql, statements, write=True, max_rows=max_rows, count_limit=count_limit, timeout_s=timeout_s)


def _run(
    db: Database,
    sql: str,
    statements: tuple[Statement, ...],
    *,
    write: bool,
    max_rows: int,
    count_limit: int,
    timeout_s: float,
) -> RunResult:
    from sqlalchemy.exc import DBAPIError

    started = time.monotonic()
    opened = db.writable(timeout_s=timeout_s) if write else db.read_only(timeout_s=timeout_s)
    current: Statement | None = None
    try:
        with opened as conn:
            columns: tuple[str, ...] = ()
            rows: tuple[tuple[Any, ...], ...] = ()
            count, more, changed = 0, False, 0
            for current in statements:
                result = _execute(conn, current, db)
                if result.returns_rows:
                    columns = tuple(str(k) for k in result.keys())  # noqa: SIM118  (a result, not a dict)
                    rows, count, more = _fetch(result, max_rows, count_limit)
                    continue
                columns, rows, more = (), (), False
                # rowcount is -1 where the driver cannot tell (DDL): the total is unknown then.
                changed = changed + result.rowcount if changed >= 0 and result.rowcount >= 0 else -1
                count = changed
                result.close()
    except DBAPIError as exc:
        raise _run_error(exc, db, statements, current, write=write, timeout_s=timeout_s) from None
    return RunResult(sql, columns, rows, count, more, wrote=write, elapsed_s=time.monotonic() - started)


def _execute(conn: Any, st: Statement, db: Database) -> Any:
    """The cursor result of `st`; a plain SELECT on a server streams (rows are counted, not all loaded)."""
    if db.kind != "sqlite" and st.kind == "SELECT" and st.parsed and st.reads_only:
        return conn.exec_driver_sql(st.sql, execution_options={"no_parameters": True, "stream_results": True,
                                                                "max_row_buffer": 1000})
    return execute(conn, st.sql)


def _fetch(result: Any, max_rows: int, count_limit: int) -> tuple[tuple[tuple[Any, ...], ...], int, bool]:
    """The first `max_rows` rows, how many rows there were (up to `count_limit`), and whether there were more."""
    first = tuple(tuple(r) for r in result.fetchmany(max_rows)) if max_rows > 0 else ()
    count = len(first)
    while count < count_limit:
        chunk = result.fetchmany(min(1000, count_limit - count))
        if not chunk:
            result.close()
            return first, count, False
        count += len(chunk)
    more = result.fetchone() is not None
    result.close()
    return first, count, more


def _run_error(
    exc: BaseException, db: Database, statements: tuple[Statement, ...], current: Statement | None, *,
    write: bool, timeout_s: float,
) -> WePromptError:
    """One line for a failed run: timeout, a write refused by a read-only connection, or the database's reason."""
    undone = "; nothing was changed (rolled back)" if write else ""
    if is_timeout(exc, db.kind):
        return QueryTimeoutError(f"the query ran longer than {timeout_s:g} s and was cancelled{undone}",
                                 hint="narrow it (WHERE, LIMIT) or allow it more time", path=db.display)
    reason = driver_message(exc, db.target)
    if len(statements) > 1 and current is not None:
        reason = f"statement {statements.index(current) + 1}: {reason}"
    if not write and any(s in reason.lower() for s in _READ_ONLY_REFUSALS):
        return UnsafeError(f"the database refused a write in a read-only run: {reason}",
                           hint="/run --write runs it after asking you", path=db.display)
    return QueryError(f"the query failed: {reason}{undone}", path=db.display)
