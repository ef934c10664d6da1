"""The files of one session folder and the helpers that read them consistently.

`<id>/session.json` (metadata), `transcript.jsonl` (the truth), `states/` (a cache of
the transcript), `lock` (flock of the process that has the session open).
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
from pathlib import Path

from weprompt_cli.errors import InvalidFileError
from weprompt_cli.store.migrations import upgrade_session
from weprompt_cli.store.model import SessionMeta, Turn, parse_time, total_tokens

SESSION_JSON = "session.json"
STATES = "states"
LOCK = "lock"


def read_meta(folder: Path) -> tuple[SessionMeta, bool]:
    """session.json of `folder` at the current schema, and whether it was upgraded."""
    path = folder / SESSION_JSON
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InvalidFileError("session.json is missing", path=path) from None
    except OSError as exc:
        raise InvalidFileError(f"cannot read session.json: {exc.strerror or exc}", path=path) from None
    try:
        obj, upgraded = upgrade_session(json.loads(raw))
        meta = SessionMeta.from_dict(obj)
        parse_time(meta.created_at)
        parse_time(meta.updated_at)
    except json.JSONDecodeError as exc:
        raise InvalidFileError(f"damaged session.json: {exc.msg} at line {exc.lineno}", path=path) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidFileError(f"damaged session.json: {exc}", path=path) from None
    if meta.id != folder.name:
        raise InvalidFileError(f"session.json names id '{meta.id}' but lives in '{folder.name}'", path=path)
    return meta, upgraded


def reconcile(meta: SessionMeta, turns: builtins.list[Turn]) -> SessionMeta:
    """`meta` with turns, tokens and updated_at agreeing with the transcript."""
    updated = meta.updated_at
    if turns:
        try:
            if parse_time(turns[-1].finished_at) > parse_time(updated):
                updated = turns[-1].finished_at
        except ValueError:
            pass
    return meta.replace(turns=len(turns), tokens=total_tokens(turns), updated_at=updated)


def sort_key(meta: SessionMeta) -> float:
    return parse_time(meta.updated_at).timestamp()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def link_or_copy(src: Path, dst: Path) -> None:
    # State files are only ever replaced by rename, never written in place, so a hard
    # link shares them safely between a session and its fork (and is instant).
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
