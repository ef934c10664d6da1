"""The write primitives the store relies on: atomic replace and durable append."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from store_helpers import make_turn

from weprompt_cli.atomic import TMP_PREFIX, append_line_durably, atomic_write_bytes, atomic_write_json
from weprompt_cli.errors import DiskError
from weprompt_cli.store.transcript import read_transcript, turn_line


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"b": 2})
    assert json.loads(target.read_text()) == {"b": 2}
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_failed_replace_keeps_the_old_file_and_removes_the_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(DiskError) as err:
        atomic_write_bytes(target, b"new" * 1000)
    assert "disk is full" in err.value.message
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_append_adds_whole_lines_and_refuses_newlines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    append_line_durably(path, turn_line(make_turn(1)))
    append_line_durably(path, turn_line(make_turn(2, user="two\nlines\u2028here")))
    with pytest.raises(ValueError):
        append_line_durably(path, "a\nb")
    data = path.read_bytes()
    assert data.count(b"\n") == 2 and data.endswith(b"\n")
    read = read_transcript(path)
    assert [t.user for t in read.turns] == ["question 1", "two\nlines\u2028here"]
    assert not read.torn and read.problem is None and read.good_bytes == len(data)


def test_reader_ignores_a_torn_last_line_but_reports_a_bad_middle_one(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = turn_line(make_turn(1)) + "\n"
    path.write_text(good + turn_line(make_turn(2))[:30])
    read = read_transcript(path)
    assert len(read.turns) == 1 and read.torn and read.problem is None and read.good_bytes == len(good.encode())
    path.write_text(good + "{oops}\n" + turn_line(make_turn(3)) + "\n")
    read = read_transcript(path)
    assert len(read.turns) == 1 and read.problem is not None and read.problem.line == 2
    path.write_text(good + turn_line(make_turn(3)) + "\n")
    read = read_transcript(path)
    assert read.problem is not None and "turn 3 where turn 2 was expected" in read.problem.message


def test_temp_names_are_hidden(tmp_path: Path) -> None:
    assert TMP_PREFIX.startswith(".")
