"""`weprompt chat` and `weprompt resume`: open a session, then one turn (-m, stdin) or the REPL."""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from weprompt_cli.cli.app import app
from weprompt_cli.cli.loading import load_engine_for_cli
from weprompt_cli.cli.output import Output
from weprompt_cli.errors import UsageError

SAMPLING_FLAGS = ("temperature", "top_p", "top_k", "max_tokens", "seed")


def _read_stdin_message() -> str | None:
    """The message piped on stdin (`echo hi | weprompt chat`), or None for a terminal."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    text = sys.stdin.read()
    return text if text.strip() else None


def _cli_overrides(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


def _sampling(config: Any, persona: Any, stored: dict[str, Any] | None, overrides: dict[str, Any]) -> Any:
    """Settings in increasing priority: defaults, config, persona, the session's own, the flags."""
    from weprompt_cli.engine import SamplingParams

    merged: dict[str, Any] = {}
    merged.update(getattr(config, "sampling", {}) or {})
    if persona is not None:
        merged.update(persona.sampling)
    if stored:
        merged.update(stored)
    merged.update(overrides)
    return SamplingParams().with_overrides(**merged)


def _run(session: Any, out: Output, message: str | None, *, verbose: bool) -> None:
    """One non-interactive turn when there is a message, else the REPL."""
    if message is None:
        from weprompt_cli.repl import run_repl

        run_repl(session, out)
        return
    from weprompt_cli.interrupt import sigint_cancels

    with sigint_cancels() as cancel:
        reply = session.send(message, cancel=cancel, progress=out.prefill_progress())
        out.stream_reply(reply)
    if reply.turn is None or reply.turn.stop_reason == "interrupted":
        raise typer.Exit(130)


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
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.config import load_config
    from weprompt_cli.paths import resolve_home
    from weprompt_cli.personas import DEFAULT_PERSONA, find_persona
    from weprompt_cli.store import SessionStore
    from weprompt_cli.store.names import validate_name

    out = Output(verbose=verbose)
    config = load_config()
    persona_obj = find_persona(persona or getattr(config, "default_persona", None) or DEFAULT_PERSONA)
    store = SessionStore(resolve_home())
    if session_name is not None:
        validate_name(session_name)
        store.ensure_name_free(session_name)  # fail before the model loads
    if message is None:
        message = _read_stdin_message()
    if message is not None and not message.strip():
        raise UsageError("the message is empty")
    overrides = _cli_overrides(temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, seed=seed)
    params = _sampling(config, persona_obj, None, overrides)
    engine = load_engine_for_cli(out, model, strategy, config, graph=not no_graph)
    session = ChatSession.start(
        engine, store, persona_obj, params, name=session_name, notify=out.warn, progress=out.prefill_progress()
    )
    with session:
        out.info(f"session {session.name} ({session.id}) · persona {persona_obj.name}")
        _run(session, out, message, verbose=verbose)


@app.command()
def resume(
    ref: Optional[str] = typer.Argument(None, help="Session name, id or unique id prefix."),
    last: bool = typer.Option(False, "--last", help="Resume the most recently used session."),
    model: Optional[str] = typer.Option(None, "--model", help="Use another model (needs --rebuild if it differs)."),
    strategy: Optional[str] = typer.Option(None, "--strategy"),
    rebuild: bool = typer.Option(False, "--rebuild", help="Replay the transcript through a different model."),
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
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.config import load_config
    from weprompt_cli.errors import NotFoundError, WePromptError
    from weprompt_cli.paths import resolve_home
    from weprompt_cli.personas import find_persona
    from weprompt_cli.store import SessionStore

    out = Output(verbose=verbose)
    if (ref is None) == (not last):
        raise UsageError("name a session or use --last", hint="weprompt list-sessions")
    config = load_config()
    store = SessionStore(resolve_home())
    meta = store.last() if last else store.resolve(ref or "")
    opened = store.open(meta.id)  # locks before the model loads: a busy session fails fast
    try:
        if message is None:
            message = _read_stdin_message()
        try:
            persona_obj = find_persona(opened.meta.persona)
        except NotFoundError:
            out.warn(f"warning: persona {opened.meta.persona} no longer exists; going on without its settings")
            persona_obj = None
        overrides = _cli_overrides(temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, seed=seed)
        params = _sampling(config, None, opened.meta.sampling, overrides)
        model_arg = model or (opened.meta.model or {}).get("path")
        engine = load_engine_for_cli(out, model_arg, strategy, config, graph=not no_graph)
        session = ChatSession.resume(
            engine, store, opened, persona_obj, params, rebuild=rebuild, notify=out.warn,
            progress=out.replay_progress(),
        )
    except (WePromptError, KeyboardInterrupt, Exception):
        opened.close()
        raise
    with session:
        out.info(f"session {session.name} ({session.id}) · {len(session.turns)} turns")
        if message is None:
            out.show_recent_turns(session.turns)
        _run(session, out, message, verbose=verbose)
