"""`weprompt chat` and `weprompt resume`: open a session, then one turn (-m, stdin) or the REPL."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

import typer

from weprompt_cli.cli.app import app
from weprompt_cli.cli.loading import load_engine_for_cli
from weprompt_cli.errors import UsageError

if TYPE_CHECKING:
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.context import Context
    from weprompt_cli.render.output import Output

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


def _run(session: ChatSession, ctx: Context, out: Output, message: str | None, overrides: dict[str, Any]) -> None:
    """One non-interactive turn when there is a message, else the REPL."""
    if message is None:
        from weprompt_cli.repl import run_repl

        run_repl(session, out, ctx, overrides)
        return
    from weprompt_cli.interrupt import sigint_cancels

    with sigint_cancels() as cancel:
        reply = session.send(message, cancel=cancel, progress=out.prefill_progress())
        out.stream_reply(reply)
    if reply.turn is None or reply.turn.stop_reason == "interrupted":
        raise typer.Exit(130)


def _output(verbose: bool) -> tuple[Context, Output]:
    from weprompt_cli.context import Context
    from weprompt_cli.render.output import Output

    ctx = Context.create(verbose=verbose)
    return ctx, Output.for_context(ctx)


@app.command()
def chat(
    persona: Optional[str] = typer.Option(None, "--persona", "-p", help="Persona name (default: general or the config's)."),
    session_name: Optional[str] = typer.Option(None, "--session", "-s", help="Name for the new session."),
    model: Optional[str] = typer.Option(None, "--model", help="Catalog name or path of an RWKV .pth checkpoint."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="rwkv strategy, e.g. 'cpu fp32', 'cuda fp16', or auto."),
    temperature: Optional[float] = typer.Option(None, "--temperature", "-t", help="0 = greedy."),
    top_p: Optional[float] = typer.Option(None, "--top-p"),
    top_k: Optional[int] = typer.Option(None, "--top-k"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Send one message, print the answer, exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show model loading details."),
    no_graph: bool = typer.Option(False, "--no-graph", help="Decode without CUDA graphs (debugging)."),
) -> None:
    """Start a new chat session (REPL, or one turn with -m / a piped stdin)."""
    from weprompt_cli.chat.params import effective_params
    from weprompt_cli.chat.session import ChatSession
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
    params = effective_params(ctx.config, persona_obj, None, overrides)
    engine = load_engine_for_cli(ctx, out, model, strategy, graph=not no_graph)
    session = ChatSession.start(
        engine, store, persona_obj, params, name=session_name, notify=out.warn, progress=out.prefill_progress()
    )
    with session:
        out.info(f"session {session.name} ({session.id}) · persona {persona_obj.name}")
        _run(session, ctx, out, message, overrides)


@app.command()
def resume(
    ref: Optional[str] = typer.Argument(None, help="Session name, id or unique id prefix."),
    last: bool = typer.Option(False, "--last", help="Resume the most recently used session."),
    model: Optional[str] = typer.Option(None, "--model", help="Use another model (needs --rebuild if it differs)."),
    strategy: Optional[str] = typer.Option(None, "--strategy"),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Replay the transcript and rewrite every saved state (needed after a model change)."
    ),
    temperature: Optional[float] = typer.Option(None, "--temperature", "-t"),
    top_p: Optional[float] = typer.Option(None, "--top-p"),
    top_k: Optional[int] = typer.Option(None, "--top-k"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
    seed: Optional[int] = typer.Option(None, "--seed"),
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
    try:
        try:
            persona_obj = find_persona(opened.meta.persona, home=ctx.home)
        except NotFoundError:
            out.warn(f"warning: persona {opened.meta.persona} no longer exists; going on without its settings")
            persona_obj = None
        params = effective_params(ctx.config, None, opened.meta.sampling, overrides)
        model_arg = model or opened.meta.model.path or None
        engine = load_engine_for_cli(ctx, out, model_arg, strategy, graph=not no_graph)
        session = ChatSession.resume(
            engine, store, opened, persona_obj, params, rebuild=rebuild, notify=out.warn,
            progress=out.replay_progress(),
        )
        if overrides:
            session.set_params(params)  # flags given at resume are the session's settings from now on
    except BaseException:
        opened.close()
        raise
    with session:
        out.info(f"session {session.name} ({session.id}) · {len(session.turns)} turns")
        if message is None:
            out.show_recent_turns(session.turns, RECENT_TURNS, max_lines=RECENT_LINES)
        _run(session, ctx, out, message, overrides)
