"""The FIFO generation worker: one thread owns the model; requests queue up in order.

A plain Lock is not fair (any waiter may win it) and would block event-loop threads;
instead each request submits a `Job` to a `queue.Queue` (first in, first out) and one
worker thread runs the jobs one at a time. A job streams its output back to the event
loop that submitted it through an asyncio queue. Cancelling a job (its client went
away) sets a flag the engine checks between tokens; a job cancelled while still
waiting is skipped without touching the model.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger("weprompt.server")

_PIECE, _DONE, _ERROR = "piece", "done", "error"


class QueueFull(Exception):
    """More jobs are waiting than the server accepts."""


class JobCancelled(Exception):
    """The job was cancelled before it produced a result."""


class Job:
    """One unit of model work: `fn(job)` runs on the worker and may `emit` text pieces."""

    def __init__(self, fn: Callable[[Job], Any], loop: asyncio.AbstractEventLoop, label: str = "") -> None:
        self.fn = fn
        self.label = label
        self._loop = loop
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancel = threading.Event()
        self.started = threading.Event()
        self.result: Any = None
        self.finished = threading.Event()

    # --- worker side ---------------------------------------------------------
    def cancelled(self) -> bool:
        """True once the client went away (the engine's `cancel` callable)."""
        return self._cancel.is_set()

    def emit(self, piece: str) -> None:
        """Send one text piece to the waiting request (called on the worker thread)."""
        if piece:
            self._post((_PIECE, piece))

    def _post(self, item: tuple[str, Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, item)
        except RuntimeError:
            pass  # the event loop is gone (server shutting down): nobody is listening

    # --- request side --------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    async def stream(self) -> AsyncIterator[str]:
        """The pieces as they come; the job's result is `self.result` after the loop ends."""
        while True:
            kind, value = await self._events.get()
            if kind == _PIECE:
                yield value
            elif kind == _DONE:
                self.result = value
                return
            else:
                raise value

    async def wait(self) -> Any:
        """Run to the end, dropping the pieces; the job's result."""
        async for _ in self.stream():
            pass
        return self.result



class FifoWorker:
    """A single thread that runs submitted jobs one at a time, in submission order."""

    def __init__(self, *, max_queue: int = 64, name: str = "weprompt-generation") -> None:
        self.max_queue = max_queue
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._current: Job | None = None
        self._lock = threading.Lock()
        self._waiting = 0
        self.completed = 0
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def submit(self, fn: Callable[[Job], Any], label: str = "") -> Job:
        """Queue `fn`; raises `QueueFull` when `max_queue` jobs already wait."""
        self.start()
        job = Job(fn, asyncio.get_running_loop(), label)
        with self._lock:
            if self._waiting >= self.max_queue:
                raise QueueFull(f"{self._waiting} requests are already waiting")
            self._waiting += 1
        self._queue.put(job)
        return job

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> bool:
        return self._current is not None

    def cancel_all(self) -> None:
        """Cancel the running job and every waiting one (the server is going down)."""
        current = self._current
        if current is not None:
            current.cancel()
        with self._queue.mutex:
            waiting = [job for job in self._queue.queue if job is not None]
        for job in waiting:
            job.cancel()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the running job, drop the waiting ones, and end the thread."""
        current = self._current
        if current is not None:
            current.cancel()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancel()
                job._post((_ERROR, JobCancelled("the server is shutting down")))
        self._queue.put(None)
        if self._started:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self._waiting -= 1
            if job.cancelled():
                job._post((_ERROR, JobCancelled("cancelled before it started")))
                job.finished.set()
                continue
            self._current = job
            job.started.set()
            try:
                result = job.fn(job)
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to its request
                if not isinstance(exc, Exception):
                    log.error("job %s raised %s", job.label, type(exc).__name__)
                job._post((_ERROR, exc if isinstance(exc, Exception) else RuntimeError(repr(exc))))
            else:
                job._post((_DONE, result))
            finally:
                self._current = None
                self.completed += 1
                job.finished.set()
