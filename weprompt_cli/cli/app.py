"""The Typer application object and its sub-command groups (commands register here)."""

from __future__ import annotations

import typer

from weprompt_cli import __version__

app = typer.Typer(
    name="weprompt",
    help="Chat with local RWKV language models in your terminal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
sessions_app = typer.Typer(help="Show, export, rename, fork and delete sessions.", no_args_is_help=True)
personas_app = typer.Typer(help="List, show and create personas.", invoke_without_command=True)
models_app = typer.Typer(help="List, download, convert and remove RWKV models.", no_args_is_help=True)
config_app = typer.Typer(help="Show and change settings in <home>/config.toml.", no_args_is_help=True)

app.add_typer(sessions_app, name="sessions")
app.add_typer(personas_app, name="personas")
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"weprompt {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    traceback: bool = typer.Option(
        False, "--traceback", help="Show the full traceback of an error (also: WEPROMPT_RAISE_ERRORS=1)."
    ),
) -> None:
    """Chat with local RWKV language models in your terminal."""
    if traceback:
        import os

        os.environ["WEPROMPT_RAISE_ERRORS"] = "1"
