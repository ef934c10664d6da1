"""Streaming generation, the same for every backend: sample, feed, release whole text.

A backend supplies a `DecodeStep` (`Engine.decode_step`): sample a token from the
current logits and feed it, count it for the penalties, and hand back the state at the
end. `Generation` turns those tokens into text pieces (whole UTF-8 characters, nothing
at or after a stop string) and, once exhausted, a `GenerationResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from weprompt_cli.engine.stream import StopScanner, TokenText

if TYPE_CHECKING:
    from weprompt_cli.engine.sampling import Sampler
    from weprompt_cli.engine.tokenizer import Tokenizer

Cancel = Callable[[], bool]


class Decoder(Protocol):
    """What a generation needs of its engine (`Engine` provides it)."""

    tokenizer: Tokenizer
    counters: Any  # .generated is increased per token

    def decode_step(self, logits: Any, state: Any, sampler: Sampler) -> DecodeStep: ...


class DecodeStep(Protocol):
    """One reply's token loop on a backend: `next_token()` samples and feeds; `finish()` at the end."""

    def next_token(self) -> int:
        """Sample a token from the current logits, feed it to the state, return its id."""

    def observe(self, token: int, text: str) -> None:
        """Count an accepted token for the penalties."""

    def finish(self) -> Any:
        """Leave the caller's state holding every token fed; the logits after the last one."""


@dataclass(frozen=True)
class Timing:
    """How fast a reply came: seconds to the first shown text, and decode speed."""

    first_token_s: float | None
    elapsed_s: float
    n_tokens: int

    @property
    def tokens_per_s(self) -> float | None:
        return self.n_tokens / self.elapsed_s if self.n_tokens and self.elapsed_s > 0 else None


@dataclass
class GenerationResult:
    """What a finished generation produced; the state now includes exactly `tokens`."""

    text: str  # what was streamed: stop string and what follows cut, leading space stripped
    raw_text: str  # the exact decoded text of every token fed (stop string included)
    tokens: list[int]  # every token sampled, all of them fed to the model
    stop_reason: str  # "stop" | "length" | "interrupted"
    stop_string: str | None  # which stop string ended it
    timing: Timing
    logits: Any = field(default=None, repr=False)  # after the last token fed (None if none was)


class Generation(Iterator[str]):
    """An iterator of text pieces; `.result` once it is exhausted (or closed)."""

    def __init__(
        self,
        engine: Decoder,
        logits: Any,
        state: Any,
        sampler: Sampler,
        *,
        stop: tuple[str, ...],
        max_tokens: int,
        cancel: Cancel | None,
        strip_leading_space: bool,
    ) -> None:
        self._engine = engine
        self._logits = logits
        self._state = state
        self._sampler = sampler
        self._stop = tuple(stop)
        self._max_tokens = max_tokens
        self._cancel = cancel
        self._strip = strip_leading_space
        self._result: GenerationResult | None = None
        self.n_tokens = 0  # tokens sampled (and fed) so far
        self._run_iter = self._run()

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> str:
        return next(self._run_iter)

    @property
    def result(self) -> GenerationResult:
        if self._result is None:
            raise RuntimeError("the generation is not finished: iterate it to the end, or close() it")
        return self._result

    def close(self) -> GenerationResult:
        """Stop now (between tokens) and return the result, marked interrupted if it was still running."""
        if self._result is None:
            self._cancel = lambda: True
            for _ in self._run_iter:
                pass
        return self.result

    def _run(self) -> Iterator[str]:
        engine, state, sampler = self._engine, self._state, self._sampler
        tokenizer = engine.tokenizer
        assembler = TokenText(tokenizer)
        scanner = StopScanner(self._stop)
        step = engine.decode_step(self._logits, state, sampler)
        tokens: list[int] = []
        shown: list[str] = []
        first_s: float | None = None
        lead_pending = self._strip
        reason = "length"
        start = time.perf_counter()

        def show(piece: str) -> str:
            nonlocal lead_pending
            if lead_pending and piece:
                lead_pending = False
                piece = piece.removeprefix(" ")
            return piece

        finished = False
        try:
            for _ in range(self._max_tokens):
                if self._cancel is not None and self._cancel():
                    reason = "interrupted"
                    break
                token = step.next_token()  # the token is fed even when it ends the reply
                tokens.append(token)
                self.n_tokens = len(tokens)
                if tokenizer.has_bytes:
                    token_text = tokenizer.token_bytes(token).decode("utf-8", errors="replace")
                else:
                    token_text = tokenizer.decode([token])
                step.observe(token, token_text)
                engine.counters.generated += 1
                piece = show(scanner.push(assembler.push(token)))
                if piece:
                    if first_s is None:
                        first_s = time.perf_counter() - start
                    shown.append(piece)
                    yield piece
                if scanner.matched is not None:
                    reason = "stop"
                    break
            logits = step.finish()
            finished = True
        finally:
            if not finished:
                step.finish()  # an abandoned generation still leaves the state of the tokens fed
        tail = ""
        if reason != "stop":
            rest = assembler.finish()
            if rest.strip("\ufffd"):  # an incomplete last character is not shown (raw_text keeps it)
                tail = show(scanner.push(rest))
            if scanner.matched is not None:
                reason = "stop"  # the stop string completed in the held-back bytes
            else:
                tail += show(scanner.flush())
        if tail:
            if first_s is None:
                first_s = time.perf_counter() - start
            shown.append(tail)
            yield tail
        elapsed = time.perf_counter() - start
        self._result = GenerationResult(
            text="".join(shown),
            raw_text=tokenizer.decode(tokens),
            tokens=tokens,
            stop_reason=reason,
            stop_string=scanner.matched,
            timing=Timing(first_token_s=first_s, elapsed_s=elapsed, n_tokens=len(tokens)),
            logits=logits,
        )
