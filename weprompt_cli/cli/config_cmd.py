"""`weprompt config show|set|unset`: settings in <home>/config.toml."""

from __future__ import annotations

import json

import typer

from weprompt_cli.cli.app import config_app
from weprompt_cli.context import Context


@config_app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print every setting, its value and whether config.toml sets it."""
    from weprompt_cli.config import config_items

    home = Context.create().home
    items = config_items(home)
    if as_json:
        typer.echo(json.dumps({k: v for k, v, _ in items}, indent=2))
        return
    typer.echo(f"# {home.config_file}")
    width = max(len(k) for k, _, _ in items)
    for key, value, is_set in items:
        shown = "(engine default)" if value is None and key not in ("default_model",) else value
        if key == "default_model" and value is None:
            shown = "(the embedded demo model)"
        typer.echo(f"{key.ljust(width)}  {shown}{'' if is_set else '   [default]'}")


@config_app.command("set")
def set_(
    key: str = typer.Argument(..., help="Setting name."), value: str = typer.Argument(..., help="New value.")
) -> None:
    """Validate and store one setting."""
    from weprompt_cli.config import set_value

    stored = set_value(key, value, Context.create().home)
    typer.echo(f"{key} = {stored!r}")


@config_app.command("unset")
def unset(key: str = typer.Argument(..., help="Setting name.")) -> None:
    """Remove a setting from config.toml (back to its default)."""
    from weprompt_cli.config import unset_value

    if unset_value(key, Context.create().home):
        typer.echo(f"{key} unset")
    else:
        typer.echo(f"{key} was not set")
