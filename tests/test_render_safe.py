"""Model text cannot drive the terminal: control sequences are dropped before display."""

from __future__ import annotations

import io

from rich.console import Console

from weprompt_cli.render import MarkdownStream, render_turns
from weprompt_cli.render.safe import printable

HOSTILE = "Sure.\x1b]0;pwned\x07 Here\x1b[2J it is:\x9b31m\n```sql\nSELECT 1;\x08\n```\ndone\tok"


def test_printable_keeps_text_newlines_and_tabs_only() -> None:
    assert printable(HOSTILE) == "Sure.]0;pwned Here[2J it is:31m\n```sql\nSELECT 1;\n```\ndone\tok"


def _terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=80, color_system=None), buffer


def test_a_streamed_answer_with_escape_sequences_shows_none_of_them() -> None:
    console, buffer = _terminal()
    with MarkdownStream(console) as stream:
        for ch in HOSTILE:
            stream.feed(ch)
    out = buffer.getvalue()
    assert "\x1b]0;" not in out and "\x07" not in out and "\x1b[2J" not in out and "\x9b" not in out
    assert "pwned" in out and "SELECT 1;" in out


def test_past_turns_are_shown_without_control_characters() -> None:
    console, buffer = _terminal()
    render_turns(console, [("who\x1b[2Jami", HOSTILE, "stop")])
    out = buffer.getvalue()
    assert "\x1b[2J" not in out and "\x1b]0;" not in out and "\x07" not in out
    assert "who[2Jami" in out
