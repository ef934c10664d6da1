"""Imports every command module so that its commands attach to the app."""

# Each module below adds commands to `weprompt_cli.cli.app`; keep them torch-free at import.
from weprompt_cli.cli import personas  # noqa: F401,E402
from weprompt_cli.cli import chat  # noqa: F401,E402  (chat, resume)
from weprompt_cli.cli import sessions  # noqa: F401,E402  (list-sessions, sessions ...)
from weprompt_cli.cli import models  # noqa: F401,E402
from weprompt_cli.cli import config_cmd  # noqa: F401,E402
from weprompt_cli.cli import doctor  # noqa: F401,E402
from weprompt_cli.cli import serve  # noqa: F401,E402
from weprompt_cli.cli import cluster  # noqa: F401,E402  (cluster serve|config; Ray imported only when run)
