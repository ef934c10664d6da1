"""Session names and ids: what is refused, and that nothing lands outside the sessions folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from store_helpers import make_session, make_store

from weprompt_cli.errors import NotFoundError, UnsafeError, UsageError
from weprompt_cli.store import new_session_id, validate_name
from weprompt_cli.store.names import inside, looks_like_id

BAD = [
    ("../x", "may not be a path"),
    ("..", "may not be a path"),
    ("/abs", "may not be a path"),
    ("a/b", "may not be a path"),
    ("a\\b", "may not be a path"),
    ("", "empty"),
    ("x" * 300, "300 characters"),
    ("x" * 65, "65 characters"),
    ("tab\there", "control characters"),
    ("nl\nhere", "control characters"),
    ("esc\x1b[31m", "control characters"),
    ("nul\x00", "control characters"),
    ("rtl\u202eoverride", "control characters"),
    ("zero\u200bwidth", "control characters"),
    (".hidden", "may not start with '.'"),
    ("-rf", "may not start with '-'"),
    ("sp ace", "' ' not allowed"),
    ("caf\u00e9", "'\u00e9' not allowed"),
    ("a*b", "'*' not allowed"),
]


@pytest.mark.parametrize(("name", "why"), BAD)
def test_bad_names_are_refused_with_the_reason(name: str, why: str) -> None:
    with pytest.raises(UsageError) as err:
        validate_name(name)
    assert why in err.value.message
    assert "\n" not in err.value.message and "\x1b" not in err.value.message


@pytest.mark.parametrize("name", ["a", "my-session", "sql_2024.v1", "A" * 64, "20261126-041233-3fa9", "x..y"])
def test_good_names_pass(name: str) -> None:
    assert validate_name(name) == name


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("name", "why"), BAD)
def test_no_bad_name_creates_anything_anywhere(name: str, why: str, weprompt_home: Path) -> None:
    outside = weprompt_home.parent
    before = _tree(outside)
    store = make_store()
    with pytest.raises(UsageError):
        make_session(store, name=name)
    for call in (store.resolve, store.open, store.delete, lambda r: store.fork(r, 0), lambda r: store.rename(r, "ok")):
        with pytest.raises(UsageError):
            call(name)
    with make_session(store, name="fine"):
        pass
    with pytest.raises(UsageError):
        store.rename("fine", name)
    with pytest.raises(UsageError):
        store.fork("fine", 0, name)
    after = _tree(outside)
    new = {p for p in after - before if not p.startswith(f"{weprompt_home.name}/sessions")}
    assert new == set(), new
    assert [m.name for m in store.list()[0]] == ["fine"]


def test_session_ids_sort_by_time_and_are_valid_names() -> None:
    from datetime import datetime, timezone

    a = new_session_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    b = new_session_id(datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone.utc))
    assert a.startswith("20260102-030405-") and a < b
    assert looks_like_id(a) and validate_name(a) == a
    assert len({new_session_id() for _ in range(50)}) > 40


def test_a_symlink_out_of_the_sessions_folder_is_not_a_session(tmp_path: Path) -> None:
    store = make_store()
    with make_session(store, name="real"):
        pass
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, store.root / "evil")
    with pytest.raises(UnsafeError):
        inside(store.root, "evil")
    with pytest.raises(UnsafeError):
        store.resolve("evil")
    with pytest.raises(NotFoundError):
        store.resolve("evi")
    assert [m.name for m in store.list()[0]] == ["real"]
    assert list(elsewhere.iterdir()) == []
