"""The engine a server answers with: the model's engine, batched when the model can batch.

Used by `weprompt serve` and by every `weprompt cluster` replica, so both serve the same way.
"""

from __future__ import annotations

from typing import Any

from weprompt_cli.server.settings import SERIAL_NOTE


def serving_engine(engine: Any, max_batch: int, prefill_budget: int) -> tuple[Any, int, str]:
    """(the engine to serve with, requests answered at once, why batching is off or ""):
    a `BatchedEngine` over `engine` when `max_batch` > 1 and the model family batches."""
    from weprompt_cli.engine.batched import BatchedEngine, batching_support

    if max_batch <= 1:
        return engine, 1, SERIAL_NOTE
    ok, why = batching_support(engine)
    if not ok:
        return engine, 1, why
    return BatchedEngine(engine, max_batch=max_batch, prefill_budget=prefill_budget), max_batch, ""
