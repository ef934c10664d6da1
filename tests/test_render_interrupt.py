"""Ctrl-C while an answer streams: the screen ends as one print of the partial answer, no line twice.

While an answer streams, Ctrl-C only sets a flag (weprompt_cli/interrupt.py) and the
terminal echoes it as "^C" at the cursor. Rich's live region left the cursor at the end
of its last line, which Markdown pads to the full width: the echo wrapped onto a line
the region did not count, and the final print left the region's first line above it,
so the first line of the partial answer showed twice. These tests emulate a terminal of
a fixed width (with its wrap at the last column), on a StringIO and in a real pty.
"""

from __future__ import annotations

import io
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console
from rich.markdown import Markdown

from weprompt_cli.render.paragraphs import with_paragraph_breaks
from weprompt_cli.render.stream import MarkdownStream

WIDTH, HEIGHT = 80, 24
SENTENCE = (
    "The customers table holds one row per customer and the orders table one row per order; "
    "to count them per city you group by the city column and count the rows. "
)
_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(\x07|\x1b\\)")


def terminal(output: str, width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    """The text a VT100-like terminal of ``width`` x ``height`` (plus scrollback) shows after ``output``.

    What matters here is the wrap: a character written at the last column leaves the
    cursor there, and the next printable character goes to the start of a new line.
    Styles are ignored; \\n is read as the tty delivers it (\\r\\n).
    """
    rows: list[list[str]] = [[]]
    row = col = top = 0
    pos = 0
    while pos < len(output):
        osc = _OSC.match(output, pos)
        if osc:
            pos = osc.end()
            continue
        csi = _CSI.match(output, pos)
        if csi:
            params, command = csi.groups()
            pos = csi.end()
            if command == "A":
                row = max(top, row - int(params or 1))
                col = min(col, width - 1)
            elif command == "K":
                if params == "2":
                    rows[row] = []
                else:
                    del rows[row][col:]
            elif command not in "mhl":
                raise AssertionError(f"unexpected control {csi.group(0)!r}")
            continue
        char = output[pos]
        pos += 1
        if char == "\r":
            col = 0
            continue
        if char == "\n" or col >= width:  # a line feed, or a printable character past the last column
            row += 1
            col = 0
            while len(rows) <= row:
                rows.append([])
            top = max(top, row - height + 1)
            if char == "\n":
                continue
        line = rows[row]
        line.extend([" "] * (col - len(line)))
        if col < len(line):
            line[col] = char
        else:
            line.append(char)
        col += 1
    return ["".join(line).rstrip() for line in rows]


def printed_at_once(text: str) -> list[str]:
    """The screen of one print of the answer ``text`` (as the chat shows it: line breaks are paragraphs)."""
    console = Console(file=io.StringIO(), width=WIDTH, height=HEIGHT, force_terminal=True, color_system=None)
    console.print(Markdown(with_paragraph_breaks(text)))
    return terminal(console.file.getvalue())  # type: ignore[attr-defined]


def test_the_terminal_emulator_wraps_at_the_last_column() -> None:
    assert terminal("x" * WIDTH + "\r\x1b[2K") == [""]  # still on the full line: the erase clears it
    assert terminal("x" * WIDTH + "^C\r\x1b[2K") == ["x" * WIDTH, ""]  # the echo wrapped
    assert terminal("ab\ncd\x1b[1A\r\x1b[2Kz\n") == ["z", "cd"]


@pytest.mark.parametrize("words", [20, 31, 45, 58])
def test_ctrl_c_echo_mid_answer_leaves_one_copy_of_each_line(words: int) -> None:
    console = Console(file=io.StringIO(), width=WIDTH, height=HEIGHT, force_terminal=True, color_system=None)
    pieces = [w + " " for w in (SENTENCE * 3).split(" ")[:words]]
    stream = MarkdownStream(console, paragraph_breaks=True, max_fps=0, max_cpu_share=None)
    with stream:
        for piece in pieces:
            stream.feed(piece)
        console.file.write("^C")  # the tty's echo of Ctrl-C, at the cursor
    shown = [line for line in terminal(console.file.getvalue()) if line]
    assert shown == [line for line in printed_at_once("".join(pieces)) if line]


CHILD = textwrap.dedent(
    """
    import sys, time
    from rich.console import Console
    from weprompt_cli.interrupt import sigint_cancels
    from weprompt_cli.render import make_stream

    console = Console()
    text = {text!r}
    sys.stdout.write("READY\\n")
    sys.stdout.flush()
    fed = []
    with sigint_cancels() as cancel:
        with make_stream(console, max_fps=0, max_cpu_share=None) as stream:  # a frame per piece
            for word in text.split(" "):
                stream.feed(word + " ")
                fed.append(word + " ")
            deadline = time.monotonic() + 30
            while not cancel() and time.monotonic() < deadline:  # the answer waits here, mid-paragraph
                time.sleep(0.01)
    with open(sys.argv[1], "w") as f:
        f.write("".join(fed))
    sys.stdout.write("\\nDONE " + str(cancel()) + "\\n")
    """
)


def test_ctrl_c_in_a_real_terminal_does_not_draw_a_line_twice(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    partial = SENTENCE * 2 + "The customers table holds one row per customer"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(text=partial))
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(WIDTH), "LINES": str(HEIGHT),
           "PYTHONPATH": str(root)}
    child = pexpect.spawn(sys.executable, [str(script), str(tmp_path / "fed.txt")], env=env,
                          dimensions=(HEIGHT, WIDTH), encoding="utf-8", timeout=60)
    try:
        child.expect_exact("READY")
        raw = child.before + child.after
        # The last frame: the partial answer's last line, padded to the full width, the cursor after it.
        last = "The customers table holds one row per customer"
        child.expect_exact(last + " " * (WIDTH - len(last)))
        raw += child.before + child.after
        child.sendcontrol("c")
        child.expect(r"DONE (\w+)")
        raw += child.before + child.after
        assert child.match.group(1) == "True"  # Ctrl-C reached the flag, not a KeyboardInterrupt
        child.expect(pexpect.EOF)
        raw += child.before
    finally:
        child.close(force=True)
    shown = terminal(raw)
    answer = shown[shown.index("READY") + 1 : next(i for i, line in enumerate(shown) if line.startswith("DONE"))]
    fed = (tmp_path / "fed.txt").read_text()
    assert [line for line in answer if line] == [line for line in printed_at_once(fed) if line]
