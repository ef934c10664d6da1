"""Session care: `list-sessions` and `sessions show|export|delete|rename|fork`.

Thin commands over `weprompt_cli.store`: parse, call the store, render. Errors are
raised as `WePromptError` and become one stderr line in `weprompt_cli.cli.main`.
Nothing here imports torch: listing and showing sessions stays fast.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from weprompt_cli.cli.app import app, sessions_app
from weprompt_cli.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from weprompt_cli.store import Problem, SessionMeta, SessionStore, Turn


class ExportFormat(str, Enum):
    md = "md"
    json = "json"


def _store() -> SessionStore:
    from weprompt_cli.context import Context
    from weprompt_cli.store import SessionStore

    return SessionStore(Context.create().home)


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=False)


def _warn_problems(problems: list[Problem]) -> None:
    if problems:
        err = _console(stderr=True)
        for p in problems:
            err.print(f"warning: {p}", style="dim", markup=False)


def humanize_since(when: str, now: datetime | None = None) -> str:
    """`when` (an ISO time) as people say it: 'just now', '5 min ago', 'yesterday', a date."""
    from weprompt_cli.store import parse_time

    try:
        then = parse_time(when)
    except ValueError:
        return when
    now = now or datetime.now(timezone.utc)
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    if days == 1:
        return "yesterday"
    if days < 30:
        return f"{days} days ago"
    return then.astimezone().strftime("%Y-%m-%d")


def _model_name(meta: SessionMeta) -> str:
    return Path(meta.model.path).name or "-"


@app.command("list-sessions")
def list_sessions(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array (for scripts)."),
    persona: str | None = typer.Option(None, "--persona", "-p", help="Only sessions of this persona."),
) -> None:
    """List sessions, newest first: name, id, persona, model, turns, tokens, last used."""
    metas, problems = _store().list(persona=persona)
    _warn_problems(problems)
    if as_json:
        sys.stdout.write(json.dumps([m.to_dict() for m in metas], indent=2, ensure_ascii=False) + "\n")
        return
    if not metas:
        what = f"no sessions with persona {persona}" if persona else "no sessions yet"
        _console(stderr=True).print(f"{what}; start one with: weprompt chat", style="dim", markup=False)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("name", overflow="fold")
    table.add_column("id", no_wrap=True)
    table.add_column("persona")
    table.add_column("model", overflow="fold")
    table.add_column("turns", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("last used", no_wrap=True)
    for m in metas:
        table.add_row(
            m.name or "-",
            m.id,
            m.persona,
            _model_name(m),
            str(m.turns),
            f"{m.tokens:,}",
            humanize_since(m.updated_at),
        )
    _console().print(table)


def _header_lines(meta: SessionMeta, kept_states: list[int]) -> list[str]:
    lines = [
        f"persona {meta.persona} · model {_model_name(meta)} ({meta.model.arch}) · {meta.chat_format} format",
        (
            f"{meta.turns} turns · {meta.tokens:,} tokens · created {humanize_since(meta.created_at)}"
            f" · last used {humanize_since(meta.updated_at)}"
        ),
    ]
    if meta.parent is not None:
        lines.append(f"forked from {meta.parent.session} at turn {meta.parent.turn}")
    if kept_states:
        lines.append("checkpoints after turns " + ", ".join(str(k) for k in kept_states))
    return lines


def _stop_note(turn: Turn) -> str | None:
    from weprompt_cli.store.export import stop_note

    return stop_note(turn)


@sessions_app.command("show")
def show(ref: str = typer.Argument(..., help="Session name, id or unique id prefix.")) -> None:
    """Show a session's transcript."""
    from rich.text import Text

    from weprompt_cli.render.transcript import mark_text
    from weprompt_cli.store.states import state_files

    store = _store()
    meta, turns, problems = store.read(ref)
    kept = sorted(state_files(store.session_dir(meta.id) / "states"))
    out = _console()
    title = Text(meta.label, style="bold")
    if meta.name:
        title.append(f"  {meta.id}", style="dim")
    out.print(title)
    for line in _header_lines(meta, kept):
        out.print(line, style="dim", markup=False)
    for t in turns:
        out.print()
        out.print(Text(f"You · turn {t.index}", style="bold cyan"))
        out.print(Text(t.user))
        out.print(Text("Assistant", style="bold green"))
        out.print(Text(t.assistant))
        for mark in t.marks:
            out.print(mark_text(mark))
        note = _stop_note(t)
        if note:
            out.print(Text(f"({note})", style="yellow"))
    if not turns:
        out.print()
        out.print("(no turns yet)", style="dim", markup=False)
    _warn_problems(problems)


