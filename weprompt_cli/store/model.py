"""The nouns of the store: a session's metadata and one finished turn.

Both are plain frozen dataclasses with `to_dict`/`from_dict`; `from_dict` checks types
strictly so that a damaged file is reported rather than half-loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

SESSION_SCHEMA = 1  # session.json; upgrades in migrations.py
TRANSCRIPT_SCHEMA = 2  # each transcript.jsonl line; 2 added reasoning, think, checks
STOP_REASONS = ("stop", "length", "interrupted")
StopReason = Literal["stop", "length", "interrupted"]


def utc_now() -> str:
    """The current time as the store writes it: ISO 8601, UTC, milliseconds (`...Z`)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """A time written by `utc_now` (or any ISO 8601 string) as an aware datetime."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _get(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if key not in d or d[key] is None:
        if optional:
            return None
        raise ValueError(f"missing field '{key}'")
    value = d[key]
    # bool is an int in Python; a count or index that is a bool is damage.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise ValueError(f"field '{key}' has the wrong type ({type(value).__name__})")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _int_list(d: Mapping[str, Any], key: str) -> list[int]:
    value = _get(d, key, list)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        raise ValueError(f"field '{key}' must be a list of token ids")
    return list(value)


class ModelRef(dict[str, str]):
    """Which model a session was made with: `{"path", "fingerprint", "arch"}`.

    A dict (it is a JSON object in session.json, and `meta.model.get("path")` works)
    with attribute access for typed code: `meta.model.fingerprint`.
    """

    def __init__(self, path: str, fingerprint: str, arch: str) -> None:
        super().__init__(path=path, fingerprint=fingerprint, arch=arch)

    @property
    def path(self) -> str:
        return self["path"]

    @property
    def fingerprint(self) -> str:
        return self["fingerprint"]

    @property
    def arch(self) -> str:
        return self["arch"]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelRef:
        return cls(path=_get(d, "path", str), fingerprint=_get(d, "fingerprint", str), arch=_get(d, "arch", str))


@dataclass(frozen=True)
class ParentRef:
    """Where a forked session came from: the parent session's id and the turn it forked at."""

    session: str
    turn: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParentRef:
        return cls(session=_get(d, "session", str), turn=_get(d, "turn", int))


@dataclass(frozen=True)
class SessionMeta:
    """The contents of session.json. `turns`/`tokens` always agree with the transcript.

    `tokens` counts the conversation's token ids (prompt + reply of every turn);
    `prefix_tokens` those of the persona prefix (state 0), recorded by `save_state(0, ...)`.
    `extra` is free-form JSON for the chat layer.
    """

    id: str
    name: str | None
    persona: str
    model: ModelRef
    chat_format: str
    sampling: dict[str, Any]
    created_at: str
    updated_at: str
    turns: int = 0
    tokens: int = 0
    prefix_tokens: int = 0
    parent: ParentRef | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SESSION_SCHEMA

    @property
    def label(self) -> str:
        """The name, or the id of an unnamed session."""
        return self.name or self.id

    def replace(self, **changes: Any) -> SessionMeta:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SESSION_SCHEMA,
            "id": self.id,
            "name": self.name,
            "persona": self.persona,
            "model": dict(self.model),
            "chat_format": self.chat_format,
            "sampling": dict(self.sampling),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "turns": self.turns,
            "tokens": self.tokens,
            "prefix_tokens": self.prefix_tokens,
            "parent": asdict(self.parent) if self.parent is not None else None,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SessionMeta:
        """A SessionMeta from a current-schema dict; `ValueError` names the bad field."""
        if not isinstance(d, Mapping):
            raise ValueError("not a JSON object")
        parent = _get(d, "parent", dict, optional=True)
        turns = _get(d, "turns", int)
        tokens = _get(d, "tokens", int)
        if turns < 0 or tokens < 0:
            raise ValueError("negative turn or token count")
        return cls(
            schema_version=_get(d, "schema_version", int),
            id=_get(d, "id", str),
            name=_get(d, "name", str, optional=True),
            persona=_get(d, "persona", str),
            model=ModelRef.from_dict(_get(d, "model", dict)),
            chat_format=_get(d, "chat_format", str),
            sampling=dict(_get(d, "sampling", dict)),
            created_at=_get(d, "created_at", str),
            updated_at=_get(d, "updated_at", str),
            turns=turns,
            tokens=tokens,
            prefix_tokens=_get(d, "prefix_tokens", int, optional=True) or 0,
            parent=ParentRef.from_dict(parent) if parent is not None else None,
            extra=dict(_get(d, "extra", dict, optional=True) or {}),
        )


