"""Chat answers as Markdown: a model's single line breaks become paragraph breaks.

RWKV chat models never write a blank line (a blank line ends their turn), so their
Markdown has blocks separated by single newlines. CommonMark then joins a prose line
that follows a list item into that item ("- two\\nThat's all." is one bullet) and runs
lines of prose together. Outside code fences, each newline is doubled before rendering;
inside a fence the text is left exactly as written.
"""

from __future__ import annotations

FENCE = "```"


class ParagraphBreaks:
    """Streaming form: feed pieces, get the same text with paragraph breaks added."""

    def __init__(self) -> None:
        self._head = ""  # the start of the current line, up to the first non-space chars
        self._in_fence = False

    def feed(self, piece: str) -> str:
        if "\n" not in piece:
            self._note(piece)
            return piece
        out = []
        for i, line in enumerate(piece.split("\n")):
            if i:
                # A newline ends the line whose start is in _head: a fence line toggles.
                if self._head.lstrip().startswith(FENCE):
                    self._in_fence = not self._in_fence
                out.append("\n" if self._in_fence else "\n\n")
                self._head = ""
            self._note(line)
            out.append(line)
        return "".join(out)

    def _note(self, text: str) -> None:
        if len(self._head.lstrip()) < len(FENCE):
            self._head += text[:16]


def with_paragraph_breaks(text: str) -> str:
    """The one-shot form of `ParagraphBreaks`."""
    return ParagraphBreaks().feed(text)
