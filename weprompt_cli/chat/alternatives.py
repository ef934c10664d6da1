"""Several answers to the last message at once; keep one of them as the turn, with its state.

`sample_alternatives(session, n)` answers the session's last user message `n` times from
the state before it: the prompt is fed once, then the `n` replies are sampled in one
batched pass (a `BatchedEngine` advances them together; a model that cannot batch runs
them one after another). Each alternative keeps its own state, so `Alternatives.pick(k)`
replaces the last turn with answer `k` and its state as an ordinary turn, checkpoint
included: nothing is computed again. Until a pick, the session is unchanged.

The replies are sampled with the session's settings, alternative k with seed `seed + k - 1`
when a seed is set (so answer 1 is the one a plain retry would give). A greedy session
(temperature 0) would give `n` copies of one answer: alternatives sample at temperature
`FALLBACK_TEMPERATURE` then.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from weprompt_cli.chat.formats import banned_tokens
from weprompt_cli.chat.turn import TurnStream
from weprompt_cli.errors import WePromptError

if TYPE_CHECKING:
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.params import SamplingParams
    from weprompt_cli.store import Turn

MAX_ALTERNATIVES = 8
FALLBACK_TEMPERATURE = 1.0
Cancel = Callable[[], bool]
Progress = Callable[[int, int], None]


@dataclass
class Alternative:
    """One sampled answer: its number as shown (1-based), its turn record and the state after it."""

    number: int
    turn: Turn
    state: Any = dataclasses.field(repr=False)


@dataclass
class Alternatives:
    """The answers `sample_alternatives` gave to turn `replaces` of `session`; `pick` keeps one."""

    session: ChatSession
    replaces: Turn  # the turn they answer again (still the session's last until a pick)
    items: list[Alternative]
    before: Any = dataclasses.field(repr=False)  # the state before that turn
    batched: bool = False  # sampled in one batched pass (False: one after another)

    def pick(self, number: int) -> Turn:
        """Replace the last turn with answer `number` (1-based) and its state; the saved turn."""
        session = self.session
        if not 1 <= number <= len(self.items):
            raise WePromptError(f"there are {len(self.items)} answers: pick 1 to {len(self.items)}")
        turns = session.turns
        if not turns or turns[-1] is not self.replaces:
            raise WePromptError("the session moved on since these answers were sampled: ask for alternatives again")
        chosen = self.items[number - 1]
        turn = chosen.turn
        if session.annotate is not None:
            turn = session.annotate(turn)
        engine = session.engine
        tensors = engine.state_to_tensors(chosen.state)
        session.undo()
        try:
            session.opened.append_turn(turn, tensors, fingerprint=engine.fingerprint, layout=engine.state_format)
        except BaseException:
            # Not saved: put the answer that was there back (best effort; the transcript stays the truth).
            try:
                session.opened.append_turn(self.replaces, engine.state_to_tensors(_state_after(session, self)),
                                           fingerprint=engine.fingerprint, layout=engine.state_format)
                session.adopt(self.replaces, _state_after(session, self), self.before)
            except BaseException:  # noqa: BLE001 - the original error is the one to report
                pass
            raise
        session.adopt(turn, chosen.state, self.before)
        return turn


def _state_after(session: ChatSession, alts: Alternatives) -> Any:
    """The state after the replaced turn: its ids fed into a copy of the state before it."""
    engine = session.engine
    state = engine.clone_state(alts.before)
    ids = list(alts.replaces.prompt_tokens) + list(alts.replaces.reply_tokens)
    if ids:
        engine.feed(ids, state)
    return state


def alternative_params(params: SamplingParams, k: int) -> SamplingParams:
    """The settings of alternative `k` (0-based): its own seed, and sampling even when the session is greedy."""
    changes: dict[str, Any] = {}
    if params.seed is not None:
        changes["seed"] = params.seed + k
    if params.temperature == 0:
        changes["temperature"] = FALLBACK_TEMPERATURE
    return dataclasses.replace(params, **changes) if changes else params


def sample_alternatives(
    session: ChatSession,
    n: int,
    *,
    cancel: Cancel | None = None,
    progress: Progress | None = None,
    max_batch: int = MAX_ALTERNATIVES,
) -> Alternatives:
    """`n` answers to the session's last message, sampled together; the session is not changed."""
    from weprompt_cli.engine.batched import run_concurrently, shared_batched

    if not 1 <= n <= MAX_ALTERNATIVES:
        raise WePromptError(f"ask for 1 to {MAX_ALTERNATIVES} alternatives, not {n}")
    turns = session.turns
    if not turns:
        raise WePromptError("nothing to answer again yet: send a message first")
    last = turns[-1]
    engine = session.engine
    before = session.state_before_last()
    state = engine.clone_state(before)
    logits = engine.feed(list(last.prompt_tokens), state, progress=progress, cancel=cancel)
    if logits is None or (cancel is not None and cancel()):
        raise WePromptError("stopped before any answer began")
    batched = shared_batched(engine, max(n, min(max_batch, MAX_ALTERNATIVES)))
    runner = batched or engine
    stops = (session.fmt.separator, *(session.persona.stop if session.persona else ()))
    streams = [
        TurnStream(
            runner,
            engine.clone_state(state),
            index=last.index,
            user=last.user,
            prompt_text=last.prompt_text,
            prompt_tokens=list(last.prompt_tokens),
            params=alternative_params(session.params, k),
            stops=stops,
            ban=banned_tokens(session.fmt, engine.tokenizer),
            prefilled=logits.clone() if hasattr(logits, "clone") else logits.copy(),  # torch or numpy
            think=last.think,
            cancel=cancel,
        )
        for k in range(n)
    ]
    if batched is not None and n > 1:
        run_concurrently([stream.text for stream in streams])  # one thread each: the engine steps them together
    else:
        for stream in streams:
            stream.text()
    items = [Alternative(k + 1, s.turn, s.state) for k, s in enumerate(streams) if s.turn is not None]
    if len(items) != n:
        raise WePromptError("stopped before every answer began")
    return Alternatives(session, last, items, before, batched=batched is not None and n > 1)
