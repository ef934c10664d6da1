"""RWKV-7 G1 prompts with reasoning, and splitting a streamed reply into thought and answer.

Everything here follows what BlinkDL publishes for the G1 models (see docs/g1-templates.md,
which names each source): `System: ...\\n\\n`, `User: ...\\n\\nAssistant:`, an opened
`<think` after the assistant label to let the model think, `<think></think` to answer at
once, and ` (think a bit)` / ` (think a lot)` after the user text to set the thought's length.
Pure Python: no torch, nothing that prints.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import NamedTuple

SEPARATOR = "\n\n"  # ends a turn; the model never writes it inside a turn
END_OF_DOC = 0  # token id 0 ends a document: never sampled in chat

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

# The decoding BlinkDL's chat demo uses for G1 models, in SamplingParams' names; a loaded
# state file (a state-tuned persona) lowers top_p and the penalties.
G1_DECODING: dict[str, float] = {
    "temperature": 1.0,
    "top_p": 0.3,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "penalty_decay": 0.996,
}
G1_DECODING_WITH_STATE: dict[str, float] = {**G1_DECODING, "top_p": 0.2, "presence_penalty": 0.3, "frequency_penalty": 0.3}


class ThinkMode(str, Enum):
    """How long a G1 model may think before it answers."""

    OFF = "off"  # an empty thought is fed: the model answers at once
    ON = "on"  # the model thinks as long as it likes
    BIT = "bit"  # a short thought: ` (think a bit)` after the user text
    LOT = "lot"  # a long thought: ` (think a lot)` after the user text

    @classmethod
    def parse(cls, value: str | ThinkMode) -> ThinkMode:
        """The mode named `value`; ValueError listing the names otherwise."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown think mode {value!r} (one of: {names})") from None


# What follows the user text (before the separator), and what follows the assistant label.
_USER_SUFFIX = {ThinkMode.OFF: "", ThinkMode.ON: "", ThinkMode.BIT: "(think a bit)", ThinkMode.LOT: "(think a lot)"}
_ASSISTANT_TAIL = {
    ThinkMode.OFF: " <think></think",  # the model writes `>` and then its answer
    ThinkMode.ON: " <think",  # the model writes `>`, its thought, `</think>`, its answer
    ThinkMode.BIT: " <think",
    ThinkMode.LOT: " <think",
}
_TYPED_SUFFIX = re.compile(r"\s*\(think( a bit| a lot)?\)\s*$")

_NEWLINE_RUN = re.compile(r"\n{2,}")


def g1_clean(text: str) -> str:
    """The published input cleaning: `\\r\\n` -> `\\n`, every run of 2+ newlines -> one, stripped."""
    return _NEWLINE_RUN.sub("\n", text.replace("\r\n", "\n")).strip()


def g1_system(text: str) -> str:
    """`System: {cleaned text}\\n\\n`, or "" when there is no system text."""
    text = g1_clean(text)
    return f"System: {text}{SEPARATOR}" if text else ""


def g1_turn_prompt(user_text: str, mode: ThinkMode | str, *, needs_boundary: bool) -> str:
    """The text fed for one user turn, ending where the model takes over.

    `needs_boundary`: the previous reply did not end with the separator (length or
    interrupted), so the prompt starts with one.
    """
    mode = ThinkMode.parse(mode)
    lead = SEPARATOR if needs_boundary else ""
    user = " ".join(part for part in (g1_clean(user_text), _USER_SUFFIX[mode]) if part)
    return f"{lead}User: {user}{SEPARATOR}Assistant:{_ASSISTANT_TAIL[mode]}"


def g1_assistant_text(answer: str) -> str:
    """An earlier answer written back into a prompt (history, examples): ` {cleaned answer}\\n\\n`."""
    return f" {g1_clean(answer)}{SEPARATOR}"


