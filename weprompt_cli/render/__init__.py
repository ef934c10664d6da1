"""Terminal output of answers: streaming Markdown, plain text for pipes, status lines, past turns.

Nothing here imports torch or knows about sessions; callers hand in text and a console.
"""

from weprompt_cli.render.plain import AnswerStream, PlainStream, make_stream
from weprompt_cli.render.status import format_status
from weprompt_cli.render.stream import MarkdownStream
from weprompt_cli.render.transcript import render_turns

__all__ = [
    "AnswerStream",
    "MarkdownStream",
    "PlainStream",
    "format_status",
    "make_stream",
    "render_turns",
]
