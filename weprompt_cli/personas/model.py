"""The `Persona` noun and the key of its cached prompt state."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PersonaSource = Literal["built-in", "user"]

# Bump when the meaning of the hashed fields changes, so old cached states stop matching.
CONTENT_HASH_VERSION = 1


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

    def content_hash(self) -> str:
        """The sha256 (hex) of the fields that shape the prompt state: system and examples.

        Title, description, sampling and stop strings do not change what is fed to the
        model before the first turn, so editing them keeps a cached state valid.
        """
        canonical = json.dumps(
            {
                "v": CONTENT_HASH_VERSION,
                "system": self.system,
                "examples": [[user, assistant] for user, assistant in self.examples],
            },
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def persona_state_key(persona: Persona, *, model_fingerprint: str, chat_format: str) -> str:
    """The cache key (64 hex chars, safe as a file name) of `persona`'s prompt state.

    The state after the persona prefix depends on the persona's content, the model's
    weights and tokenizer (its fingerprint) and the chat format that renders the prefix
    (World and Raven label turns differently); nothing else.
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