@dataclass(frozen=True)
class Turn:
    """One finished turn (one transcript line).

    `user`/`assistant` are the texts shown; `prompt_text`/`reply_text` and the token ids
    are exactly what was fed to the model, so replaying them rebuilds the state.
    """

    index: int  # 1-based
    user: str
    assistant: str
    prompt_text: str
    reply_text: str
    prompt_tokens: list[int]
    reply_tokens: list[int]
    stop_reason: StopReason
    started_at: str
    finished_at: str
    tokens_per_s: float | None = None
    first_token_s: float | None = None
    # The model's thought before `assistant` (G1 thinking), kept apart from the answer; "" when none.
    # `reply_text` still holds everything fed, thought included: an RNN state cannot forget it.
    reasoning: str = ""
    thought_tokens: int = 0  # tokens the thought took (its tags included)
    think: str | None = None  # the thinking mode of the turn ("off", "on", "bit", "lot"); None: no thinking format
    # Checks of the answer (the SQL advisor's query checks), each a small JSON object.
    checks: tuple[dict[str, Any], ...] = ()
    # The client's Idempotency-Key of the HTTP request that made this turn: a retry with the same key gets
    # this turn back instead of a second one. None for turns typed in the REPL (the line then has no field).
    request_key: str | None = None

    @property
    def marks(self) -> list[str]:
        """The one-line mark of each check of the answer ("✓ valid SQL ...", "✗ ..."), in order."""
        return [m for c in self.checks if isinstance(m := c.get("mark"), str) and m]

    @property
    def token_count(self) -> int:
        """Tokens this turn fed to the model (prompt + reply)."""
        return len(self.prompt_tokens) + len(self.reply_tokens)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = [dict(c) for c in self.checks]
        if self.request_key is None:
            del d["request_key"]
        d["schema_version"] = TRANSCRIPT_SCHEMA
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Turn:
        """A Turn from a current-schema dict; `ValueError` names the bad field."""
        if not isinstance(d, Mapping):
            raise ValueError("not a JSON object")
        index = _get(d, "index", int)
        if index < 1:
            raise ValueError("turn index below 1")
        stop = _get(d, "stop_reason", str)
        if stop not in STOP_REASONS:
            raise ValueError(f"unknown stop reason '{stop}'")
        tps = _get(d, "tokens_per_s", (int, float), optional=True)
        fts = _get(d, "first_token_s", (int, float), optional=True)
        return cls(
            index=index,
            user=_get(d, "user", str),
            assistant=_get(d, "assistant", str),
            prompt_text=_get(d, "prompt_text", str),
            reply_text=_get(d, "reply_text", str),
            prompt_tokens=_int_list(d, "prompt_tokens"),
            reply_tokens=_int_list(d, "reply_tokens"),
            stop_reason=stop,  # type: ignore[arg-type]
            started_at=_get(d, "started_at", str),
            finished_at=_get(d, "finished_at", str),
            tokens_per_s=float(tps) if tps is not None else None,
            first_token_s=float(fts) if fts is not None else None,
            reasoning=_get(d, "reasoning", str),
            thought_tokens=_get(d, "thought_tokens", int),
            think=_get(d, "think", str, optional=True),
            checks=tuple(_check_list(d)),
            request_key=_get(d, "request_key", str, optional=True),
        )


def _check_list(d: Mapping[str, Any]) -> list[dict[str, Any]]:
    value = _get(d, "checks", list)
    if not all(isinstance(x, dict) for x in value):
        raise ValueError("field 'checks' must be a list of objects")
    return [dict(x) for x in value]


def total_tokens(turns: Sequence[Turn]) -> int:
    """The conversation tokens of `turns` (what SessionMeta.tokens holds)."""
    return sum(t.token_count for t in turns)
