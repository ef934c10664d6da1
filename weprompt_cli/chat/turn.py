"""One turn, for every entry point: feed the prompt, stream the answer, produce the `Turn` record.

The REPL, `chat -m`/stdin, `POST /generate-response` and `POST /v1/chat/completions` all
answer through `TurnStream`; they differ only in what they do around it (a stored
session checkpoints the turn, the stateless OpenAI path looks up and fills its prefix
cache). A `TurnStream` is an iterator of the answer's text pieces; once it is exhausted,
`.turn` is the finished turn (`None` when it was cancelled before the answer began, in
which case the state holds part of the prompt: `on_cancel` lets the caller put its copy back).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from weprompt_cli.params import SamplingParams

if TYPE_CHECKING:
    from weprompt_cli.engine.base import Engine
    from weprompt_cli.engine.generation import GenerationResult
    from weprompt_cli.store import Turn

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]
# Called with the finished turn before the stream ends; may return a replacement (an annotated turn).
OnFinish = Callable[["Turn", "GenerationResult"], "Turn | None"]


def _never() -> bool:
    return False


class Reasoning(str):
    """A piece of the model's thought (a G1 `<think>` block): shown apart, never part of the answer."""

    __slots__ = ()


class TurnStream(Iterator[str]):
    """The answer to one prompt as it streams; `.turn` once the iteration has ended."""

    def __init__(
        self,
        engine: Engine,
        state: Any,
        *,
        index: int,
        user: str,
        prompt_text: str,
        prompt_tokens: list[int],
        params: SamplingParams,
        stops: tuple[str, ...],
        ban: tuple[int, ...] = (),
        think: str | None = None,
        cancel: Cancel | None = None,
        progress: Progress | None = None,
        on_finish: OnFinish | None = None,
        on_cancel: Callable[[], None] | None = None,
        prefilled: Any = None,
    ) -> None:
        self.engine = engine
        self.state = state
        self.index = index
        self.user = user
        self.prompt_text = prompt_text
        self.prompt_tokens = list(prompt_tokens)
        self.params = params
        self.stops = stops
        self.ban = ban
        self.think = think  # a thinking format's mode: the reply is split into Reasoning and answer pieces
        self.cancel = cancel or _never
        self.progress = progress
        self.on_finish = on_finish
        self.on_cancel = on_cancel
        # The logits after the prompt when `state` has been fed it already (alternatives share one prefill).
        self.prefilled = prefilled
        self.turn: Turn | None = None
        self.result: GenerationResult | None = None
        self.elapsed_s = 0.0  # prefill + generation, once finished
        self._splitter: Any = None  # a thinking format's ThoughtSplitter, while the reply streams
        self._pieces = self._run()

    @property
    def thought_tokens(self) -> int:
        """Tokens of the model's thought so far (0 without thinking)."""
        return self._splitter.thought_tokens if self._splitter is not None else 0

    def __iter__(self) -> TurnStream:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def text(self) -> str:
        """Run the turn to its end; the answer as shown and recorded ("" when cancelled before it began)."""
        for _ in self:
            pass
        return self.turn.assistant if self.turn else ""

    def _run(self) -> Iterator[str]:
        from weprompt_cli.store import Turn, utc_now

        started_at = utc_now()
        t0 = time.perf_counter()
        if self.prefilled is not None:
            logits = self.prefilled
        else:
            logits = self.engine.feed(self.prompt_tokens, self.state, progress=self.progress, cancel=self.cancel)
        if self.cancel() or logits is None:
            if self.on_cancel is not None:
                self.on_cancel()  # stopped before any answer: nothing to record
            return
        prefill_s = time.perf_counter() - t0
        generation = self.engine.generate(
            logits,
            self.state,
            self.engine.new_sampler(self.params),
            stop=self.stops,
            max_tokens=self.params.max_tokens,
            cancel=self.cancel,
            ban=self.ban,
        )
        splitter = None
        if self.think is not None:
            from weprompt_cli.chat.thinking import ThoughtSplitter

            splitter = ThoughtSplitter(prompt=self.prompt_text)
            self._splitter = splitter
        if splitter is None:
            yield from generation
        else:
            counted = 0
            for piece in generation:
                tokens, counted = generation.n_tokens - counted, generation.n_tokens
                yield from _pieces(splitter.feed(piece, tokens))
            yield from _pieces(splitter.finish())
        result = generation.result
        self.elapsed_s = time.perf_counter() - t0
        timing = result.timing
        n = len(result.tokens)
        first = timing.first_token_s
        decode_s = timing.elapsed_s - (first or 0.0)
        turn = Turn(
            index=self.index,
            user=self.user,
            assistant=splitter.answer if splitter is not None else result.text,
            prompt_text=self.prompt_text,
            reply_text=result.raw_text,
            prompt_tokens=list(self.prompt_tokens),
            reply_tokens=list(result.tokens),
            stop_reason=result.stop_reason,  # type: ignore[arg-type]
            started_at=started_at,
            finished_at=utc_now(),
            # What the user waited for: the prompt's prefill, then the first shown text.
            first_token_s=prefill_s + first if first is not None else None,
            tokens_per_s=(n - 1) / decode_s if n > 1 and decode_s > 0 else None,
            reasoning=splitter.reasoning if splitter is not None else "",
            thought_tokens=splitter.thought_tokens if splitter is not None else 0,
            think=self.think,
        )
        self.result = result
        if self.on_finish is not None:
            turn = self.on_finish(turn, result) or turn
        self.turn = turn


def _pieces(pieces: Any) -> Iterator[str]:
    """The splitter's pieces as the stream yields them: Reasoning for the thought, plain text for the answer."""
    from weprompt_cli.chat.thinking import REASONING

    for piece in pieces:
        yield Reasoning(piece.text) if piece.kind == REASONING else piece.text
