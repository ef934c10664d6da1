"""Slash commands of the REPL: parsing, validation and what each one does.

Each handler gets the `Repl` and the argument text, and returns nothing; a bad value
raises `CommandError`, shown as one red line (never a traceback).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from weprompt_cli.errors import WePromptError
from weprompt_cli.repl import alternatives_commands, db_commands, think_commands
from weprompt_cli.repl.state import CommandError

if TYPE_CHECKING:
    from weprompt_cli.repl.state import Repl

__all__ = ["ALIASES", "COMMANDS", "Command", "CommandError", "QuitRepl", "run_command"]


class QuitRepl(Exception):
    """Raised by /quit."""


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    run: Callable[["Repl", str], None]


SETTABLE = ("temperature", "top_p", "top_k", "max_tokens", "presence_penalty", "frequency_penalty", "penalty_decay",
            "seed")


def _no_args(name: str, arg: str) -> None:
    if arg:
        raise CommandError(f"/{name} takes no argument")


def cmd_help(repl: "Repl", arg: str) -> None:
    _no_args("help", arg)
    lines = [f"  {c.usage:<28} {c.help}" for c in COMMANDS.values()]
    keys = "  Enter sends · Alt-Enter (or Esc Enter) new line · Ctrl-C stops an answer · Ctrl-D quits"
    repl.out.err.print("\n".join(lines + ["", keys]), markup=False, highlight=False)


def cmd_quit(repl: "Repl", arg: str) -> None:
    _no_args("quit", arg)
    raise QuitRepl


def cmd_retry(repl: "Repl", arg: str) -> None:
    _no_args("retry", arg)
    if not repl.session.turns:
        raise CommandError("nothing to retry yet: send a message first")
    repl.stream(lambda cancel, progress: repl.session.retry(cancel=cancel, progress=progress))


def cmd_undo(repl: "Repl", arg: str) -> None:
    _no_args("undo", arg)
    dropped = repl.session.undo()
    if dropped is None:
        raise CommandError("nothing to undo: the session has no turns")
    preview = dropped.user if len(dropped.user) <= 60 else dropped.user[:57] + "..."
    repl.out.info(f"dropped turn {dropped.index} ({preview!r}); {len(repl.session.turns)} turns left")


def cmd_fork(repl: "Repl", arg: str) -> None:
    name = arg.strip() or None
    try:
        new_name = repl.session.fork(name)
    except WePromptError as exc:
        raise CommandError(exc.one_line()) from exc
    repl.out.info(f"forked at turn {len(repl.session.turns)} as {new_name}: weprompt resume {new_name}")


def cmd_reset(repl: "Repl", arg: str) -> None:
    _no_args("reset", arg)
    old = repl.session.name
    if repl.session.persona is None:
        raise CommandError(f"this session's persona {repl.session.opened.meta.persona} no longer exists; use /persona NAME")
    repl.switch_session(repl.session.persona)
    repl.out.info(
        f"new session {repl.session.name} from the persona's initial state; {old} is kept as it was "
        f"(weprompt resume {old})"
    )


def cmd_persona(repl: "Repl", arg: str) -> None:
    from weprompt_cli.personas import find_persona

    name = arg.strip()
    if not name:
        raise CommandError("usage: /persona NAME (weprompt personas lists them)")
    try:
        persona = find_persona(name, home=repl.ctx.home)
    except WePromptError as exc:
        raise CommandError(exc.one_line()) from exc
    old = repl.session.name
    repl.switch_session(persona)
    repl.out.info(f"new session {repl.session.name} with persona {persona.name}; {old} is kept (weprompt resume {old})")


def cmd_set(repl: "Repl", arg: str) -> None:
    from weprompt_cli.params import parse_setting

    parts = arg.split()
    if len(parts) != 2:
        raise CommandError(f"usage: /set {'|'.join(SETTABLE)} VALUE")
    key, raw = parts
    key = key.replace("-", "_")
    if key not in SETTABLE:
        raise CommandError(f"unknown setting {key!r}; one of: {', '.join(SETTABLE)}")
    try:
        value = parse_setting(key, raw)
    except ValueError as exc:
        raise CommandError(f"{key} {exc}") from None
    try:
        repl.session.set_params(repl.session.params.with_overrides(**{key: value}))
    except WePromptError as exc:
        raise CommandError(exc.one_line()) from exc
    repl.out.info(f"{key} = {value} (saved with this session)")


def cmd_info(repl: "Repl", arg: str) -> None:
    _no_args("info", arg)
    info = repl.session.info()
    params = repl.session.params
    lines = [
        f"session   {info['session']} ({info['id']})",
        f"persona   {info['persona']}",
        f"model     {info['model']} ({info['arch']})",
        f"backend   {info['backend']} · {info['format']} format",
        f"strategy  {info['strategy']}",
        f"state     {info['state_bytes'] / 1024:.1f} KiB",
        f"turns     {info['turns']}",
        f"tokens    {info['tokens']}",
        f"sampling  temperature={params.temperature} top_p={params.top_p} top_k={params.top_k} "
        f"max_tokens={params.max_tokens}",
    ]
    repl.out.err.print("\n".join(lines), markup=False, highlight=False)


def cmd_history(repl: "Repl", arg: str) -> None:
    _no_args("history", arg)
    turns = repl.session.turns
    if not turns:
        repl.out.info("no turns yet")
        return
    repl.out.show_recent_turns(turns, count=len(turns))


def cmd_export(repl: "Repl", arg: str) -> None:
    from weprompt_cli.atomic import atomic_write_text
    from weprompt_cli.store.export import export_markdown

    target = arg.strip()
    # --thoughts before or after the file name (which may hold spaces)
    thoughts = target == "--thoughts" or target.startswith("--thoughts ") or target.endswith(" --thoughts")
    if thoughts:
        target = target.removeprefix("--thoughts").removesuffix("--thoughts").strip()
    if not target:
        raise CommandError("usage: /export FILE [--thoughts]")
    path = Path(target).expanduser()
    if path.is_dir():
        raise CommandError(f"{path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise CommandError(f"no folder {path.parent}: create it first, or give another path")
    try:
        atomic_write_text(path, export_markdown(repl.session.opened.meta, repl.session.turns, thoughts=thoughts))
    except WePromptError as exc:
        raise CommandError(exc.one_line()) from exc
    repl.out.info(f"wrote {len(repl.session.turns)} turns to {path}")


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in [
        Command("help", "/help", "this list", cmd_help),
        Command("quit", "/quit", "leave (everything is already saved)", cmd_quit),
        Command("retry", "/retry", "answer the last message again", cmd_retry),
        Command("undo", "/undo", "drop the last turn", cmd_undo),
        Command("fork", "/fork [NAME]", "copy this session as it is now into a new one", cmd_fork),
        Command("reset", "/reset", "start over in a new session (this one is kept)", cmd_reset),
        Command("persona", "/persona NAME", "new session with another persona", cmd_persona),
        Command("set", "/set KEY VALUE", "temperature, top_p, top_k, max_tokens, ... (saved with the session)", cmd_set),
        Command("info", "/info", "model, strategy, state size, turns, tokens", cmd_info),
        Command("history", "/history", "show every turn of this session", cmd_history),
        Command("export", "/export FILE [--thoughts]", "write the transcript as Markdown (--thoughts: with the reasoning)", cmd_export),
        Command("db", "/db [PATH|URL|demo|off]", "show, connect or drop the database the SQL is checked on",
                db_commands.cmd_db),
        Command("schema", "/schema", "the database schema the model sees", db_commands.cmd_schema),
        Command("run", "/run [K] [--write]", "run SQL block K of the last answer (read-only unless --write)",
                db_commands.cmd_run),
        Command("think", "/think [off|on|bit|lot]", "G1 models: think before answering (saved with the session)",
                think_commands.cmd_think),
        Command("show-thoughts", "/show-thoughts", "the thought behind the last answer", think_commands.cmd_show_thoughts),
        *(Command(name, usage, help_text, run) for name, usage, help_text, run in alternatives_commands.ENTRIES),
    ]
}
ALIASES = {"exit": "quit", "q": "quit", "?": "help"}


def run_command(repl: "Repl", line: str) -> None:
    """Run one `/command args` line."""
    name, _, arg = line[1:].partition(" ")
    name = ALIASES.get(name, name)
    command = COMMANDS.get(name)
    if command is None:
        raise CommandError(f"unknown command /{name}; /help lists them")
    command.run(repl, arg.strip())
