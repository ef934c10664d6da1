"""The `Persona` noun and the key of its cached prompt state."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

PersonaSource = Literal["built-in", "user"]

# Bump when the meaning of the hashed fields changes, so old cached states stop matching.
CONTENT_HASH_VERSION = 1

# Where a persona's system prompt takes the connected database's schema text.
SCHEMA_PLACEHOLDER = "{schema}"
# What `{schema}` stands for when no database is connected and the file names no default.
NO_SCHEMA_TEXT = "no database is connected"


def fill_schema(template: str, schema: str) -> str:
    """`template` with every `{schema}` replaced by `schema` (no other braces are touched)."""
    return template.replace(SCHEMA_PLACEHOLDER, schema)


@dataclass(frozen=True)
class Persona:
    """One validated persona file: what the model is told before the first turn."""

    name: str
    title: str
    description: str
    system: str
    examples: tuple[tuple[str, str], ...] = ()
    # Only the keys the file sets; the config and the model's defaults fill in the rest.
    sampling: dict[str, Any] = field(default_factory=dict, hash=False)
    stop: tuple[str, ...] = ()
    source: PersonaSource = "user"
    path: Path = Path()
    # The database the persona connects by default (a path, a URL without its password, or "demo").
    db: str | None = None
    # The system prompt as written, when it has a `{schema}` placeholder (None: it has none). `system`
    # is this text with the placeholder filled: by `schema` until a database is connected.
    template: str | None = None
    schema: str | None = None  # the file's `schema`: what `{schema}` means without a database
    # A G1 model's thinking mode for this persona ("off", "on", "bit", "lot"); None: the config's or off.
    think: str | None = None
    # A state-tuned initial state (RWKV-PEFT `time_state`, `.pth` or `.safetensors`) and its sha256.
    state_file: Path | None = None
    state_sha256: str | None = None

    @property
    def takes_schema(self) -> bool:
        """True when the system prompt has a `{schema}` placeholder."""
        return self.template is not None

    def with_schema(self, schema: str | None) -> Persona:
        """A copy whose system prompt has `{schema}` filled with `schema` (None: the persona's default).

        The cache key of the prompt state hashes the filled system text, so a persona filled
        with another database's schema gets its own cached state, and the same schema the same one.
        """
        if self.template is None:
            return self
        text = schema if schema is not None else (self.schema or NO_SCHEMA_TEXT)
        return replace(self, system=fill_schema(self.template, text))

    def content_hash(self) -> str:
        """The sha256 (hex) of the fields that shape the prompt state: system and examples.

        Title, description, sampling and stop strings do not change what is fed to the
        model before the first turn, so editing them keeps a cached state valid. `system` is
        the filled text: a database's schema in it is part of the hash.
        """
        content: dict[str, Any] = {
            "v": CONTENT_HASH_VERSION,
            "system": self.system,
            "examples": [[user, assistant] for user, assistant in self.examples],
        }
        if self.state_sha256 is not None:
            content["state"] = self.state_sha256  # the initial state the prompt is fed on top of
        canonical = json.dumps(
            content,
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def persona_state_key(persona: Persona, *, model_fingerprint: str, chat_format: str) -> str:
    """The cache key (64 hex chars, safe as a file name) of `persona`'s prompt state.

    The state after the persona prefix depends on the persona's content (its system text,
    with the connected database's schema filled in, and its examples), the model's weights
    and tokenizer (its fingerprint) and the chat format that renders the prefix (World and
    Raven label turns differently); nothing else.
    """
    canonical = json.dumps(
        {
            "v": CONTENT_HASH_VERSION,
            "persona": persona.content_hash(),
            "model": model_fingerprint,
            "format": chat_format,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def persona_state_path(cache_dir: Path, key: str) -> Path:
    """Where the cached prompt state for `key` lives: `<cache>/persona-states/<key>.safetensors`."""
    return Path(cache_dir) / "persona-states" / f"{key}.safetensors"
