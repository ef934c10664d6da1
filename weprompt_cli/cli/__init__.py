"""Command-line entry point: runs the Typer app and owns the error contract.

Only here does a `WePromptError` become `weprompt: error: ...` on stderr with a hint
line and an exit code; everything else raises.
"""

from __future__ import annotations

import os
import sys

import typer

from weprompt_cli.errors import ExitCode, WePromptError
from weprompt_cli.cli.app import app

# Importing the command modules registers their commands on `app`; none of them
# imports torch at module level (`weprompt --help` stays fast).
from weprompt_cli.cli import register  # noqa: F401,E402


def _print_error(message: str, hint: str | None = None) -> None:
    sys.stderr.write(f"weprompt: error: {message}\n")
    if hint:
        sys.stderr.write(f"  hint: {hint}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the contract's code."""
    raise_errors = os.environ.get("WEPROMPT_RAISE_ERRORS") == "1" or "--traceback" in (argv or sys.argv[1:])
    try:
        rv = _click_command().main(args=argv, prog_name="weprompt", standalone_mode=False)
    except WePromptError as exc:
        if raise_errors:
            raise
        _print_error(exc.one_line(), exc.hint)
        sys.exit(int(exc.code))
    except typer.Abort:
        sys.stderr.write("\n")
        sys.exit(int(ExitCode.INTERRUPTED))
    except KeyboardInterrupt:
        if raise_errors:
            raise
        sys.stderr.write("\ninterrupted\n")
        sys.exit(int(ExitCode.INTERRUPTED))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.TyperException, *_click_exceptions()) as exc:
        # Usage errors (Typer's vendored Click, or Click itself): one line plus a hint.
        if raise_errors:
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            # A group run without a command: show its help, as Click does.
            sys.stderr.write(exc.format_message() + "\n")
            sys.exit(int(ExitCode.USAGE))
        hint = None
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f"see '{ctx.command_path} --help'"
        _print_error(exc.format_message().replace("\n", " "), hint)
        sys.exit(int(getattr(exc, "exit_code", ExitCode.USAGE)))
    except BrokenPipeError:
        # `weprompt ... | head`: the reader went away; that is not an error of ours.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        sys.exit(0)
    except Exception as exc:  # a bug: still one line, unless asked for the traceback
        if raise_errors:
            raise
        _print_error(f"unexpected {type(exc).__name__}: {exc}", "rerun with --traceback and report it")
        sys.exit(int(ExitCode.ERROR))
    if isinstance(rv, int) and rv:
        sys.exit(rv)


def _click_exceptions() -> tuple[type[Exception], ...]:
    """Click's own exception base, for Typer releases that do not vendor Click."""
    try:
        import click
    except ImportError:
        return ()
    return (click.ClickException,)


def _click_command():  # type: ignore[no-untyped-def]
    import typer.main

    return typer.main.get_command(app)
