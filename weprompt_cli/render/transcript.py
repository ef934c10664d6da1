"""Past turns rendered for the screen: the last few on resume, and ``/history``."""

from __future__ import annotations

from rich.console import Console
from rich.markdown import Markdown
from rich.segment import SegmentLines
from rich.text import Text

from weprompt_cli.render.paragraphs import with_paragraph_breaks
from weprompt_cli.render.safe import printable
from weprompt_cli.render.status import STOP_NOTES
from weprompt_cli.render.stream import DEFAULT_CODE_THEME


MARK_STYLES = {"✓": "green", "✗": "red", "?": "yellow"}  # a check's mark by its first character


def mark_text(mark: str) -> Text:
    """One check's mark line ("✓ valid SQL ...") in its colour."""
    return Text(mark, style=MARK_STYLES.get(mark[:1], "dim"))


def render_turns(
    console: Console,
    turns: list[tuple[str, str, str]] | list[tuple[str, str, str, int]] | list[tuple[str, str, str, int, list[str]]],
    *,
    first_number: int | None = None,
    user_label: str = "You",
    code_theme: str = DEFAULT_CODE_THEME,
    max_lines: int | None = None,
    fold_hint: str = "see /history or 'weprompt sessions show'",
) -> None:
    """Print turns of ``(user text, assistant Markdown, stop_reason[, thought tokens[, check marks]])``, oldest first.

    User text is shown as typed (never read as markup); the answer as Markdown, as it
    looked when it streamed; a turn that did not stop normally says why. With
    ``first_number``, each turn is labelled with its number in the session. With
    ``max_lines``, an answer longer than that on screen is folded: its first
    ``max_lines`` lines, then one dim line saying how many more there are and
    ``fold_hint`` (None, the default: every answer in full). A turn whose model thought
    first (thought tokens > 0) shows the thought folded to one dim line; the marks of the
    answer's checks (the SQL advisor's ✓ / ✗ lines) follow it as they did live.
    """
    from weprompt_cli.chat.thinking import fold_status

    for index, turn in enumerate(turns):
        user, assistant, stop_reason = str(turn[0]), str(turn[1]), str(turn[2])
        thought = int(turn[3]) if len(turn) > 3 else 0
        marks = [str(m) for m in turn[4]] if len(turn) > 4 else []  # type: ignore[misc]
        if index:
            console.line()
        label = user_label if first_number is None else f"#{first_number + index} {user_label}"
        console.print(Text.assemble((f"{label}: ", "bold"), printable(user)), highlight=False)
        if thought:
            console.print(Text(fold_status(thought), style="dim"), highlight=False)
        if assistant.strip():
            answer = Markdown(with_paragraph_breaks(printable(assistant)), code_theme=code_theme)
            if max_lines is None:
                console.print(answer)
            else:
                _print_folded(console, answer, max(1, max_lines), fold_hint)
        for mark in marks:
            console.print(mark_text(printable(mark)), highlight=False)
        note = STOP_NOTES.get(stop_reason, stop_reason)
        if note:
            console.print(Text(f"({note})", style="dim"))


def _print_folded(console: Console, answer: Markdown, max_lines: int, hint: str) -> None:
    """The answer's first `max_lines` screen lines and a dim count of the rest; short answers in full."""
    lines = console.render_lines(answer, console.options, pad=False)
    while lines and not "".join(segment.text for segment in lines[-1]).strip():
        lines.pop()  # trailing blank lines are not "more lines"
    hidden = len(lines) - max_lines
    if hidden <= 1:  # folding away one line would hide it behind a line as long
        console.print(answer)
        return
    console.print(SegmentLines(lines[:max_lines], new_lines=True), end="")
    what = "line" if hidden == 1 else "lines"
    console.print(Text(f"… {hidden} more {what} ({hint})", style="dim"), highlight=False)
