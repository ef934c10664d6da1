"""A session as a document: Markdown for people, JSON for programs.

Used by `weprompt sessions export` and the REPL's `/export`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from weprompt_cli.store.model import SessionMeta, Turn

EXPORT_SCHEMA = 1  # the JSON export document


def stop_note(turn: Turn) -> str | None:
    """Why a turn's answer ended early, in words; None for a normal stop."""
    return {"length": "stopped at the token limit", "interrupted": "interrupted"}.get(turn.stop_reason)


def _model_name(meta: SessionMeta) -> str:
    return Path(meta.model.path).name or "-"


def export_markdown(meta: SessionMeta, turns: Sequence[Turn], *, thoughts: bool = False) -> str:
    """A session as a Markdown document; `thoughts` adds each turn's reasoning (G1 thinking) before its answer."""
    parts = [f"# {meta.label}", ""]
    parts += [
        f"- id: `{meta.id}`",
        f"- persona: {meta.persona}",
        f"- model: `{_model_name(meta)}` ({meta.model.arch})",
        f"- created: {meta.created_at}",
        f"- turns: {meta.turns}, tokens: {meta.tokens}",
    ]
    if meta.parent is not None:
        parts.append(f"- forked from `{meta.parent.session}` at turn {meta.parent.turn}")
    for t in turns:
        parts += ["", f"## Turn {t.index}", "", "**User**", "", t.user]
        if thoughts and t.reasoning:
            parts += ["", f"**Thought** ({t.thought_tokens} tokens)", "", *(f"> {line}" if line else ">" for line in t.reasoning.splitlines())]
        parts += ["", "**Assistant**", "", t.assistant]
        if t.marks:
            parts += ["", *(f"- {mark}" for mark in t.marks)]
        note = stop_note(t)
        if note:
            parts += ["", f"*({note})*"]
    return "\n".join(parts) + "\n"


def export_json(meta: SessionMeta, turns: Sequence[Turn]) -> str:
    """A session as one JSON document: metadata and every turn, whole (reasoning included: it is the program's copy)."""
    doc = {"schema_version": EXPORT_SCHEMA, "session": meta.to_dict(), "turns": [t.to_dict() for t in turns]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
