"""Open a `DbTarget`: read-only connections for checks and runs, write connections only on request.

Read-only is enforced by the database, not by WePrompt's parsing: SQLite files are opened with
`mode=ro` (and ATTACH, which could create files, is denied); PostgreSQL and MySQL runs happen
in a `READ ONLY` transaction. Every connection gets a statement timeout (SQLite: a progress
handler that interrupts the statement at the deadline). A write connection's transaction
commits when its block ends and rolls back on any error.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weprompt_cli.db.demo import demo_database
from weprompt_cli.db.errors import connect_error
from weprompt_cli.db.url import DbTarget, parse_target
from weprompt_cli.errors import InvalidFileError, NotFoundError, UsageError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

DEFAULT_CONNECT_TIMEOUT_S = 5.0


class Database:
    """An opened database: `read_only()` and `writable()` connections, each with a statement timeout."""

    def __init__(self, target: DbTarget, read_engine: Engine, write_engine: Engine | None = None) -> None:
        self.target = target
        self._read = read_engine
        self._write = write_engine if write_engine is not None else read_engine

    @property
    def kind(self) -> str:
        """"sqlite", "postgresql" or "mysql"."""
        return self.target.kind

    @property
    def dialect(self) -> str:
        """sqlglot's name for the SQL dialect."""
        return self.target.dialect

    @property
    def display(self) -> str:
        """Where it is, without the password: safe to show and store."""
        return self.target.display

    @property
    def engine(self) -> Engine:
        """The read-only engine (for schema introspection)."""
        return self._read

    @contextmanager
    def read_only(self, *, timeout_s: float) -> Iterator[Connection]:
        """A connection in a read-only transaction that is always rolled back at the end."""
        with self._connect(self._read) as conn:
            tx = conn.begin()
            try:
                if self.kind in ("postgresql", "mysql"):
                    # Must be the transaction's first statement.
                    execute(conn, "SET TRANSACTION READ ONLY")
                with _statement_timeout(conn, self.kind, timeout_s):
                    yield conn
            finally:
                if tx.is_active:
                    tx.rollback()

    @contextmanager
    def explaining(self, *, timeout_s: float) -> Iterator[Connection]:
        """A connection for EXPLAIN (which plans a statement and never runs it), always rolled back.

        Read-only, except on MySQL/MariaDB: their READ ONLY transaction refuses even to EXPLAIN an
        UPDATE, DELETE or INSERT, so there the transaction is an ordinary one that is rolled back."""
        if self.kind != "mysql":
            with self.read_only(timeout_s=timeout_s) as conn:
                yield conn
            return
        with self._connect(self._read) as conn:
            tx = conn.begin()
            try:
                with _statement_timeout(conn, self.kind, timeout_s):
                    yield conn
            finally:
                if tx.is_active:
                    tx.rollback()

    @contextmanager
    def writable(self, *, timeout_s: float) -> Iterator[Connection]:
        """A connection in a transaction that commits when the block ends and rolls back on an error."""
        with self._connect(self._write) as conn, conn.begin(), _statement_timeout(conn, self.kind, timeout_s):
            yield conn

    @contextmanager
    def _connect(self, engine: Engine) -> Iterator[Connection]:
        try:
            conn = engine.connect()
        except Exception as exc:  # noqa: BLE001  (drivers raise many types: each becomes one clear line)
            raise connect_error(exc, self.target) from None
        with conn:
            yield conn

    def close(self) -> None:
        """Release every pooled connection."""
        self._read.dispose()
        if self._write is not self._read:
            self._write.dispose()

    def __enter__(self) -> Database:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.display!r})"


