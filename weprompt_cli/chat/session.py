"""One conversation on disk and in the model: a turn = prefill + generate + checkpoint.

`ChatSession` joins an `Engine` (model math), an open store session (files) and a
persona. It keeps the live RNN state and a copy of the state before the last turn, so
`/retry` and `/undo` of the last turn cost nothing. Every finished turn, interrupted
ones included, is checkpointed before `send` returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator

from weprompt_cli.errors import WePromptError

if TYPE_CHECKING:
    from weprompt_cli.engine import Engine, SamplingParams
    from weprompt_cli.personas import Persona
    from weprompt_cli.store import OpenSession, SessionStore, Turn

Progress = Callable[[int, int], None]
Notify = Callable[[str], None]
Cancel = Callable[[], bool]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _never() -> bool:
    return False


@dataclass
class Reply:
    """The assistant's answer as it streams: iterate for text pieces, then read `turn`."""

    pieces: Iterator[str]
    turn: "Turn | None" = None  # set once the iteration ends; None when cancelled during prefill
    prompt_tokens: int = 0
    first_token_s: float | None = None
    elapsed_s: float = 0.0
    cancelled_in_prefill: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        return self.pieces

    def text(self) -> str:
        """Consume the reply and return the displayed answer."""
        for _ in self.pieces:
            pass
        return self.turn.assistant if self.turn else ""


