"""Everything the CLI shows: model text on stdout, status and diagnostics on stderr.

One `Output` is built per command from its `Context` streams and handed down (httpie's
Environment idea), so the REPL and the one-shot commands print the same way and tests
can read both streams.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from rich.console import Console

if TYPE_CHECKING:
    from weprompt_cli.chat.turn import TurnStream
    from weprompt_cli.context import Context

PROGRESS_MIN_TOKENS = 512  # shorter prefills finish before a bar would help


class Output:
    """The terminal as WePrompt uses it: `out` for answers, `err` for everything else."""

    def __init__(self, *, verbose: bool = False, stdout: Any = None, stderr: Any = None) -> None:
        self.verbose = verbose
        self.out = Console(file=stdout or sys.stdout, highlight=False)
        self.err = Console(file=stderr or sys.stderr, highlight=False)

    @classmethod
    def for_context(cls, ctx: Context) -> Output:
        """The output of a command: its context's streams and verbosity."""
        return cls(verbose=ctx.verbose, stdout=ctx.stdout, stderr=ctx.stderr)

    # -------------------------------------------------------------- messages
    def info(self, message: str) -> None:
        self.err.print(message, style="dim", markup=False)

    def dim(self, message: str) -> None:
        self.err.print(message, style="dim", markup=False)

    def warn(self, message: str) -> None:
        self.err.print(message, style="yellow", markup=False)

    def error(self, message: str) -> None:
        self.err.print(message, style="red", markup=False)

    @contextmanager
    def status(self, message: str) -> Iterator[None]:
        """A spinner on stderr while something slow runs (only on a terminal)."""
        if self.err.is_terminal:
            with self.err.status(message, spinner="dots"):
                yield
        else:
            if self.verbose:
                self.info(message)
            yield

    # -------------------------------------------------------------- progress
    def _progress(self, label: str, minimum: int) -> Callable[[int, int], None]:
        state: dict[str, Any] = {}

        def update(done: int, total: int) -> None:
            if total < minimum:
                return
            if "bar" not in state:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

                bar = Progress(
                    TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=self.err, transient=True,
                )
                bar.start()
                state["bar"] = bar
                state["task"] = bar.add_task(label, total=total)
            bar = state["bar"]
            bar.update(state["task"], completed=done, total=total)
            if done >= total:
                bar.stop()
                del state["bar"]

        return update

    def prefill_progress(self) -> Callable[[int, int], None]:
        """A progress callback for reading a long message (tokens done, total)."""
        return self._progress("reading", PROGRESS_MIN_TOKENS)

    def replay_progress(self) -> Callable[[int, int], None]:
        """A progress callback for replaying a transcript."""
        return self._progress("replaying", 1)

    # ----------------------------------------------------------------- reply
    def stream_reply(self, reply: TurnStream) -> None:
        """Print an answer as it streams (Markdown on a terminal, plain text in a pipe), then its status."""
        from weprompt_cli.chat.turn import Reasoning
        from weprompt_cli.render import make_stream
        from weprompt_cli.render.thoughts import ThoughtView

        stream = make_stream(self.out)
        thoughts = ThoughtView(self.out, self.err)
        try:
            for piece in reply:
                if isinstance(piece, Reasoning):
                    thoughts.feed(piece)
                    continue
                if thoughts.active:
                    thoughts.fold(reply.thought_tokens)
                stream.feed(piece)
        finally:
            if thoughts.active:
                thoughts.fold(reply.thought_tokens)
            stream.finish()
        if not self.out.is_terminal or self.out.is_dumb_terminal:  # the status line starts on its own line
            self.out.file.write("\n")
            self.out.file.flush()
        self.reply_status(reply)

    def reply_status(self, reply: TurnStream) -> None:
        from weprompt_cli.render import format_status

        turn = reply.turn
        if turn is None:
            self.warn("stopped before the answer began; nothing was recorded")
            return
        n = len(turn.reply_tokens)
        # The rate is the decode rate (the first token's wait is shown on its own).
        seconds = n / turn.tokens_per_s if turn.tokens_per_s else reply.elapsed_s
        self.err.print(format_status(n, seconds, turn.first_token_s, turn.stop_reason), style="dim", markup=False)

    def describe_engine(self, lines: list[str]) -> None:
        """With --verbose: what was loaded and how (backend, device, decode path), one dim line each."""
        if self.verbose:
            for line in lines:
                self.info(line)

    def show_recent_turns(self, turns: list[Any], count: int = 3, *, max_lines: int | None = None) -> None:
        """The last `count` turns, so a resumed session shows where it was; answers longer than
        `max_lines` lines are folded (None: shown in full)."""
        if not turns:
            return
        from weprompt_cli.render import render_turns

        shown = turns[-count:]
        if len(turns) > count:
            self.dim(f"... {len(turns) - count} earlier turns (/history shows all)")
        render_turns(
            self.out,
            [(t.user, t.assistant, t.stop_reason, t.thought_tokens if t.reasoning else 0, t.marks) for t in shown],
            max_lines=max_lines,
        )
