"""Turning sampled tokens into displayable text: whole UTF-8 characters, stop strings held back.

Pure Python, no torch: `TokenText` assembles text from token bytes; `StopScanner`
finds stop strings across token boundaries and holds back any text that might be the
start of one.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weprompt_cli.engine.tokenizer import Tokenizer

_MAX_HELD_TOKENS = 8  # without byte access: decode at most this many tokens together


class TokenText:
    """Decodes tokens one by one into text that never ends inside a UTF-8 character."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._bytes = tokenizer.has_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[int] = []

    def push(self, token: int) -> str:
        """The new complete text after `token` (possibly empty)."""
        if self._bytes:
            return str(self._decoder.decode(self._tokenizer.token_bytes(token)))
        # Backends without bytes: decode the held tokens; a trailing U+FFFD may be a split character.
        self._pending.append(token)
        text = self._tokenizer.decode(self._pending)
        if text.endswith("\ufffd") and len(self._pending) < _MAX_HELD_TOKENS:
            return ""
        self._pending = []
        return text

    def finish(self) -> str:
        """Whatever is still held (an incomplete character decodes to U+FFFD)."""
        if self._bytes:
            return str(self._decoder.decode(b"", final=True))
        text = self._tokenizer.decode(self._pending) if self._pending else ""
        self._pending = []
        return text


class StopScanner:
    """Finds the first stop string in streamed text; releases only text that cannot start one."""

    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.text = ""  # everything pushed so far
        self.emitted = 0  # text[:emitted] was released
        self.matched: str | None = None  # the stop string found
        self.cut: int | None = None  # where it starts in `text`

    def push(self, new: str) -> str:
        """Add text; return what may be shown now. After a match, `matched` and `cut` are set."""
        if self.matched is not None:
            return ""
        self.text += new
        # Text before `emitted` holds no partial stop, so a stop can only start at or after it.
        best: tuple[int, str] | None = None
        for stop in self.stops:
            at = self.text.find(stop, self.emitted)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, stop)
        if best is not None:
            self.cut, self.matched = best
            out = self.text[self.emitted : self.cut]
            self.emitted = self.cut
            return out
        safe = len(self.text) - self._held()
        out = self.text[self.emitted : safe]
        self.emitted = max(self.emitted, safe)
        return out

    def _held(self) -> int:
        """Length of the longest tail of the unreleased text that is a proper prefix of a stop string."""
        tail = self.text[self.emitted :]
        longest = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(tail)), longest, -1):
                if tail.endswith(stop[:k]):
                    longest = k
                    break
        return longest

    def flush(self) -> str:
        """Release the held text (the stream ended without a stop)."""
        if self.matched is not None:
            return ""
        out = self.text[self.emitted :]
        self.emitted = len(self.text)
        return out

    @property
    def shown(self) -> str:
        """The text up to the stop (or all of it)."""
        return self.text[: self.cut] if self.cut is not None else self.text
