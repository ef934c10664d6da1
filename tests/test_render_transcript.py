"""Past turns on resume: a long answer is folded to its first lines, so the last turns fit on a screen."""

from __future__ import annotations

import io
import re

from rich.console import Console

from weprompt_cli.render import render_turns

WIDTH = 70
# About what a 1,500-token answer looks like: an intro, a long list, a code block, a closing paragraph.
LONG = (
    "Here is how to find the customers who spent the most, step by step.\n"
    + "\n".join(f"- Step {i}: join `orders` to `customers` on the key and check batch {i} of the totals." for i in range(60))
    + "\n```sql\n"
    + "\n".join(f"SELECT c.name, SUM(o.total) FROM customers c JOIN orders o ON o.cid = c.id; -- {i}" for i in range(40))
    + "\n```\n"
    + "That is all: the query above returns one row per customer. " * 20
)


def _render(turns: list[tuple[str, str, str]], *, terminal: bool = False, **options: object) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=WIDTH, force_terminal=terminal, color_system="standard" if terminal else None)
    render_turns(console, turns, **options)  # type: ignore[arg-type]
    return buffer.getvalue()


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_a_long_past_answer_shows_its_first_lines_and_how_many_more() -> None:
    full = _lines(_render([("who spends most?", LONG, "stop")]))
    folded = _lines(_render([("who spends most?", LONG, "stop")], max_lines=6))
    assert len(full) > 150  # what resume printed before: the answer pushed everything off screen
    assert folded[:7] == full[:7]  # "You: ..." and the answer's first six lines, exactly as they were
    answer = full[1:]
    while not answer[-1]:
        answer.pop()  # trailing blank lines are not "more lines"
    hidden = len(answer) - 6
    assert folded[7] == f"… {hidden} more lines (see /history or 'weprompt sessions show')"
    assert len(folded) == 8


def test_resume_with_three_long_turns_fits_on_one_screen() -> None:
    turns = [(f"question {i}", LONG, "stop") for i in range(3)]
    shown = _lines(_render(turns, max_lines=6))
    assert len(shown) <= 3 * (1 + 6 + 1) + 2  # three turns, each: question, six lines, the fold line; blank gaps
    assert [line for line in shown if line.startswith("You: ")] == ["You: question 0", "You: question 1", "You: question 2"]
    assert sum(bool(re.fullmatch(r"… \d+ more lines \(.*\)", line)) for line in shown) == 3


def test_one_long_paragraph_is_folded_by_its_lines_on_screen() -> None:
    paragraph = "The answer goes on and on without a single line break in it. " * 40  # one source line
    folded = _lines(_render([("q", paragraph, "stop")], max_lines=6))
    assert len(folded) == 1 + 6 + 1 and folded[-1].startswith("… ") and "more lines" in folded[-1]


def test_short_answers_and_the_default_are_shown_in_full() -> None:
    short = "Use:\n```sql\nSELECT COUNT(*) FROM customers;\n```\nThat counts them."
    turns = [("count customers", short, "stop"), ("and orders?", "Join them with **orders**", "interrupted")]
    assert _render(turns, max_lines=6) == _render(turns)  # nothing to fold: the same screen
    assert "more lines" not in _render([("q", LONG, "stop")])  # no max_lines: every line, as /history wants
    # One line over the limit is shown rather than hidden behind a line as long.
    seven = "\n\n".join(f"line {i}" for i in range(4))  # 7 screen lines (paragraphs and the gaps between)
    assert _render([("q", seven, "stop")], max_lines=6) == _render([("q", seven, "stop")])


def test_the_fold_line_is_dim_and_the_stop_note_still_follows() -> None:
    shown = _render([("q", LONG, "interrupted")], terminal=True, max_lines=4)
    lines = shown.splitlines()
    fold = next(line for line in lines if "more lines" in line)
    assert fold.startswith("\x1b[2m… ") and fold.endswith("\x1b[0m")
    assert lines[lines.index(fold) + 1] == "\x1b[2m(interrupted)\x1b[0m"


def test_the_fold_hint_can_be_changed() -> None:
    shown = _lines(_render([("q", LONG, "stop")], max_lines=3, fold_hint="/history shows all"))
    assert shown[4].endswith("more lines (/history shows all)")
