"""Where WePrompt keeps things: one function decides the home, the rest derive from it.

Order (DESIGN.md): `$WEPROMPT_HOME` if set; else, when running from a checkout of
this project, the checkout itself (its top-level `sessions/` and `personas/`); else
the platform's user data directory (platformdirs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The project checkout this package runs from, or None for an installed wheel."""
    root = PACKAGE_DIR.parent
    # A checkout has the project file and the top-level data folders beside the package.
    if (root / "pyproject.toml").is_file() and (root / "personas").is_dir() and (root / "sessions").is_dir():
        return root
    return None


@dataclass(frozen=True)
class Home:
    """The resolved home and how it was chosen (`weprompt doctor` prints both)."""

    root: Path
    source: str  # "WEPROMPT_HOME", "checkout" or "platform"

    @property
    def sessions(self) -> Path:
        return self.root / "sessions"

    @property
    def personas(self) -> Path:
        return self.root / "personas"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def history_file(self) -> Path:
        return self.root / "history"


def resolve_home() -> Home:
    """The home folder for this process (no folder is created here)."""
    env = os.environ.get("WEPROMPT_HOME")
    if env:
        # An explicit override wins, always: tests point it at a temporary folder.
        return Home(Path(env).expanduser().resolve(), "WEPROMPT_HOME")
    root = checkout_root()
    if root is not None:
        # Running from a checkout: keep sessions beside the code, as WePrompt 1.0 did.
        return Home(root, "checkout")
    import platformdirs  # lazy: only the installed case needs it

    return Home(Path(platformdirs.user_data_dir("weprompt", appauthor=False)), "platform")


def builtin_personas_dir() -> Path:
    """The personas shipped with WePrompt: the checkout's `personas/`, or the wheel's copy."""
    root = checkout_root()
    if root is not None:
        return root / "personas"
    return PACKAGE_DIR / "builtin_personas"


def demo_model_dir() -> Path:
    """The folder of the embedded demo model (package data)."""
    return PACKAGE_DIR / "demo"
