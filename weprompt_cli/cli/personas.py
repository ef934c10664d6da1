"""`weprompt personas [list|show|new]`: list, inspect and create persona files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from weprompt_cli.cli.app import personas_app
from weprompt_cli.context import Context
from weprompt_cli.paths import Home
from weprompt_cli.personas import (
    Persona,
    find_persona,
    list_personas,
    load_persona_file,
    persona_dirs,
    write_persona_template,
)

_JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _persona_dict(persona: Persona) -> dict[str, Any]:
    return {
        "name": persona.name,
        "title": persona.title,
        "description": persona.description,
        "source": persona.source,
        "path": str(persona.path),
        "system": persona.system,
        "examples": [{"user": u, "assistant": a} for u, a in persona.examples],
        "sampling": dict(persona.sampling),
        "stop": list(persona.stop),
        "content_hash": persona.content_hash(),
    }


def _indented(console: Console, body: Text, indent: int = 2) -> Text:
    """`body` wrapped to the terminal and indented, without trailing padding."""
    out = Text()
    for i, line in enumerate(body.wrap(console, max(20, console.width - indent))):
        if i:
            out.append("\n")
        line.rstrip()
        if line.plain:
            out.append(" " * indent)
        out.append_text(line)
    return out


def _warn(line: str) -> None:
    sys.stderr.write(f"weprompt: warning: {line}\n")


def _builtin_names(home: Home) -> set[str]:
    """Names of the built-in persona files (to mark user files that replace one)."""
    names: set[str] = set()
    for folder, source in persona_dirs(home):
        if source == "built-in" and folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml"))
    return names


def _install_state(home: Home, source: Path) -> str:
    """Check a state file (read safely: no pickle code runs) and copy it to <home>/states/; its name there."""
    import re
    import shutil

    from weprompt_cli.engine.state_file import read_state_file_shape
    from weprompt_cli.errors import DiskError

    source = source.expanduser()
    read_state_file_shape(source)  # NotFoundError, UnsafeError, InvalidFileError: one line each
    name = re.sub(r"[^A-Za-z0-9._-]", "_", source.name).lstrip(".") or "state.pth"
    target = home.root / "states" / name
    if target.resolve() != source.resolve():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".tmp-{name}")
            shutil.copyfile(source, tmp)
            tmp.replace(target)
        except OSError as exc:
            raise DiskError(f"cannot copy the state file: {exc.strerror or exc}", path=target) from None
    return name


def _say_state(home: Home, name: str) -> None:
    from weprompt_cli.engine.state_file import read_state_file_shape

    layers, heads, size = read_state_file_shape(home.root / "states" / name)
    sys.stderr.write(f"  state: {name} ({layers} layers x {heads} heads x {size}), copied to {home.root / 'states'}\n"
                     "  it only fits the base model it was tuned on (a .pth on the rwkv backend)\n")


def _list(as_json: bool) -> None:
    home = Context.create().home
    personas, errors = list_personas(home)
    if as_json:
        typer.echo(json.dumps([_persona_dict(p) for p in personas], indent=2, ensure_ascii=False))
    else:
        builtins = _builtin_names(home)
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("name", no_wrap=True)
        table.add_column("title", no_wrap=True)
        table.add_column("source", no_wrap=True)
        table.add_column("description")
        for p in personas:
            source = "user, replaces built-in" if p.source == "user" and p.name in builtins else p.source
            table.add_row(Text(p.name, style="bold"), Text(p.title), Text(source), Text(p.description))
        console = Console()
        if personas:
            console.print(table)
        else:
            console.print("No personas found.")
    # A broken file does not hide the others: one warning line each, on stderr.
    for exc in errors:
        _warn(exc.one_line())
    if errors:
        sys.stderr.write("  hint: fix the file, then check it with 'weprompt personas show NAME'\n")


@personas_app.callback()
def personas_main(ctx: typer.Context, as_json: bool = _JSON_OPTION) -> None:
    """List, show and create personas (alone: list them)."""
    if ctx.invoked_subcommand is None:
        _list(as_json)


@personas_app.command("list")
def list_command(as_json: bool = _JSON_OPTION) -> None:
    """List the personas: name, title, source (built-in or user) and description."""
    _list(as_json)


@personas_app.command("show")
def show_command(
    name: str = typer.Argument(..., help="Persona name (e.g. sql, project, general)."),
    as_json: bool = _JSON_OPTION,
) -> None:
    """Show one persona: its system prompt, examples, sampling overrides and file."""
    persona = find_persona(name, home=Context.create().home)
    if as_json:
        typer.echo(json.dumps(_persona_dict(persona), indent=2, ensure_ascii=False))
        return
    console = Console()
    head = Text()
    head.append(persona.name, style="bold")
    head.append(f": {persona.title}")
    console.print(head)
    if persona.description:
        console.print(Text(persona.description))
    console.print(Text(f"{persona.source}: {persona.path}", style="dim"))

    def section(title: str, body: Text) -> None:
        console.print()
        console.print(Text(title, style="bold"))
        console.print(_indented(console, body), soft_wrap=True)

    section("System prompt", Text(persona.system))
    if persona.examples:
        body = Text()
        for i, (user, assistant) in enumerate(persona.examples):
            if i:
                body.append("\n\n")
            body.append("User: ", style="bold cyan")
            body.append(user)
            body.append("\nAssistant: ", style="bold green")
            body.append(assistant)
        section("Examples", body)
    else:
        section("Examples", Text("none", style="dim"))
    if persona.sampling:
        section("Sampling overrides", Text("\n".join(f"{k} = {v}" for k, v in persona.sampling.items())))
    else:
        section("Sampling overrides", Text("none (the configured defaults apply)", style="dim"))
    if persona.stop:
        section("Stop strings", Text("\n".join(json.dumps(s, ensure_ascii=False) for s in persona.stop)))


@personas_app.command("new")
def new_command(
    name: str = typer.Argument(..., help="Name of the new persona (letters, digits, '.', '_', '-')."),
    force: bool = typer.Option(False, "--force", help="Replace the file if it exists."),
    state: Optional[Path] = typer.Option(
        None, "--state", help="A state-tuned initial state (RWKV-PEFT .pth or .safetensors) the persona starts from."),
) -> None:
    """Write a commented template to <home>/personas/NAME.toml for you to edit (--state: a state-tuned persona)."""
    home = Context.create().home
    replaces_builtin = name in _builtin_names(home)
    state_name = _install_state(home, state) if state is not None else None
    path = write_persona_template(name, force=force, home=home, state=state_name)
    # The template must stay valid as written; a failure here is a bug, reported as such.
    persona = load_persona_file(path)
    typer.echo(f"Wrote {path}")
    if state_name is not None:
        _say_state(home, state_name)
    if persona.source == "user" and replaces_builtin:
        _warn(f"the user persona '{name}' replaces the built-in one of that name")
    sys.stderr.write(f"  next: edit it, then 'weprompt chat --persona {name}'\n")
