"""The REPL loop: read a line (prompt_toolkit), run a slash command or send a message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from weprompt_cli.repl.commands import COMMANDS, CommandError, QuitRepl, run_command

if TYPE_CHECKING:
    from weprompt_cli.chat.session import ChatSession, Reply
    from weprompt_cli.cli.output import Output

EXIT_HINT = "(Ctrl-C again or Ctrl-D to quit)"


class Repl:
    """State of one interactive run: the current session and the terminal."""

    def __init__(self, session: "ChatSession", out: "Output") -> None:
        self.session = session
        self.out = out
        self._prompt = _make_prompt_session(self)

    # ---------------------------------------------------------------- actions
    def stream(self, start: Callable[[Any, Any], "Reply"]) -> None:
        """Run one answer with Ctrl-C as 'stop', print it and its status line."""
        from weprompt_cli.interrupt import sigint_cancels

        with sigint_cancels() as cancel:
            reply = start(cancel, self.out.prefill_progress())
            self.out.stream_reply(reply)

    def send(self, text: str) -> None:
        self.stream(lambda cancel, progress: self.session.send(text, cancel=cancel, progress=progress))

    def switch_session(self, persona: Any) -> None:
        """Close the current session and start a new one (same model) with `persona`."""
        from weprompt_cli.chat.session import ChatSession

        old = self.session
        new = ChatSession.start(old.engine, old.store, persona, old.params, notify=self.out.warn)
        old.close()
        self.session = new

    def prompt_text(self) -> str:
        persona = self.session.persona.name if self.session.persona else self.session.opened.meta.persona
        return f"{persona} · {self.session.name} › "

    # ------------------------------------------------------------------- loop
    def run(self) -> None:
        self.out.dim("Type a message, /help for commands, Ctrl-D to quit.")
        while True:
            try:
                line = self._prompt.prompt(self.prompt_text())
            except EOFError:
                break
            except KeyboardInterrupt:  # second Ctrl-C on an empty line (see the key binding)
                break
            if not line.strip():
                continue
            if line.startswith("/"):
                try:
                    run_command(self, line.strip())
                except QuitRepl:
                    break
                except CommandError as exc:
                    self.out.error(str(exc))
                continue
            self.send(line)
        self.out.info(f"saved: weprompt resume {self.session.name}")


def _make_prompt_session(repl: Repl) -> Any:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.completion import Completer, Completion
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    from weprompt_cli.paths import resolve_home

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

    home = resolve_home()
    history_file = home.history_file
    history_file.parent.mkdir(parents=True, exist_ok=True)
    prompt_session: Any = PromptSession(
        history=FileHistory(str(history_file)),
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


def run_repl(session: "ChatSession", out: "Output") -> None:
    """Run the interactive chat on `session` until /quit, Ctrl-D or a double Ctrl-C."""
    repl = Repl(session, out)
    try:
        repl.run()
    finally:
        if repl.session is not session:
            repl.session.close()
