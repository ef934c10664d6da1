"""Chat formats: how a persona and a turn are written for a model family.

World (RWKV-5/6/7, and RWKV-4 World models): `User: ...\n\nAssistant:`, with an optional
`System: ...\n\n` first. G1 (RWKV-7 G1 models): the same labels, BlinkDL's published
input cleaning, a `<think` opened (or `<think></think` closed at once) after the assistant
label, and token 0 (end of document) never sampled. Raven (RWKV-4 on the GPT-NeoX
vocabulary): `Bob: ...\n\nAlice:`, the system text as a plain first paragraph.

A blank line ends a turn, so text written into a prompt is folded first: no blank lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weprompt_cli.engine.checkpoint import ModelInfo
    from weprompt_cli.engine.tokenizer import Tokenizer

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
    thinking: bool = False  # replies may hold a <think> block (G1)
    ban: tuple[int, ...] = ()  # token ids never sampled (G1: 0, the end of a document)

    def fold(self, text: str) -> str:
        """User (or persona) text made safe to feed: no blank lines, stripped."""
        return fold(text)

    def persona_prefix(self, system: str, examples: list[tuple[str, str]] | tuple[tuple[str, str], ...] = ()) -> str:
        """The text fed before the first turn: the system paragraph, then each example exchange."""
        parts = []
        system = self.fold(system)
        if system:
            label = f"{self.system_label}: " if self.system_label else ""
            parts.append(f"{label}{system}{self.separator}")
        for question, answer in examples:
            parts.append(f"{self.user_label}: {self.fold(question)}{self.separator}")
            parts.append(f"{self.assistant_label}: {self.fold(answer)}{self.separator}")
        return "".join(parts)

    def turn_prompt(self, user_text: str, *, needs_boundary: bool, think: str | None = None) -> str:
        """The text fed for a user turn, ending with the assistant label (the model writes ` answer\\n\\n`).

        `needs_boundary`: the previous reply did not end with the separator (length or
        interrupted), so the prompt starts with one. `think` is for formats that think (G1).
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

    def assistant_text(self, answer: str) -> str:
        """How a finished reply is fed after the assistant label: ` {answer}` + separator."""
        return f" {self.fold(answer)}{self.separator}"


@dataclass(frozen=True)
class G1Format(ChatFormat):
    """RWKV-7 G1: BlinkDL's published templates (docs/g1-templates.md), thinking, token 0 banned."""

    def fold(self, text: str) -> str:
        from weprompt_cli.chat.thinking import g1_clean

        return g1_clean(text)

    def turn_prompt(self, user_text: str, *, needs_boundary: bool, think: str | None = None) -> str:
        """`think` None: a turn of earlier history, written as the templates write history (no think
        block); otherwise the live turn, its assistant label followed by `<think` or `<think></think`."""
        from weprompt_cli.chat.thinking import g1_turn_prompt

        if think is None:
            lead = self.separator if needs_boundary else ""
            return f"{lead}{self.user_label}: {self.fold(user_text)}{self.separator}{self.assistant_label}:"
        return g1_turn_prompt(user_text, think, needs_boundary=needs_boundary)


WORLD = ChatFormat(name="world", user_label="User", assistant_label="Assistant", system_label="System")
G1 = G1Format(name="g1", user_label="User", assistant_label="Assistant", system_label="System", thinking=True, ban=(0,))
RAVEN = ChatFormat(name="raven", user_label="Bob", assistant_label="Alice", system_label=None)
FORMATS = {f.name: f for f in (WORLD, G1, RAVEN)}
_G1_NAME = re.compile(r"(?:^|[^a-z0-9])rwkv7[a-z]?-g[01][a-z]?[-_.]", re.IGNORECASE)  # rwkv7-g1d-0.4b-..., rwkv7a-g1...


def get_format(name: str) -> ChatFormat:
    """The format named `name` ("world", "g1" or "raven"); KeyError otherwise."""
    return FORMATS[name]


def chat_format_for(info: ModelInfo, tokenizer: Tokenizer) -> ChatFormat:
    """The format a model was trained on: Raven for RWKV-4 on the GPT-NeoX 20B vocabulary, G1 for
    RWKV-7 G1 models (named `rwkv7-g1...` as BlinkDL publishes them), else World.

    The weights do not tell a G1 model from another RWKV-7: `--format` overrides.
    """
    from weprompt_cli.engine.tokenizer import NEOX_FILE, JsonTokenizer

    if info.arch == "v4" and isinstance(tokenizer, JsonTokenizer) and tokenizer.path.name == NEOX_FILE:
        return RAVEN
    if info.arch == "v7" and _G1_NAME.search(info.path.name):
        return G1
    return WORLD


def banned_tokens(fmt: ChatFormat, tokenizer: Tokenizer) -> tuple[int, ...]:
    """The ids `fmt` never samples with this tokenizer: G1's token 0 is the World vocabulary's end of
    document; in another vocabulary id 0 is an ordinary token."""
    from weprompt_cli.engine.tokenizer import WorldTokenizer

    return fmt.ban if isinstance(tokenizer, WorldTokenizer) else ()


# ---------------------------------------------------------------------------- whole conversations
# OpenAI messages -> the texts fed to the model, one segment per message. Segment 0 is the
# prefix (a persona's prompt, or the leading system messages, or empty); the last segment is
# the final user turn's prompt, ending with the assistant label. Each segment is tokenized on
# its own, so a conversation that grows by a turn keeps the token ids of every earlier
# segment and the server's prefix cache finds them again. An assistant message is written
# the way the model wrote its reply (` {answer}` and the separator), so the state after a
# live reply and after its re-sent text agree.

USER, ASSISTANT, SYSTEM, PREFIX = "user", "assistant", "system", "prefix"


@dataclass(frozen=True)
class Segment:
    kind: str  # prefix | user | assistant | system
    text: str


def render_messages(
    fmt: ChatFormat, messages: Sequence[tuple[str, str]], prefix: str = "", *, think: str | None = None
) -> list[Segment]:
    """The segments for `messages` (role, text) after an optional `prefix` (a persona's prompt).

    Leading system messages join the prefix; consecutive user (or assistant) messages are
    merged into one turn; a later system message becomes a system paragraph in place. The
    last message must be the user's (the caller checks). `think`: the final turn's thinking mode
    (a thinking format's earlier turns are written as answered, their thought not re-sent).
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
    last_user = max((i for i, (role, _) in enumerate(merged) if role == USER), default=-1)
    for i, (role, text) in enumerate(merged):
        if role == USER:
            prompt = fmt.turn_prompt(text, needs_boundary=False, think=think if i == last_user else None)
            segments.append(Segment(USER, prompt))
        elif role == ASSISTANT:
            # After a user turn the label is already there; a reply without one (a greeting
            # before any question) gets its own label.
            label = "" if previous == USER else f"{fmt.assistant_label}:"
            segments.append(Segment(ASSISTANT, label + fmt.assistant_text(text)))
        else:
            segments.append(Segment(SYSTEM, fmt.persona_prefix(text, [])))
        previous = role
    return segments
