"""Answer output for pipes and dumb terminals, and the factory that picks an answer stream."""

from __future__ import annotations

from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol

from rich.console import Console

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11


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


class PlainStream:
    """Write pieces to a file exactly as they come, flushed, with no escape codes.

    ``finish`` ends the output with a newline when the answer did not, so what follows
    (a shell prompt, the next line of a script) starts on its own line.
    """

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self._last = ""
        self._finished = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish()

    def feed(self, piece: str) -> None:
        """Write one piece and flush it."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if not piece:
            return
        self.file.write(piece)
        self.file.flush()
        self._last = piece[-1]

    def finish(self) -> None:
        """End the answer on a line of its own (idempotent)."""
        if self._finished:
            return
        self._finished = True
        if self._last and self._last != "\n":
            self.file.write("\n")
            self.file.flush()


def make_stream(console: Console, **markdown_options: Any) -> AnswerStream:
    """A Markdown stream on an interactive terminal, plain text otherwise (pipes, files, TERM=dumb).

    ``markdown_options`` go to `MarkdownStream` (``max_fps``, ``code_theme``, ...).
    """
    if console.is_terminal and not console.is_dumb_terminal:
        from weprompt_cli.render.stream import MarkdownStream

        return MarkdownStream(console, **markdown_options)
    return PlainStream(console.file)
