"""Streaming Markdown output: finished blocks are printed once, only the open block is live.

A model answer arrives as text pieces. Re-rendering the whole answer per piece costs
O(length) per token and makes long answers flicker, so the text is split into
*finished* top-level Markdown blocks, printed once and for good above a `rich.live.Live`
region, and one *open* block (the tail after the last finished block), the only text
that is re-parsed and shown live. All screen work happens in refreshes capped at
``max_fps``; a piece that arrives between two refreshes costs an append and a clock read.

The open block can still grow long: in CommonMark a line of prose right after a list
item continues that item, so an answer without blank lines may be one long list. Two
things keep a frame cheap then: the live view renders only the last lines of the open
block (it shows no more than a screen), and frames are spaced so that rendering takes
at most ``max_cpu_share`` of the time (on a CPU-only machine the model needs the rest).

The screen at the end equals printing ``rich.markdown.Markdown(answer)`` at once. Rich
puts a blank line between top-level blocks unless the block before is a horizontal
rule, and decides it when the next element renders; a run of blocks rendered on its own
renders exactly as inside the whole answer except for that first blank line, which
`_gap_before` restores from the previous block's type. Link reference definitions
(``[x]: url``) are the one Markdown feature that reaches across blocks; a reference
used in another block than its definition renders as plain text while streaming.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment

from weprompt_cli.render.base import FinishOnExit
from weprompt_cli.render.paragraphs import ParagraphBreaks
from weprompt_cli.render.safe import printable

DEFAULT_CODE_THEME = "monokai"

# Block structure only: the same block rules as rich's parser (CommonMark + tables),
# without the inline pass, which is most of the parsing cost and never moves a block
# boundary.
_BLOCK_PARSER = MarkdownIt().enable("table").disable("inline")

# Inline tags that rich turns into styles rather than elements (rich.markdown.Markdown.inlines).
_STYLE_TAGS = frozenset({"em", "strong", "code", "s"})
_TEXT_TOKENS = frozenset({"text", "softbreak", "hardbreak", "html_inline", "link_open", "link_close"})


def _flatten(tokens: Iterable[Token]) -> Iterator[Token]:
    """Yield tokens in the order rich's Markdown walks them (inline children expanded)."""
    for token in tokens:
        if token.children and token.type != "fence" and token.tag != "img":
            yield from _flatten(token.children)
        else:
            yield token


def _gap_before(tokens: list[Token]) -> bool:
    """Whether the first thing rich renders from ``tokens`` takes the blank line owed by the block before.

    Rich yields a blank line before an element it renders when the element that closed
    last asked for one. When nothing inside the run closes before its first rendered
    element (a top-level block closing, or an image, which rich renders on the spot),
    that decision belongs to the previous block; otherwise a nested element (the
    paragraph of a first list item, say) decides, and rendering the run alone is exact.
    """
    for token in _flatten(tokens):
        if token.type in _TEXT_TOKENS:
            continue
        if token.tag in _STYLE_TAGS and token.type not in ("fence", "code_block"):
            continue
        if token.nesting == 1:
            continue
        return token.level == 0 or token.type == "image"
    return False


def _last_block_type(tokens: list[Token]) -> str | None:
    """Type of the last top-level block's opening token, or None when there is none."""
    for token in reversed(tokens):
        if token.level == 0 and token.nesting >= 0:
            return token.type
    return None


def _is_closed(block: Token, complete: str) -> bool:
    """Whether a block on complete lines is over whatever follows: a heading, a rule, a closed fence.

    Other blocks (paragraphs, lists, quotes, tables) may go on with the next line, so
    they count as finished only once another block has started after them.
    """
    if block.type in ("heading_open", "hr"):
        return True
    if block.type != "fence" or block.map is None or block.map[1] - block.map[0] < 2:
        return False
    last_line = complete.split("\n")[block.map[1] - 1]
    marker = last_line.strip()
    return (
        len(last_line) - len(last_line.lstrip(" ")) < 4
        and len(marker) >= len(block.markup)
        and marker == block.markup[0] * len(marker)
    )