@sessions_app.command("export")
def export(
    ref: str = typer.Argument(..., help="Session name, id or unique id prefix."),
    fmt: ExportFormat = typer.Option(ExportFormat.md, "--format", "-f", help="md or json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    thoughts: bool = typer.Option(False, "--thoughts", help="Markdown: include each turn's reasoning (JSON always has it)."),
) -> None:
    """Export a session's transcript as Markdown or JSON."""
    from weprompt_cli.store.export import export_json, export_markdown

    meta, turns, problems = _store().read(ref)
    _warn_problems(problems)
    text = export_markdown(meta, turns, thoughts=thoughts) if fmt is ExportFormat.md else export_json(meta, turns)
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    from weprompt_cli.atomic import atomic_write_text
    from weprompt_cli.errors import NotFoundError

    if not output.expanduser().parent.is_dir():
        raise NotFoundError("no such folder", path=output.expanduser().parent, hint="create it first, or give another path")
    atomic_write_text(output.expanduser(), text)
    _console(stderr=True).print(f"wrote {output}", style="dim", markup=False)


def _ask(question: str) -> str | None:
    """The user's answer to a question on stderr, lowercased; None when stdin is closed."""
    sys.stderr.write(question)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        sys.stderr.write("\n")
        return None
    return line.strip().lower()


@sessions_app.command("delete")
def delete(
    ref: str = typer.Argument(..., help="Session name, id or unique id prefix."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a session, its transcript and its checkpoints (asks first unless --yes)."""
    store = _store()
    meta = store.resolve(ref)
    if not yes:
        answer = _ask(f"Delete session {meta.label} ({meta.id}, {meta.turns} turns)? [y/N] ")
        if answer is None:
            raise UsageError("not deleted: no answer to the question", hint=f"weprompt sessions delete {ref} --yes")
        if answer not in ("y", "yes"):
            _console(stderr=True).print("nothing deleted", style="dim", markup=False)
            raise typer.Exit(int(ExitCode.ERROR))
    store.delete(meta.id)
    typer.echo(f"deleted session {meta.label} ({meta.id})")


@sessions_app.command("rename")
def rename(
    ref: str = typer.Argument(..., help="Session name, id or unique id prefix."),
    new_name: str = typer.Argument(..., help="The new name."),
) -> None:
    """Rename a session."""
    store = _store()
    old = store.resolve(ref)
    meta = store.rename(old.id, new_name)
    typer.echo(f"renamed {old.label} to {meta.name} ({meta.id})")


@sessions_app.command("fork")
def fork(
    ref: str = typer.Argument(..., help="Session name, id or unique id prefix."),
    at: int = typer.Option(..., "--at", help="Keep turns 1..AT (0 = only the persona)."),
    new_name: str | None = typer.Option(None, "--as", help="Name of the new session (default NAME-atN)."),
) -> None:
    """Start a new session from a session's state after turn AT (instant)."""
    meta = _store().fork(ref, at, new_name)
    assert meta.parent is not None
    typer.echo(f"forked {ref} at turn {meta.parent.turn} as {meta.label} ({meta.id})")
    _console(stderr=True).print(f"continue it with: weprompt resume {meta.label}", style="dim", markup=False)
