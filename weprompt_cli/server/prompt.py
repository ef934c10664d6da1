"""OpenAI messages -> the texts fed to the model, one segment per message, in its chat format.

Segment 0 is the prefix (a persona's prompt, or the leading system messages, or empty);
the last segment is the final user turn's prompt, ending with the assistant label. Each
segment is tokenized on its own, so a conversation that grows by a turn keeps the token
ids of every earlier segment, and the prefix cache finds them again.

An assistant message is written the way the model wrote its reply: ` {answer}` and the
separator, so the state after a live reply and after its re-sent text agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weprompt_cli.chat.formats import ChatFormat

USER, ASSISTANT, SYSTEM, PREFIX = "user", "assistant", "system", "prefix"


@dataclass(frozen=True)
class Segment:
    kind: str  # prefix | user | assistant | system
    text: str


def assistant_text(fmt: ChatFormat, answer: str) -> str:
    """How a finished reply is fed after the assistant label: ` {answer}` + separator."""
    return f" {fmt.fold(answer)}{fmt.separator}"


def render(fmt: ChatFormat, messages: Sequence[tuple[str, str]], prefix: str = "") -> list[Segment]:
    """The segments for `messages` (role, text) after an optional `prefix` (a persona's prompt).

    Leading system messages join the prefix; consecutive user (or assistant) messages are
    merged into one turn; a later system message becomes a system paragraph in place. The
    last message must be the user's (the caller checks).
    """
    items = [("system" if role == "developer" else role, text) for role, text in messages]
    head: list[str] = []
    while items and items[0][0] == SYSTEM:
        head.append(items.pop(0)[1])
    prefix_text = prefix
    system = "\n".join(t for t in head if t.strip())
    if system.strip():
        prefix_text += fmt.persona_prefix(system, [])

    merged: list[tuple[str, str]] = []
    for role, text in items:
        if merged and merged[-1][0] == role and role != SYSTEM:
            merged[-1] = (role, merged[-1][1] + "\n" + text)
        else:
            merged.append((role, text))

    segments = [Segment(PREFIX, prefix_text)]
    previous = PREFIX
    for role, text in merged:
        if role == USER:
            segments.append(Segment(USER, fmt.turn_prompt(text, needs_boundary=False)))
        elif role == ASSISTANT:
            # After a user turn the label is already there; a reply without one (a greeting
            # before any question) gets its own label.
            label = "" if previous == USER else f"{fmt.assistant_label}:"
            segments.append(Segment(ASSISTANT, label + assistant_text(fmt, text)))
        else:
            segments.append(Segment(SYSTEM, fmt.persona_prefix(text, [])))
        previous = role
    return segments
