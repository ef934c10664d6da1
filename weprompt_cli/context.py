"""One `Context` per command: the home, the settings and the output streams, passed down.

The CLI builds it once (`Context.create()`, the only caller of `resolve_home()` besides
`weprompt doctor`'s report of it); everything below takes what it needs from it instead
of looking for the home, reading the config or printing on its own (httpie's
`Environment`, llm's `user_dir()`). Tests build one with their own folder and streams.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from weprompt_cli.paths import Home, resolve_home

if TYPE_CHECKING:
    from weprompt_cli.config import Config


@dataclass
class Context:
    """Where WePrompt keeps things, what the user configured, and where output goes."""

    home: Home
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    verbose: bool = False
    _config: Config | None = field(default=None, repr=False)

    @classmethod
    def create(cls, *, verbose: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None) -> Context:
        """The context of a command run by a user: the resolved home and the process's streams."""
        return cls(home=resolve_home(), stdout=stdout or sys.stdout, stderr=stderr or sys.stderr, verbose=verbose)

    @property
    def config(self) -> Config:
        """`<home>/config.toml`, read (and validated) on first use; InvalidFileError when it is bad."""
        if self._config is None:
            from weprompt_cli.config import load_config

            self._config = load_config(self.home)
        return self._config
