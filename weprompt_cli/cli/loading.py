"""Loading the model for a command: resolve the name or path, load, say what was loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weprompt_cli.cli.output import Output

DEMO_NOTE = (
    "Using WePrompt's small built-in demo model (it knows the demo SQL schema and little else). "
    "For real work: weprompt models pull g1-1.5b, then --model g1-1.5b."
)


def load_engine_for_cli(
    out: "Output", model: str | None, strategy: str | None, config: Any, *, graph: bool = True
) -> Any:
    """The engine for `--model`/`--strategy` (or the config's, or the demo model), with a spinner."""
    from weprompt_cli.engine import load_engine
    from weprompt_cli.models.resolve import resolve_model

    resolved = resolve_model(model, config=config)
    strategy = strategy or getattr(config, "strategy", None) or "auto"
    with out.status(f"loading {resolved.path.name} ({strategy})"):
        engine = load_engine(resolved.path, strategy, verbose=out.verbose, graph=graph)
    if out.verbose:
        out.info(f"model {resolved.path} · {engine.info.arch} · strategy {engine.strategy}")
        out.info(f"decode path: {engine.decode_path} ({engine.decode_path_reason})")
    if resolved.is_demo:
        out.dim(DEMO_NOTE)
    return engine
