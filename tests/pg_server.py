"""A real PostgreSQL server for the tests: initdb in a temporary folder, loopback, a free port.

One server per test session (`pg_server`, session-scoped); it is stopped and its folder removed
at the end. PostgreSQL refuses to run as root, so when the tests run as root the server runs as
the `postgres` user (or `nobody`) and its folder is handed to that user. Where no PostgreSQL
server binaries are installed, the tests that need one are skipped with the reason.

Fast settings (fsync off, no synchronous commit): the data is thrown away after the session.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from server_procs import as_user, die_with_parent, free_port, server_account

SUPERUSER = "weprompt"
PASSWORD = "pg-test-secret-7f3a"  # tests assert that it never shows up in a message
INSTALL_HINT = "Debian/Ubuntu: apt-get install -y postgresql"


@dataclass
class PgServer:
    """A running server: where it listens and how to log in as its superuser."""

    host: str
    port: int
    user: str
    password: str
    folder: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres", *, password: str | None = None, user: str | None = None) -> str:
        """An SQLAlchemy URL for `database`; no password part unless one is given."""
        auth = user or self.user
        if password is not None:
            from urllib.parse import quote

            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        """A psycopg connection as the superuser, autocommit (for setting up test databases)."""
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname=database, autocommit=True, connect_timeout=5)

    def create_database(self, name: str, script: str | None = None) -> str:
        """Create database `name` (dropping an old one), run `script` in it; its URL without the password."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(name)
        with self.connect() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        if script:
            with self.connect(name) as conn:
                conn.execute(script)  # psycopg sends a parameterless script as one simple query
        return self.url(name)


def _bindir() -> Path | None:
    """The folder with initdb and postgres: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        folder = Path(os.path.realpath(found)).parent
        if (folder / "postgres").exists():
            return folder
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


def start_pg_server() -> PgServer:
    """Initialise and start a throwaway server; skips the test when PostgreSQL is not installed."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip(f"PostgreSQL server binaries (initdb, postgres) not found; {INSTALL_HINT}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    account = server_account("postgres", "nobody", server="PostgreSQL")
    folder = Path(tempfile.mkdtemp(prefix="weprompt-pg-"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C",
           "HOME": str(folder), "TZ": "UTC"}
    (folder / "pwfile").write_text(PASSWORD + "\n")
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
        os.chown(folder / "pwfile", account.pw_uid, account.pw_gid)
    data = folder / "data"
    init = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={folder / 'pwfile'}",
         "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
         "--no-instructions"],
        capture_output=True, env=env, cwd=folder, timeout=120, check=False, **as_user(account),
    )
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.decode(errors='replace')[-2000:]}")
    port = free_port()
    log = open(folder / "server.log", "wb")  # noqa: SIM115  (kept open for the server's life)
    process = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(folder),
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
         "-c", "max_connections=40", "-c", "shared_buffers=16MB", "-c", "log_min_messages=warning"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder, start_new_session=True,
        # preexec_fn: the tests start the server before any thread of theirs runs.
        preexec_fn=die_with_parent(signal.SIGQUIT) if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        **as_user(account),
    )
    server = PgServer("127.0.0.1", port, SUPERUSER, PASSWORD, folder, process)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.connect().close()
            return server
        except Exception as exc:  # noqa: BLE001  (not up yet: any connection error means wait)
            if process.poll() is not None or time.monotonic() > deadline:
                stop_pg_server(server)
                raise RuntimeError(f"PostgreSQL did not start: {exc}; log: "
                                   f"{(folder / 'server.log').read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.1)


def stop_pg_server(server: PgServer) -> None:
    """Stop the server (fast shutdown, then kill) and remove its folder."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=15)
    shutil.rmtree(server.folder, ignore_errors=True)


DEMO_TABLE_ORDER = ("customers", "products", "orders", "order_items", "employees")  # referenced tables first


def demo_shop_script() -> str:
    """The shipped demo shop SQL, reordered so PostgreSQL sees every referenced table before its users.

    SQLite's dump lists tables by name; PostgreSQL checks REFERENCES when a table is created.
    """
    from weprompt_cli.db.demo import DEMO_SQL

    chunks: dict[str, list[str]] = {t: [] for t in DEMO_TABLE_ORDER}
    for stmt in DEMO_SQL.read_text(encoding="utf-8").split(";\n"):
        m = re.match(r'\s*(?:CREATE TABLE|INSERT INTO) "?(\w+)"?', stmt)
        if m:
            chunks[m.group(1)].append(stmt.strip() + ";")
    return "\n".join(line for t in DEMO_TABLE_ORDER for line in chunks[t])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole test session."""
    server = start_pg_server()
    try:
        yield server
    finally:
        stop_pg_server(server)
