"""A chat answer's single line breaks render as separate blocks, code fences untouched."""

from __future__ import annotations

import io
import random

from rich.console import Console
from rich.markdown import Markdown

from weprompt_cli.render import MarkdownStream, render_turns
from weprompt_cli.render.paragraphs import ParagraphBreaks, with_paragraph_breaks

ANSWER = "Steps:\n- one\n- two\nThat is all.\n```sql\nSELECT 1;\n\nSELECT 2;\n```\nDone."


def test_newlines_outside_fences_become_paragraph_breaks() -> None:
    assert with_paragraph_breaks(ANSWER) == (
        "Steps:\n\n- one\n\n- two\n\nThat is all.\n\n```sql\nSELECT 1;\n\nSELECT 2;\n```\n\nDone."
    )


def test_streamed_pieces_give_the_same_text_as_one_shot() -> None:
    rng = random.Random(7)
    for _ in range(50):
        breaks = ParagraphBreaks()
        out, i = [], 0
        while i < len(ANSWER):
            n = rng.randint(1, 5)
            out.append(breaks.feed(ANSWER[i : i + n]))
            i += n
        assert "".join(out) == with_paragraph_breaks(ANSWER)


def _screen(render: object) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=60, color_system=None)
    render(console)  # type: ignore[operator]
    return buffer.getvalue()


def test_prose_after_a_list_is_its_own_paragraph_on_screen() -> None:
    def stream(console: Console) -> None:
        with MarkdownStream(console, paragraph_breaks=True) as s:
            for ch in ANSWER:
                s.feed(ch)

    shown = _screen(stream)
    assert "two That is all" not in shown
    lines = [line.strip() for line in shown.splitlines()]
    assert "That is all." in lines
    past = _screen(lambda c: render_turns(c, [("q", ANSWER, "stop")]))
    assert "two That is all" not in past and "That is all." in [line.strip() for line in past.splitlines()]
    plain = _screen(lambda c: c.print(Markdown(ANSWER)))
    assert "two That is all" in plain  # what CommonMark alone does with the model's text
