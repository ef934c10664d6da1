"""Driver errors turned into one clear line each, with the password scrubbed out.

Connection problems become the app's usual classes (NetworkError, NotFoundError, UsageError,
InvalidFileError); a query the database rejects becomes a `QueryError`, whose message is the
database's own first line (plus its hint, which is what a model needs to fix the query).
"""

from __future__ import annotations

import re
from typing import Any

from weprompt_cli.db.url import PASSWORD_ENV, DbTarget
from weprompt_cli.errors import (
    ExitCode,
    InvalidFileError,
    NetworkError,
    NotFoundError,
    UsageError,
    WePromptError,
)


class QueryError(WePromptError):
    """The database (or the SQL parser) rejected a query; `message` is its reason in one line."""

    code = ExitCode.ERROR


class QueryTimeoutError(QueryError):
    """A query ran past its statement timeout and was cancelled."""


def driver_message(exc: BaseException, target: DbTarget) -> str:
    """The database's own reason for `exc` on one line: primary message, then its hint; no password."""
    orig = getattr(exc, "orig", None) or exc
    diag = getattr(orig, "diag", None)  # psycopg keeps the server's fields apart
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        text = primary
        hint = getattr(diag, "message_hint", None)
        if hint:
            text += f" (hint: {hint})"
    else:
        args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
        # PyMySQL: (code, message); sqlite3 and most others: (message,)
        text = str(args[1]) if len(args) == 2 and isinstance(args[0], int) else str(orig)
        text = text.strip().splitlines()[0] if text.strip() else type(orig).__name__
        text = re.sub(r"^\(\S+\)\s*", "", text)  # SQLAlchemy's "(module.Error) " prefix
        # libpq: 'connection failed: connection to server at "h", port 5432 failed: FATAL:  <reason>'
        text = re.sub(r"^(connection failed: )?(connection to server (?:at|on) .*? failed: )+", "", text)
        text = re.sub(r"^(FATAL|ERROR):\s+", "", text)
    return target.scrub(" ".join(text.split()))


def connect_error(exc: BaseException, target: DbTarget) -> WePromptError:
    """The error to raise when opening `target` failed with `exc`."""
    if isinstance(exc, WePromptError):
        return exc
    where = target.display
    if isinstance(exc, ModuleNotFoundError):
        package = {"postgresql": "psycopg[binary]", "mysql": "pymysql"}.get(target.kind, exc.name or "")
        return UsageError(
            f"the Python driver for {target.kind} is not installed", hint=f"pip install '{package}'", path=where
        )
    reason = driver_message(exc, target)
    low = reason.lower()
    if "password authentication failed" in low or "access denied" in low or "no password supplied" in low:
        return UsageError(
            f"the database refused the login: {reason}",
            hint=f"check the user name and the password (in the URL or ${PASSWORD_ENV})",
            path=where,
        )
    if ("does not exist" in low and "database" in low) or "unknown database" in low:
        return NotFoundError(f"no such database on the server: {reason}", path=where,
                             hint="check the database name at the end of the URL")
    if "file is not a database" in low or "not a database" in low:
        return InvalidFileError("not an SQLite database", path=where)
    if "unable to open database" in low:
        return NotFoundError("cannot open the SQLite database", path=where)
    if (
        "connection refused" in low
        or "could not connect" in low
        or "timeout" in low
        or "timed out" in low
        or "could not translate host name" in low
        or "name or service not known" in low
        or "can't connect" in low
        or "connection failed" in low
    ):
        return NetworkError(f"cannot reach the database server: {reason}", path=where)
    return NetworkError(f"cannot connect to the database: {reason}", path=where)

