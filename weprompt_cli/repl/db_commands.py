"""The database commands of the REPL: /db (show, connect, drop), /schema and /run (with its result table)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from weprompt_cli.errors import WePromptError
from weprompt_cli.repl.state import CommandError

if TYPE_CHECKING:
    from weprompt_cli.db import RunResult
    from weprompt_cli.render.output import Output
    from weprompt_cli.repl.state import Repl

CONNECT_HINT = "/db PATH|URL|demo connects one, or start with --db"


def show_result(out: Output, result: RunResult) -> None:
    """A run's rows as a table on stdout (first rows only) and its row count on stderr."""
    if not result.ran:
        out.info("not run: nothing was changed")
        return
    if result.returns_rows:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        from weprompt_cli.db import cell_text

        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for column in result.columns:
            table.add_column(Text(column))  # Text: a column named "[x]" is not markup
        for row in result.rows:
            table.add_row(*[Text(cell_text(v)) for v in row])
        out.out.print(table)
    out.info(f"{result.summary} ({result.elapsed_s:.2f} s)")


def _line(exc: WePromptError) -> str:
    """An error as the one red line of a command, with its hint."""
    return exc.one_line() + (f"; {exc.hint}" if exc.hint else "")


def cmd_db(repl: Repl, arg: str) -> None:
    """`/db`: show the database; `/db SPEC`: connect it; `/db off`: drop it."""
    from weprompt_cli.chat.sql_advisor import DEFAULT_FIX, NO_DB, SqlAdvisor

    spec = arg.strip()
    if not spec:
        if repl.advisor is None:
            repl.out.info(f"no database connected; {CONNECT_HINT}")
        else:
            fixes = f"{repl.advisor.fix} fix turn{'s' if repl.advisor.fix != 1 else ''}"
            repl.out.info(f"database {repl.advisor.describe()} · every answer's SQL is checked · {fixes} after a failure")
        return
    if spec.lower() in NO_DB:
        if repl.advisor is None:
            raise CommandError("no database connected")
        old = repl.advisor.display
        repl.set_advisor(None)
        _after_change(repl, f"disconnected {old}")
        return
    fix = repl.advisor.fix if repl.advisor is not None else DEFAULT_FIX
    try:
        with repl.out.status("connecting to the database"):
            advisor = SqlAdvisor.open(spec, cache_dir=repl.ctx.home.cache / "db", fix=fix, cwd=Path.cwd())
    except WePromptError as exc:
        raise CommandError(_line(exc)) from None
    repl.set_advisor(advisor)
    for note in advisor.notes():
        repl.out.warn(f"warning: {note}")
    _after_change(repl, f"connected {advisor.describe()}; every answer's SQL is checked")


def _after_change(repl: Repl, what: str) -> None:
    """After /db: a new session when the persona's prompt holds the schema and it changed; else record the change."""
    session = repl.session
    persona = session.persona
    wanted = None
    if persona is not None and persona.takes_schema:
        wanted = repl.advisor.persona(persona) if repl.advisor is not None else persona.with_schema(None)
    if wanted is not None and persona is not None and wanted.system != persona.system:
        old = session.name
        repl.switch_session(persona)
        repl.out.info(f"{what}; new session {repl.session.name}, whose prompt has the schema; "
                      f"{old} is kept (weprompt resume {old})")
        return
    from weprompt_cli.chat.sql_advisor import META_KEY

    extra = {k: v for k, v in session.opened.meta.extra.items() if k != META_KEY}
    if repl.advisor is not None:
        extra.update(repl.advisor.session_extra(persona))
    try:
        session.opened.update_meta(extra=extra)
    except WePromptError as exc:
        repl.out.warn(f"warning: the database is not recorded with the session: {exc.one_line()}")
    repl.out.info(what)


def cmd_schema(repl: Repl, arg: str) -> None:
    """`/schema`: the schema text in the persona's prompt (or the database's, when the prompt has none)."""
    if arg:
        raise CommandError("/schema takes no argument")
    persona = repl.session.persona
    advisor = repl.advisor
    takes = persona is not None and persona.takes_schema
    if advisor is None:
        if not takes or persona is None:
            repl.out.info(f"no database connected; {CONNECT_HINT}")
            return
        from weprompt_cli.personas.model import NO_SCHEMA_TEXT

        repl.out.info(f"no database connected: the {persona.name} persona's default schema, as the model sees it:")
        repl.out.out.print(persona.schema or NO_SCHEMA_TEXT, markup=False, highlight=False, soft_wrap=True)
        return
    if takes and persona is not None:
        text = advisor.prompt_schema(persona)
        digest = advisor.schema_hash(persona)
        head = f"schema of {advisor.describe()}, as the model sees it in the {persona.name} persona's prompt"
        if advisor.is_demo and persona.schema is not None:
            head += " (the demo shop in the demo model's own words)"
    else:
        text, digest = advisor.schema.text, advisor.schema.short_hash
        who = persona.name if persona is not None else "this session's"
        head = f"schema of {advisor.describe()}; the {who} persona's prompt does not include it (no {{schema}})"
    repl.out.info(head + ":")
    repl.out.out.print(text, markup=False, highlight=False, soft_wrap=True)
    repl.out.dim(f"schema hash {digest}")


def cmd_run(repl: Repl, arg: str) -> None:
    """`/run [K] [--write]`: run SQL block K (default 1) of the last answer and show its first rows."""
    words = arg.split()
    write = "--write" in words
    rest = [w for w in words if w != "--write"]
    if len(rest) > 1 or (rest and not rest[0].lstrip("-").isdigit()):
        raise CommandError("usage: /run [K] [--write]  (K: the SQL block of the last answer, from 1)")
    number = int(rest[0]) if rest else None
    if repl.advisor is None:
        raise CommandError(f"no database connected to run it on; {CONNECT_HINT}")
    turns = repl.session.turns
    answer = turns[-1].assistant if turns else None
    try:
        result = repl.advisor.run(answer, number, write=write, confirm=repl.confirm)
    except WePromptError as exc:
        raise CommandError(_line(exc)) from None
    except KeyboardInterrupt:
        # Ctrl-C stops the query, not the REPL; its transaction was rolled back on the way out.
        raise CommandError("stopped (Ctrl-C); nothing was changed") from None
    show_result(repl.out, result)
