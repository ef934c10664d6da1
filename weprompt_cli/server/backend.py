"""What runs on the generation worker: session turns and stateless chat completions.

A WePrompt 1.0 discussion, or an OpenAI request with a `session` field, is one stored
session: it is opened (locked), resumed from its last checkpoint, sent one message
through `ChatSession` (which checkpoints the turn) and closed again, so the REPL can
resume it between two requests and the stored history stays the truth.

A plain OpenAI request carries its whole conversation: the prefix cache gives the state
after the longest already-seen prefix, and only the rest is fed. Nothing is stored.

Everything here runs on the single worker thread (see worker.py), never concurrently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from weprompt_cli.errors import NotFoundError, WePromptError
from weprompt_cli.server.ids import discussion_session_name
from weprompt_cli.server.prefix_cache import PrefixCache, prefix_keys
from weprompt_cli.server.prompt import ASSISTANT, PREFIX, assistant_text, render
from weprompt_cli.server.settings import Limits, ServerSettings
from weprompt_cli.server.worker import Job, JobCancelled

if TYPE_CHECKING:
    from weprompt_cli.config import Config
    from weprompt_cli.engine import Engine, SamplingParams
    from weprompt_cli.personas import Persona
    from weprompt_cli.server.schemas import ChatCompletionRequest, GenerateRequest
    from weprompt_cli.store import SessionMeta, SessionStore

_FINISH = {"stop": "stop", "length": "length", "interrupted": "stop"}


@dataclass
class Outcome:
    """One answered request: the text, why it ended, and the token counts."""

    text: str
    finish_reason: str  # OpenAI's: stop | length
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    session_name: str | None = None
    interrupted: bool = False

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


@dataclass
class Plan:
    """A checked request, ready for the worker: `plan(job)` runs it there."""

    run: Callable[[Job], Outcome]
    session_name: str | None = None

    def __call__(self, job: Job) -> Outcome:
        return self.run(job)


@dataclass
class Counters:
    requests: int = 0
    tokens_fed: int = 0  # prefill tokens through Engine.feed (prompts, personas, replays)
    tokens_generated: int = 0
    cancelled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for key, value in deltas.items():
                setattr(self, key, getattr(self, key) + value)

    def to_dict(self) -> dict[str, int]:
        with self.lock:
            return {
                "requests": self.requests,
                "tokens_fed": self.tokens_fed,
                "tokens_generated": self.tokens_generated,
                "cancelled": self.cancelled,
            }


class CountingEngine:
    """The engine as ChatSession sees it, with every prefilled token counted (/health)."""

    def __init__(self, engine: Engine, counters: Counters) -> None:
        self._engine = engine
        self._counters = counters

    def feed(self, tokens: list[int], state: Any, **kwargs: Any) -> Any:
        self._counters.add(tokens_fed=len(tokens))
        return self._engine.feed(tokens, state, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def model_id_of(engine: Engine) -> str:
    """The model's name in the API: its file name without `.pth`."""
    name = engine.info.path.name
    return name.removesuffix(".pth")


