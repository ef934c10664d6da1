"""`weprompt chat` and `weprompt resume`: open a session, then one turn (-m, stdin) or the REPL."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

import typer

from weprompt_cli.cli.app import app
from weprompt_cli.cli.loading import load_engine_for_cli
from weprompt_cli.errors import UsageError, WePromptError

if TYPE_CHECKING:
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.chat.sql_advisor import SqlAdvisor
    from weprompt_cli.context import Context
    from weprompt_cli.render.output import Output
    from weprompt_cli.store import Turn

RECENT_TURNS = 3  # shown when a session is resumed
RECENT_LINES = 6  # lines of each of those answers before the rest is folded


def _message_from(message: str | None) -> str | None:
    """The one message to send (`-m`, or all of a piped stdin), checked; None for the REPL.

    Refused with a usage error before anything is created: an empty message (`-m ''`,
    `< /dev/null`), text that is not UTF-8, or no terminal to run the REPL on.
    """
    if message is None and sys.stdin is not None and not sys.stdin.isatty():
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8")
        try:
            message = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"the message on stdin is not UTF-8 text (byte {exc.start})") from None
        if not message.strip():
            raise UsageError(
                "the message on stdin is empty", hint="pipe a message in, use -m TEXT, or run in a terminal for the REPL"
            )
    if message is None:
        return None
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        # Arguments that are not UTF-8 arrive as lone surrogates (Python's surrogateescape).
        raise UsageError("the message is not UTF-8 text") from None
    if not message.strip():
        raise UsageError("the message is empty")
    return message


def _flags(**flags: Any) -> dict[str, Any]:
    """The sampling flags given on the command line, checked (UsageError names the flag)."""
    from weprompt_cli.params import check_setting, setting_label

    given = {k: v for k, v in flags.items() if v is not None}
    for key, value in given.items():
        try:
            check_setting(key, value)
        except ValueError as exc:
            raise UsageError(f"invalid --{setting_label(key)} {value!r}: {exc}") from None
    return given


def _run(
    session: ChatSession,
    ctx: Context,
    out: Output,
    message: str | None,
    overrides: dict[str, Any],
    advisor: SqlAdvisor | None = None,
) -> None:
    """One non-interactive turn (and its fix turns) when there is a message, else the REPL."""
    if message is None:
        from weprompt_cli.repl import run_repl

        run_repl(session, out, ctx, overrides, advisor)
        return
    from weprompt_cli.chat.sql_advisor import send_checked
    from weprompt_cli.interrupt import sigint_cancels
    from weprompt_cli.repl.state import show_checks, show_fix

    last: list[Turn | None] = [None]

    def send(text: str) -> Turn | None:
        with sigint_cancels() as cancel:
            reply = session.send(text, cancel=cancel, progress=out.prefill_progress())
            out.stream_reply(reply)
        show_checks(out, reply.turn)
        last[0] = reply.turn
        return reply.turn

    send_checked(advisor, message, send, on_fix=lambda request, n: show_fix(out, request, n))
    if last[0] is None or last[0].stop_reason == "interrupted":
        raise typer.Exit(130)


def _open_db(ctx: Context, out: Output, spec: str | None, fix: int | None) -> SqlAdvisor | None:
    """The database to check answers on (`spec`: from --db, the persona or the config), opened; None for none."""
    from weprompt_cli.chat.sql_advisor import SqlAdvisor, check_fix

    if fix is not None:
        check_fix(fix)
        if spec is None:
            raise UsageError("--fix needs a database to check the answers on", hint="add --db PATH|URL|demo")
    if spec is None:
        return None
    with out.status("connecting to the database"):
        advisor = SqlAdvisor.open(spec, cache_dir=ctx.home.cache / "db", fix=fix)
    for note in advisor.notes():
        out.warn(f"warning: {note}")
    return advisor


def _think_flag(value: str | None) -> str | None:
    """--think checked: off, on, bit or lot (UsageError otherwise)."""
    if value is None:
        return None
    mode = value.strip().lower()
    if mode not in ("off", "on", "bit", "lot"):
        raise UsageError(f"invalid --think {value!r}: one of off, on, bit, lot")
    return mode


def _format_flag(value: str | None) -> str | None:
    """--format checked: world, g1 or raven (UsageError otherwise)."""
    if value is None:
        return None
    name = value.strip().lower()
    if name not in ("world", "g1", "raven"):
        raise UsageError(f"invalid --format {value!r}: one of world, g1, raven")
    return name


def _output(verbose: bool) -> tuple[Context, Output]:
    from weprompt_cli.context import Context
    from weprompt_cli.render.output import Output

    ctx = Context.create(verbose=verbose)
    return ctx, Output.for_context(ctx)


@app.command()
def chat(
    persona: Optional[str] = typer.Option(None, "--persona", "-p", help="Persona name (default: general or the config's)."),
    session_name: Optional[str] = typer.Option(None, "--session", "-s", help="Name for the new session."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Catalog name, or path of an RWKV .pth checkpoint or a .gguf file (llama.cpp)."),
    strategy: Optional[str] = typer.Option(
        None, "--strategy", help="auto; for .pth: 'cpu fp32', 'cuda fp16'...; for .gguf: cpu, cuda, metal, vulkan [*N]."),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="Chat format: world, g1 or raven (default: the model's, from the catalog or file name)."),
    think: Optional[str] = typer.Option(
        None, "--think", help="G1 models: think before answering: off (default), on, bit or lot."),
    temperature: Optional[float] = typer.Option(None, "--temperature", "-t", help="0 = greedy."),
    top_p: Optional[float] = typer.Option(None, "--top-p"),
    top_k: Optional[int] = typer.Option(None, "--top-k"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    db: Optional[str] = typer.Option(
        None, "--db", help="Database to check the SQL on: an SQLite file, a URL (postgresql://user@host/db; "
        "password in the URL or $WEPROMPT_DB_PASSWORD), demo, or none."),
    fix: Optional[int] = typer.Option(
        None, "--fix", help="Fix turns after an answer's SQL fails its check (default 1 with a database; 0: none)."),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Send one message, print the answer, exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show model loading details."),
    no_graph: bool = typer.Option(False, "--no-graph", help="Decode without CUDA graphs (debugging)."),
) -> None:
    """Start a new chat session (REPL, or one turn with -m / a piped stdin)."""
    from weprompt_cli.chat.params import effective_params, family_defaults
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.chat.sql_advisor import db_spec
    from weprompt_cli.cli.loading import pick_format
    from weprompt_cli.personas import DEFAULT_PERSONA, find_persona
    from weprompt_cli.store import SessionStore
    from weprompt_cli.store.names import validate_name

    ctx, out = _output(verbose)
    message = _message_from(message)
    persona_obj = find_persona(persona or ctx.config.default_persona or DEFAULT_PERSONA, home=ctx.home)
    store = SessionStore(ctx.home)
    if session_name is not None:
        validate_name(session_name)
        store.ensure_name_free(session_name)  # fail before the model loads
    overrides = _flags(temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, seed=seed)
    effective_params(ctx.config, persona_obj, None, overrides)  # a bad setting fails before the model loads
    think_mode = _think_flag(think) or persona_obj.think or ctx.config.think
    format_name = _format_flag(fmt)
    # The database opens before the model loads: a wrong URL or password fails fast.
    advisor = _open_db(ctx, out, db_spec(db, persona_obj, ctx.config.db), fix)
    try:
        extra = None
        if advisor is not None:
            persona_obj = advisor.persona(persona_obj)  # {schema} filled: the prompt state is cached per schema
            extra = advisor.session_extra(persona_obj)
        engine = load_engine_for_cli(ctx, out, model, strategy, graph=not no_graph)
        chat_format = pick_format(ctx, model, engine, format_name)
        family = family_defaults(chat_format, state_file=persona_obj.state_file is not None)
        params = effective_params(ctx.config, persona_obj, None, overrides, family=family)
        if think_mode is not None and not chat_format.thinking and think is not None:
            raise UsageError(f"--think needs a thinking format; this model chats in the {chat_format.name} format",
                             hint="G1 models think; --format g1 if this is one")
        session = ChatSession.start(
            engine, store, persona_obj, params, fmt=chat_format, name=session_name, extra=extra, think=think_mode,
            notify=out.warn, progress=out.prefill_progress(),
        )
        with session:
            where = f" · database {advisor.describe()}" if advisor is not None else ""
            out.info(f"session {session.name} ({session.id}) · persona {persona_obj.name}{where}")
            if advisor is not None:
                advisor.attach(session)
            _run(session, ctx, out, message, overrides, advisor)
    finally:
        if advisor is not None:
            advisor.close()


@app.command()
def resume(
    ref: Optional[str] = typer.Argument(None, help="Session name, id or unique id prefix."),
    last: bool = typer.Option(False, "--last", help="Resume the most recently used session."),
    model: Optional[str] = typer.Option(None, "--model", help="Use another model (needs --rebuild if it differs)."),
    strategy: Optional[str] = typer.Option(None, "--strategy"),
    think: Optional[str] = typer.Option(
        None, "--think", help="G1 models: off, on, bit or lot from now on (saved with the session)."),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Replay the transcript and rewrite every saved state (needed after a model change)."
    ),
    temperature: Optional[float] = typer.Option(None, "--temperature", "-t"),
    top_p: Optional[float] = typer.Option(None, "--top-p"),
    top_k: Optional[int] = typer.Option(None, "--top-k"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    db: Optional[str] = typer.Option(
        None, "--db", help="Database to check the SQL on (default: the session's; its password from "
        "$WEPROMPT_DB_PASSWORD): an SQLite file, a URL, demo, or none."),
    fix: Optional[int] = typer.Option(
        None, "--fix", help="Fix turns after an answer's SQL fails its check (default 1 with a database; 0: none)."),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Send one message, print the answer, exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    no_graph: bool = typer.Option(False, "--no-graph", help="Decode without CUDA graphs (debugging)."),
) -> None:
    """Resume a session from its last checkpoint (no replay of the history)."""
    from weprompt_cli.chat.params import effective_params
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.errors import NotFoundError
    from weprompt_cli.personas import find_persona
    from weprompt_cli.store import SessionStore

    ctx, out = _output(verbose)
    if (ref is None) == (not last):
        raise UsageError("name a session or use --last", hint="weprompt list-sessions")
    message = _message_from(message)
    overrides = _flags(temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, seed=seed)
    store = SessionStore(ctx.home)
    meta = store.last() if last else store.resolve(ref or "")
    opened = store.open(meta.id)  # locks before the model loads: a busy session fails fast
    advisor: SqlAdvisor | None = None
    try:
        try:
            persona_obj = find_persona(opened.meta.persona, home=ctx.home)
        except NotFoundError:
            out.warn(f"warning: persona {opened.meta.persona} no longer exists; going on without its settings")
            persona_obj = None
        params = effective_params(ctx.config, None, opened.meta.sampling, overrides)
        advisor = _reopen_db(ctx, out, opened.meta.extra, db, fix)
        if advisor is not None and persona_obj is not None:
            persona_obj = advisor.persona(persona_obj)  # what a --rebuild replays the prompt with
        model_arg = model or opened.meta.model.path or None
        engine = load_engine_for_cli(ctx, out, model_arg, strategy, graph=not no_graph)
        session = ChatSession.resume(
            engine, store, opened, persona_obj, params, rebuild=rebuild, notify=out.warn,
            progress=out.replay_progress(),
        )
        if overrides:
            session.set_params(params)  # flags given at resume are the session's settings from now on
        if think is not None:
            session.set_think(_think_flag(think) or "off")
        if advisor is not None:
            _record_db(session, advisor, out)
    except BaseException:
        opened.close()
        if advisor is not None:
            advisor.close()
        raise
    try:
        with session:
            where = f" · database {advisor.describe()}" if advisor is not None else ""
            out.info(f"session {session.name} ({session.id}) · {len(session.turns)} turns{where}")
            if message is None:
                out.show_recent_turns(session.turns, RECENT_TURNS, max_lines=RECENT_LINES)
            if advisor is not None:
                advisor.attach(session)
            _run(session, ctx, out, message, overrides, advisor)
    finally:
        if advisor is not None:
            advisor.close()


def _reopen_db(ctx: Context, out: Output, extra: dict[str, Any], flag: str | None, fix: int | None) -> SqlAdvisor | None:
    """At resume: the database of --db, else the one the session recorded (its password from the environment).

    A recorded database that cannot be reopened is a warning, not a failure: the session goes on
    without checks (and `/db` connects one); a database given with --db must open.
    """
    from weprompt_cli.chat.sql_advisor import NO_DB, check_fix, stored_target

    if flag is not None:
        spec = None if flag.strip().lower() in NO_DB else flag
        return _open_db(ctx, out, spec, fix)
    stored, _ = stored_target(extra)
    if stored is None:
        return _open_db(ctx, out, None, fix)
    if fix is not None:
        check_fix(fix)  # a bad flag is an error, not a database that could not be reopened
    try:
        return _open_db(ctx, out, stored, fix)
    except WePromptError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        out.warn(f"warning: cannot reopen the session's database: {exc.one_line()}{hint}; "
                 "going on without SQL checks (/db connects one)")
        return None


def _record_db(session: ChatSession, advisor: SqlAdvisor, out: Output) -> None:
    """Record the database in the session (for the next resume) and warn when its schema is not the prompt's."""
    from weprompt_cli.chat.sql_advisor import META_KEY, default_schema_hash, stored_target

    meta = session.opened.meta
    stored, prompt_hash = stored_target(meta.extra)
    persona = session.persona
    if persona is not None and persona.takes_schema:
        if stored is None:  # made without a database: its prompt has the persona's default schema
            prompt_hash = default_schema_hash(persona)
        if prompt_hash != advisor.schema_hash(persona):
            out.warn("warning: this session's prompt was made with another schema than the database's now; "
                     "/reset starts a new session with the current one")
    if stored != advisor.display:
        entry = {"target": advisor.display, "schema": prompt_hash}
        session.opened.update_meta(extra={**meta.extra, META_KEY: entry})
