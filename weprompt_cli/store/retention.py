"""How many state checkpoints a session keeps.

Every turn's state is kept while the session's states fit a size budget: that makes
`/undo`, `/retry` and `fork --at N` instant. Past the budget, older states are thinned:
turn 0 (the persona prefix) and the latest few always stay, and of the rest only every
`stride`-th turn, the stride doubling until the kept states fit. An evicted state is
rebuilt on demand by replaying the transcript from the nearest kept one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024
DEFAULT_KEEP_LATEST = 3


def plan_eviction(
    sizes: Mapping[int, int],
    *,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    keep_latest: int = DEFAULT_KEEP_LATEST,
    protect: Iterable[int] = (),
) -> set[int]:
    """The turns whose states to delete so the rest fit `budget_bytes` (turn -> file size)."""
    if sum(sizes.values()) <= budget_bytes:
        return set()
    turns = sorted(sizes)
    always = {0, *turns[-keep_latest:], *protect} if keep_latest > 0 else {0, *protect}
    always &= set(turns)
    stride = 2
    last = turns[-1]
    while True:
        keep = always | {t for t in turns if t % stride == 0}
        if sum(sizes[t] for t in keep) <= budget_bytes or stride > last:
            break
        stride *= 2
    if sum(sizes[t] for t in keep) > budget_bytes:
        keep = always  # a budget below a few states: keep only what must stay
    return set(turns) - keep
