"""`--db` values: the demo, SQLite paths and URLs; the stored form never holds the password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from weprompt_cli.db import PASSWORD_ENV, parse_target
from weprompt_cli.errors import UsageError

SECRET = "hunter2-S3cret"


def test_demo_and_sqlite_paths(tmp_path: Path) -> None:
    assert parse_target("demo").is_demo
    relative = parse_target("data/shop.db", cwd=tmp_path)
    assert relative.kind == "sqlite" and relative.sqlite_path == tmp_path / "data" / "shop.db"
    assert relative.display == str(tmp_path / "data" / "shop.db")  # absolute: a resume elsewhere finds it
    assert parse_target(f"sqlite:///{tmp_path}/x.db").sqlite_path == tmp_path / "x.db"
    assert parse_target("/tmp/a.sqlite").dialect == "sqlite"


def test_url_password_is_kept_out_of_every_stored_or_shown_form() -> None:
    target = parse_target(f"postgresql://bob:{SECRET}@db.example:5433/shop", environ={})
    assert target.kind == "postgresql" and target.dialect == "postgres"
    assert target.display == "postgresql://bob@db.example:5433/shop"
    assert target.password == SECRET
    for text in (target.display, repr(target), str(target)):
        assert SECRET not in text
    # The engine gets it; a stored display URL parsed again (a resume) gets it from the environment.
    assert target.engine_url().password == SECRET
    again = parse_target(target.display, environ={PASSWORD_ENV: SECRET})
    assert again.password == SECRET and again.display == target.display


def test_password_in_query_string_and_percent_encoding_are_scrubbed() -> None:
    target = parse_target(f"postgresql://bob@h/shop?sslmode=require&password={SECRET}", environ={})
    assert target.password == SECRET
    assert "password" not in target.display and "sslmode=require" in target.display
    encoded = parse_target("postgresql://bob:p%40ss%2Fw@h/shop", environ={})
    assert encoded.password == "p@ss/w"
    assert encoded.scrub("failed for p@ss/w and p%40ss%2Fw") == "failed for *** and ***"


def test_the_environment_password_applies_only_when_the_url_has_none() -> None:
    env = {PASSWORD_ENV: "from-env"}
    assert parse_target("postgresql://bob@h/shop", environ=env).password == "from-env"
    assert parse_target("postgresql://bob:given@h/shop", environ=env).password == "given"
    assert parse_target("postgresql://bob@h/shop", environ={}).password is None


def test_bare_backends_get_the_drivers_weprompt_installs() -> None:
    assert parse_target("postgresql://u@h/d", environ={}).engine_url().drivername == "postgresql+psycopg"
    assert parse_target("mysql://u@h/d", environ={}).engine_url().drivername == "mysql+pymysql"
    mine = parse_target("postgresql+psycopg2://u@h/d", environ={})
    assert mine.engine_url().drivername == "postgresql+psycopg2" and mine.display.startswith("postgresql+psycopg2://")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("oracle://u:pw@h/d", "cannot open oracle"),
        ("postgresql://u@h", "names no database"),
        ("", "no database given"),
        (":memory:", "in-memory"),
        ("sqlite://", "in-memory"),
    ],
)
def test_bad_targets_get_one_clear_line(spec: str, words: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_target(spec, environ={})
    assert words in info.value.message and "\n" not in info.value.message


def test_importing_the_db_layer_loads_neither_sqlalchemy_nor_sqlglot() -> None:
    code = "import sys, weprompt_cli.db; print(sorted(m for m in ('sqlalchemy', 'sqlglot', 'psycopg') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
