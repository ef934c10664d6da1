"""The error contract: one `WePromptError` type and one table of exit codes.

Core code raises `WePromptError(message, hint=..., path=...)`; only the CLI turns it
into `weprompt: error: <message> (<path>)` plus a hint line, and exits with `code`.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # anything not named below
    USAGE = 2  # bad option or argument value (Typer/Click uses 2 as well)
    NOT_FOUND = 3  # unknown persona, session, model file
    INVALID = 4  # a file exists but is not what it should be (not a checkpoint, bad TOML)
    UNSAFE = 5  # refused for safety: a pickle that would run code, path traversal
    HARDWARE = 6  # a strategy this machine cannot run
    LOCKED = 7  # a session held by another process
    CONFLICT = 8  # a name already taken
    NETWORK = 9  # hub unreachable, offline
    DISK = 10  # disk full, permission denied on the home
    INTERRUPTED = 130  # Ctrl-C


class WePromptError(Exception):
    """An error the user can act on: what went wrong, where, and what fixes it."""

    code: ExitCode = ExitCode.ERROR

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        path: str | Path | None = None,
        code: ExitCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = str(path) if path is not None else None
        if code is not None:
            self.code = code

    def one_line(self) -> str:
        """The single stderr line: `<message> (<path>)`."""
        where = f" ({self.path})" if self.path else ""
        return f"{self.message}{where}"


class NotFoundError(WePromptError):
    code = ExitCode.NOT_FOUND


class InvalidFileError(WePromptError):
    code = ExitCode.INVALID


class UnsafeError(WePromptError):
    code = ExitCode.UNSAFE


class HardwareError(WePromptError):
    code = ExitCode.HARDWARE


class LockedError(WePromptError):
    code = ExitCode.LOCKED


class ConflictError(WePromptError):
    code = ExitCode.CONFLICT


class NetworkError(WePromptError):
    code = ExitCode.NETWORK


class DiskError(WePromptError):
    code = ExitCode.DISK


class UsageError(WePromptError):
    code = ExitCode.USAGE
