"""Plain output for pipes, and the factory that picks plain or Markdown."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from weprompt_cli.render import MarkdownStream, PlainStream, make_stream


class CountingFile(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0
        self.after_flush: list[str] = []

    def flush(self) -> None:
        self.flushes += 1
        self.after_flush.append(self.getvalue())


PIECES = ["Here", " is", " the query:\n```", "sql\nSELECT 1;\n", "```\n- one\n- t", "wo", ""]


def test_plain_stream_writes_exactly_the_pieces_and_flushes_each() -> None:
    out = CountingFile()
    stream = PlainStream(out)
    written = ""
    for piece in PIECES:
        stream.feed(piece)
        written += piece
        assert out.getvalue() == written  # as they come, no buffering, no escape codes
    assert out.flushes == len([p for p in PIECES if p])
    stream.finish()
    assert out.getvalue() == "".join(PIECES)  # nothing added: the caller ends the line


def test_plain_stream_with_no_pieces_writes_nothing() -> None:
    out = io.StringIO()
    with PlainStream(out):
        pass
    assert out.getvalue() == ""


def test_plain_stream_refuses_pieces_after_finish() -> None:
    stream = PlainStream(io.StringIO())
    stream.finish()
    with pytest.raises(RuntimeError):
        stream.feed("late")


def test_make_stream_is_plain_for_a_pipe() -> None:
    out = io.StringIO()
    stream = make_stream(Console(file=out))
    assert isinstance(stream, PlainStream) and stream.file is out
    with stream:
        stream.feed("**not rendered**")
    assert out.getvalue() == "**not rendered**"


def test_make_stream_is_markdown_for_a_terminal() -> None:
    console = Console(file=io.StringIO(), force_terminal=True)
    stream = make_stream(console, max_fps=5)
    assert isinstance(stream, MarkdownStream) and stream.console is console


def test_make_stream_is_plain_for_a_dumb_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(make_stream(Console(file=io.StringIO(), force_terminal=True)), PlainStream)
