"""Ctrl-C as a request, not an exception: generation stops between tokens.

A KeyboardInterrupt raised in the middle of a forward pass could leave a half-updated
RNN state; instead, while a reply is generated, SIGINT only sets a flag that the
engine checks between tokens (and between prefill chunks).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


class CancelFlag:
    """A callable flag: `flag()` is True once Ctrl-C was pressed (or `set()` called)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


@contextmanager
def sigint_cancels() -> Iterator[CancelFlag]:
    """Within the block, Ctrl-C sets the yielded flag instead of raising KeyboardInterrupt."""
    flag = CancelFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals reach the main thread only; the caller cancels by other means
        return

    def handler(signum: int, frame: object) -> None:
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
