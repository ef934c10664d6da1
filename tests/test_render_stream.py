"""Streaming Markdown: the screen after streaming equals rendering the answer at once, at bounded cost."""

from __future__ import annotations

import io
import itertools
import random
import re
import sys
from typing import Any, Literal

import pytest
from markdown_it.token import Token
from rich.console import Console
from rich.file_proxy import FileProxy
from rich.markdown import Markdown

from weprompt_cli.render import stream as stream_module
from weprompt_cli.render.stream import MarkdownStream

ANSWER = """Here is the query you asked for, with a **join** and an `ORDER BY`:
```sql
SELECT c.name, COUNT(o.id) AS orders
FROM customers AS c
JOIN orders AS o ON o.customer_id = c.id
GROUP BY c.name
ORDER BY orders DESC;
```
It works like this, step by step, and it is worth reading the plan once with EXPLAIN:
- the **join** pairs every order with its customer;
- `GROUP BY` folds the orders of one customer into one row;
- the sort puts the best customers first.
The same in Python, for a list of rows:
```python
def top_customers(rows):
    counts = {}
    for name, _ in rows:
        counts[name] = counts.get(name, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])
```
That is all: run it and compare."""


class FakeClock:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_OSC_LINK = re.compile(r"\x1b\]8;[^;]*;([^\x1b]*)\x1b\\")


def screen(output: str, height: int = 25) -> tuple[list[str], int]:
    """What a terminal of ``height`` rows (plus scrollback) shows after ``output``: rows and cursor row.

    Understands what rich writes: text, \\r, \\n, SGR styles, OSC 8 links, cursor up,
    erase in line, cursor show/hide. Each cell keeps its style and link, so two outputs
    that look the same in colour compare equal. Rows that scrolled above the screen
    can no longer be reached by cursor up, as on a real terminal.
    """
    rows: list[list[str]] = [[]]
    row = col = top = 0
    style = link = ""
    pos = 0
    while pos < len(output):
        char = output[pos]
        if char == "\x1b":
            osc = _OSC_LINK.match(output, pos)
            if osc:
                link = osc.group(1)
                pos = osc.end()
                continue
            csi = _CSI.match(output, pos)
            assert csi, f"unexpected escape {output[pos : pos + 12]!r}"
            params, command = csi.groups()
            pos = csi.end()
            if command == "m":
                style = "" if params in ("", "0") else f"{style};{params}"
            elif command == "A":
                row = max(top, row - int(params or 1))
            elif command == "K":
                if params == "2":
                    rows[row] = []
                else:
                    del rows[row][col:]
            elif command in "hl" and params == "?25":
                pass
            else:
                raise AssertionError(f"unexpected control {csi.group(0)!r}")
            continue
        pos += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
            col = 0
            if row == len(rows):
                rows.append([])
            top = max(top, row - height + 1)
        else:
            line = rows[row]
            line.extend([" "] * (col - len(line)))
            cell = f"{char}\x00{style}\x00{link}" if style or link else char
            if col < len(line):
                line[col] = cell
            else:
                line.append(cell)
            col += 1
    while len(rows) > row + 1 and not rows[-1]:
        rows.pop()  # blank rows below the cursor look the same as no rows
    return ["".join(line) for line in rows], row


ColorSystem = Literal["standard", "256", "truecolor"] | None


def make_console(color_system: ColorSystem = None, width: int = 80, height: int = 25) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=width, height=height, color_system=color_system)


