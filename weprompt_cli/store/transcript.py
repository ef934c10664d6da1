"""Reading and writing `transcript.jsonl`: one JSON line per finished turn.

The transcript is the truth of a session. Lines are only ever appended (one fsync'd
write each) or the whole file is replaced atomically (undo, retry, migrations). A
final line without its newline is what a crash mid-append leaves: readers ignore it
and an owner of the session cuts it off. Lines are split on `\n` only (never on the
other characters `str.splitlines` treats as line breaks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from weprompt_cli.store.migrations import upgrade_turn
from weprompt_cli.store.model import Turn

TRANSCRIPT = "transcript.jsonl"


@dataclass(frozen=True)
class Problem:
    """Damage found while reading a session: which file, which line, what is wrong."""

    path: Path
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.message}"


@dataclass
class TranscriptRead:
    """What reading a transcript found: the good turns, in order, and any damage."""

    turns: list[Turn] = field(default_factory=list)
    good_bytes: int = 0  # length of the prefix of complete, valid lines
    torn: bool = False  # a final line without its newline (a crash mid-append)
    problem: Problem | None = None  # the first damaged line; nothing after it is used
    upgraded: bool = False  # some lines were in an older schema


def turn_line(turn: Turn) -> str:
    """The transcript line of `turn` (ASCII JSON: no raw line separators inside)."""
    return json.dumps(turn.to_dict(), ensure_ascii=True, separators=(",", ":"))


def transcript_text(turns: list[Turn]) -> str:
    return "".join(turn_line(t) + "\n" for t in turns)


def read_transcript(path: Path) -> TranscriptRead:
    """Parse `path` (absent = no turns), stopping at the first damaged line."""
    result = TranscriptRead()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return result
    except OSError as exc:
        result.problem = Problem(path, f"cannot read: {exc.strerror or exc}")
        return result
    *lines, tail = data.split(b"\n")
    result.torn = tail != b""
    offset = 0
    for number, raw in enumerate(lines, start=1):
        try:
            obj = json.loads(raw)
            obj, upgraded = upgrade_turn(obj)
            turn = Turn.from_dict(obj)
        except (ValueError, UnicodeDecodeError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if raw.strip() == b"":
                msg = "empty line"
            result.problem = Problem(path, f"damaged transcript line: {msg}", number)
            return result
        expected = len(result.turns) + 1
        if turn.index != expected:
            result.problem = Problem(path, f"turn {turn.index} where turn {expected} was expected", number)
            return result
        result.turns.append(turn)
        result.upgraded |= upgraded
        offset += len(raw) + 1
        result.good_bytes = offset
    return result
