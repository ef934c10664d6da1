"""What one interactive run holds: the current session, the terminal output, the context.

Slash commands (commands.py) act on a `Repl`; the loop (loop.py) reads lines and hands
them to a command or to `send`. Neither imports the other's module for its own work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.chat.turn import TurnStream
    from weprompt_cli.context import Context
    from weprompt_cli.personas import Persona
    from weprompt_cli.render.output import Output


class Repl:
    """State of one interactive run: the session, where output goes, and this run's flags."""

    def __init__(
        self, session: ChatSession, out: Output, ctx: Context, overrides: dict[str, Any] | None = None
    ) -> None:
        self.session = session
        self.out = out
        self.ctx = ctx
        self.overrides = dict(overrides or {})  # the command line's sampling flags: they apply to new sessions too

    def stream(self, start: Callable[[Any, Any], TurnStream]) -> None:
        """Run one answer with Ctrl-C as 'stop', print it and its status line."""
        from weprompt_cli.interrupt import sigint_cancels

        with sigint_cancels() as cancel:
            reply = start(cancel, self.out.prefill_progress())
            self.out.stream_reply(reply)

    def send(self, text: str) -> None:
        self.stream(lambda cancel, progress: self.session.send(text, cancel=cancel, progress=progress))

    def switch_session(self, persona: Persona) -> None:
        """Close the current session and start a new one (same model and format) with `persona`.

        Its settings are the new persona's over the config, with this run's flags on top:
        nothing of the old persona's carries over.
        """
        from weprompt_cli.chat.params import effective_params
        from weprompt_cli.chat.session import ChatSession

        old = self.session
        params = effective_params(self.ctx.config, persona, None, self.overrides)
        new = ChatSession.start(old.engine, old.store, persona, params, fmt=old.fmt, notify=self.out.warn)
        old.close()
        self.session = new

    def prompt_text(self) -> str:
        persona = self.session.persona.name if self.session.persona else self.session.opened.meta.persona
        return f"{persona} · {self.session.name} › "
