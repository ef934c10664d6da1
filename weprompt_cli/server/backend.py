"""What runs on the generation worker: session turns and stateless chat completions.

A WePrompt 1.0 discussion, or an OpenAI request with a `session` field, is one stored
session: it is opened (locked), resumed from its last checkpoint, sent one message
through `ChatSession` (which checkpoints the turn) and closed again, so the REPL can
resume it between two requests and the stored history stays the truth.

A plain OpenAI request carries its whole conversation: the prefix cache gives the state
after the longest already-seen prefix, the earlier messages not yet seen are fed, and
the final user message is answered by the same `TurnStream` as every other turn.
Nothing is stored.

Everything here runs on a worker thread (see worker.py): one at a time with `--max-batch 1`;
otherwise many requests at once on a `BatchedEngine` (engine/batched.py), never two of the
same session. The shared pieces (the prefix cache, the counters) take their own locks; a
turn's checkpoint is written on its request's thread, off the batched engine's decode loop,
before the request's last chunk goes out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from weprompt_cli.chat.formats import ASSISTANT, PREFIX, banned_tokens, chat_format_for, render_messages
from weprompt_cli.chat.params import effective_params, family_defaults
from weprompt_cli.chat.turn import TurnStream
from weprompt_cli.errors import NotFoundError, WePromptError
from weprompt_cli.server.ids import discussion_session_name
from weprompt_cli.server.prefix_cache import PrefixCache, prefix_keys
from weprompt_cli.server.settings import Limits, ServerSettings
from weprompt_cli.server.worker import Job, JobCancelled

if TYPE_CHECKING:
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.chat.sql_advisor import SqlAdvisor
    from weprompt_cli.config import Config
    from weprompt_cli.engine.base import Engine
    from weprompt_cli.engine.generation import GenerationResult
    from weprompt_cli.params import SamplingParams
    from weprompt_cli.personas import Persona
    from weprompt_cli.server.schemas import ChatCompletionRequest, GenerateRequest
    from weprompt_cli.store import SessionMeta, SessionStore, Turn

_FINISH = {"stop": "stop", "length": "length", "interrupted": "stop"}


@dataclass(frozen=True)
class Answer:
    """One answered request: the turn, plus what the API reports around it."""

    turn: Turn
    prompt_tokens: int  # every token the request's prompt holds (cached ones included)
    cached_tokens: int = 0  # of those, how many came from a saved or cached state
    session_name: str | None = None

    @property
    def text(self) -> str:
        return self.turn.assistant

    @property
    def checks(self) -> list[dict[str, Any]]:
        """The checks of the answer's SQL on the server's database (`--db`), as the transcript keeps them."""
        return [dict(c) for c in self.turn.checks]

    def message(self) -> dict[str, Any]:
        """OpenAI's assistant message; a thinking model's thought as `reasoning_content` beside the answer."""
        message: dict[str, Any] = {"role": "assistant", "content": self.turn.assistant}
        if self.turn.think is not None:
            message["reasoning_content"] = self.turn.reasoning
        return message

    @property
    def finish_reason(self) -> str:
        """OpenAI's: stop | length (an interrupted reply stopped early: "stop")."""
        return _FINISH[self.turn.stop_reason]

    def usage(self) -> dict[str, Any]:
        completion = len(self.turn.reply_tokens)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


@dataclass
class Plan:
    """A checked request, ready for the worker: `plan(job)` runs it there."""

    run: Callable[[Job], Answer]
    session_name: str | None = None

    def __call__(self, job: Job) -> Answer:
        return self.run(job)


def model_id_of(engine: Engine) -> str:
    """The model's name in the API: its file name without `.pth` / `.gguf`."""
    name = engine.info.path.name
    return name.removesuffix(".pth").removesuffix(".gguf")


