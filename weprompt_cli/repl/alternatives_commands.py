"""The REPL's `/alternatives N` (N answers to the last message, sampled at once) and `/pick K` (keep one).

`commands.py` registers them from `ENTRIES` (name, usage, help, handler), as it does the
database commands:

    COMMANDS.update({name: Command(name, usage, help, run) for name, usage, help, run in alternatives_commands.ENTRIES})

The answers wait here, per REPL, until `/pick`; any other turn (a new message, /retry,
/undo) makes them stale, and `/pick` then says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from weprompt_cli.errors import WePromptError
from weprompt_cli.repl.state import CommandError, show_checks

if TYPE_CHECKING:
    from weprompt_cli.chat.alternatives import Alternatives
    from weprompt_cli.repl.state import Repl

_PENDING: WeakKeyDictionary[Repl, Alternatives] = WeakKeyDictionary()


def _number(arg: str, usage: str, low: int, high: int) -> int:
    text = arg.strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise CommandError(f"usage: {usage} ({low} to {high})")
    return int(text)


def cmd_alternatives(repl: Repl, arg: str) -> None:
    """`/alternatives N`: N answers to the last message, shown numbered; the session is unchanged."""
    from weprompt_cli.chat.alternatives import MAX_ALTERNATIVES, sample_alternatives
    from weprompt_cli.interrupt import sigint_cancels

    n = _number(arg, "/alternatives N", 1, MAX_ALTERNATIVES)
    if not repl.session.turns:
        raise CommandError("nothing to answer again yet: send a message first")
    _PENDING.pop(repl, None)
    try:
        with sigint_cancels() as cancel, repl.out.status(f"sampling {n} answers"):
            alternatives = sample_alternatives(repl.session, n, cancel=cancel)
    except WePromptError as exc:
        raise CommandError(exc.one_line()) from exc
    for item in alternatives.items:
        turn = item.turn
        repl.out.err.print(f"── answer {item.number} ──", style="bold cyan", markup=False, highlight=False)
        repl.out.out.print(turn.assistant, markup=False, highlight=False)
        stopped = {"stop": "", "length": " · cut at the token limit", "interrupted": " · stopped"}[turn.stop_reason]
        repl.out.dim(f"{len(turn.reply_tokens)} tokens{stopped}")
    _PENDING[repl] = alternatives
    how = "sampled together" if alternatives.batched else "one after another"
    repl.out.info(f"{n} answers to turn {alternatives.replaces.index} ({how}); /pick K keeps one, the others are discarded")


def cmd_pick(repl: Repl, arg: str) -> None:
    """`/pick K`: answer K of the last `/alternatives` becomes the last turn (its state is kept: no recompute)."""
    alternatives = _PENDING.get(repl)
    if alternatives is None or alternatives.session is not repl.session:
        raise CommandError("nothing to pick: /alternatives N first")
    k = _number(arg, "/pick K", 1, len(alternatives.items))
    try:
        turn = alternatives.pick(k)
    except WePromptError as exc:
        raise CommandError(exc.one_line()) from exc
    del _PENDING[repl]
    others = len(alternatives.items) - 1
    repl.out.info(f"kept answer {k} as turn {turn.index}; {others} other{'s' if others != 1 else ''} discarded")
    show_checks(repl.out, turn)


ENTRIES: tuple[tuple[str, str, str, Callable[[Repl, str], None]], ...] = (
    ("alternatives", "/alternatives N", "N answers (1-8) to the last message, sampled at once", cmd_alternatives),
    ("pick", "/pick K", "keep answer K of /alternatives as the last turn", cmd_pick),
)
