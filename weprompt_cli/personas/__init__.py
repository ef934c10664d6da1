"""Personas: loading and validating persona files, and the key of their cached state."""

from __future__ import annotations

from weprompt_cli.personas.loader import (
    DEFAULT_PERSONA,
    PERSONA_ALIASES,
    SCHEMA_VERSION,
    available_persona_names,
    find_persona,
    list_personas,
    load_persona_file,
    persona_dirs,
    resolve_persona_name,
    validate_persona_name,
)
from weprompt_cli.personas.model import Persona, PersonaSource, persona_state_key, persona_state_path
from weprompt_cli.personas.template import persona_template, write_persona_template

__all__ = [
    "DEFAULT_PERSONA",
    "PERSONA_ALIASES",
    "SCHEMA_VERSION",
    "Persona",
    "PersonaSource",
    "available_persona_names",
    "find_persona",
    "list_personas",
    "load_persona_file",
    "persona_dirs",
    "persona_state_key",
    "persona_state_path",
    "persona_template",
    "resolve_persona_name",
    "validate_persona_name",
    "write_persona_template",
]
