"""Imports every command module so that its commands attach to the app."""

# Each module below adds commands to `weprompt_cli.cli.app`; keep them torch-free at import.
from weprompt_cli.cli import personas  # noqa: F401,E402
