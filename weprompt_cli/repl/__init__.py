"""The interactive chat: prompt_toolkit input, slash commands, streamed answers."""

from weprompt_cli.repl.loop import run_repl

__all__ = ["run_repl"]
