"""`OpenSession`: one session held (flock) by this process.

Crash safety rests on the order of writes in `append_turn`: the state file (atomic),
then the transcript line (appended, fsync'd: the commit point), then session.json
(atomic). Opening makes the files agree with the transcript: a torn final line is cut,
turns and tokens are recounted, states newer than the last turn are dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weprompt_cli.atomic import (
    TMP_PREFIX,
    append_line_durably,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from weprompt_cli.errors import DiskError, InvalidFileError, UsageError
from weprompt_cli.store.layout import SESSION_JSON, STATES, read_meta, reconcile
from weprompt_cli.store.lock import FileLock
from weprompt_cli.store.model import ModelRef, ParentRef, SessionMeta, Turn, total_tokens, utc_now
from weprompt_cli.store.names import validate_name
from weprompt_cli.store.retention import plan_eviction
from weprompt_cli.store.states import (
    DEFAULT_LAYOUT,
    StateTensors,
    StateUnavailable,
    decode_state,
    encode_state,
    state_filename,
    state_files,
)
from weprompt_cli.store.transcript import TRANSCRIPT, read_transcript, transcript_text, turn_line

# `claim(new_name, own_id)`: hold the store's lock with `new_name` checked free for session `own_id`.
NameClaim = Callable[[str, str], AbstractContextManager[None]]


@dataclass(frozen=True)
class Retention:
    """How many state files a session keeps (see retention.py)."""

    budget_bytes: int
    keep_latest: int


class OpenSession:
    """One session held by this process: read its turns, append new ones, use its states."""

    def __init__(
        self,
        claim_name: NameClaim,
        retention: Retention,
        path: Path,
        lock: FileLock,
        meta: SessionMeta,
        turns: list[Turn],
        transcript_bytes: int = 0,
    ) -> None:
        self._claim_name = claim_name
        self._retention = retention
        self.path = path
        self._lock = lock
        self._meta = meta
        self._turns = list(turns)
        # Length of the transcript's committed lines: bytes past it are a failed append.
        self._transcript_bytes = transcript_bytes

    @classmethod
    def _load(cls, claim_name: NameClaim, retention: Retention, folder: Path, lock: FileLock) -> OpenSession:
        # We hold the lock: leftovers of a crashed writer can go, then make the
        # files agree with the transcript.
        for sub in (folder, folder / STATES):
            try:
                for p in sub.iterdir():
                    if p.name.startswith(TMP_PREFIX) and p.is_file():
                        p.unlink(missing_ok=True)
            except OSError:
                pass
        meta, upgraded = read_meta(folder)
        tpath = folder / TRANSCRIPT
        read = read_transcript(tpath)
        if read.problem:
            bad = read.problem
            keep = (bad.line or 1) - 1
            raise InvalidFileError(
                f"{bad.message} (line {bad.line} of the transcript)",
                path=bad.path,
                hint=f"weprompt sessions fork {meta.label} --at {keep} keeps the {keep} turns before it",
            )
        good_bytes = read.good_bytes
        if read.upgraded:
            text = transcript_text(read.turns)
            atomic_write_text(tpath, text)
            good_bytes = len(text.encode("utf-8"))
        elif read.torn:
            # A crash mid-append: cut the partial line so the next append starts clean.
            try:
                os.truncate(tpath, read.good_bytes)
                fd = os.open(tpath, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise DiskError(f"cannot repair the transcript: {exc.strerror or exc}", path=tpath) from exc
        session = cls(claim_name, retention, folder, lock, meta, read.turns, good_bytes)
        # A state newer than the transcript was written before a crash cut its turn.
        for k, p in state_files(folder / STATES).items():
            if k > len(read.turns):
                p.unlink(missing_ok=True)
        fixed = reconcile(meta, read.turns)
        if upgraded or fixed != meta:
            session._write_meta(fixed)
        return session

    # -- reading --------------------------------------------------------------------

    @property
    def meta(self) -> SessionMeta:
        return self._meta

    @property
    def states_dir(self) -> Path:
        return self.path / STATES

    def turns(self) -> list[Turn]:
        """The finished turns, in order (turn i is at index i-1)."""
        return list(self._turns)

    def state_path(self, turn: int) -> Path:
        return self.states_dir / state_filename(turn)

    def state_turns(self) -> list[int]:
        """Turns that have a state file (not checked), ascending."""
        return sorted(state_files(self.states_dir))

    def load_state(
        self, turn: int, *, fingerprint: str | None, layout: str | None = None, framework: str = "torch"
    ) -> dict[str, Any]:
        """The state after `turn` (0 = persona prefix); `StateUnavailable(reason)` when unusable."""
        self._check_turn(turn)
        return decode_state(self.state_path(turn), turn=turn, fingerprint=fingerprint, layout=layout,
                            framework=framework)

    def nearest_state(
        self,
        turn: int,
        *,
        fingerprint: str | None,
        skipped: list[StateUnavailable] | None = None,
        layout: str | None = None,
        framework: str = "torch",
    ) -> tuple[int, dict[str, Any]] | None:
        """The newest good state at or before `turn` as (k, tensors), or None.

        Each unusable state on the way is appended to `skipped` (for the warning line).
        """
        self._check_turn(turn)
        for k in sorted((k for k in state_files(self.states_dir) if k <= turn), reverse=True):
            try:
                return k, decode_state(self.state_path(k), turn=k, fingerprint=fingerprint, layout=layout,
                                       framework=framework)
            except StateUnavailable as exc:
                if skipped is not None:
                    skipped.append(exc)
        return None

    # -- writing --------------------------------------------------------------------

    def append_turn(
        self, turn: Turn, state_tensors: StateTensors | None, *, fingerprint: str, layout: str = DEFAULT_LAYOUT
    ) -> SessionMeta:
        """Record a finished turn and the state after it; returns the updated metadata.

        Order: state file, then transcript line (the commit point), then session.json.
        `state_tensors=None` records the turn without a state (replay rebuilds it).
        """
        self._check_open()
        expected = len(self._turns) + 1
        if turn.index != expected:
            raise ValueError(f"turn index {turn.index}, expected {expected}")
        tokens = self._meta.prefix_tokens + total_tokens(self._turns) + turn.token_count
        if state_tensors is not None:
            self._write_state(turn.index, state_tensors, fingerprint=fingerprint, tokens=tokens, layout=layout)
        line = turn_line(turn)
        self._cut_failed_append()
        append_line_durably(self.path / TRANSCRIPT, line)
        self._turns.append(turn)
        self._transcript_bytes += len(line) + 1  # ASCII JSON: characters are bytes
        self._write_meta(reconcile(self._meta, self._turns).replace(updated_at=utc_now()))
        self._apply_retention(protect=turn.index)
        return self._meta

    def save_state(
        self,
        turn: int,
        state_tensors: StateTensors,
        *,
        fingerprint: str,
        tokens: int | None = None,
        layout: str = DEFAULT_LAYOUT,
    ) -> None:
        """Write the state after `turn` (turn 0 = persona prefix; or a state rebuilt by replay).

        `tokens` (the state's metadata) is the number of tokens fed into this state; it
        defaults to the prefix plus the conversation up to `turn`. For turn 0 it is the
        persona prefix length, also kept as `meta.prefix_tokens`.
        """
        self._check_open()
        self._check_turn(turn)
        if turn == 0 and tokens is not None and tokens != self._meta.prefix_tokens:
            self._write_meta(self._meta.replace(prefix_tokens=tokens))
        if tokens is None:
            tokens = self._meta.prefix_tokens + total_tokens(self._turns[:turn])
        self._write_state(turn, state_tensors, fingerprint=fingerprint, tokens=tokens, layout=layout)
        self._apply_retention(protect=turn)

    def truncate_to(self, turn: int) -> list[Turn]:
        """Keep turns 1..turn (for /undo, /retry); returns the removed turns, oldest first."""
        self._check_open()
        if not 0 <= turn <= len(self._turns):
            raise UsageError(f"session {self._meta.label} has turns 0..{len(self._turns)}; cannot go back to {turn}")
        if turn == len(self._turns):
            return []
        removed = self._turns[turn:]
        kept = self._turns[:turn]
        # Transcript first: a crash after it leaves states newer than the transcript,
        # which the next open deletes.
        text = transcript_text(kept)
        atomic_write_text(self.path / TRANSCRIPT, text)
        self._turns = kept
        self._transcript_bytes = len(text.encode("utf-8"))
        for k, p in state_files(self.states_dir).items():
            if k > turn:
                p.unlink(missing_ok=True)
        self._write_meta(reconcile(self._meta, kept).replace(updated_at=utc_now()))
        return removed

    def drop_last_turn(self) -> Turn:
        """Undo: remove the last turn and its state; returns it."""
        if not self._turns:
            raise UsageError("there is no turn to undo")
        return self.truncate_to(len(self._turns) - 1)[0]

    _EDITABLE = frozenset({"name", "persona", "model", "chat_format", "sampling", "extra", "parent"})

    def update_meta(self, **fields: Any) -> SessionMeta:
        """Change metadata fields (name, persona, model, chat_format, sampling, extra, parent)."""
        self._check_open()
        unknown = set(fields) - self._EDITABLE
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
        if isinstance(fields.get("model"), dict):
            fields["model"] = ModelRef.from_dict(fields["model"])
        if isinstance(fields.get("parent"), dict):
            fields["parent"] = ParentRef.from_dict(fields["parent"])
        new_name = fields.get("name")
        if new_name is not None and new_name != self._meta.name:
            validate_name(new_name)
            with self._claim_name(new_name, self._meta.id):
                self._write_meta(self._meta.replace(**fields, updated_at=utc_now()))
        else:
            self._write_meta(self._meta.replace(**fields, updated_at=utc_now()))
        return self._meta

    def close(self) -> None:
        """Release the session (idempotent)."""
        self._lock.release()

    @property
    def closed(self) -> bool:
        return not self._lock.held

    def __enter__(self) -> OpenSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------

    def _check_open(self) -> None:
        """Before a write: the session is open here and still ours (LockedError if another host took it over)."""
        if not self._lock.held and not getattr(self._lock, "_active", False):
            raise ValueError(f"session {self._meta.label} is closed")
        self._lock.verify()

    def _check_turn(self, turn: int) -> None:
        if not isinstance(turn, int) or not 0 <= turn <= len(self._turns):
            raise ValueError(f"session {self._meta.label} has turns 0..{len(self._turns)}, not {turn}")

    def _cut_failed_append(self) -> None:
        """Drop bytes a failed or interrupted append left after the last committed line."""
        path = self.path / TRANSCRIPT
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self._transcript_bytes:
            raise InvalidFileError("the transcript shrank while the session was open", path=path)
        if size > self._transcript_bytes:
            try:
                os.truncate(path, self._transcript_bytes)
            except OSError as exc:
                raise DiskError(f"cannot repair the transcript: {exc.strerror or exc}", path=path) from exc

    def _write_meta(self, meta: SessionMeta) -> None:
        atomic_write_json(self.path / SESSION_JSON, meta.to_dict())
        self._meta = meta

    def _write_state(
        self, turn: int, tensors: StateTensors, *, fingerprint: str, tokens: int, layout: str = DEFAULT_LAYOUT
    ) -> None:
        data = encode_state(
            tensors, fingerprint=fingerprint, turn=turn, tokens=tokens, arch=self._meta.model.arch, layout=layout
        )
        atomic_write_bytes(self.state_path(turn), data)

    def _apply_retention(self, *, protect: int) -> None:
        sizes: dict[int, int] = {}
        for k, p in state_files(self.states_dir).items():
            try:
                sizes[k] = p.stat().st_size
            except OSError:
                pass
        for k in plan_eviction(
            sizes, budget_bytes=self._retention.budget_bytes, keep_latest=self._retention.keep_latest, protect=(protect,)
        ):
            self.state_path(k).unlink(missing_ok=True)
