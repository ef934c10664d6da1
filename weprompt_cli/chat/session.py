"""One conversation on disk and in the model: a turn = prefill + generate + checkpoint.

`ChatSession` joins an `Engine` (model math), an open store session (files), a chat
format and a persona. It keeps the live RNN state and a copy of the state before the
last turn, so `/retry` and `/undo` of the last turn cost nothing. Every finished turn,
interrupted ones included, is checkpointed before its `TurnStream` ends.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from weprompt_cli.chat.formats import banned_tokens
from weprompt_cli.chat.turn import TurnStream
from weprompt_cli.errors import WePromptError

if TYPE_CHECKING:
    from weprompt_cli.chat.formats import ChatFormat
    from weprompt_cli.engine.base import Engine
    from weprompt_cli.engine.generation import GenerationResult
    from weprompt_cli.params import SamplingParams
    from weprompt_cli.personas import Persona
    from weprompt_cli.store import OpenSession, SessionStore, Turn

Progress = Callable[[int, int], None]
Notify = Callable[[str], None]
Cancel = Callable[[], bool]


class ChatSession:
    """A live conversation: the engine, the open session files, the format, the persona and the state."""

    def __init__(
        self,
        engine: Engine,
        store: SessionStore,
        opened: OpenSession,
        fmt: ChatFormat,
        persona: Persona | None,
        params: SamplingParams,
        state: Any,
        *,
        notify: Notify | None = None,
        created: bool = False,
    ) -> None:
        self.engine = engine
        self.store = store
        self.opened = opened
        self.fmt = fmt
        self.persona = persona
        self.params = params
        self.state = state
        self.notify = notify or (lambda message: None)
        self._turns: list[Turn] = opened.turns()
        self._state_before_last: Any | None = None  # state before the last turn, when known
        self._created = created  # made by this process: removed again if its first turn could not be saved
        self._save_failed = False
        # Called with each finished turn before it is saved; returns the turn to save (e.g. with its
        # answer's SQL checks added). Set by the REPL/CLI for personas that check their answers.
        self.annotate: Callable[[Turn], Turn] | None = None
        # A thinking format's mode (G1: "off", "on", "bit", "lot"), saved with the session; None otherwise.
        stored_think = opened.meta.extra.get("think") if isinstance(opened.meta.extra, dict) else None
        self.think: str | None = (stored_think or "off") if fmt.thinking else None

    # ----------------------------------------------------------------- starting
    @classmethod
    def start(
        cls,
        engine: Engine,
        store: SessionStore,
        persona: Persona,
        params: SamplingParams,
        *,
        fmt: ChatFormat | None = None,
        name: str | None = None,
        extra: dict[str, Any] | None = None,
        think: str | None = None,
        notify: Notify | None = None,
        progress: Progress | None = None,
    ) -> ChatSession:
        """A new session with `persona`, starting from its cached prompt state.

        `fmt` defaults to the model's own chat format; `extra` is free-form metadata saved
        with the session (the HTTP API records who started it).
        """
        from weprompt_cli.chat.formats import chat_format_for
        from weprompt_cli.chat.persona_state import persona_state

        fmt = fmt or chat_format_for(engine.info, engine.tokenizer)
        state, persona_tokens, _cached = persona_state(engine, fmt, persona, store.home.cache, progress=progress)
        opened = store.create(
            name=name or _free_name(store, persona.name),
            persona=persona.name,
            model_path=str(engine.info.path),
            fingerprint=engine.fingerprint,
            arch=engine.info.arch,
            chat_format=fmt.name,
            sampling=params.to_dict(),
            extra={**(extra or {}), **({"think": think} if think and fmt.thinking else {})},
        )
        try:
            opened.save_state(
                0, engine.state_to_tensors(state), fingerprint=engine.fingerprint, tokens=persona_tokens,
                layout=engine.state_format,
            )
        except BaseException:
            opened.close()
            store.delete(opened.meta.id)
            raise
        return cls(engine, store, opened, fmt, persona, params, state, notify=notify, created=True)

    @classmethod
    def resume(
        cls,
        engine: Engine,
        store: SessionStore,
        opened: OpenSession,
        persona: Persona | None,
        params: SamplingParams,
        *,
        rebuild: bool = False,
        notify: Notify | None = None,
        progress: Progress | None = None,
    ) -> ChatSession:
        """Reopen a stored session at its last turn, from its checkpoint (no replay when it is good).

        `rebuild` replays the whole transcript through `engine` and rewrites every state:
        needed when the model changed, and a repair otherwise.
        """
        from weprompt_cli.chat.formats import chat_format_for, get_format

        meta = opened.meta
        stored_fp = meta.model.get("fingerprint") if isinstance(meta.model, dict) else None
        other_model = bool(stored_fp) and stored_fp != engine.fingerprint
        if other_model and not rebuild:
            raise WePromptError(
                f"session {meta.label} was made with another model ({_model_name(meta.model)})",
                hint=f"resume it with --model {meta.model.get('path')}, or add --rebuild to replay it through this model",
            )
        if other_model:
            fmt = chat_format_for(engine.info, engine.tokenizer)
        else:
            try:
                fmt = get_format(meta.chat_format)
            except KeyError:
                fmt = chat_format_for(engine.info, engine.tokenizer)
        session = cls(engine, store, opened, fmt, persona, params, None, notify=notify)
        if rebuild:
            why = f"through {engine.info.path.name}" if other_model else "to rebuild every saved state"
            session.notify(f"replaying {len(session._turns)} turns {why} (--rebuild)")
            session.state = session._rebuild_from_scratch(progress=progress, reencode=other_model)
            if other_model:
                opened.update_meta(
                    model={"path": str(engine.info.path), "fingerprint": engine.fingerprint, "arch": engine.info.arch},
                    chat_format=fmt.name,
                )
        else:
            session.state = session._restore(len(session._turns), progress=progress)
        return session

    # ------------------------------------------------------------------ turns
    @property
    def turns(self) -> list[Turn]:
        return list(self._turns)

    @property
    def name(self) -> str:
        return self.opened.meta.label

    @property
    def id(self) -> str:
        return self.opened.meta.id

    def send(
        self,
        user_text: str,
        *,
        cancel: Cancel | None = None,
        progress: Progress | None = None,
        think: str | None = None,
        request_key: str | None = None,
    ) -> TurnStream:
        """Feed the user's message and stream the answer; the turn is saved before the stream ends.

        In a thinking format, a typed ` (think)`, ` (think a bit)` or ` (think a lot)` at the
        end of the message sets this turn's mode (the transcript keeps the message without it);
        `think` sets it for this turn only (the HTTP API's field). `request_key` (an HTTP
        request's Idempotency-Key) is saved with the turn: see `turn_for_key`.
        """
        fmt = self.fmt
        think = (think or self.think) if fmt.thinking else None
        if fmt.thinking:
            from weprompt_cli.chat.thinking import split_think_suffix

            user_text, typed = split_think_suffix(user_text)
            think = typed.value if typed is not None else think
        needs_boundary = bool(self._turns) and self._turns[-1].stop_reason != "stop"
        prompt_text = fmt.turn_prompt(user_text, needs_boundary=needs_boundary, think=think)
        before = self.engine.clone_state(self.state)
        stops = (fmt.separator, *(self.persona.stop if self.persona else ()))

        def finished(turn: Turn, result: GenerationResult) -> Turn:
            if self.annotate is not None:
                turn = self.annotate(turn)
            if request_key is not None:
                turn = replace(turn, request_key=request_key)
            try:
                self.opened.append_turn(
                    turn, self.engine.state_to_tensors(self.state), fingerprint=self.engine.fingerprint,
                    layout=self.engine.state_format,
                )
            except BaseException:
                # Not saved, so not happened: the state goes back to where the transcript is.
                self.state = before
                self._save_failed = True
                raise
            self._turns.append(turn)
            self._state_before_last = before
            return turn

        def cancelled() -> None:
            self.state = before  # forget the half-fed prompt

        return TurnStream(
            self.engine,
            self.state,
            index=len(self._turns) + 1,
            user=user_text,
            prompt_text=prompt_text,
            prompt_tokens=self.engine.encode(prompt_text),
            params=self.params,
            stops=stops,
            ban=banned_tokens(fmt, self.engine.tokenizer),
            think=think,
            cancel=cancel,
            progress=progress,
            on_finish=finished,
            on_cancel=cancelled,
        )

    def turn_for_key(self, request_key: str) -> Turn | None:
        """The saved turn a request with this Idempotency-Key made, or None (newest first)."""
        return next((t for t in reversed(self._turns) if t.request_key == request_key), None)

    def user_text_of(self, message: str) -> str:
        """The user text `send(message)` would save (a typed thinking suffix taken off)."""
        if not self.fmt.thinking:
            return message
        from weprompt_cli.chat.thinking import split_think_suffix

        return split_think_suffix(message)[0]

    def set_think(self, mode: str) -> None:
        """Think `mode` ("off", "on", "bit", "lot") from the next turn on, saved with the session."""
        from weprompt_cli.chat.thinking import ThinkMode

        if not self.fmt.thinking:
            raise WePromptError(f"the {self.fmt.name} format has no thinking (G1 models think; see --format g1)")
        try:
            mode = ThinkMode.parse(mode).value
        except ValueError as exc:
            raise WePromptError(str(exc)) from None
        self.opened.update_meta(extra={**self.opened.meta.extra, "think": mode})
        self.think = mode

    def set_params(self, params: SamplingParams) -> None:
        """Use `params` from the next turn on, and save them with the session (resume keeps them)."""
        self.opened.update_meta(sampling=params.to_dict())
        self.params = params

    def state_before_last(self) -> Any:
        """A copy of the state before the last turn (kept in memory, else restored from its checkpoint)."""
        if not self._turns:
            raise WePromptError("there is no turn yet")
        if self._state_before_last is not None:
            return self.engine.clone_state(self._state_before_last)
        return self._restore(len(self._turns) - 1)

    def adopt(self, turn: Turn, state: Any, before: Any) -> None:
        """Make an already saved `turn` the last one, with `state` after it and `before` before it
        (what `send` does once its turn is saved; `/pick` keeps a sampled alternative this way)."""
        self._turns.append(turn)
        self.state = state
        self._state_before_last = self.engine.clone_state(before)

    # ------------------------------------------------------- undo, retry, fork
    def undo(self) -> Turn | None:
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

    def retry(self, *, cancel: Cancel | None = None, progress: Progress | None = None) -> TurnStream:
        """Answer the last message again, from the state before it."""
        if not self._turns:
            raise WePromptError("nothing to retry yet: send a message first")
        last = self.undo()
        assert last is not None
        return self.send(last.user, cancel=cancel, progress=progress)

    def fork(self, new_name: str | None = None) -> str:
        """A new session that shares this one's history up to now; returns its name."""
        meta = self.store.fork(self.opened.meta.id, len(self._turns), new_name)
        return meta.label

    # ------------------------------------------------------------- restoring
    def _restore(self, turn: int, *, progress: Progress | None = None) -> Any:
        """The state after `turn`: its checkpoint, else the nearest earlier one plus a replay."""
        from weprompt_cli.store import StateUnavailable

        fp = self.engine.fingerprint
        try:
            return self.engine.state_from_tensors(
                self.opened.load_state(turn, fingerprint=fp, layout=self.engine.state_format,
                                       framework=self.engine.tensor_framework)
            )
        except StateUnavailable as exc:
            problem = exc
        found = self.opened.nearest_state(turn, fingerprint=fp, layout=self.engine.state_format,
                                          framework=self.engine.tensor_framework)
        if found is None:
            self.notify(f"warning: no usable saved state ({problem}); replaying all {turn} turns")
            return self._rebuild_from_scratch(progress=progress, upto=turn)
        start, tensors = found
        self.notify(f"warning: saved state of turn {turn} unusable ({problem}); replaying from turn {start}")
        state = self.engine.state_from_tensors(tensors)
        return self._replay(state, start, turn, progress=progress, reencode=False)

    def _rebuild_from_scratch(
        self, *, progress: Progress | None = None, upto: int | None = None, reencode: bool = False
    ) -> Any:
        from weprompt_cli.chat.persona_state import persona_state

        upto = len(self._turns) if upto is None else upto
        if self.persona is not None:
            state, n, _ = persona_state(self.engine, self.fmt, self.persona, self.store.home.cache)
        else:
            state, n = self.engine.zero_state(), 0
        self.opened.save_state(
            0, self.engine.state_to_tensors(state), fingerprint=self.engine.fingerprint, tokens=n,
            layout=self.engine.state_format,
        )
        return self._replay(state, 0, upto, progress=progress, reencode=reencode)

    def _replay(self, state: Any, start: int, end: int, *, progress: Progress | None, reencode: bool) -> Any:
        """Feed turns start+1..end (1-based) into `state`, saving a checkpoint after each."""
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
                self._state_before_last = self.engine.clone_state(state)
            if ids:
                self.engine.feed(ids, state)
            done += len(turn.prompt_tokens) + len(turn.reply_tokens)
            if progress:
                progress(done, total)
            self.opened.save_state(
                turn.index, self.engine.state_to_tensors(state), fingerprint=self.engine.fingerprint,
                layout=self.engine.state_format,
            )
        return state

    # ------------------------------------------------------------------ misc
    def info(self) -> dict[str, Any]:
        """What `/info` shows: model, backend, strategy, state size, turns, tokens."""
        tokens = sum(len(t.prompt_tokens) + len(t.reply_tokens) for t in self._turns)
        return {
            "session": self.name,
            "id": self.id,
            "persona": self.persona.name if self.persona else self.opened.meta.persona,
            "model": str(self.engine.info.path),
            "arch": self.engine.info.arch,
            "backend": self.engine.backend,
            "format": self.fmt.name,
            "strategy": self.engine.strategy,
            "state_bytes": self.engine.state_nbytes(self.state),
            "turns": len(self._turns),
            "tokens": tokens,
        }

    @property
    def discarded_on_close(self) -> bool:
        """True when closing removes this session: made here, and its first turn could not be saved."""
        return self._created and self._save_failed and not self._turns

    def close(self) -> None:
        """Release the session; one this process created whose first turn could not be saved is removed."""
        if self.opened.closed:
            return
        self.opened.close()
        if self.discarded_on_close:
            try:
                self.store.delete(self.opened.meta.id)
            except WePromptError:
                pass  # it stays, empty, and lists as a 0-turn session

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _free_name(store: SessionStore, prefix: str) -> str:
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
