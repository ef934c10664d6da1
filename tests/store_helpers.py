"""Builders shared by the store tests: a store on the test home, turns and real states."""

from __future__ import annotations

from typing import TYPE_CHECKING

from weprompt_cli.paths import resolve_home
from weprompt_cli.store import OpenSession, SessionStore, Turn, utc_now

if TYPE_CHECKING:
    import torch

FP = "fp-test-1"


def make_store(**kwargs: int) -> SessionStore:
    return SessionStore(resolve_home(), **kwargs)


def make_session(store: SessionStore, name: str | None = "demo", persona: str = "sql") -> OpenSession:
    return store.create(
        name=name,
        persona=persona,
        model_path="/models/tiny-v7.pth",
        fingerprint=FP,
        arch="v7",
        chat_format="world",
        sampling={"temperature": 1.0, "top_p": 0.3},
    )


def make_turn(index: int, user: str | None = None, stop: str = "stop") -> Turn:
    user = user if user is not None else f"question {index}"
    return Turn(
        index=index,
        user=user,
        assistant=f"answer {index}",
        prompt_text=f"User: {user}\n\nAssistant:",
        reply_text=f" answer {index}\n\n",
        prompt_tokens=[10, 20, index],
        reply_tokens=[30, index, 11],
        stop_reason=stop,  # type: ignore[arg-type]
        started_at=utc_now(),
        finished_at=utc_now(),
        tokens_per_s=12.5,
        first_token_s=0.1,
    )


def make_state(seed: int, size: int = 64) -> list[torch.Tensor]:
    """A state shaped like a small rwkv list of tensors, distinct per seed."""
    import torch  # lazy: the subprocess helpers that make no states stay light

    g = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=g), torch.randn(4, size, generator=g), torch.full((3,), float(seed))]


def add_turns(session: OpenSession, n: int, *, with_prefix: bool = True) -> None:
    if with_prefix and not session.turns():
        session.save_state(0, make_state(0), fingerprint=FP)
    start = len(session.turns()) + 1
    for i in range(start, start + n):
        session.append_turn(make_turn(i), make_state(i), fingerprint=FP)
