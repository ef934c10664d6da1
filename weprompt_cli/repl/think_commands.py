"""`/think` and `/show-thoughts`: a G1 model's thinking mode, and the thought of the last answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from weprompt_cli.errors import WePromptError
from weprompt_cli.repl.state import CommandError

if TYPE_CHECKING:
    from weprompt_cli.repl.state import Repl

MODES = ("off", "on", "bit", "lot")


def cmd_think(repl: Repl, arg: str) -> None:
    """`/think` shows the mode; `/think off|on|bit|lot` sets it for the next turns (saved with the session)."""
    session = repl.session
    if not session.fmt.thinking:
        raise CommandError(f"this model chats in the {session.fmt.name} format, which has no thinking "
                           "(G1 models think; weprompt chat --format g1 if this is one)")
    mode = arg.strip().lower()
    if not mode:
        repl.out.info(f"think {session.think} (/think off|on|bit|lot; or type (think a bit) after a message)")
        return
    if mode not in MODES:
        raise CommandError(f"usage: /think {'|'.join(MODES)}")
    try:
        session.set_think(mode)
    except WePromptError as exc:
        raise CommandError(exc.one_line()) from exc
    cost = "" if mode == "off" else " (thinking takes longer: every thought token is generated, and stays in the state)"
    repl.out.info(f"think {mode} (saved with this session){cost}")


def cmd_show_thoughts(repl: Repl, arg: str) -> None:
    """`/show-thoughts`: the thought behind the last answer, in full."""
    if arg.strip():
        raise CommandError("/show-thoughts takes no argument")
    thought = next((t for t in reversed(repl.session.turns) if t.reasoning), None)
    if thought is None:
        raise CommandError("no thought to show: the model has not thought in this session (/think on)")
    repl.out.dim(f"thought of turn {thought.index} ({thought.thought_tokens} tokens):")
    repl.out.err.print(thought.reasoning, style="dim italic", markup=False, highlight=False)