class Backend:
    """One loaded model and the session store, behind the API."""

    def __init__(self, engine: Engine, store: SessionStore, config: Config, settings: ServerSettings) -> None:
        from weprompt_cli.engine import clone_state, state_nbytes

        self.counters = Counters()
        self.engine: Any = CountingEngine(engine, self.counters)
        self.store = store
        self.config = config
        self.limits = settings.limits
        self.cache: PrefixCache[Any] = PrefixCache(
            max_entries=settings.cache.max_entries,
            max_bytes=settings.cache.max_bytes,
            clone=clone_state,
            nbytes=state_nbytes,
        )
        self.model_id = model_id_of(engine)
        self.system_fingerprint = "fp_" + engine.fingerprint[:16]
        self._namespace = f"{engine.fingerprint}:{engine.chat_format.name}"
        self._ids: dict[str, str] = {}  # session name -> id, for the names this server has seen

    def stats(self) -> dict[str, Any]:
        return {**self.counters.to_dict(), "prefix_cache": self.cache.stats().to_dict()}

    # ------------------------------------------------------------- sampling
    def _params(self, persona: Persona | None, stored: dict[str, Any] | None, overrides: dict[str, Any]) -> SamplingParams:
        """Defaults < config < persona < the session's stored settings < the request; max_tokens capped."""
        from weprompt_cli.engine import SamplingParams

        merged: dict[str, Any] = {"max_tokens": self.limits.default_max_tokens}
        merged.update(self.config.sampling)
        if persona is not None:
            merged.update(persona.sampling)
        if stored:
            merged.update({k: v for k, v in stored.items() if k in SamplingParams.__dataclass_fields__})
        merged.update(overrides)
        merged["max_tokens"] = min(int(merged["max_tokens"]), self.limits.max_tokens_cap)
        return SamplingParams().with_overrides(**merged)

    def _persona(self, name: str | None) -> Persona:
        from weprompt_cli.personas import DEFAULT_PERSONA, find_persona

        return find_persona(name or self.config.default_persona or DEFAULT_PERSONA, home=self.store.home)

    # --------------------------------------------------------- stored sessions
    def plan_discussion(self, body: GenerateRequest, limits: Limits) -> Plan:
        """WePrompt 1.0: the discussion's session gets `user_message` as its next turn."""
        name = discussion_session_name(body.user_id, body.discussion_id)
        persona_name = body.prompt_file
        persona = self._persona(persona_name)  # an unknown persona is a 404 before anything is queued
        overrides = body.overrides(limits)
        extra = {"api": {"user_id": str(body.user_id), "discussion_id": str(body.discussion_id)}}
        text = body.user_message

        def run(job: Job) -> Outcome:
            return self._session_turn(job, name, persona, overrides, text, extra)

        return Plan(run, name)

    def _plan_session(self, body: ChatCompletionRequest, limits: Limits) -> Plan:
        from weprompt_cli.store.names import validate_name

        name = validate_name(body.session or "")
        persona = self._persona(body.persona)
        overrides = body.overrides(limits)
        text = body.messages[-1].text()

        def run(job: Job) -> Outcome:
            return self._session_turn(job, name, persona, overrides, text, {"api": {"session": name}})

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
    ) -> Outcome:
        """One turn of the stored session `name` (created with `persona` if it is new)."""
        from weprompt_cli.chat.session import ChatSession
        from weprompt_cli.personas import find_persona

        self.counters.add(requests=1)
        meta = self._find(name)
        if meta is None:
            session = ChatSession.start(self.engine, self.store, persona, self._params(persona, None, overrides), name=name)
            try:
                session.opened.update_meta(extra={**session.opened.meta.extra, **extra})
            except BaseException:
                session.close()
                raise
        else:
            opened = self.store.open(meta.id)  # LockedError (409) while the REPL has it open
            try:
                try:
                    stored_persona: Persona | None = find_persona(opened.meta.persona, home=self.store.home)
                except NotFoundError:
                    stored_persona = None  # the persona file is gone: its state is in the checkpoints anyway
                params = self._params(None, opened.meta.sampling, overrides)
                session = ChatSession.resume(self.engine, self.store, opened, stored_persona, params)
            except BaseException:
                opened.close()
                raise
        self._ids[name] = session.id
        with session:
            history = sum(t.token_count for t in session.turns)
            reply = session.send(text, cancel=job.cancelled)
            for piece in reply:
                job.emit(piece)
            turn = reply.turn
        if turn is None:  # cancelled during the prefill: nothing was recorded
            self.counters.add(cancelled=1)
            raise JobCancelled("the client went away before the answer started")
        if turn.stop_reason == "interrupted":
            self.counters.add(cancelled=1)
        self.counters.add(tokens_generated=len(turn.reply_tokens))
        return Outcome(
            text=turn.assistant,
            finish_reason=_FINISH[turn.stop_reason],
            prompt_tokens=len(turn.prompt_tokens),
            completion_tokens=len(turn.reply_tokens),
            cached_tokens=history,
            session_name=session.name,
            interrupted=turn.stop_reason == "interrupted",
        )

    # ------------------------------------------------------ stateless requests
    def plan_completion(self, body: ChatCompletionRequest, limits: Limits) -> Plan:
        """An OpenAI chat completion: bound to a stored session, or stateless with the prefix cache."""
        if body.session:
            return self._plan_session(body, limits)
        persona = self._persona(body.persona) if body.persona else None
        params = self._params(persona, None, body.overrides(limits))
        messages = [(m.role, m.text()) for m in body.messages]
        stops = body.stops()

        def run(job: Job) -> Outcome:
            return self._complete(job, persona, messages, params, stops)

        return Plan(run)

    def _complete(
        self,
        job: Job,
        persona: Persona | None,
        messages: Sequence[tuple[str, str]],
        params: SamplingParams,
        stops: tuple[str, ...],
    ) -> Outcome:
        from weprompt_cli.chat.persona_state import persona_prompt, persona_state
        from weprompt_cli.engine import Sampler, clone_state

        engine = self.engine
        fmt = engine.chat_format
        tokenizer = engine.tokenizer
        self.counters.add(requests=1)

        prefix = persona_prompt(engine, persona) if persona is not None else ""
        segments = render(fmt, messages, prefix)
        ids = [tokenizer.encode(s.text) if s.text else [] for s in segments]
        total = sum(len(x) for x in ids)
        keys = prefix_keys(ids, self._namespace)
        ends = _running_sums([len(x) for x in ids])

        # The longest cached prefix that ends before the final prompt.
        hit = self.cache.longest(keys[:-1]) if self.cache.enabled else None
        if hit is not None:
            start, state = hit[0] + 1, hit[1]
        elif persona is not None:
            # The persona's prompt state comes from its disk cache (fed once per model).
            state, _n, _from_disk = persona_state(engine, persona, self.store.home.cache)
            start = 1
            self.cache.put(keys[0], state, ends[0])
        else:
            state, start = engine.zero_state(), 0
        cached = ends[start - 1] if start > 0 else 0

        logits = None
        last = len(ids) - 1
        for i in range(start, len(ids)):
            if not ids[i]:
                continue
            logits = engine.feed(ids[i], state, cancel=job.cancelled)
            if job.cancelled():
                self.counters.add(cancelled=1)
                raise JobCancelled("the client went away during the prefill")
            if i < last and segments[i].kind in (PREFIX, ASSISTANT):
                self.cache.put(keys[i], state, ends[i])  # a turn boundary later requests start from
        assert logits is not None  # the final segment is a user prompt, never empty

        before = clone_state(state) if self.cache.enabled else None
        persona_stops = tuple(persona.stop) if persona is not None else ()
        generation = engine.generate(
            logits,
            state,
            Sampler(params),
            stop=(fmt.separator, *persona_stops, *stops),
            max_tokens=params.max_tokens,
            cancel=job.cancelled,
        )
        for piece in generation:
            job.emit(piece)
        result = generation.result
        self.counters.add(tokens_generated=len(result.tokens))
        if result.stop_reason == "interrupted":
            self.counters.add(cancelled=1)
        elif before is not None:
            self._remember_reply(keys[-1], ends[-1], ids, before, state, result)
        return Outcome(
            text=result.text,
            finish_reason=_FINISH[result.stop_reason],
            prompt_tokens=total,
            completion_tokens=len(result.tokens),
            cached_tokens=cached,
            interrupted=result.stop_reason == "interrupted",
        )

    def _remember_reply(
        self, prompt_key: str, prompt_end: int, ids: list[list[int]], before: Any, after: Any, result: Any
    ) -> None:
        """Cache the state after this reply under the key the next request will compute.

        The next request re-sends the answer as text; when that text encodes to exactly
        the tokens fed (the usual case), the state after them is the state of the next
        request's prefix. Otherwise the state before the reply is kept, so only the reply
        is fed again.
        """
        fmt = self.engine.chat_format
        tokenizer = self.engine.tokenizer
        expected = tokenizer.encode(assistant_text(fmt, result.text))
        fed = list(result.tokens)
        if result.stop_reason == "length" and fed:
            # The next request writes the separator after the cut reply: feed it here too.
            separator = tokenizer.encode(fmt.separator)
            if expected == fed + separator:
                self.engine.feed(separator, after)
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
