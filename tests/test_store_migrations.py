"""Numbered upgrades of session.json and transcript lines, checked on an old-format fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from store_helpers import FP, make_session, make_state, make_store, make_turn

from weprompt_cli.errors import InvalidFileError
from weprompt_cli.store import SESSION_SCHEMA, TRANSCRIPT_SCHEMA, StateUnavailable
from weprompt_cli.store.migrations import (
    SESSION_UPGRADES,
    TURN_UPGRADES,
    NewerSchemaError,
    upgrade_session,
    upgrade_turn,
)

OLD = Path(__file__).parent / "data" / "old_sessions"
OLD_ID = "20240102-030405-abcd"


def _install_old(home_sessions: Path) -> Path:
    home_sessions.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(OLD / OLD_ID, home_sessions / OLD_ID))


def test_every_schema_step_is_a_named_function_in_order() -> None:
    assert len(SESSION_UPGRADES) == SESSION_SCHEMA and len(TURN_UPGRADES) == TRANSCRIPT_SCHEMA
    assert [f.__name__ for f in SESSION_UPGRADES] == ["m001_initial"]
    assert [f.__name__ for f in TURN_UPGRADES] == ["m001_initial_turn", "m002_reasoning_and_checks"]


def test_old_prototype_session_lists_with_its_turns() -> None:
    store = make_store()
    _install_old(store.root)
    metas, problems = store.list()
    assert problems == []
    (meta,) = metas
    assert (meta.name, meta.persona, meta.chat_format, meta.turns, meta.tokens) == ("old-sql", "sql", "raven", 2, 14)
    assert meta.model.path == "/models/RWKV-4-Raven-3B-v12.pth" and meta.model.fingerprint == ""
    assert meta.created_at.startswith("2024-01-02T03:04:05")


def test_opening_an_old_session_upgrades_its_files_on_disk() -> None:
    store = make_store()
    folder = _install_old(store.root)
    with store.open("old-sql") as s:
        turns = s.turns()
        assert [t.stop_reason for t in turns] == ["stop", "length"]
        assert turns[0].prompt_tokens == [33, 34, 35, 36] and turns[1].reply_text == " Use COUNT(DISTINCT"
        assert turns[0].prompt_text == "Bob: How do I count rows?\n\nAlice:"
        # No fingerprint and no states in the old layout: the chat layer replays.
        with pytest.raises(StateUnavailable) as err:
            s.load_state(2, fingerprint=FP)
        assert err.value.reason == "missing"
        s.update_meta(model={"path": "/m/new.pth", "fingerprint": FP, "arch": "v4"})
        s.save_state(2, make_state(2), fingerprint=FP)
        s.append_turn(make_turn(3), make_state(3), fingerprint=FP)
    on_disk = json.loads((folder / "session.json").read_text())
    assert on_disk["schema_version"] == SESSION_SCHEMA and on_disk["turns"] == 3
    lines = [json.loads(line) for line in (folder / "transcript.jsonl").read_text().splitlines()]
    assert [d["schema_version"] for d in lines] == [TRANSCRIPT_SCHEMA] * 3
    assert [d["index"] for d in lines] == [1, 2, 3]
    with store.open("old-sql") as s:
        assert len(s.turns()) == 3 and s.load_state(3, fingerprint=FP)


def test_upgrades_are_idempotent_on_current_files() -> None:
    with make_session(make_store()) as s:
        d = s.meta.to_dict()
    assert upgrade_session(d) == (d, False)
    t = make_turn(1).to_dict()
    assert upgrade_turn(t) == (t, False)


def test_a_file_from_a_newer_weprompt_is_refused_not_guessed() -> None:
    store = make_store()
    with make_session(store) as s:
        folder = s.path
    d = json.loads((folder / "session.json").read_text())
    d["schema_version"] = SESSION_SCHEMA + 1
    (folder / "session.json").write_text(json.dumps(d))
    with pytest.raises(NewerSchemaError):
        upgrade_session(d)
    with pytest.raises(InvalidFileError) as err:
        store.open(folder.name)
    assert "newer than this WePrompt" in err.value.message
    _, problems = store.list()
    assert len(problems) == 1 and problems[0].path == folder / "session.json"


def test_an_unknown_old_stop_reason_is_damage() -> None:
    with pytest.raises(ValueError):
        upgrade_turn({"n": 1, "stop": "exploded", "t0": 1.0})


def test_a_schema_1_transcript_loads_with_no_reasoning_and_no_checks() -> None:
    store = make_store()
    store.root.mkdir(parents=True, exist_ok=True)
    folder = Path(shutil.copytree(OLD / "20261126-101010-v1v1", store.root / "20261126-101010-v1v1"))
    meta, turns, problems = store.read("schema1-sql")
    assert problems == [] and meta.turns == 2
    assert [(t.reasoning, t.think, t.checks) for t in turns] == [("", None, ())] * 2
    assert turns[0].user and turns[0].assistant and turns[0].reply_tokens
    with store.open("schema1-sql") as s:  # an owner rewrites it in the current schema
        assert len(s.turns()) == 2
    lines = [json.loads(line) for line in (folder / "transcript.jsonl").read_text().splitlines()]
    assert [(d["schema_version"], d["reasoning"], d["checks"]) for d in lines] == [(TRANSCRIPT_SCHEMA, "", [])] * 2
