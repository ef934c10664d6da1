"""Imports every command module so that its commands attach to the app."""

# Each module below adds commands to `weprompt_cli.cli.app`; keep them torch-free at import.
from weprompt_cli.cli import personas  # noqa: F401,E402
from weprompt_cli.cli import models  # noqa: F401,E402
from weprompt_cli.cli import config_cmd  # noqa: F401,E402
from weprompt_cli.cli import doctor  # noqa: F401,E402
