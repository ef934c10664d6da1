"""The REPL loop: read a line (prompt_toolkit), run a slash command or send a message."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from weprompt_cli.errors import DiskError
from weprompt_cli.repl.commands import COMMANDS, CommandError, QuitRepl, run_command
from weprompt_cli.repl.state import Repl

if TYPE_CHECKING:
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.chat.sql_advisor import SqlAdvisor
    from weprompt_cli.context import Context
    from weprompt_cli.render.output import Output

EXIT_HINT = "(Ctrl-C again or Ctrl-D to quit)"
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/@?#\s:]*):[^/@?#\s]*@")
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|sslpassword))=[^&\s]*", re.IGNORECASE)


def run_loop(repl: Repl) -> None:
    """Read lines until /quit, Ctrl-D or a double Ctrl-C; a command's error is one red line."""
    prompt = _make_prompt_session(repl)
    repl.out.dim("Type a message, /help for commands, Ctrl-D to quit.")
    while True:
        try:
            line = prompt.prompt(repl.prompt_text())
        except EOFError:
            break
        except KeyboardInterrupt:  # second Ctrl-C on an empty line (see the key binding)
            break
        if not line.strip():
            continue
        if line.startswith("/"):
            try:
                run_command(repl, line.strip())
            except QuitRepl:
                break
            except CommandError as exc:
                repl.out.error(str(exc))
            continue
        try:
            repl.send(line)
        except DiskError as exc:
            # The turn was not saved (the session is as it was before it): say so and stay.
            repl.out.error(f"error: {exc.one_line()}" + (f" ({exc.hint})" if exc.hint else ""))
    if repl.session.discarded_on_close:
        repl.out.info("nothing was saved: the first answer could not be written, so this session is removed")
    else:
        repl.out.info(f"saved: weprompt resume {repl.session.name}")


def _make_prompt_session(repl: Repl) -> Any:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.completion import Completer, Completion
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    class SlashCompleter(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Any:
            text = document.text_before_cursor
            if not text.startswith("/") or " " in text:
                return
            for name, command in COMMANDS.items():
                if ("/" + name).startswith(text):
                    yield Completion("/" + name, start_position=-len(text), display_meta=command.help)

    bindings = KeyBindings()
    pressed = {"ctrl_c": False}

    @bindings.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    @bindings.add("c-c")
    def _ctrl_c(event: Any) -> None:
        buffer = event.current_buffer
        if buffer.text:
            buffer.reset()
            pressed["ctrl_c"] = False
        elif pressed["ctrl_c"]:
            event.app.exit(exception=KeyboardInterrupt())
        else:
            pressed["ctrl_c"] = True
            from prompt_toolkit.application import run_in_terminal

            run_in_terminal(lambda: print(EXIT_HINT))

    class BestEffortHistory(FileHistory):  # type: ignore[misc]
        """The input history file: a failed write (a full disk) warns once; the REPL goes on."""

        warned = False

        def store_string(self, string: str) -> None:
            try:
                super().store_string(without_password(string))
            except OSError as exc:
                if not self.warned:
                    self.warned = True
                    repl.out.warn(f"warning: input history not saved ({exc.strerror or exc}); the chat itself is")

    history_file = repl.ctx.home.history_file
    try:
        history_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # the history is best-effort
    prompt_session: Any = PromptSession(
        history=BestEffortHistory(str(history_file)),
        auto_suggest=AutoSuggestFromHistory(),
        completer=SlashCompleter(),
        complete_while_typing=True,
        key_bindings=bindings,
        multiline=False,
        enable_history_search=False,
    )

    def _typed(_: Any) -> None:  # typing anything re-arms the double Ctrl-C
        pressed["ctrl_c"] = False

    prompt_session.default_buffer.on_text_changed += _typed
    return prompt_session


def without_password(line: str) -> str:
    """`line` with any `scheme://user:PASSWORD@` (a `/db URL` typed in) cut to `scheme://user@`, for the history file."""
    line = _URL_PASSWORD.sub(r"\1@", line)
    return _QUERY_PASSWORD.sub(r"\1=***", line)


def run_repl(
    session: ChatSession,
    out: Output,
    ctx: Context,
    overrides: dict[str, Any] | None = None,
    advisor: SqlAdvisor | None = None,
) -> None:
    """Run the interactive chat on `session` (with `advisor`'s database, if any) until /quit, Ctrl-D or a double Ctrl-C."""
    repl = Repl(session, out, ctx, overrides, advisor)
    try:
        run_loop(repl)
    finally:
        if repl.session is not session:
            repl.session.close()
        if repl.advisor is not None and repl.advisor is not advisor:
            repl.advisor.close()  # connected with /db here; the caller closes its own
