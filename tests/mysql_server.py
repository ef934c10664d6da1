"""A real MariaDB (MySQL) server for the tests: a throwaway data folder, loopback, a free port.

One server per test session (`mysql_server`, session-scoped), stopped and its folder removed at the
end. As root it runs as the `mysql` account (or `nobody`). Where no server binaries are installed
(`mariadbd` or `mysqld`), the tests that need one are skipped with the reason.
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
from pg_server import demo_shop_script
from server_procs import as_user, die_with_parent, free_port, server_account

USER = "weprompt"
PASSWORD = "my-test-secret-41c9"  # tests assert that it never shows up in a message
INSTALL_HINT = "Debian/Ubuntu: apt-get install -y mariadb-server"


@dataclass
class MySqlServer:
    """A running server: where it listens and how to log in."""

    host: str
    port: int
    user: str
    password: str
    folder: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str, *, password: str | None = None) -> str:
        """An SQLAlchemy URL for `database`; no password part unless one is given."""
        auth = self.user if password is None else f"{self.user}:{password}"
        return f"mysql://{auth}@{self.host}:{self.port}/{database}"

    def admin(self, database: str | None = None) -> Any:
        """A PyMySQL connection as root over the server's socket, autocommit (for setting up databases)."""
        import pymysql

        return pymysql.connect(unix_socket=str(self.folder / "sock"), user="root", database=database,
                               autocommit=True, connect_timeout=5)

    def create_database(self, name: str, script: str | None = None) -> str:
        """Create database `name` (dropping an old one), run `script` in it; its URL without the password."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(name)
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {name}")
                cur.execute(f"CREATE DATABASE {name}")
                cur.execute(f"USE {name}")
                for statement in (script or "").split(";\n"):
                    if statement.strip():
                        cur.execute(statement)
        finally:
            conn.close()
        return self.url(name)


def mysql_demo_shop_script() -> str:
    """The demo shop for MySQL: referenced tables first, identifiers in backticks instead of double quotes."""
    return re.sub(r'"(\w+)"', r"`\1`", demo_shop_script())


def _binaries() -> tuple[str, str] | None:
    server = shutil.which("mariadbd", path="/usr/sbin:/usr/bin") or shutil.which("mysqld", path="/usr/sbin:/usr/bin")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    return (server, install) if server and install else None


def start_mysql_server() -> MySqlServer:
    """Initialise and start a throwaway server; skips the test when MariaDB/MySQL is not installed."""
    found = _binaries()
    if found is None:
        pytest.skip(f"MariaDB/MySQL server binaries (mariadbd, mariadb-install-db) not found; {INSTALL_HINT}")
    try:
        import pymysql  # noqa: F401
    except ImportError:
        pytest.skip("the PyMySQL driver is not installed (pip install 'weprompt[mysql]')")
    server_bin, install_bin = found
    account = server_account("mysql", "nobody", server="MariaDB")
    folder = Path(tempfile.mkdtemp(prefix="weprompt-mysql-"))
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(folder), "TZ": "UTC"}
    init = subprocess.run([install_bin, "--no-defaults", f"--datadir={folder / 'data'}",
                           "--auth-root-authentication-method=normal", "--skip-test-db"],
                          capture_output=True, env=env, cwd=folder, timeout=120, check=False, **as_user(account))
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"mariadb-install-db failed: {init.stderr.decode(errors='replace')[-2000:]}")
    port = free_port()
    process = subprocess.Popen(
        [server_bin, "--no-defaults", f"--datadir={folder / 'data'}", f"--socket={folder / 'sock'}", f"--port={port}",
         "--bind-address=127.0.0.1", "--skip-log-bin", "--innodb-buffer-pool-size=16M", "--innodb-flush-log-at-trx-commit=0",
         f"--pid-file={folder / 'pid'}", f"--log-error={folder / 'server.log'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=folder, start_new_session=True,
        preexec_fn=die_with_parent(signal.SIGTERM) if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        **as_user(account),
    )
    server = MySqlServer("127.0.0.1", port, USER, PASSWORD, folder, process)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = server.admin()
            break
        except Exception as exc:  # noqa: BLE001  (not up yet: any connection error means wait)
            if process.poll() is not None or time.monotonic() > deadline:
                log = (folder / "server.log").read_text(errors="replace")[-2000:] if (folder / "server.log").exists() else ""
                stop_mysql_server(server)
                raise RuntimeError(f"MariaDB did not start: {exc}; log: {log}") from None
            time.sleep(0.1)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1'")
    finally:
        conn.close()
    return server


def stop_mysql_server(server: MySqlServer) -> None:
    """Stop the server (SIGTERM: a clean shutdown, then kill) and remove its folder."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=15)
    shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MySqlServer]:
    """One MariaDB server for the whole test session."""
    server = start_mysql_server()
    try:
        yield server
    finally:
        stop_mysql_server(server)