def split_think_suffix(user_text: str) -> tuple[str, ThinkMode | None]:
    """(the text without a typed ` (think)` / ` (think a bit)` / ` (think a lot)` at its end, the mode it asks for).

    `(think)` asks for ON. None when the text carries no such suffix.
    """
    match = _TYPED_SUFFIX.search(user_text)
    if match is None:
        return user_text, None
    mode = {None: ThinkMode.ON, " a bit": ThinkMode.BIT, " a lot": ThinkMode.LOT}[match.group(1)]
    return user_text[: match.start()], mode


def fold_status(thought_tokens: int) -> str:
    """The one line a finished thought folds into: "thought for 312 tokens · /show-thoughts"."""
    unit = "token" if thought_tokens == 1 else "tokens"
    return f"thought for {thought_tokens} {unit} · /show-thoughts"


# ---------------------------------------------------------------------------- splitting a reply

REASONING, ANSWER = "reasoning", "answer"


class Piece(NamedTuple):
    kind: str  # REASONING or ANSWER
    text: str


# Where the splitter is. The reply is read as: [`>` that completes a tag the prompt opened],
# [thought], [`</think>`], answer, [separator and whatever follows, ignored].
_DETECT = "detect"  # plain prompt: the reply may open its own <think>
_OPENING = "opening"  # the prompt ended with `<think`: a `>` completes the tag
_THOUGHT_START = "thought-start"  # leading whitespace of the thought is dropped
_THOUGHT = "thought"
_CLOSING = "closing"  # the prompt ended with `</think`: a `>` completes the tag
_ANSWER_START = "answer-start"  # whitespace between `</think>` and the answer is dropped
_ANSWER = "answer"
_DONE = "done"  # the separator was read: the turn is over
_THINKING = (_OPENING, _THOUGHT_START, _THOUGHT)


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that is a proper start of `tag` (0 if none)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThoughtSplitter:
    """Splits a G1 reply, fed in pieces as they stream, into reasoning and answer.

    `feed(piece)` returns the `Piece`s that became certain; `finish()` returns the rest.
    Tags may arrive split across pieces (`</thi` + `nk>`): text that could still be the
    start of a tag, and trailing whitespace, are held back until the next piece decides.
    The thought loses the whitespace just inside its tags, the answer its leading and
    trailing whitespace; reading stops at the separator. A thought that never closes
    (length or interrupt) is all reasoning, with an empty answer.
    """

    def __init__(self, *, prompt: str = "") -> None:
        """`prompt`: the text fed before the reply (only its end matters: `<think`, `</think` or neither)."""
        if prompt.endswith(OPEN_TAG[:-1]):
            self._phase = _OPENING
            self.opened = True
        elif prompt.endswith(CLOSE_TAG[:-1]):
            self._phase = _CLOSING
            self.opened = True
        else:
            self._phase = _DETECT
            self.opened = False  # becomes True if the reply opens a thought itself
        self.closed = False  # a complete </think> was read
        self.stopped = False  # the separator was read
        self.thought_tokens = 0
        self._buf = ""
        self._pending_tokens = 0  # tokens read while it was not yet known whether they are thought
        self._reasoning: list[str] = []
        self._answer: list[str] = []

    # -- results

    @property
    def reasoning(self) -> str:
        """The thought so far, without its tags."""
        return "".join(self._reasoning)

    @property
    def answer(self) -> str:
        """The answer so far."""
        return "".join(self._answer)

    @property
    def thinking(self) -> bool:
        """Whether the reply is inside a thought now."""
        return self._phase in _THINKING

    # -- feeding

    def feed(self, text: str, tokens: int = 0) -> list[Piece]:
        """Read the next piece of the reply (`tokens`: how many tokens it took, for `thought_tokens`)."""
        was_thinking = self.thinking
        was_detecting = self._phase == _DETECT
        out: list[Piece] = []
        if self._phase != _DONE:
            self._buf += text
            self._run(out)
        if was_detecting:
            self._pending_tokens += tokens
            if self._phase != _DETECT:  # decided in this piece
                if self.opened:
                    self.thought_tokens += self._pending_tokens
                self._pending_tokens = 0
        elif was_thinking or self.thinking:
            self.thought_tokens += tokens  # includes the piece that completes </think>
        return out

    def finish(self) -> list[Piece]:
        """The end of the reply: everything still held back, as it stands."""
        out: list[Piece] = []
        buf, self._buf = self._buf, ""
        # What is held is leading whitespace (a *_START phase), a tag that never completed, or
        # the end of the text (its leading whitespace is then inside the text, and kept).
        if self._phase in (_DETECT, _ANSWER_START):
            self._emit(out, ANSWER, buf.strip())
        elif self._phase == _THOUGHT_START:
            self._emit(out, REASONING, buf.strip())
        elif self._phase == _THOUGHT:
            self._emit(out, REASONING, buf.rstrip())
        elif self._phase == _ANSWER:
            self._emit(out, ANSWER, buf.rstrip())
        self._pending_tokens = 0
        self._phase = _DONE
        return out

    # -- the state machine

    def _emit(self, out: list[Piece], kind: str, text: str) -> None:
        if not text:
            return
        (self._reasoning if kind == REASONING else self._answer).append(text)
        if out and out[-1].kind == kind:
            out[-1] = Piece(kind, out[-1].text + text)
        else:
            out.append(Piece(kind, text))

    def _run(self, out: list[Piece]) -> None:
        while True:
            phase, buf = self._phase, self._buf
            if phase == _DETECT:
                head = buf.lstrip()
                if not head or (len(head) < len(OPEN_TAG) and OPEN_TAG.startswith(head)):
                    return  # nothing yet, or maybe the start of <think>
                if head.startswith(OPEN_TAG):
                    self._buf = head[len(OPEN_TAG) :]
                    self._phase, self.opened = _THOUGHT_START, True
                else:
                    self._phase = _ANSWER_START
            elif phase in (_OPENING, _CLOSING):
                if not buf:
                    return
                if buf.startswith(">"):
                    self._buf = buf[1:]
                # Anything else: the tag counts as complete and the text as what follows it.
                self._phase = _THOUGHT_START if phase == _OPENING else _ANSWER_START
                if phase == _CLOSING:
                    self.closed = True
            elif phase in (_THOUGHT_START, _ANSWER_START):
                head = buf.lstrip()
                if SEPARATOR in buf[: len(buf) - len(head)]:
                    self._stop()
                    return
                if not head:
                    return  # hold the whitespace: the separator may be forming
                self._buf = head
                self._phase = _THOUGHT if phase == _THOUGHT_START else _ANSWER
            elif phase == _THOUGHT:
                self._read(out, REASONING, CLOSE_TAG)
                if self._phase == _THOUGHT:
                    return
            elif phase == _ANSWER:
                self._read(out, ANSWER, None)
                return
            else:  # _DONE
                return

    def _read(self, out: list[Piece], kind: str, tag: str | None) -> None:
        """Emit what is certain of `kind`; move on at `tag` or stop at the separator."""
        buf = self._buf
        at_tag = buf.find(tag) if tag else -1
        at_sep = buf.find(SEPARATOR)
        if at_sep != -1 and (at_tag == -1 or at_sep < at_tag):
            self._emit(out, kind, buf[:at_sep].rstrip())
            self._stop()
            return
        if at_tag != -1 and tag is not None:
            self._emit(out, kind, buf[:at_tag].rstrip())
            self._buf = buf[at_tag + len(tag) :]
            self.closed = True
            self._phase = _ANSWER_START
            return
        keep = _partial_suffix(buf, tag) if tag else 0
        body = buf[: len(buf) - keep]
        cut = len(body.rstrip())  # trailing whitespace waits: it may end the thought or the turn
        self._emit(out, kind, buf[:cut])
        self._buf = buf[cut:]

    def _stop(self) -> None:
        self._buf = ""
        self._phase = _DONE
        self.stopped = True
