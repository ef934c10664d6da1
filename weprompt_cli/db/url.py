"""What `--db`, `/db` and a config's `db` name: the demo, an SQLite file or an SQLAlchemy URL.

`parse_target` turns the text into a `DbTarget` whose `display` form never holds the password,
so it is what sessions, transcripts and logs store. The password comes from the URL given now
or from `$WEPROMPT_DB_PASSWORD`, and lives only in the target's `password` field (kept out of
its repr) until an engine is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weprompt_cli.errors import UsageError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

PASSWORD_ENV = "WEPROMPT_DB_PASSWORD"
DEMO = "demo"

# SQLAlchemy backend name -> (the kind WePrompt knows, sqlglot's dialect name, the driver it installs).
_KINDS = {
    "sqlite": ("sqlite", "sqlite", None),
    "postgresql": ("postgresql", "postgres", "psycopg"),
    "postgres": ("postgresql", "postgres", "psycopg"),
    "mysql": ("mysql", "mysql", "pymysql"),
    "mariadb": ("mysql", "mysql", "pymysql"),
}
# Query keys that carry a secret; they are moved out of the stored URL like the password.
_SECRET_KEYS = ("password", "passwd", "sslpassword")


@dataclass(frozen=True)
class DbTarget:
    """A database to open: its kind, the URL without its password, and how to reach it."""

    kind: str  # "sqlite", "postgresql" or "mysql"
    display: str  # safe to store, log and show: "demo", an absolute SQLite path, or a URL without the password
    sqlite_path: Path | None = None  # the file, for SQLite
    is_demo: bool = False
    password: str | None = field(default=None, repr=False, compare=False)
    _url: Any = field(default=None, repr=False, compare=False)  # the sqlalchemy URL without the password

    @property
    def dialect(self) -> str:
        """sqlglot's name for this database's SQL dialect."""
        return {"sqlite": "sqlite", "postgresql": "postgres", "mysql": "mysql"}[self.kind]

    def engine_url(self) -> URL:
        """The SQLAlchemy URL to connect with (password included: never show or store it)."""
        if self._url is None:
            raise UsageError("an SQLite target is opened by path, not by URL")
        url: URL = self._url
        return url.set(password=self.password) if self.password is not None else url

    def scrub(self, text: str) -> str:
        """`text` with every form of the password replaced by `***` (for error messages)."""
        return scrub(text, self.password)


def scrub(text: str, password: str | None) -> str:
    """`text` with `password` (plain and percent-encoded) replaced by `***`."""
    if not password:
        return text
    from urllib.parse import quote, quote_plus

    for form in {password, quote(password, safe=""), quote_plus(password)}:
        text = text.replace(form, "***")
    return text


def parse_target(spec: str, *, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> DbTarget:
    """The target named by `spec`: `demo`, a path to an SQLite file, or an SQLAlchemy URL."""
    spec = spec.strip()
    if not spec:
        raise UsageError("no database given", hint="pass an SQLite file, a URL like postgresql://user@host/db, or demo")
    if spec.lower() == DEMO:
        return DbTarget(kind="sqlite", display=DEMO, is_demo=True)
    if "://" not in spec:
        return _sqlite_target(spec, cwd)
    return _url_target(spec, os.environ if environ is None else environ, cwd)


def _sqlite_target(path_text: str, cwd: Path | None) -> DbTarget:
    if path_text in (":memory:", ""):
        raise UsageError("an in-memory SQLite database has no tables to advise on", hint="pass an SQLite file")
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    path = Path(os.path.normpath(path))
    return DbTarget(kind="sqlite", display=str(path), sqlite_path=path)


def _url_target(spec: str, environ: Mapping[str, str], cwd: Path | None) -> DbTarget:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(spec)
    except (ArgumentError, ValueError) as exc:
        # The message of a malformed URL can echo it; say what is expected instead.
        raise UsageError(
            "not a database URL", hint="use dialect://user@host:port/database, e.g. postgresql://me@localhost/shop"
        ) from exc
    backend = url.get_backend_name()
    if backend not in _KINDS:
        raise UsageError(
            f"WePrompt cannot open {backend} databases read-only", hint="use SQLite, PostgreSQL or MySQL/MariaDB"
        )
    kind, _, default_driver = _KINDS[backend]
    if kind == "sqlite":
        if not url.database or url.database == ":memory:":
            raise UsageError("an in-memory SQLite database has no tables to advise on", hint="pass an SQLite file")
        return _sqlite_target(url.database, cwd)
    password = url.password
    secret_keys = [k for k in url.query if k.lower() in _SECRET_KEYS]
    if password is None:
        for k in secret_keys:
            value = url.query[k]
            password = value if isinstance(value, str) else value[0]
    url = _without_secrets(url, secret_keys)
    if password is None and url.username:
        password = environ.get(PASSWORD_ENV) or None
    if "+" not in url.drivername and default_driver:
        # A bare `postgresql://` or `mysql://` means the driver WePrompt installs (psycopg 3, PyMySQL).
        url = url.set(drivername=f"{url.get_backend_name()}+{default_driver}")
    if not url.database:
        raise UsageError("the database URL names no database", hint="end it with /DATABASE, e.g. .../shop")
    # The stored form keeps the user's driver choice and drops only the secrets.
    shown = _without_secrets(make_url(spec), secret_keys)
    display = shown.render_as_string(hide_password=False)
    return DbTarget(kind=kind, display=display, password=password, _url=url)


def _without_secrets(url: URL, secret_keys: list[str]) -> URL:
    """`url` with no password and none of `secret_keys` in its query (`URL.set` cannot unset a password)."""
    from sqlalchemy.engine import URL

    return URL.create(
        url.drivername, username=url.username, password=None, host=url.host, port=url.port,
        database=url.database, query=url.difference_update_query(secret_keys).query,
    )