class ChatSession:
    """A live conversation: the engine, the open session files, the persona and the state."""

    def __init__(
        self,
        engine: "Engine",
        store: "SessionStore",
        opened: "OpenSession",
        persona: "Persona | None",
        params: "SamplingParams",
        state: Any,
        *,
        notify: Notify | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.opened = opened
        self.persona = persona
        self.params = params
        self.state = state
        self.notify = notify or (lambda message: None)
        self._turns: list[Turn] = opened.turns()
        self._state_before_last: Any | None = None  # state before the last turn, when known

    # ----------------------------------------------------------------- starting
    @classmethod
    def start(
        cls,
        engine: "Engine",
        store: "SessionStore",
        persona: "Persona",
        params: "SamplingParams",
        *,
        name: str | None = None,
        notify: Notify | None = None,
        progress: Progress | None = None,
    ) -> "ChatSession":
        """A new session with `persona`, starting from its cached prompt state."""
        from weprompt_cli.chat.persona_state import persona_state
        from weprompt_cli.engine import state_to_tensors

        state, persona_tokens, _cached = persona_state(engine, persona, store.home.cache, progress=progress)
        opened = store.create(
            name=name or _free_name(store, persona.name),
            persona=persona.name,
            model_path=str(engine.info.path),
            fingerprint=engine.fingerprint,
            arch=engine.info.arch,
            chat_format=engine.chat_format.name,
            sampling=params.to_dict(),
        )
        try:
            opened.save_state(0, state_to_tensors(state), fingerprint=engine.fingerprint, tokens=persona_tokens)
        except BaseException:
            opened.close()
            raise
        return cls(engine, store, opened, persona, params, state, notify=notify)

    @classmethod
    def resume(
        cls,
        engine: "Engine",
        store: "SessionStore",
        opened: "OpenSession",
        persona: "Persona | None",
        params: "SamplingParams",
        *,
        rebuild: bool = False,
        notify: Notify | None = None,
        progress: Progress | None = None,
    ) -> "ChatSession":
        """Reopen a stored session at its last turn, from its checkpoint (no replay when it is good)."""
        meta = opened.meta
        stored_fp = meta.model.get("fingerprint") if isinstance(meta.model, dict) else None
        if stored_fp and stored_fp != engine.fingerprint and not rebuild:
            raise WePromptError(
                f"session {meta.name} was made with another model ({_model_name(meta.model)})",
                hint=f"resume it with --model {meta.model.get('path')}, or add --rebuild to replay it through this model",
            )
        session = cls(engine, store, opened, persona, params, None, notify=notify)
        if stored_fp and stored_fp != engine.fingerprint:
            session.notify(f"replaying {len(session._turns)} turns through {engine.info.path.name} (--rebuild)")
            session.state = session._rebuild_from_scratch(progress=progress, reencode=True)
            opened.update_meta(
                model={"path": str(engine.info.path), "fingerprint": engine.fingerprint, "arch": engine.info.arch},
                chat_format=engine.chat_format.name,
            )
        else:
            session.state = session._restore(len(session._turns), progress=progress)
        return session

    # ------------------------------------------------------------------ turns
    @property
    def turns(self) -> list["Turn"]:
        return list(self._turns)

    @property
    def name(self) -> str:
        return self.opened.meta.name

    @property
    def id(self) -> str:
        return self.opened.meta.id

    def send(self, user_text: str, *, cancel: Cancel | None = None, progress: Progress | None = None) -> Reply:
        """Feed the user's message and stream the answer; the turn is saved when the stream ends."""
        cancel = cancel or _never
        reply = Reply(pieces=iter(()))
        reply.pieces = self._run_turn(user_text, cancel, progress, reply)
        return reply

    def _run_turn(self, user_text: str, cancel: Cancel, progress: Progress | None, reply: Reply) -> Iterator[str]:
        from weprompt_cli.engine import Sampler, clone_state

        fmt = self.engine.chat_format
        tokenizer = self.engine.tokenizer
        needs_boundary = bool(self._turns) and self._turns[-1].stop_reason != "stop"
        prompt_text = fmt.turn_prompt(user_text, needs_boundary=needs_boundary)
        prompt_tokens = tokenizer.encode(prompt_text)
        reply.prompt_tokens = len(prompt_tokens)
        before = clone_state(self.state)
        started_at = _now()
        t0 = time.perf_counter()

        logits = self.engine.feed(prompt_tokens, self.state, progress=progress, cancel=cancel)
        if cancel():
            # Stopped before any answer: forget the half-fed prompt, record nothing.
            self.state = before
            reply.cancelled_in_prefill = True
            return

        sampler = Sampler(self.params)
        stops = (fmt.separator,) + tuple(self.persona.stop if self.persona else ())
        generation = self.engine.generate(
            logits, self.state, sampler, stop=stops, max_tokens=self.params.max_tokens, cancel=cancel
        )
        for piece in generation:
            if reply.first_token_s is None:
                reply.first_token_s = time.perf_counter() - t0
            yield piece
        result = generation.result
        reply.elapsed_s = time.perf_counter() - t0
        turn = self._make_turn(user_text, prompt_text, prompt_tokens, result, started_at, reply)
        self._checkpoint(turn)
        self._state_before_last = before
        reply.turn = turn

    def _make_turn(
        self, user_text: str, prompt_text: str, prompt_tokens: list[int], result: Any, started_at: str, reply: Reply
    ) -> "Turn":
        from weprompt_cli.store import Turn

        n_reply = len(result.tokens)
        gen_s = max(reply.elapsed_s - (reply.first_token_s or 0.0), 1e-9)
        return Turn(
            index=len(self._turns) + 1,
            user=user_text,
            assistant=result.text,
            prompt_text=prompt_text,
            reply_text=result.raw_text,
            prompt_tokens=list(prompt_tokens),
            reply_tokens=list(result.tokens),
            stop_reason=result.stop_reason,
            started_at=started_at,
            finished_at=_now(),
            first_token_s=reply.first_token_s,
            tokens_per_s=(n_reply - 1) / gen_s if n_reply > 1 else None,
        )

    def _checkpoint(self, turn: "Turn") -> None:
        from weprompt_cli.engine import state_to_tensors

        self.opened.append_turn(turn, state_to_tensors(self.state), fingerprint=self.engine.fingerprint)
        self._turns.append(turn)

    # ------------------------------------------------------- undo, retry, fork
    def undo(self) -> "Turn | None":
        """Drop the last turn and go back to the state before it."""
        if not self._turns:
            return None
        last = self._turns[-1]
        previous = self._state_before_last
        self.opened.drop_last_turn()
        self._turns.pop()
        self.state = previous if previous is not None else self._restore(len(self._turns))
        self._state_before_last = None
        return last

    def retry(self, *, cancel: Cancel | None = None, progress: Progress | None = None) -> Reply:
        """Answer the last message again, from the state before it."""
        if not self._turns:
            raise WePromptError("nothing to retry yet: send a message first")
        last = self.undo()
        assert last is not None
        return self.send(last.user, cancel=cancel, progress=progress)

    def fork(self, new_name: str | None = None) -> str:
        """A new session that shares this one's history up to now; returns its name."""
        meta = self.store.fork(self.opened.meta.id, len(self._turns), new_name)
        return meta.name

    # ------------------------------------------------------------- restoring
    def _restore(self, turn: int, *, progress: Progress | None = None) -> Any:
        """The state after `turn`: its checkpoint, else the nearest earlier one plus a replay."""
        from weprompt_cli.engine import state_from_tensors
        from weprompt_cli.store import StateUnavailable

        fp = self.engine.fingerprint
        try:
            return state_from_tensors(self.opened.load_state(turn, fingerprint=fp), self.engine)
        except StateUnavailable as exc:
            problem = exc
        found = self.opened.nearest_state(turn, fingerprint=fp)
        if found is None:
            self.notify(f"warning: no usable saved state ({problem}); replaying all {turn} turns")
            return self._rebuild_from_scratch(progress=progress, upto=turn)
        start, tensors = found
        self.notify(f"warning: saved state of turn {turn} unusable ({problem}); replaying from turn {start}")
        state = state_from_tensors(tensors, self.engine)
        return self._replay(state, start, turn, progress=progress, reencode=False)

    def _rebuild_from_scratch(self, *, progress: Progress | None = None, upto: int | None = None,
                              reencode: bool = False) -> Any:
        from weprompt_cli.chat.persona_state import persona_state
        from weprompt_cli.engine import state_to_tensors

        upto = len(self._turns) if upto is None else upto
        if self.persona is not None:
            state, n, _ = persona_state(self.engine, self.persona, self.store.home.cache)
        else:
            state, n = self.engine.zero_state(), 0
        self.opened.save_state(0, state_to_tensors(state), fingerprint=self.engine.fingerprint, tokens=n)
        return self._replay(state, 0, upto, progress=progress, reencode=reencode)

    def _replay(self, state: Any, start: int, end: int, *, progress: Progress | None, reencode: bool) -> Any:
        """Feed turns start+1..end (1-based) into `state`, saving a checkpoint after each."""
        from weprompt_cli.engine import clone_state, state_to_tensors

        turns = self._turns[start:end]
        total = sum(len(t.prompt_tokens) + len(t.reply_tokens) for t in turns)
        done = 0
        tokenizer = self.engine.tokenizer
        for turn in turns:
            if reencode:
                ids = tokenizer.encode(turn.prompt_text) + tokenizer.encode(turn.reply_text)
            else:
                ids = list(turn.prompt_tokens) + list(turn.reply_tokens)
            if turn.index == end:
                self._state_before_last = clone_state(state)
            if ids:
                self.engine.feed(ids, state)
            done += len(turn.prompt_tokens) + len(turn.reply_tokens)
            if progress:
                progress(done, total)
            self.opened.save_state(turn.index, state_to_tensors(state), fingerprint=self.engine.fingerprint)
        return state

    # ------------------------------------------------------------------ misc
    def info(self) -> dict[str, Any]:
        """What `/info` shows: model, strategy, state size, turns, tokens."""
        from weprompt_cli.engine import state_nbytes

        tokens = sum(len(t.prompt_tokens) + len(t.reply_tokens) for t in self._turns)
        return {
            "session": self.name,
            "id": self.id,
            "persona": self.persona.name if self.persona else self.opened.meta.persona,
            "model": str(self.engine.info.path),
            "arch": self.engine.info.arch,
            "strategy": self.engine.strategy,
            "state_bytes": state_nbytes(self.state),
            "turns": len(self._turns),
            "tokens": tokens,
        }

    def close(self) -> None:
        self.opened.close()

    def __enter__(self) -> "ChatSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _free_name(store: "SessionStore", prefix: str) -> str:
    """A short readable name for a session the user did not name: `sql-3f9a`."""
    import secrets

    from weprompt_cli.errors import ConflictError

    while True:
        name = f"{prefix}-{secrets.token_hex(2)}"
        try:
            store.ensure_name_free(name)
            return name
        except ConflictError:
            continue


def _model_name(model: Any) -> str:
    if isinstance(model, dict) and model.get("path"):
        from pathlib import Path

        return Path(model["path"]).name
    return "unknown"
