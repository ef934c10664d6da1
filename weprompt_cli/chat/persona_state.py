"""The persona state cache: a persona's prompt is fed once per model, then reused.

Key: the model fingerprint, the chat format and the persona's content hash, so editing
the persona's system prompt or examples (or changing model or format) makes a new entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from weprompt_cli.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from weprompt_cli.chat.formats import ChatFormat
    from weprompt_cli.engine.base import Engine
    from weprompt_cli.personas import Persona


def persona_prompt(fmt: ChatFormat, persona: Persona) -> str:
    """The exact text fed for a persona: its system prompt and examples in the chat format."""
    return fmt.persona_prefix(persona.system, list(persona.examples))


def cache_path(cache_dir: Path, engine: Engine, fmt: ChatFormat, persona: Persona) -> Path:
    """Where the state of `persona` on this engine's model, in format `fmt`, is cached."""
    from weprompt_cli.personas import persona_state_key, persona_state_path

    key = persona_state_key(persona, model_fingerprint=engine.fingerprint, chat_format=fmt.name)
    return persona_state_path(cache_dir, key)


def initial_state(engine: Engine, persona: Persona) -> Any:
    """The state a persona starts from: zero, or its state-tuned state file (checked against the model)."""
    if persona.state_file is None:
        return engine.zero_state()
    from weprompt_cli.errors import UsageError

    if engine.backend != "rwkv":
        raise UsageError(
            f"persona {persona.name} starts from a state file, which WePrompt loads on the rwkv backend (.pth models)",
            path=persona.state_file,
            hint="chat with the model's .pth file, or use another persona",
        )
    from weprompt_cli.engine.state_file import load_state_file

    info = engine.info
    wkv = load_state_file(persona.state_file, n_layer=info.n_layer, n_head=info.n_head, head_size=info.head_size,
                          arch=info.arch)
    state = engine.zero_state()
    for i, matrix in enumerate(wkv):  # per layer: [x_att, wkv, x_ffn]; the file holds the wkv matrices
        slot = state[3 * i + 1]
        state[3 * i + 1] = matrix.to(device=slot.device, dtype=slot.dtype).contiguous()
    return state


def persona_state(
    engine: Engine,
    fmt: ChatFormat,
    persona: Persona,
    cache_dir: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Any, int, bool]:
    """The state after the persona prompt: (state, tokens in the prompt, came from cache).

    The cache file is a session state file of turn 0 (same format, checks and checksum). A
    state-tuned persona's prompt is fed on top of its state file (and its key includes the file's hash).
    """
    from weprompt_cli.store.states import StateUnavailable, decode_state, encode_state, read_header

    path = cache_path(cache_dir, engine, fmt, persona)
    if path.is_file():
        try:
            tensors = decode_state(path, turn=0, fingerprint=engine.fingerprint, layout=engine.state_format,
                                   framework=engine.tensor_framework)
            _, metadata, _ = read_header(path, 0)
            return engine.state_from_tensors(tensors), int(metadata.get("tokens", "0")), True
        except (StateUnavailable, ValueError):
            pass  # a damaged or foreign cache entry is rebuilt below
    tokens = engine.tokenizer.encode(persona_prompt(fmt, persona))
    state = initial_state(engine, persona)
    if tokens:
        engine.feed(tokens, state, progress=progress)
    data = encode_state(
        engine.state_to_tensors(state),
        fingerprint=engine.fingerprint,
        turn=0,
        tokens=len(tokens),
        arch=engine.info.arch,
        layout=engine.state_format,
    )
    try:
        atomic_write_bytes(path, data)
    except Exception:  # noqa: BLE001 - a cache that cannot be written (a full disk) only costs time later
        pass
    return state, len(tokens), False