class Backend:
    """One loaded model and the session store, behind the API."""

    def __init__(
        self,
        engine: Engine,
        store: SessionStore,
        config: Config,
        settings: ServerSettings,
        advisor: SqlAdvisor | None = None,
    ) -> None:
        self.engine = engine
        self.advisor = advisor  # `--db`: the sql persona sees this database's schema, its answers are checked
        self.fmt = chat_format_for(engine.info, engine.tokenizer)
        self.store = store
        self.config = config
        self.limits = settings.limits
        self.max_batch = settings.max_batch
        self.batching_note = settings.batching_note
        self.requests = 0
        self.cancelled = 0
        self._count_lock = threading.Lock()  # requests run on several threads at once
        self.cache: PrefixCache[Any] = PrefixCache(
            max_entries=settings.cache.max_entries,
            max_bytes=settings.cache.max_bytes,
            clone=engine.clone_state,
            nbytes=engine.state_nbytes,
        )
        self.model_id = model_id_of(engine)
        self.system_fingerprint = "fp_" + engine.fingerprint[:16]
        self._namespace = f"{engine.fingerprint}:{self.fmt.name}"
        self._ids: dict[str, str] = {}  # session name -> id, for the names this server has seen

    def stats(self) -> dict[str, Any]:
        """What `/health` reports: requests, tokens fed and generated, cancellations, the prefix cache."""
        return {
            "requests": self.requests,
            "tokens_fed": self.engine.counters.fed,
            "tokens_generated": self.engine.counters.generated,
            "cancelled": self.cancelled,
            "prefix_cache": self.cache.stats().to_dict(),
            "db": self.advisor.describe() if self.advisor is not None else None,
        }

    def batching(self) -> dict[str, Any]:
        """What `/health` says about batching: on (with occupancy, queues, tokens/s) or off and why."""
        stats = getattr(self.engine, "stats", None)
        if not callable(stats):
            return {"enabled": False, "summary": f"off ({self.batching_note})"}
        figures = stats()
        summary = f"on (up to {figures['max_batch']} streams per step; {figures['forward']})"
        return {"enabled": True, "summary": summary, **figures}

    def _count(self, cancelled: bool = False) -> None:
        with self._count_lock:
            if cancelled:
                self.cancelled += 1
            else:
                self.requests += 1

    # ------------------------------------------------------------- settings
    def _params(self, persona: Persona | None, stored: dict[str, Any] | None, overrides: dict[str, Any]) -> SamplingParams:
        return effective_params(
            self.config,
            persona,
            stored,
            overrides,
            family=family_defaults(self.fmt),
            defaults={"max_tokens": self.limits.default_max_tokens},
            max_tokens_cap=self.limits.max_tokens_cap,
        )

    def _persona(self, name: str | None) -> Persona:
        """The persona named (or the default), its `{schema}` filled for the server's database."""
        from weprompt_cli.personas import DEFAULT_PERSONA, find_persona

        return self._with_db(find_persona(name or self.config.default_persona or DEFAULT_PERSONA,
                                          home=self.store.home))

    def _with_db(self, persona: Persona) -> Persona:
        return self.advisor.persona(persona) if self.advisor is not None else persona

    def _on_db(self, meta: SessionMeta) -> bool:
        """True when the session was made on the server's database (its prompt holds that schema)."""
        from weprompt_cli.chat.sql_advisor import stored_target

        return self.advisor is not None and stored_target(meta.extra)[0] == self.advisor.display

    def _checked(self, turn: Turn) -> Turn:
        """`turn` with its SQL checked on the server's database (unchanged without one)."""
        return self.advisor.checked(turn)[0] if self.advisor is not None else turn

    # --------------------------------------------------------- stored sessions
    def plan_discussion(self, body: GenerateRequest, limits: Limits, request_key: str | None = None) -> Plan:
        """WePrompt 1.0: the discussion's session gets `user_message` as its next turn."""
        name = discussion_session_name(body.user_id, body.discussion_id)
        persona = self._persona(body.prompt_file)  # an unknown persona is a 404 before anything is queued
        overrides = body.overrides(limits)
        extra = {"api": {"user_id": str(body.user_id), "discussion_id": str(body.discussion_id)}}
        text = body.user_message

        def run(job: Job) -> Answer:
            return self._session_turn(job, name, persona, overrides, text, extra, None, request_key)

        return Plan(run, name)

    def _plan_session(self, body: ChatCompletionRequest, limits: Limits, request_key: str | None) -> Plan:
        from weprompt_cli.store.names import validate_name

        name = validate_name(body.session or "")
        persona = self._persona(body.persona)
        overrides = body.overrides(limits)
        text = body.messages[-1].text()

        think = body.think_mode()

        def run(job: Job) -> Answer:
            return self._session_turn(job, name, persona, overrides, text, {"api": {"session": name}}, think,
                                      request_key)

        return Plan(run, name)

    def _find(self, name: str) -> SessionMeta | None:
        """The session named `name`, or None; known names skip the scan of every session."""
        known = self._ids.get(name)
        if known is not None:
            try:
                meta = self.store.resolve(known)  # an id: its folder, read directly
                if meta.name == name:
                    return meta
            except WePromptError:
                pass  # deleted or renamed from the CLI meanwhile: look it up again
            self._ids.pop(name, None)
        try:
            meta = self.store.resolve(name)
        except NotFoundError:
            return None
        self._ids[name] = meta.id
        return meta

    def _session_turn(
        self,
        job: Job,
        name: str,
        persona: Persona,
        overrides: dict[str, Any],
        text: str,
        extra: dict[str, Any],
        think: str | None,
        request_key: str | None = None,
    ) -> Answer:
        """One turn of the stored session `name` (created with `persona` if it is new).

        A request whose Idempotency-Key made a saved turn of the session gets that turn back,
        nothing generated (checked under the session's lock, so two copies of a request never
        both run)."""
        from weprompt_cli.chat.session import ChatSession
        from weprompt_cli.personas import find_persona

        self._count()
        meta = self._find(name)
        if meta is None:
            params = self._params(persona, None, overrides)
            if self.advisor is not None and persona.takes_schema:
                extra = {**extra, **self.advisor.session_extra(persona)}
            session = ChatSession.start(self.engine, self.store, persona, params, fmt=self.fmt, name=name, extra=extra)
        else:
            opened = self.store.open(meta.id)  # LockedError (409) while the REPL has it open
            try:
                try:
                    stored_persona: Persona | None = find_persona(opened.meta.persona, home=self.store.home)
                    if self._on_db(opened.meta):
                        stored_persona = self._with_db(stored_persona)
                except NotFoundError:
                    stored_persona = None  # the persona file is gone: its state is in the checkpoints anyway
                params = self._params(None, opened.meta.sampling, overrides)
                session = ChatSession.resume(self.engine, self.store, opened, stored_persona, params)
            except BaseException:
                opened.close()
                raise
        self._ids[name] = session.id
        if self._on_db(session.opened.meta):
            session.annotate = self._checked  # a session made on this database: its answers are checked
        with session:
            history = session.opened.meta.prefix_tokens + sum(t.token_count for t in session.turns)
            done = session.turn_for_key(request_key) if request_key is not None else None
            if done is not None:
                return self._repeat(job, session, done, text, request_key)
            stream = session.send(text, cancel=job.cancelled, think=think, request_key=request_key)
            for piece in stream:
                job.emit(piece)
            turn = stream.turn
        if turn is None:  # cancelled during the prefill: nothing was recorded
            self._count(cancelled=True)
            raise JobCancelled("the client went away before the answer started")
        if turn.stop_reason == "interrupted":
            self._count(cancelled=True)
        return Answer(turn, prompt_tokens=history + len(turn.prompt_tokens), cached_tokens=history,
                      session_name=session.name)

    def _repeat(self, job: Job, session: ChatSession, turn: Turn, text: str, request_key: str | None) -> Answer:
        """The answer a retried request gets: the saved turn its key made, sent as it was."""
        from weprompt_cli.server.idempotency import reused_key_error

        if turn.user != session.user_text_of(text):
            raise reused_key_error(request_key or "", session.name)
        job.emit(turn.assistant)
        before = session.opened.meta.prefix_tokens + sum(t.token_count for t in session.turns[: turn.index - 1])
        return Answer(turn, prompt_tokens=before + len(turn.prompt_tokens), cached_tokens=before,
                      session_name=session.name)

    # ------------------------------------------------------ stateless requests
    def plan_completion(self, body: ChatCompletionRequest, limits: Limits, request_key: str | None = None) -> Plan:
        """An OpenAI chat completion: bound to a stored session, or stateless with the prefix cache (which
        stores nothing, so it ignores `request_key`)."""
        if body.session:
            return self._plan_session(body, limits, request_key)
        persona = self._persona(body.persona) if body.persona else None
        params = self._params(persona, None, body.overrides(limits))
        messages = [(m.role, m.text()) for m in body.messages]
        stops = body.stops()
        think = (body.think_mode() or "off") if self.fmt.thinking else None

        def run(job: Job) -> Answer:
            return self._complete(job, persona, messages, params, stops, think)

        return Plan(run)

    def _complete(
        self,
        job: Job,
        persona: Persona | None,
        messages: Sequence[tuple[str, str]],
        params: SamplingParams,
        stops: tuple[str, ...],
        think: str | None = None,
    ) -> Answer:
        """The prefix cache's lookup and fill around one `TurnStream` for the final user message."""
        from weprompt_cli.chat.persona_state import persona_prompt, persona_state

        engine, fmt = self.engine, self.fmt
        self._count()
        prefix = persona_prompt(fmt, persona) if persona is not None else ""
        segments = render_messages(fmt, messages, prefix, think=think)
        ids = [engine.encode(s.text) if s.text else [] for s in segments]
        keys = prefix_keys(ids, self._namespace)
        ends = _running_sums([len(x) for x in ids])

        # The longest cached prefix that ends before the final prompt.
        hit = self.cache.longest(keys[:-1]) if self.cache.enabled else None
        if hit is not None:
            start, state = hit[0] + 1, hit[1]
        elif persona is not None:
            # The persona's prompt state comes from its disk cache (fed once per model).
            state, _n, _from_disk = persona_state(engine, fmt, persona, self.store.home.cache)
            start = 1
            self.cache.put(keys[0], state, ends[0])
        else:
            state, start = engine.zero_state(), 0
        cached = ends[start - 1] if start > 0 else 0

        last = len(ids) - 1
        for i in range(start, last):  # earlier messages this server has not seen yet
            if not ids[i]:
                continue
            engine.feed(ids[i], state, cancel=job.cancelled)
            if job.cancelled():
                self._count(cancelled=True)
                raise JobCancelled("the client went away during the prefill")
            if segments[i].kind in (PREFIX, ASSISTANT):
                self.cache.put(keys[i], state, ends[i])  # a turn boundary later requests start from

        before = engine.clone_state(state) if self.cache.enabled else None

        def remember(turn: Turn, result: GenerationResult) -> Turn:
            if result.stop_reason != "interrupted" and before is not None:
                self._remember_reply(keys[-1], ends[-1], ids, before, state, result)
            return self._checked(turn) if persona is not None and persona.takes_schema else turn

        stream = TurnStream(
            engine,
            state,
            index=1,
            user=messages[-1][1],
            prompt_text=segments[-1].text,
            prompt_tokens=ids[-1],
            params=params,
            stops=(fmt.separator, *(persona.stop if persona is not None else ()), *stops),
            ban=banned_tokens(fmt, engine.tokenizer),
            think=think,
            cancel=job.cancelled,
            on_finish=remember,
        )
        for piece in stream:
            job.emit(piece)
        if stream.turn is None:
            self._count(cancelled=True)
            raise JobCancelled("the client went away during the prefill")
        if stream.turn.stop_reason == "interrupted":
            self._count(cancelled=True)
        return Answer(stream.turn, prompt_tokens=ends[-1], cached_tokens=cached)

    def _remember_reply(
        self, prompt_key: str, prompt_end: int, ids: list[list[int]], before: Any, after: Any, result: GenerationResult
    ) -> None:
        """Cache the state after this reply under the key the next request will compute.

        The next request re-sends the answer as text; when that text encodes to exactly
        the tokens fed (the usual case), the state after them is the state of the next
        request's prefix. Otherwise the state before the reply is kept, so only the reply
        is fed again.
        """
        fmt, engine = self.fmt, self.engine
        expected = engine.encode(fmt.assistant_text(result.text))
        fed = list(result.tokens)
        if result.stop_reason == "length" and fed:
            # The next request writes the separator after the cut reply: feed it here too.
            separator = engine.encode(fmt.separator)
            if expected == fed + separator:
                engine.feed(separator, after)
                fed += separator
        if result.stop_reason in ("stop", "length") and fed == expected:
            key = prefix_keys([*ids, expected], self._namespace)[-1]
            self.cache.put(key, after, prompt_end + len(expected))
        else:
            self.cache.put(prompt_key, before, prompt_end)


def _running_sums(values: Sequence[int]) -> list[int]:
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out