def output(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def render_at_once(
    text: str, color_system: ColorSystem = None, width: int = 80, height: int = 25
) -> tuple[list[str], int]:
    console = make_console(color_system, width, height)
    console.print(Markdown(text))
    return screen(output(console), height)


def render_streamed(
    pieces: list[str],
    *,
    step: float = 0.05,
    color_system: ColorSystem = None,
    width: int = 80,
    height: int = 25,
) -> tuple[tuple[list[str], int], MarkdownStream, str]:
    """Stream ``pieces`` with a clock that moves ``step`` seconds per piece: (screen, stream, raw output)."""
    console = make_console(color_system, width, height)
    with MarkdownStream(console, max_fps=12, clock=FakeClock(step)) as md_stream:
        for piece in pieces:
            md_stream.feed(piece)
    raw = output(console)
    return screen(raw, height), md_stream, raw


def random_pieces(text: str, seed: int, largest: int = 12) -> list[str]:
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(text):
        size = rng.randint(1, largest)
        pieces.append(text[pos : pos + size])
        pos += size
    return pieces


def pieces_splitting_fences(text: str) -> list[str]:
    """Cut the text inside every ``` marker (after the first and second backtick) and around newlines."""
    cuts = sorted(
        {i + 1 for i in range(len(text)) if text.startswith("```", i)}
        | {i + 2 for i in range(len(text)) if text.startswith("```", i)}
        | {i for i, c in enumerate(text) if c == "\n"}
    )
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@pytest.mark.parametrize("seed", range(6))
def test_streamed_answer_in_random_pieces_equals_rendering_it_at_once(seed: int) -> None:
    pieces = random_pieces(ANSWER, seed)
    streamed, md_stream, _ = render_streamed(pieces, step=0.03)
    assert md_stream.refreshes > 5  # the live region really was drawn, several times
    assert streamed == render_at_once(ANSWER)


@pytest.mark.parametrize("step", [0.0, 0.001, 0.05, 1.0])
def test_streamed_answer_in_one_character_pieces_equals_rendering_it_at_once(step: float) -> None:
    streamed, _, _ = render_streamed(list(ANSWER), step=step)
    assert streamed == render_at_once(ANSWER)


def test_pieces_that_split_code_fence_markers_render_like_the_whole_answer() -> None:
    pieces = pieces_splitting_fences(ANSWER)
    assert "\n`" in pieces and "`" in pieces and "`sql" in pieces  # markers really are split
    streamed, _, _ = render_streamed(pieces, step=1.0)  # a frame after every piece
    assert streamed == render_at_once(ANSWER)


@pytest.mark.parametrize("seed", range(3))
def test_streamed_answer_in_colour_has_the_same_styles_and_highlighting(seed: int) -> None:
    pieces = random_pieces(ANSWER, seed)
    streamed, _, raw = render_streamed(pieces, step=0.05, color_system="truecolor")
    assert "\x1b[38;2;" in raw  # code was highlighted
    assert streamed == render_at_once(ANSWER, color_system="truecolor")


def test_visible_text_ends_as_the_answer_text() -> None:
    (rows, _), _, _ = render_streamed(random_pieces(ANSWER, 7))
    visible = "\n".join(row.rstrip() for row in rows)
    assert "SELECT c.name, COUNT(o.id) AS orders" in visible
    assert " • GROUP BY folds the orders of one customer into one row;" in visible
    assert "```" not in visible
    assert visible.rstrip().endswith("That is all: run it and compare.")


# Blocks of every kind rich renders, to check the blank lines between separately
# rendered blocks: the line before a block depends on the block before it (none
# after a rule) and on what the block itself renders first.
SNIPPETS = [
    "A paragraph with *emphasis*, `code` and a [link](https://example.com).",
    "A paragraph\nover two lines.",
    "# A heading",
    "### A smaller heading",
    "Setext heading\n---",
    "---",
    "***",
    "- one\n- two\n  continued\n- three",
    "1. first\n2. second",
    "3) third\n4) fourth",
    "> a quote\n> over two lines",
    "> quote with a rule\n> ***",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "![a picture](https://example.com/p.png) after it, text",
    "- ![pic](https://example.com/q.png) in a list",
    "```\nplain code\n```",
    "```python\nx = 1\nif x:\n    print(x)\n```",
    "~~~sql\nSELECT 1;\n~~~",
    "<div>html block</div>",
    "    indented code",
]


@pytest.mark.parametrize("seed", range(40))
def test_any_sequence_of_block_kinds_streams_like_rendering_at_once(seed: int) -> None:
    rng = random.Random(seed)
    blocks = [rng.choice(SNIPPETS) for _ in range(rng.randint(1, 9))]
    joiner = "\n\n" if seed % 5 == 4 else "\n"  # mostly no blank lines, as RWKV answers
    text = joiner.join(blocks)
    for largest in (1, 7):
        streamed, _, _ = render_streamed(random_pieces(text, seed, largest), step=0.04)
        assert streamed == render_at_once(text), text


def test_answer_ending_without_newline_inside_an_open_fence_renders_like_at_once() -> None:
    text = "Code:\n```python\nprint('unfinished')"
    streamed, _, _ = render_streamed(random_pieces(text, 1), step=0.2)
    assert streamed == render_at_once(text)


def test_carriage_returns_render_like_at_once() -> None:
    text = "First line\r\n- item\r\n```\r\ncode\r\n```\r\nlast"
    streamed, _, _ = render_streamed(random_pieces(text, 3, 3), step=0.2)
    assert streamed == render_at_once(text)


def test_code_block_taller_than_the_screen_does_not_duplicate_lines() -> None:
    code = "\n".join(f"line_{i} = {i}" for i in range(120))
    text = f"Long code:\n```python\n{code}\n```\nDone."
    streamed, _, raw = render_streamed(random_pieces(text, 2), step=0.05, height=10)
    assert streamed == render_at_once(text, height=10)
    # No frame is taller than the screen: erasing a frame never needs to reach rows
    # that scrolled away.
    assert max(len(m) for m in re.findall(r"(?:\x1b\[1A\x1b\[2K)+", raw)) // len("\x1b[1A\x1b[2K") < 10


def test_refreshes_are_bounded_by_time_not_by_tokens() -> None:
    clock = FakeClock(0.001)  # 1 ms per piece: 20,000 pieces take 20 s
    console = make_console()
    with MarkdownStream(console, max_fps=12, clock=clock, cpu_timer=lambda: 0.0) as md_stream:
        for piece in random_pieces(ANSWER * 60, 5, 3):
            md_stream.feed(piece)
    pieces = len(random_pieces(ANSWER * 60, 5, 3))
    assert pieces > 10_000
    assert md_stream.refreshes <= clock.now * 12 + 1
    assert md_stream.refreshes >= clock.now * 12 * 0.9


def test_frames_are_spaced_so_rendering_takes_at_most_its_cpu_share() -> None:
    clock = FakeClock(0.001)
    cpu = FakeClock(0.05)  # each frame costs 50 ms of CPU (read before and after it)
    console = make_console()
    with MarkdownStream(console, max_fps=12, max_cpu_share=0.1, clock=clock, cpu_timer=cpu) as md_stream:
        for piece in random_pieces(ANSWER * 20, 5, 3):
            md_stream.feed(piece)
    # 50 ms of rendering per frame at 10 % of the time: a frame every 0.5 s, not 12 a second.
    assert md_stream.refreshes <= clock.now / 0.5 + 1
    assert md_stream.refreshes >= clock.now / 0.5 * 0.9


def test_a_long_open_block_is_previewed_from_its_last_lines_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prose right after a list item continues the item (CommonMark), so this whole
    # answer is one list: one open block that keeps growing.
    text = "\n".join(f"- item {i}\nThen some prose about item {i}." for i in range(150))
    sources: list[str] = []

    class RecordingMarkdown(Markdown):
        def __init__(self, markup: str, **options: Any) -> None:
            sources.append(markup)
            super().__init__(markup, **options)

    monkeypatch.setattr(stream_module, "Markdown", RecordingMarkdown)
    streamed, md_stream, _ = render_streamed(random_pieces(text, 8), step=0.05, height=12)
    assert md_stream.refreshes > 100
    *frames, final = sources
    assert final == text  # printed for good at the end, whole
    assert max(source.count("\n") for source in frames) <= 11 + 2
    assert streamed == render_at_once(text, height=12)


def test_slow_tokens_each_get_a_frame() -> None:
    console = make_console()
    with MarkdownStream(console, max_fps=12, clock=FakeClock(0.5)) as md_stream:
        for piece in ["Hel", "lo ", "world"]:
            md_stream.feed(piece)
    assert md_stream.refreshes == 3


def test_block_structure_is_parsed_only_at_refreshes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_parse = stream_module._BLOCK_PARSER.parse

    def counting_parse(text: str) -> list[Token]:
        calls.append(len(text))
        return real_parse(text)

    monkeypatch.setattr(stream_module._BLOCK_PARSER, "parse", counting_parse)
    console = make_console()
    with MarkdownStream(console, clock=FakeClock(0.001)) as md_stream:
        for piece in random_pieces(ANSWER * 20, 9, 4):
            md_stream.feed(piece)
    assert len(calls) <= md_stream.refreshes
    # Only the tail is parsed: never more than a few blocks, however long the answer.
    assert max(calls) < 4 * len(ANSWER) // 3


def test_finished_blocks_are_printed_once() -> None:
    code = "\n".join(f"value_{i} = {i}" for i in range(30))
    text = f"Intro.\n```python\n{code}\n```\nOutro paragraph that is open."
    console = Console(file=io.StringIO(), force_terminal=True, width=80, color_system=None, height=25)
    md_stream = MarkdownStream(console, clock=FakeClock(1.0))
    for piece in random_pieces(text, 4):
        md_stream.feed(piece)
    raw = output(console)
    # The frame that first shows the paragraph after the code prints the code block for
    # good above it; from then on frames show the open paragraph only, never the code.
    first_outro = raw.index("Outro")
    assert md_stream.refreshes > 10
    assert "value_29 = 29" in raw[:first_outro]
    assert "value_" not in raw[first_outro:]
    md_stream.finish()
    assert "value_" not in output(console)[first_outro:]


def test_a_stray_print_while_streaming_goes_above_the_live_region() -> None:
    console = make_console()
    pieces = random_pieces(ANSWER, 12)
    with MarkdownStream(console, clock=FakeClock(0.05)) as md_stream:
        for index, piece in enumerate(pieces):
            if index == len(pieces) // 2:
                print("warning: something happened")
                sys.stderr.write("and on stderr\n")
            md_stream.feed(piece)
    assert sys.stdout is sys.__stdout__ or not isinstance(sys.stdout, FileProxy)  # redirection undone
    rows, row = screen(output(console))
    assert rows.count("warning: something happened") == 1 and rows.count("and on stderr") == 1
    rest = [r for r in rows if r not in ("warning: something happened", "and on stderr")]
    assert (rest, row - 2) == render_at_once(ANSWER)


def test_finish_without_pieces_prints_nothing_and_is_idempotent() -> None:
    console = make_console()
    md_stream = MarkdownStream(console)
    md_stream.finish()
    md_stream.finish()
    assert output(console) == ""  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        md_stream.feed("late")


def test_interrupted_stream_keeps_what_was_written() -> None:
    console = make_console()
    with pytest.raises(KeyboardInterrupt), MarkdownStream(console, clock=FakeClock(0.01)) as md_stream:
        for index, piece in enumerate(random_pieces(ANSWER, 3)):
            if index == 40:
                raise KeyboardInterrupt
            md_stream.feed(piece)
    written = "".join(random_pieces(ANSWER, 3)[:40])
    assert screen(output(console)) == render_at_once(written)  # type: ignore[attr-defined]


def test_on_a_file_console_the_output_is_exactly_the_rendered_markdown() -> None:
    console = Console(file=io.StringIO(), width=60)
    with MarkdownStream(console, clock=FakeClock(0.05)) as md_stream:
        for piece in random_pieces(ANSWER, 11):
            md_stream.feed(piece)
    expected = Console(file=io.StringIO(), width=60)
    expected.print(Markdown(ANSWER))
    assert output(console) == output(expected)


def test_screen_emulator_erases_and_overwrites_like_a_terminal() -> None:
    rows, row = screen("one\ntwo\nthree\r\x1b[2K\x1b[1A\x1b[2Knew\nnext\n")
    assert rows == ["one", "new", "next", ""] and row == 3
    rows, _ = screen("a\nb\nc\nd\x1b[1A\x1b[1A\x1b[1A\x1b[2K", height=2)
    assert rows == ["a", "b", "", "d"]  # cursor up stops at the top of the screen
