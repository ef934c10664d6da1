"""Model text is untrusted: keep it from driving the terminal.

A model (or a tampered transcript) can emit ESC sequences or other control characters
that move the cursor, retitle the window or worse. Everything shown on a terminal
passes through `printable`, which keeps newlines and tabs and drops the rest of the C0
and C1 control ranges (rich itself strips only a few of them).
"""

from __future__ import annotations

_DROP = {c: None for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)] if c not in (0x09, 0x0A)}


def printable(text: str) -> str:
    """`text` without terminal control characters (newline and tab kept)."""
    return text.translate(_DROP)
