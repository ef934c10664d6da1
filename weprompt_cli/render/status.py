"""The dim status line printed after each answer."""

from __future__ import annotations

# Why a turn stopped (the transcript's stop_reason) -> what the status line says; a
# normal stop says nothing.
STOP_NOTES = {"stop": "", "length": "hit max tokens", "interrupted": "interrupted"}


def format_status(tokens: int, seconds: float, first_token_s: float | None, stop_reason: str) -> str:
    """``42 tokens · 18.3 tok/s · first token 0.21 s`` (+ ``· interrupted`` / ``· hit max tokens``).

    ``seconds`` is the time the rate is computed over; the rate is left out when it
    would be meaningless (no tokens or no time), the first-token time when unknown.
    """
    parts = [f"{tokens} token" if tokens == 1 else f"{tokens:,} tokens"]
    if tokens > 0 and seconds > 0:
        parts.append(f"{tokens / seconds:.1f} tok/s")
    if first_token_s is not None:
        parts.append(f"first token {first_token_s:.2f} s")
    note = STOP_NOTES.get(stop_reason, stop_reason)
    if note:
        parts.append(note)
    return " · ".join(parts)