def open_database(
    target: DbTarget | str,
    *,
    cache_dir: Path | None = None,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> Database:
    """An opened, reachable database (one test query ran); `cache_dir` is where `demo` is built."""
    if isinstance(target, str):
        target = parse_target(target)
    if target.is_demo:
        if cache_dir is None:
            raise UsageError("the demo database needs a cache folder to be built in")
        target = dataclasses.replace(target, sqlite_path=demo_database(cache_dir))
    if target.kind == "sqlite":
        db = _open_sqlite(target, connect_timeout_s)
    else:
        db = _open_server(target, connect_timeout_s)
    try:
        with db.read_only(timeout_s=max(connect_timeout_s, 1.0)) as conn:
            probe = "SELECT count(*) FROM sqlite_master" if target.kind == "sqlite" else "SELECT 1"
            execute(conn, probe)
    except Exception as exc:  # noqa: BLE001  (as above: one clear line, whatever the driver raised)
        db.close()
        raise connect_error(exc, target) from None
    return db


def _open_sqlite(target: DbTarget, busy_timeout_s: float) -> Database:
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    path = target.sqlite_path
    assert path is not None
    # Never let SQLite create a missing file: say so instead.
    if not path.exists():
        raise NotFoundError("no SQLite database here (nothing was created)", path=path,
                            hint="check the path, or try --db demo")
    if not path.is_file():
        raise InvalidFileError("not an SQLite database file", path=path)

    def engine(mode: str) -> Engine:
        uri = path.resolve().as_uri() + f"?mode={mode}"

        def creator() -> sqlite3.Connection:
            conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, check_same_thread=False,
                                   isolation_level=None)
            conn.set_authorizer(_deny_attach)
            return conn

        eng = create_engine("sqlite://", creator=creator, poolclass=NullPool)
        # pysqlite begins transactions only before DML; issue BEGIN ourselves so DDL is inside them too.
        event.listen(eng, "begin", lambda c: c.exec_driver_sql("BEGIN"))
        return eng

    return Database(target, engine("ro"), engine("rw"))


def _deny_attach(action: int, *_: Any) -> int:
    # ATTACH can create a new file even on a read-only connection.
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _open_server(target: DbTarget, connect_timeout_s: float) -> Database:
    from sqlalchemy import create_engine

    url = target.engine_url()
    timeout = max(1, round(connect_timeout_s))
    connect_args: dict[str, Any] = {"connect_timeout": timeout}
    if target.kind == "postgresql":
        connect_args["application_name"] = "weprompt"
    try:
        eng = create_engine(url, connect_args=connect_args, pool_pre_ping=True, pool_size=2, max_overflow=2)
    except (ImportError, ValueError, TypeError) as exc:  # a missing driver surfaces here
        raise connect_error(exc, target) from None
    return Database(target, eng)


@contextmanager
def _statement_timeout(conn: Connection, kind: str, timeout_s: float) -> Iterator[None]:
    """Cancel any statement on `conn` that runs longer than `timeout_s` while the block runs."""
    ms = max(1, int(timeout_s * 1000))
    if kind == "postgresql":
        execute(conn, f"SET LOCAL statement_timeout = {ms}")
        execute(conn, f"SET LOCAL lock_timeout = {ms}")
        yield
        return
    if kind == "mysql":
        from sqlalchemy.exc import DBAPIError

        try:
            execute(conn, f"SET SESSION max_execution_time = {ms}")  # MySQL (SELECT only)
        except DBAPIError:
            execute(conn, f"SET SESSION max_statement_time = {timeout_s:.3f}")  # MariaDB
        yield
        return
    raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
    deadline = time.monotonic() + timeout_s
    # A non-zero return interrupts the running statement ("interrupted").
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)


def execute(conn: Connection, sql: str) -> Any:
    """The cursor result of one statement run exactly as written (no bind-parameter parsing of `:x` or `%`)."""
    return conn.exec_driver_sql(sql, execution_options={"no_parameters": True})


def is_timeout(exc: BaseException, kind: str) -> bool:
    """True when `exc` is the statement timeout firing."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).lower()
    if kind == "sqlite":
        return "interrupted" in text
    if kind == "postgresql":
        return getattr(orig, "sqlstate", None) == "57014" or "statement timeout" in text
    return "max_execution_time" in text or "max_statement_time" in text or "query execution was interrupted" in text
