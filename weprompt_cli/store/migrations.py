"""Numbered upgrades of the store's files, applied in order (as `llm/migrations.py`).

Every file the store writes carries `schema_version`. A file without one is the
unversioned layout of the 1.x prototype (version 0). Each upgrade is a named function
from version N-1 to N; `upgrade_session` and `upgrade_turn` run the ones a file needs.
A file from a newer WePrompt than this one is refused, never guessed at.

The 1.x prototype layout (version 0):
  session.json: id, name, persona, model_path, model_sha, format, sampling,
                created, updated (epoch seconds)
  transcript line: n, user, assistant, prompt, reply, prompt_ids, reply_ids,
                   stop ("eos" | "max_tokens" | "cancelled"), t0, t1 (epoch seconds)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from weprompt_cli.store.model import SESSION_SCHEMA, TRANSCRIPT_SCHEMA

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]


class NewerSchemaError(ValueError):
    """A file written by a newer WePrompt (its schema_version is above ours)."""


def _iso(epoch: Any) -> str:
    if isinstance(epoch, (int, float)) and not isinstance(epoch, bool):
        return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(epoch, str):
        return epoch
    raise ValueError("a time field is missing or not a number")


def m001_initial(d: dict[str, Any]) -> dict[str, Any]:
    """session.json v0 (1.x prototype) -> v1: nested `model`, ISO times, counts, parent."""
    if "id" not in d:
        raise ValueError("missing field 'id'")
    return {
        "schema_version": 1,
        "id": d["id"],
        "name": d.get("name"),
        "persona": d.get("persona", "general"),
        "model": {
            "path": d.get("model_path", ""),
            # The prototype had no fingerprint: an empty one never matches, so the first
            # resume rebuilds the states from the transcript instead of trusting them.
            "fingerprint": d.get("model_sha") or "",
            "arch": d.get("arch", "unknown"),
        },
        "chat_format": d.get("format", "world"),
        "sampling": d.get("sampling") or {},
        "created_at": _iso(d.get("created")),
        "updated_at": _iso(d.get("updated", d.get("created"))),
        # Recounted from the transcript when the session is read.
        "turns": 0,
        "tokens": 0,
        "prefix_tokens": 0,
        "parent": None,
        "extra": {},
    }


_STOP_V0 = {"eos": "stop", "stop": "stop", "max_tokens": "length", "length": "length", "cancelled": "interrupted"}


def m001_initial_turn(d: dict[str, Any]) -> dict[str, Any]:
    """transcript line v0 (1.x prototype) -> v1: explicit field names, ISO times."""
    stop = d.get("stop", "eos")
    if stop not in _STOP_V0:
        raise ValueError(f"unknown stop reason '{stop}'")
    return {
        "schema_version": 1,
        "index": d.get("n"),
        "user": d.get("user"),
        "assistant": d.get("assistant"),
        "prompt_text": d.get("prompt"),
        "reply_text": d.get("reply"),
        "prompt_tokens": d.get("prompt_ids"),
        "reply_tokens": d.get("reply_ids"),
        "stop_reason": _STOP_V0[stop],
        "started_at": _iso(d.get("t0")),
        "finished_at": _iso(d.get("t1", d.get("t0"))),
        "tokens_per_s": None,
        "first_token_s": None,
    }


def m002_reasoning_and_checks(d: dict[str, Any]) -> dict[str, Any]:
    """transcript line v1 -> v2: `reasoning` (a thought kept apart from the answer, and its length),
    `think` (the thinking mode), `checks` (checks of the answer)."""
    return {**d, "reasoning": "", "thought_tokens": 0, "think": None, "checks": []}


# Index i upgrades version i to i+1; append new steps, never edit old ones.
SESSION_UPGRADES: list[Upgrade] = [m001_initial]
TURN_UPGRADES: list[Upgrade] = [m001_initial_turn, m002_reasoning_and_checks]
assert len(SESSION_UPGRADES) == SESSION_SCHEMA and len(TURN_UPGRADES) == TRANSCRIPT_SCHEMA


def _upgrade(d: Any, steps: list[Upgrade], current: int, what: str) -> tuple[dict[str, Any], bool]:
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    version = d.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError("schema_version is not a version number")
    if version > current:
        raise NewerSchemaError(f"{what} schema {version} is newer than this WePrompt understands ({current})")
    changed = False
    while version < current:
        d = steps[version](d)
        version += 1
        d["schema_version"] = version
        changed = True
    return d, changed


def upgrade_session(d: Any) -> tuple[dict[str, Any], bool]:
    """session.json contents at the current schema, and whether anything was upgraded."""
    return _upgrade(d, SESSION_UPGRADES, SESSION_SCHEMA, "session.json")


def upgrade_turn(d: Any) -> tuple[dict[str, Any], bool]:
    """One transcript line at the current schema, and whether it was upgraded."""
    return _upgrade(d, TURN_UPGRADES, TRANSCRIPT_SCHEMA, "transcript line")
