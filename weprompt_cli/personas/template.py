"""`weprompt personas new NAME`: a commented persona file that is valid as written."""

from __future__ import annotations

from pathlib import Path

from weprompt_cli.atomic import atomic_write_text
from weprompt_cli.errors import ConflictError
from weprompt_cli.paths import Home
from weprompt_cli.personas.loader import SCHEMA_VERSION, validate_persona_name

_TEMPLATE = '''\
# A WePrompt persona. Edit it, then try it: weprompt chat --persona {name}
# Check it with: weprompt personas show {name}
# A file here with the name of a built-in persona (sql, project, general) replaces it.

schema_version = {schema}

# Must be the file name without ".toml".
name = "{name}"
title = "{title}"
description = "One line that says what this persona is for."

# Fed to the model once, before the first turn ("System: ..." for World models).
# Keep it short and concrete; a blank line inside it reads as the end of a turn.
system = """
You are {title}, a helpful assistant. Answer briefly and clearly.
"""

# Extra strings that end a reply (the blank line between turns always does).
stop = []

# Sampling overrides; any key left out uses the configured default.
[sampling]
# temperature = 1.0        # >= 0; lower is more focused, 0 is greedy
# top_p = 0.7              # in (0, 1]
# top_k = 0                # 0 turns it off
# presence_penalty = 0.0
# frequency_penalty = 0.0
# penalty_decay = 0.996    # in [0, 1]
# max_tokens = 400         # > 0

# Example exchanges show the model the tone and scope of its answers; add as many
# [[examples]] sections as you like (two or three is plenty).
# [[examples]]
# user = "A question this persona should answer."
# assistant = "The kind of answer it should give."
'''


def persona_template(name: str, *, state: str | None = None) -> str:
    """The text of a new, valid, commented persona file called `name` (`state`: a state file's name)."""
    validate_persona_name(name)
    title = " ".join(part.capitalize() for part in name.replace("_", " ").replace("-", " ").split()) or name
    # The name is restricted to [A-Za-z0-9._-], so it needs no TOML escaping.
    text = _TEMPLATE.format(name=name, title=title.replace('"', ""), schema=SCHEMA_VERSION)
    if state is not None:
        import json

        # Top-level keys go before the first [table] header.
        head, sep, tail = text.partition("\n[sampling]")
        cut = head.rfind("\n# Sampling overrides")
        before, after = (head[:cut], head[cut:]) if cut != -1 else (head, "")
        text = before + (
            "\n# A state-tuned initial state (RWKV-PEFT state tuning) for the base model it was tuned on: the\n"
            "# chat starts from it, then the system prompt above (if any) is fed on top. Looked up beside this\n"
            "# file, then under <home>/states/. Works with that model's .pth (the rwkv backend).\n"
            f"state = {json.dumps(state)}\n"
        ) + after + sep + tail
    return text


def write_persona_template(name: str, *, force: bool = False, home: Home, state: str | None = None) -> Path:
    """Write `<home>/personas/NAME.toml` from the template and return its path.

    Raises `ConflictError` when the file exists, unless `force`.
    """
    validate_persona_name(name)
    path = home.personas / f"{name}.toml"
    if path.exists() and not force:
        raise ConflictError(
            f"persona file '{name}.toml' already exists",
            path=path,
            hint=f"edit it, or run 'weprompt personas new {name} --force' to replace it",
        )
    atomic_write_text(path, persona_template(name, state=state))
    return path
