"""The SQL advisor: a user's database behind a chat (issue 20).

    advisor = SqlAdvisor.open("postgresql://me@localhost/shop", cache_dir=home.cache / "db")
    persona = advisor.persona(find_persona("sql", home=home))   # {schema} filled: its own cached state
    session = ChatSession.start(engine, store, persona, params, extra=advisor.session_extra(persona))
    advisor.attach(session)                                      # each answer's SQL checked before it is saved
    turns = send_checked(advisor, "Top customers?", send)        # + up to `advisor.fix` visible fix turns
    result = advisor.run(turns[-1].assistant, 1)                 # read-only; write=True + confirm= to change data

The database work itself (connections, schema text, checks, runs) is `weprompt_cli.db`; this
module joins it to personas and sessions. It prints nothing: callers show the marks and fix turns.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weprompt_cli.errors import UsageError, WePromptError

if TYPE_CHECKING:
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.db import AnswerCheck, Database, DbTarget, RunResult, SchemaText
    from weprompt_cli.personas import Persona
    from weprompt_cli.store import Turn

DEFAULT_FIX = 1  # fix turns after a failed check, when a database is connected
MAX_FIX = 10
NO_DB = ("none", "off")  # `--db none` / `/db off`: no database, even when the config or persona names one
META_KEY = "db"  # session.json `extra[META_KEY]`: {"target": display form (no password), "schema": hash}


class SqlAdvisor:
    """A connected database, its schema text, and the checks and runs of the answers' SQL."""

    def __init__(self, db: Database, schema: SchemaText, *, fix: int = DEFAULT_FIX) -> None:
        self.db = db
        self.schema = schema
        self.fix = check_fix(fix)
        self.check_timeout_s = 5.0
        self.run_timeout_s = 10.0
        self._checked: tuple[Turn, AnswerCheck] | None = None  # the last annotated turn and its check

    @classmethod
    def open(
        cls,
        spec: str | DbTarget,
        *,
        cache_dir: Path,
        fix: int | None = None,
        environ: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> SqlAdvisor:
        """The database named by `spec` (path, URL or `demo`), opened and introspected; one-line errors."""
        from weprompt_cli.db import open_database, parse_target, read_schema

        target = parse_target(spec, environ=environ, cwd=cwd) if isinstance(spec, str) else spec
        db = open_database(target, cache_dir=cache_dir)
        try:
            schema = read_schema(db)
        except BaseException:
            db.close()
            raise
        return cls(db, schema, fix=DEFAULT_FIX if fix is None else fix)

    # ------------------------------------------------------------ what it is
    @property
    def display(self) -> str:
        """Where the database is, without its password: the only form shown or stored."""
        return self.db.display

    @property
    def is_demo(self) -> bool:
        return self.db.target.is_demo

    def describe(self) -> str:
        """One line: `demo (SQLite, 5 tables)`."""
        shown = len(self.schema.tables)
        total = shown + len(self.schema.left_out)
        tables = f"{total} table{'s' if total != 1 else ''}"
        return f"{self.display} ({self.schema.database}, {tables})"

    def notes(self) -> list[str]:
        """Warnings about the schema the model is told: the cap, an empty database."""
        if self.schema.left_out:
            total = len(self.schema.tables) + len(self.schema.left_out)
            return [(f"the schema is large: the model sees {len(self.schema.tables)} of {total} tables "
                     "and only the names of the rest (/schema shows what it sees)")]
        if not self.schema.tables:
            return ["the database has no tables yet"]
        return []

    # ------------------------------------------------------------ the prompt
    def prompt_schema(self, persona: Persona | None) -> str:
        """What `{schema}` in `persona`'s prompt stands for on this database."""
        if self.is_demo and persona is not None and persona.schema is not None:
            # The demo model learned the persona's own one-line schema text: keep its words.
            return persona.schema
        if not self.schema.tables and not self.schema.left_out:
            return f"an empty {self.schema.database} database (no tables yet)"
        # One table a line, after the sentence that introduces them (the prompt's own words follow).
        return f"the {self.schema.database} tables below\n{self.schema.text}"

    def persona(self, persona: Persona) -> Persona:
        """`persona` with `{schema}` filled for this database (unchanged when it has no placeholder)."""
        return persona.with_schema(self.prompt_schema(persona)) if persona.takes_schema else persona

    def session_extra(self, persona: Persona | None) -> dict[str, Any]:
        """What session.json records: the database without its password, and the hash of the schema fed."""
        return {META_KEY: {"target": self.display, "schema": self.schema_hash(persona)}}

    def schema_hash(self, persona: Persona | None) -> str | None:
        """16 hex digits of the schema text in `persona`'s prompt (None: its prompt has no schema)."""
        if persona is None or not persona.takes_schema:
            return None
        return schema_hash(self.prompt_schema(persona))

    # ------------------------------------------------------------ checks
    def attach(self, session: ChatSession) -> None:
        """Check the SQL of every answer `session` finishes, before the turn is saved."""
        session.annotate = self.annotate

    def annotate(self, turn: Turn) -> Turn:
        """`turn` with its answer's check recorded (`Turn.checks`); unchanged when it has no SQL or was stopped.

        Remembers the check for `fix_request` (one conversation at a time: the REPL's, `chat -m`'s)."""
        turn, check = self.checked(turn)
        self._checked = (turn, check) if check is not None else None
        return turn

    def checked(self, turn: Turn) -> tuple[Turn, AnswerCheck | None]:
        """`turn` with its answer's check recorded, and the check (None: no SQL, or the answer was stopped).

        Keeps nothing, so many conversations may call it at once (the HTTP server's)."""
        if turn.stop_reason == "interrupted":
            return turn, None  # the user stopped it: nothing to check or fix
        check = self.check(turn.assistant)
        if check.mark is None:
            return turn, None
        return dataclasses.replace(turn, checks=({"kind": "sql", "db": self.display, **check.record()},)), check

    def check(self, answer: str) -> AnswerCheck:
        """The verdict on every SQL block of `answer` (never raises for a bad query)."""
        from weprompt_cli.db import AnswerCheck, QueryCheck, check_answer, sql_blocks

        try:
            return check_answer(self.db, answer, timeout_s=self.check_timeout_s)
        except Exception as exc:  # noqa: BLE001  a check must never lose the turn it annotates
            why = exc.message if isinstance(exc, WePromptError) else f"{type(exc).__name__}"
            return AnswerCheck(tuple(QueryCheck(b.sql, "unchecked", self.db.target.scrub(why))
                                     for b in sql_blocks(answer)))

    def fix_request(self, turn: Turn) -> str | None:
        """The follow-up that asks the model to fix `turn`'s failed query; None when it passed or was not checked."""
        if self._checked is None or self._checked[0] != turn:
            return None
        return self._checked[1].fix_request()

    # ------------------------------------------------------------ runs
    def run(
        self,
        answer: str | None,
        number: int | None = None,
        *,
        write: bool = False,
        confirm: Callable[[str], bool] | None = None,
        max_rows: int = 20,
    ) -> RunResult:
        """Run SQL block `number` (default: the first) of `answer`: read-only, or a write after `confirm` says yes."""
        from weprompt_cli.db import pick_block, run_query

        block = pick_block(answer, number)
        return run_query(self.db, block.sql, write=write, confirm=confirm, max_rows=max_rows,
                         timeout_s=self.run_timeout_s)

    def close(self) -> None:
        """Release the database's connections."""
        self.db.close()

    def __enter__(self) -> SqlAdvisor:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def schema_hash(text: str) -> str:
    """16 hex digits of the sha256 of a schema text as it fills `{schema}`."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def default_schema_hash(persona: Persona) -> str | None:
    """The hash of what `{schema}` means in `persona`'s prompt without a database (None: no placeholder)."""
    if not persona.takes_schema:
        return None
    from weprompt_cli.personas.model import NO_SCHEMA_TEXT

    return schema_hash(persona.schema if persona.schema is not None else NO_SCHEMA_TEXT)


def check_fix(fix: int) -> int:
    """`fix` when it is a usable number of fix turns (0..MAX_FIX); UsageError otherwise."""
    if isinstance(fix, bool) or not isinstance(fix, int) or not 0 <= fix <= MAX_FIX:
        raise UsageError(f"invalid --fix {fix!r}: must be a whole number from 0 to {MAX_FIX}")
    return fix


def db_spec(flag: str | None, persona: Persona | None, config_db: str | None) -> str | None:
    """The database to connect: `--db`, else the persona's `db`, else the config's; None for none."""
    for spec in (flag, persona.db if persona is not None else None, config_db):
        if spec is not None and spec.strip():
            return None if spec.strip().lower() in NO_DB else spec
    return None


def stored_target(extra: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The database (display form) and schema hash a session's metadata recorded; (None, None) when none."""
    entry = extra.get(META_KEY)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("target"), str):
        return None, None
    schema = entry.get("schema")
    return entry["target"], schema if isinstance(schema, str) else None


def send_checked(
    advisor: SqlAdvisor | None,
    text: str,
    send: Callable[[str], Turn | None],
    *,
    on_fix: Callable[[str, int], None] | None = None,
) -> list[Turn]:
    """Send `text`; while the answer's SQL check fails, send the fix request, up to `advisor.fix` times.

    `send(text)` runs one turn (streaming and showing it is the caller's) and returns it, or None
    when it was stopped before the answer began; `on_fix(request, attempt)` is called before each fix
    turn. Returns the turns sent, in order. A stopped (interrupted) answer is never followed up.
    """
    turns: list[Turn] = []
    request = text
    attempts = 1 + (advisor.fix if advisor is not None else 0)
    for attempt in range(attempts):
        if attempt and on_fix is not None:
            on_fix(request, attempt)
        turn = send(request)
        if turn is None:
            break
        turns.append(turn)
        if advisor is None or turn.stop_reason == "interrupted":
            break
        follow_up = advisor.fix_request(turn)
        if follow_up is None:
            break
        request = follow_up
    return turns
