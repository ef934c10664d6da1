"""`weprompt serve`: the HTTP API (WePrompt 1.0's endpoint and an OpenAI-compatible one)."""

from __future__ import annotations

import os

import typer

from weprompt_cli.cli.app import app
from weprompt_cli.errors import UsageError


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback unless an API key is set)."),
    port: int = typer.Option(8000, "--port", help="TCP port; 0 picks a free one (printed once ready)."),
    model: str | None = typer.Option(None, "--model", help="Catalog name or path of an RWKV .pth checkpoint."),
    strategy: str | None = typer.Option(None, "--strategy", help="rwkv strategy, e.g. 'cpu fp32', 'cuda fp16', or auto."),
    api_key: str | None = typer.Option(
        None, "--api-key", help="Require this key (Authorization: Bearer KEY). Default: $WEPROMPT_API_KEY."
    ),
    max_tokens: int = typer.Option(2048, "--max-tokens-cap", help="Largest max_tokens a request may ask for."),
    cache_entries: int = typer.Option(64, "--cache-entries", help="Prefix state cache: most states kept (0: off)."),
    cache_mb: int = typer.Option(256, "--cache-mb", help="Prefix state cache: most memory for states, in MiB."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show model loading details."),
    no_graph: bool = typer.Option(False, "--no-graph", help="Decode without CUDA graphs (debugging)."),
    max_batch: int = typer.Option(
        16, "--max-batch", help="Requests answered at once, advanced together one token per step (1: one at a time)."
    ),
    max_queue: int = typer.Option(64, "--max-queue", help="Requests that may wait; past this: 503 with Retry-After."),
    prefill_budget: int = typer.Option(
        128, "--prefill-budget", help="Prompt tokens fed between two decode steps (keeps running answers steady)."
    ),
    db: str | None = typer.Option(
        None, "--db", help="A database for the sql persona (SQLite path, URL, or demo): its schema in the prompt, "
        "every answer's SQL checked read-only (a password: in the URL or $WEPROMPT_DB_PASSWORD).",
    ),
) -> None:
    """Serve the model over HTTP: /generate-response, /v1/chat/completions, /v1/models, /health."""
    # fastapi and uvicorn are imported here and in weprompt_cli.server only, never at CLI import.
    from weprompt_cli.chat.sql_advisor import NO_DB, SqlAdvisor
    from weprompt_cli.cli.loading import load_engine_for_cli
    from weprompt_cli.context import Context
    from weprompt_cli.render.output import Output
    from weprompt_cli.server.settings import CacheBounds, Limits, ServerSettings, check_bind
    from weprompt_cli.store import SessionStore

    key = api_key if api_key is not None else os.environ.get("WEPROMPT_API_KEY") or None
    check_bind(host, key)  # before the model loads: a refused bind fails fast
    if not 0 <= port <= 65535:
        raise UsageError(f"invalid --port {port}: use 0 to 65535")
    if max_tokens < 1 or cache_entries < 0 or cache_mb < 0:
        raise UsageError("--max-tokens-cap must be at least 1, and the cache bounds 0 or more")
    if not 1 <= max_batch <= 254 or max_queue < 0 or prefill_budget < 1:
        raise UsageError("--max-batch must be 1 to 254, --max-queue 0 or more, --prefill-budget at least 1")
    try:
        from weprompt_cli.server.app import create_app
        from weprompt_cli.server.backend import Backend
        from weprompt_cli.server.batching import serving_engine
        from weprompt_cli.server.run import announce, bind_socket
        from weprompt_cli.server.run import serve as run_server
    except ImportError as exc:
        raise UsageError(
            f"the HTTP server needs fastapi and uvicorn ({exc.name} is missing)",
            hint="pip install 'weprompt[server]'",
        ) from None

    limits = Limits(max_tokens_cap=max_tokens, default_max_tokens=min(Limits().default_max_tokens, max_tokens),
                    max_queue=max_queue)
    ctx = Context.create(verbose=verbose)
    out = Output.for_context(ctx)
    config = ctx.config
    advisor = None
    if db is not None and db.strip().lower() not in NO_DB:
        advisor = SqlAdvisor.open(db, cache_dir=ctx.home.cache / "db", fix=0)  # before the model: fails fast
        out.info(f"database {advisor.describe()}")
        for note in advisor.notes():
            out.warn(note)
    try:
        sock = bind_socket(host, port)  # a taken port fails before the model loads
    except BaseException:
        if advisor is not None:
            advisor.close()
        raise
    try:
        engine = load_engine_for_cli(ctx, out, model, strategy, graph=not no_graph)
        engine, workers, note = serving_engine(engine, max_batch, prefill_budget)
        if verbose:
            out.info(f"batching: {'on, up to ' + str(workers) + ' streams' if workers > 1 else 'off (' + note + ')'}")
        settings = ServerSettings(
            host=host, port=port, api_key=key, limits=limits,
            cache=CacheBounds(max_entries=cache_entries, max_bytes=cache_mb * 1024 * 1024),
            max_batch=workers, batching_note=note,
        )
        backend = Backend(engine, SessionStore(ctx.home), config, settings, advisor=advisor)
        run_server(create_app(backend, settings), sock, on_ready=announce)
    finally:
        sock.close()
        if advisor is not None:
            advisor.close()