class _Run:
    """A run of whole top-level blocks, with the blank line rich would put before it."""

    def __init__(self, markdown: Markdown, gap: bool) -> None:
        self.markdown = markdown
        self.gap = gap

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.gap:
            yield Segment.line()
        yield self.markdown


class _LiveView:
    """What the Live region shows: lines rendered at the last refresh, replayed as they are,
    then an empty line where the cursor rests.

    Rich re-renders the live renderable on every print above it; keeping segments here
    makes that a copy, not a Markdown render.

    The empty last line is for the terminal's echo of Ctrl-C ("^C", written at the
    cursor). Rich leaves the cursor at the end of the region's last line, and Markdown
    pads a paragraph's lines to the full width, so the echo wrapped onto a line the
    region did not count: the next redraw started one line too low, the region's first
    line stayed on screen, and the final print drew it a second time. On a line of its
    own the echo is erased with the region (so are keys typed while the answer streams).
    """

    def __init__(self) -> None:
        self.lines: list[list[Segment]] = []

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.lines:
            return
        new_line = Segment.line()
        for line in self.lines:
            yield from line
            yield new_line
        yield Segment("")  # the cursor's line: rich counts it as a line of the region


class MarkdownStream(FinishOnExit):
    """Render a streamed answer as Markdown on a terminal console, with bounded work per token.

    Use as a context manager (``finish`` runs on exit, also on Ctrl-C) or call
    ``feed`` per piece and ``finish`` once.
    """

    def __init__(
        self,
        console: Console,
        *,
        max_fps: float = 12,
        code_theme: str = DEFAULT_CODE_THEME,
        hyperlinks: bool = True,
        max_cpu_share: float | None = 0.1,
        clock: Callable[[], float] = time.monotonic,
        cpu_timer: Callable[[], float] = time.thread_time,
        paragraph_breaks: bool = False,
    ) -> None:
        self.console = console
        # Chat answers have no blank lines: make their line breaks paragraph breaks.
        self._breaks = ParagraphBreaks() if paragraph_breaks else None
        self.code_theme = code_theme
        self.hyperlinks = hyperlinks
        self._interval = 1.0 / max_fps if max_fps > 0 else 0.0
        self._clock = clock
        self._cpu_timer = cpu_timer
        self._max_cpu_share = max_cpu_share
        self._next_refresh = -math.inf
        self._open_head = 0  # lines at the top of the open block a preview must keep
        self._pending: list[str] = []
        self._tail = ""  # text after the last printed block: the open block
        self._checked = 0  # length of the tail's complete lines already split
        self._gap_owed = False  # does the last printed block want a blank line after it?
        self._view = _LiveView()
        self._live: Live | None = None
        self._finished = False
        self.refreshes = 0
        """Frames drawn so far (each one a single write to the console)."""

    def feed(self, piece: str) -> None:
        """Add a piece of the answer; redraws at most ``max_fps`` times a second."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        piece = printable(piece)
        if self._breaks is not None:
            piece = self._breaks.feed(piece)
        if not piece:
            return
        self._pending.append(piece)
        now = self._clock()
        if now >= self._next_refresh:
            cpu = self._cpu_timer()
            self._refresh()
            spacing = self._interval
            if self._max_cpu_share:
                spacing = max(spacing, (self._cpu_timer() - cpu) / self._max_cpu_share)
            self._next_refresh = now + spacing

    def finish(self) -> None:
        """Print the open block for good and remove the live region (idempotent)."""
        if self._finished:
            return
        self._finished = True
        text = self._take_text()
        self._view.lines = []
        if text:
            self.console.print(self._run(text))
        elif self._live is not None:
            self._live.refresh()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _take_text(self) -> str:
        if self._pending:
            self._tail += "".join(self._pending)
            self._pending.clear()
        text, self._tail = self._tail, ""
        return text

    def _run(self, text: str) -> _Run:
        """A printable run for whole blocks ``text``; notes the blank line owed after it."""
        markdown = Markdown(text, code_theme=self.code_theme, hyperlinks=self.hyperlinks)
        run = _Run(markdown, self._gap_owed and _gap_before(markdown.parsed))
        last = _last_block_type(markdown.parsed)
        if last is not None:
            self._gap_owed = last != "hr"
        return run

    def _refresh(self) -> None:
        """Print blocks that finished since the last frame and redraw the open block, in one write."""
        if self._pending:
            self._tail += "".join(self._pending)
            self._pending.clear()
        finished = self._split_finished()
        gap_owed = self._gap_owed
        run = self._run(finished) if finished else None
        self._view.lines = self._render_open()
        if self._live is None:
            self._live = Live(
                self._view,
                console=self.console,
                auto_refresh=False,
                transient=True,
                # The view is cropped to the screen below; "crop" only guards a
                # terminal that shrank between two frames.
                vertical_overflow="crop",
                # A stray print or warning while the answer streams goes above the
                # live region instead of breaking it.
                redirect_stdout=True,
                redirect_stderr=True,
            )
            self._live.start()
        try:
            if run is not None:
                self.console.print(run)  # the live hook prints it above and redraws the view
            else:
                self._live.refresh()
        except BaseException:
            # Interrupted mid-write: keep the run so finish() prints it (a duplicate
            # beats a hole), and owe the blank line as before.
            if finished:
                self._tail = finished + self._tail
                self._gap_owed = gap_owed
            raise
        self.refreshes += 1

    def _split_finished(self) -> str:
        """Cut the finished blocks off the tail and return their text ("" when none finished).

        Only complete lines can end a block, and a block has ended once another one
        has started after it; the open block stays in the tail.
        """
        cut = self._tail.rfind("\n") + 1
        if cut <= self._checked:
            return ""
        complete = self._tail[:cut]
        if "\r" in complete:  # markdown-it counts lines after folding \r\n and \r to \n
            complete = complete.replace("\r\n", "\n").replace("\r", "\n")
            self._tail = complete + self._tail[cut:]
            cut = len(complete)
        blocks = [t for t in _BLOCK_PARSER.parse(complete) if t.level == 0 and t.nesting >= 0 and t.map]
        if blocks:
            # A preview of the open block keeps a fence's opening line, a table's header.
            self._open_head = {"fence": 1, "table_open": 2}.get(blocks[-1].type, 0)
        if blocks and _is_closed(blocks[-1], complete):
            offset = cut
            self._open_head = 0
        elif len(blocks) >= 2:
            offset = 0
            for _ in range(blocks[-1].map[0]):  # type: ignore[index]
                offset = complete.index("\n", offset) + 1
        else:
            self._checked = cut
            return ""
        finished, self._tail = self._tail[:offset], self._tail[offset:]
        self._checked = cut - offset
        return finished

    def _render_open(self) -> list[list[Segment]]:
        """Lines of the open block as it would print now, cut to the bottom of the screen."""
        if not self._tail.strip():
            return []
        height = max(1, self.console.size.height - 2)  # and the cursor's line below: the region fits the screen
        markdown = Markdown(self._preview_source(height), code_theme=self.code_theme, hyperlinks=self.hyperlinks)
        run = _Run(markdown, self._gap_owed and _gap_before(markdown.parsed))
        lines = self.console.render_lines(run, self.console.options, pad=False)
        return lines[-height:]

    def _preview_source(self, height: int) -> str:
        """The end of the open block: enough source lines to fill ``height`` rows, and its head.

        The view shows no more than a screen, so a frame costs the same at line 30 and
        at line 3,000 of a block. Lines are kept from the end until they fill the screen
        and two rows more (a line of n characters takes at least n / width rows); the
        cut may misrender the first kept lines (a continuation line read as a block of
        its own), which are above the view.
        """
        source = self._tail
        budget = height + 2
        width = max(1, self.console.width)
        end = len(source)
        while end > 0 and budget > 0:
            start = source.rfind("\n", 0, end - 1) + 1
            budget -= 1 + (end - start) // width
            end = start
        head_end = 0  # after a fence's opening line, a table's header rows
        for _ in range(self._open_head):
            head_end = source.find("\n", head_end) + 1
            if head_end == 0:
                return source
        return source if end <= head_end else source[:head_end] + source[end:]
