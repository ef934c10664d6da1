"""The engine: RWKV checkpoints through the `rwkv` package, tokenizers, sampling, streaming.

Importing this package is cheap (no torch): names are loaded on first use.

What the chat layer uses::

    load_engine(path, strategy="auto", *, verbose=False, models_dir=None, graph=True) -> Engine
        inspect the checkpoint, choose the strategy and tokenizer, import rwkv for the
        family (one family per process), load the model. Raises WePromptError subclasses:
        NotFoundError, InvalidFileError, UnsafeError, UsageError (strategy), HardwareError.
        RWKV-7 on CUDA decodes through a captured CUDA graph with sampling on the GPU
        (engine/gpu); graph=False (`--no-graph`) keeps the plain path.

    Engine.decode_path: str           "graph" or "plain"; Engine.decode_path_reason: str why
                                      (CPU, no CUDA, RWKV-4/5/6, --no-graph, a failed capture)

    Engine.info: ModelInfo            path, arch ("v4".."v7"), n_layer, n_embd, vocab_size,
                                      n_head, head_size, n_params, file_size, converted_strategy
    Engine.strategy: str              the canonical rwkv strategy string in use
    Engine.tokenizer: Tokenizer       encode(str) -> list[int], decode(list[int]) -> str,
                                      decode_bytes(list[int]) -> bytes (when has_bytes), name
    Engine.chat_format: ChatFormat    WORLD or RAVEN (weprompt_cli.chat.formats)
    Engine.fingerprint: str           size + shapes + file hash (hash cached per path/size/mtime)
    Engine.zero_state() -> State      a fresh state (a list of tensors)
    Engine.feed(tokens, state, *, chunk=256, progress=None, cancel=None) -> Tensor | None
        prefill in chunks, state updated in place; float32 logits after the last token.
        progress(done, total) after each chunk; cancel() checked between chunks (when it
        stops early, the state holds the chunks fed so far: check cancel() after the call).
    Engine.generate(logits, state, sampler, *, stop=("\\n\\n",), max_tokens=None,
                    cancel=None, strip_leading_space=True) -> Generation
        an iterator of text pieces (whole characters, nothing at or after a stop string);
        generation.result after exhaustion: text, raw_text, tokens, stop_reason
        ("stop" | "length" | "interrupted"), stop_string, timing (first_token_s, elapsed_s,
        n_tokens, tokens_per_s), logits. Every sampled token is fed to the state (the one
        completing the separator too), so the state equals feeding exactly result.tokens.

    clone_state(state) -> State                      deep copy (forward writes in place)
    state_to_tensors(state) -> dict[str, Tensor]     CPU tensors "s000", "s001", ...
    state_from_tensors(tensors, engine) -> State     converted to the engine's dtype/device
    state_nbytes(state) -> int
    SamplingParams(temperature=1.0, top_p=0.85, top_k=0, presence_penalty=0.0,
                   frequency_penalty=0.0, penalty_decay=0.996, max_tokens=500, seed=None)
        frozen; .with_overrides(**kw) (None values skipped); UsageError on bad values.
    Sampler(params)                                  one per reply: penalties and seeded RNG
    inspect_checkpoint(path) -> ModelInfo            no model load, no torch code execution
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Engine": "engine",
    "Generation": "engine",
    "GenerationResult": "engine",
    "Timing": "engine",
    "load_engine": "engine",
    "clone_state": "engine",
    "state_to_tensors": "engine",
    "state_from_tensors": "engine",
    "state_nbytes": "engine",
    "chat_format_for": "engine",
    "ModelInfo": "checkpoint",
    "inspect_checkpoint": "checkpoint",
    "SamplingParams": "sampling",
    "Sampler": "sampling",
    "Tokenizer": "tokenizer",
    "resolve_tokenizer": "tokenizer",
    "resolve_strategy": "strategy",
    "model_fingerprint": "fingerprint",
}

__all__ = [
    "Engine",
    "Generation",
    "GenerationResult",
    "ModelInfo",
    "Sampler",
    "SamplingParams",
    "Timing",
    "Tokenizer",
    "chat_format_for",
    "clone_state",
    "inspect_checkpoint",
    "load_engine",
    "model_fingerprint",
    "resolve_strategy",
    "resolve_tokenizer",
    "state_from_tensors",
    "state_nbytes",
    "state_to_tensors",
]
assert sorted(__all__) == sorted(_EXPORTS)

if TYPE_CHECKING:
    from weprompt_cli.engine.checkpoint import ModelInfo, inspect_checkpoint
    from weprompt_cli.engine.engine import (
        Engine,
        Generation,
        GenerationResult,
        Timing,
        chat_format_for,
        clone_state,
        load_engine,
        state_from_tensors,
        state_nbytes,
        state_to_tensors,
    )
    from weprompt_cli.engine.fingerprint import model_fingerprint
    from weprompt_cli.engine.sampling import Sampler, SamplingParams
    from weprompt_cli.engine.strategy import resolve_strategy
    from weprompt_cli.engine.tokenizer import Tokenizer, resolve_tokenizer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
