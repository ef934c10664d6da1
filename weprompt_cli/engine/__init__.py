"""The engine: a loaded model behind one small interface, with backends.

Importing this package is cheap (no torch): names are loaded on first use.

The seam (`engine/base.py`, `Engine`), which is all the chat layer, the store and the
server use:

    load_engine(path, strategy="auto", *, models_dir=None, cache_dir=None, graph=True, verbose=False) -> Engine
        the backend for the file (`.pth`: the rwkv package; `.gguf`: llama.cpp), loaded.
    Engine.backend, .info (ModelInfo), .strategy, .tokenizer, .fingerprint, .notes, .counters
    Engine.encode(text) -> ids
    Engine.zero_state() -> state
    Engine.feed(ids, state, *, chunk, progress, cancel) -> float32 logits | None
    Engine.generate(logits, state, sampler, *, stop, max_tokens, cancel, ban) -> Generation
        an iterator of text pieces; .result: GenerationResult (text, raw_text, tokens,
        stop_reason "stop" | "length" | "interrupted", stop_string, timing, logits).
        Every sampled token is fed, so the state equals feeding exactly result.tokens.
    Engine.clone_state / state_nbytes / state_to_tensors / state_from_tensors

Sampling: `Sampler(params)` (one per reply: penalties, seeded RNG, banned ids) with
`SamplingParams` from `weprompt_cli.params`. `inspect_checkpoint(path) -> ModelInfo`
reads a `.pth` without running code. The rwkv backend's own state helpers
(`clone_state`, `state_to_tensors`, ... on its lists of tensors) stay importable for tests
and benchmarks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Engine": "base",
    "Generation": "generation",
    "GenerationResult": "generation",
    "Timing": "generation",
    "load_engine": "load",
    "RwkvEngine": "rwkv_engine",
    "clone_state": "rwkv_engine",
    "state_to_tensors": "rwkv_engine",
    "state_from_tensors": "rwkv_engine",
    "state_nbytes": "rwkv_engine",
    "ModelInfo": "checkpoint",
    "inspect_checkpoint": "checkpoint",
    "Sampler": "sampling",
    "SamplingParams": "sampling",
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
    "RwkvEngine",
    "Sampler",
    "SamplingParams",
    "Timing",
    "Tokenizer",
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
    from weprompt_cli.engine.base import Engine
    from weprompt_cli.engine.checkpoint import ModelInfo, inspect_checkpoint
    from weprompt_cli.engine.fingerprint import model_fingerprint
    from weprompt_cli.engine.generation import Generation, GenerationResult, Timing
    from weprompt_cli.engine.load import load_engine
    from weprompt_cli.engine.rwkv_engine import (
        RwkvEngine,
        clone_state,
        state_from_tensors,
        state_nbytes,
        state_to_tensors,
    )
    from weprompt_cli.engine.sampling import Sampler
    from weprompt_cli.params import SamplingParams
    from weprompt_cli.engine.strategy import resolve_strategy
    from weprompt_cli.engine.tokenizer import Tokenizer, resolve_tokenizer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
