"""What one interactive run holds: the current session, the terminal output, the context.

Slash commands (commands.py, db_commands.py) act on a `Repl`; the loop (loop.py) reads lines
and hands them to a command or to `send`. Neither imports the other's module for its own work.
`show_checks` and `show_fix` are shared with `weprompt chat -m`, so a turn looks the same in
the REPL and in a one-shot run: the answer, its status line, then its SQL mark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.chat.sql_advisor import SqlAdvisor
    from weprompt_cli.chat.turn import TurnStream
    from weprompt_cli.context import Context
    from weprompt_cli.personas import Persona
    from weprompt_cli.render.output import Output
    from weprompt_cli.store import Turn


def show_checks(out: Output, turn: Turn | None) -> None:
    """The one-line SQL mark of each check recorded with `turn` (nothing when it has none)."""
    from weprompt_cli.render.transcript import mark_text

    if turn is None:
        return
    for mark in turn.marks:
        out.err.print(mark_text(mark), highlight=False)


def show_fix(out: Output, request: str, attempt: int) -> None:
    """The fix request sent as the next user turn, shown as if typed."""
    out.err.print(f"› {request}", style="yellow", markup=False, highlight=False)


class CommandError(Exception):
    """A slash command that cannot run as typed: the message says why."""


class Repl:
    """State of one interactive run: the session, where output goes, this run's flags and its database."""

    def __init__(
        self,
        session: ChatSession,
        out: Output,
        ctx: Context,
        overrides: dict[str, Any] | None = None,
        advisor: SqlAdvisor | None = None,
    ) -> None:
        self.session = session
        self.out = out
        self.ctx = ctx
        self.overrides = dict(overrides or {})  # the command line's sampling flags: they apply to new sessions too
        self.advisor = advisor  # the connected database (SQL checks, /run, /schema); None: none
        # Asked before `/run --write` changes anything; tests replace it.
        self.confirm: Callable[[str], bool] = self.ask_yes_no
        if advisor is not None:
            advisor.attach(session)

    def stream(self, start: Callable[[Any, Any], TurnStream]) -> TurnStream:
        """Run one answer with Ctrl-C as 'stop', print it, its status line and its SQL check."""
        from weprompt_cli.interrupt import sigint_cancels

        with sigint_cancels() as cancel:
            reply = start(cancel, self.out.prefill_progress())
            self.out.stream_reply(reply)
        show_checks(self.out, reply.turn)
        return reply

    def send(self, text: str) -> None:
        """Answer `text`; with a database, a failed SQL check is followed by up to `--fix` fix turns."""
        from weprompt_cli.chat.sql_advisor import send_checked

        send_checked(self.advisor, text, self._send_one, on_fix=lambda request, n: show_fix(self.out, request, n))

    def _send_one(self, text: str) -> Turn | None:
        return self.stream(lambda cancel, progress: self.session.send(text, cancel=cancel, progress=progress)).turn

    def switch_session(self, persona: Persona) -> None:
        """Close the current session and start a new one (same model and format) with `persona`.

        Its settings are the new persona's over the config, with this run's flags on top:
        nothing of the old persona's carries over. With a database connected, the persona's
        `{schema}` is the database's.
        """
        from weprompt_cli.chat.params import effective_params
        from weprompt_cli.chat.session import ChatSession

        old = self.session
        persona = self.advisor.persona(persona) if self.advisor is not None else persona.with_schema(None)
        params = effective_params(self.ctx.config, persona, None, self.overrides)
        extra = self.advisor.session_extra(persona) if self.advisor is not None else None
        new = ChatSession.start(old.engine, old.store, persona, params, fmt=old.fmt, extra=extra,
                                notify=self.out.warn)
        if self.advisor is not None:
            self.advisor.attach(new)
        old.close()
        self.session = new

    def set_advisor(self, advisor: SqlAdvisor | None) -> None:
        """Use `advisor`'s database from now on (None: none); the one it replaces is closed."""
        old = self.advisor
        self.advisor = advisor
        if advisor is not None:
            advisor.attach(self.session)
        else:
            self.session.annotate = None
        if old is not None and old is not advisor:
            old.close()

    def ask_yes_no(self, question: str) -> bool:
        """`question [y/N]` on the terminal; only y or yes is a yes (Ctrl-C and Ctrl-D are a no)."""
        try:
            answer = self.out.err.input(f"{question} [y/N] ", markup=False)
        except (EOFError, KeyboardInterrupt):
            self.out.err.print()
            return False
        return answer.strip().lower() in ("y", "yes")

    def prompt_text(self) -> str:
        persona = self.session.persona.name if self.session.persona else self.session.opened.meta.persona
        return f"{persona} · {self.session.name} › "
