"""Loading the model for a command: resolve the name or path, load, say what was loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from weprompt_cli.chat.formats import ChatFormat
    from weprompt_cli.context import Context
    from weprompt_cli.engine.base import Engine
    from weprompt_cli.render.output import Output

DEMO_NOTE = (
    "Using WePrompt's small built-in demo model (it knows the demo SQL schema and little else). "
    "For real work: weprompt models pull g1-1.5b, then --model g1-1.5b."
)


def load_engine_for_cli(
    ctx: Context, out: Output, model: str | None, strategy: str | None, *, graph: bool = True
) -> Engine:
    """The engine for `--model`/`--strategy` (or the config's, or the demo model), with a spinner.

    A catalog name picks its .pth or a downloaded GGUF build by the strategy (see
    models/resolve.py). With --verbose, which file and why, then what was loaded and how
    (backend, strategy, decode path), is printed once.
    """
    from weprompt_cli.engine import load_engine
    from weprompt_cli.models.resolve import resolve_model

    strategy = strategy or ctx.config.strategy or "auto"
    resolved = resolve_model(model, config=ctx.config, home=ctx.home, strategy=strategy)
    with out.status(f"loading {resolved.path.name} ({strategy})"):
        engine = load_engine(
            resolved.path,
            strategy,
            models_dir=ctx.home.models,
            cache_dir=ctx.home.cache,
            graph=graph,
            verbose=ctx.verbose,
        )
    if resolved.note:
        out.dim(resolved.note)
    elif resolved.reason:
        out.describe_engine([f"model: {resolved.path.name}: {resolved.reason}"])
    out.describe_engine(engine.describe())
    if resolved.is_demo:
        out.dim(DEMO_NOTE)
    return engine


def pick_format(ctx: Context, model: str | None, engine: Engine, name: str | None) -> ChatFormat:
    """The chat format of a new session: --format, else the catalog entry's, else what the model file says."""
    from weprompt_cli.chat.formats import chat_format_for, get_format
    from weprompt_cli.models.catalog import load_catalog

    if name is not None:
        return get_format(name)
    entry = load_catalog().find(model or ctx.config.default_model or "demo")
    if entry is not None and entry.chat_format:
        return get_format(entry.chat_format)
    return chat_format_for(engine.info, engine.tokenizer)
