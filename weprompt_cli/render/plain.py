"""Answer output for pipes and dumb terminals, and the factory that picks an answer stream."""

from __future__ import annotations

from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol

from rich.console import Console

from weprompt_cli.render.base import FinishOnExit

if TYPE_CHECKING:
    pass  # typing.Self needs Python 3.11


class AnswerStream(Protocol):
    """Where a streamed answer goes: ``feed`` each piece, then ``finish`` once."""

    def feed(self, piece: str) -> None: ...

    def finish(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class PlainStream(FinishOnExit):
    """Write pieces to a file exactly as they come, flushed, with no escape codes.

    Nothing is added: the caller decides how the answer's line ends (the chat's
    displayed answers carry no trailing newline).
    """

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self._finished = False

    def feed(self, piece: str) -> None:
        """Write one piece and flush it."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if piece:
            self.file.write(piece)
            self.file.flush()

    def finish(self) -> None:
        """Mark the answer done (idempotent); every piece is already written and flushed."""
        self._finished = True


def make_stream(console: Console, **markdown_options: Any) -> AnswerStream:
    """A Markdown stream on an interactive terminal, plain text otherwise (pipes, files, TERM=dumb).

    ``markdown_options`` go to `MarkdownStream` (``max_fps``, ``code_theme``, ...).
    """
    if console.is_terminal and not console.is_dumb_terminal:
        from weprompt_cli.render.stream import MarkdownStream

        return MarkdownStream(console, **{"paragraph_breaks": True, **markdown_options})
    return PlainStream(console.file)
