"""A model's thought while it streams: shown dim on a terminal, folded to one line when the answer starts."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.text import Text

from weprompt_cli.render.safe import printable

_SHOWN_LINES = 6  # the tail of the thought the live view keeps on screen


class ThoughtView:
    """Feed it the thought's pieces; `fold(n)` replaces them with "thought for n tokens · /show-thoughts".

    On a terminal the thought streams dim in a transient region (it never scrolls the
    screen away); elsewhere (a pipe) nothing of it is printed, only the fold line on `status`.
    """

    def __init__(self, console: Console, status: Console) -> None:
        self.console = console
        self.status = status
        self.text = ""
        self._live: Live | None = None
        self.folded = False

    @property
    def active(self) -> bool:
        return bool(self.text) and not self.folded

    def feed(self, piece: str) -> None:
        self.text += printable(piece)
        if not self.console.is_terminal or self.console.is_dumb_terminal:
            return
        tail = "\n".join(self.text.splitlines()[-_SHOWN_LINES:])
        view = Text(tail, style="dim italic")
        if self._live is None:
            self._live = Live(view, console=self.console, auto_refresh=False, transient=True)
            self._live.start()
        self._live.update(view, refresh=True)

    def fold(self, thought_tokens: int) -> None:
        """Clear the streamed thought and print its one-line fold (once)."""
        from weprompt_cli.chat.thinking import fold_status

        if self.folded:
            return
        self.folded = True
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self.text:
            self.status.print(fold_status(thought_tokens), style="dim", markup=False, highlight=False)
