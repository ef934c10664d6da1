"""Chat formats: how a persona and a turn are written for a model family.

World / G1 (RWKV-5/6/7, and RWKV-4 World models): `User: ...\n\nAssistant:`, with an
optional `System: ...\n\n` first. Raven (RWKV-4 on the GPT-NeoX vocabulary):
`Bob: ...\n\nAlice:`, the system text as a plain first paragraph.

A blank line ends a turn, so text written into a prompt is folded first: no blank lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEPARATOR = "\n\n"
_BLANK_RUN = re.compile(r"\n(?:[^\S\n]*\n)+")  # a newline, then lines that are empty or only whitespace


def fold(text: str) -> str:
    """`\\r\\n` -> `\\n`; every run of empty or whitespace-only lines -> one `\\n`; stripped."""
    text = text.replace("\r\n", "\n")
    return _BLANK_RUN.sub("\n", text).strip()


@dataclass(frozen=True)
class ChatFormat:
    """The prompt layout of one model family."""

    name: str
    user_label: str
    assistant_label: str
    system_label: str | None  # None: the system text is a plain first paragraph
    separator: str = SEPARATOR

    def fold(self, text: str) -> str:
        """User (or persona) text made safe to feed: no blank lines, stripped."""
        return fold(text)

    def persona_prefix(self, system: str, examples: list[tuple[str, str]] | tuple[tuple[str, str], ...] = ()) -> str:
        """The text fed before the first turn: the system paragraph, then each example exchange."""
        parts = []
        system = fold(system)
        if system:
            label = f"{self.system_label}: " if self.system_label else ""
            parts.append(f"{label}{system}{self.separator}")
        for question, answer in examples:
            parts.append(f"{self.user_label}: {fold(question)}{self.separator}")
            parts.append(f"{self.assistant_label}: {fold(answer)}{self.separator}")
        return "".join(parts)

    def turn_prompt(self, user_text: str, *, needs_boundary: bool) -> str:
        """The text fed for a user turn, ending with the assistant label (the model writes ` answer\\n\\n`).

        `needs_boundary`: the previous reply did not end with the separator (length or
        interrupted), so the prompt starts with one.
        """
        lead = self.separator if needs_boundary else ""
        return f"{lead}{self.user_label}: {fold(user_text)}{self.separator}{self.assistant_label}:"

    @property
    def stop(self) -> tuple[str, ...]:
        """The stop strings generation uses by default: the turn separator."""
        return (self.separator,)

    def display(self, reply_raw: str) -> str:
        """The answer as shown and recorded: cut at the separator, the leading space removed."""
        text = reply_raw.split(self.separator, 1)[0]
        return text.removeprefix(" ")


WORLD = ChatFormat(name="world", user_label="User", assistant_label="Assistant", system_label="System")
RAVEN = ChatFormat(name="raven", user_label="Bob", assistant_label="Alice", system_label=None)
FORMATS = {f.name: f for f in (WORLD, RAVEN)}


def get_format(name: str) -> ChatFormat:
    """The format named `name` ("world" or "raven"); KeyError otherwise."""
    return FORMATS[name]
