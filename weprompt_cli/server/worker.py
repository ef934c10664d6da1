"""The generation workers: a pool of threads that run requests, one session at a time each.

Each request submits a `Job` to the pool; `workers` threads take jobs in submission
order. With one worker this is the serialized FIFO worker (one request at a time, the
`--max-batch 1` server). With more, each job runs its turn on its own thread and a
`BatchedEngine` advances all of them together; the pool never runs two jobs of the same
session at once (a job whose session is busy waits, and keeps its place in line).

A plain Lock is not fair (any waiter may win it) and would block event-loop threads;
instead the pool keeps its own ordered list. A job streams its output back to the event
loop that submitted it (pieces are handed over in bunches, so a busy loop is woken once
per bunch, not once per token). Cancelling a job (its client went away)
sets a flag the engine checks between tokens; a job cancelled while still waiting is
skipped without touching the model. More than `max_queue` waiting jobs: `QueueFull`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger("weprompt.server")

_PIECE, _DONE, _ERROR = "piece", "done", "error"


class QueueFull(Exception):
    """More jobs are waiting than the server accepts."""


class JobCancelled(Exception):
    """The job was cancelled before it produced a result."""


class Job:
    """One unit of model work: `fn(job)` runs on a worker and may `emit` text pieces."""

    def __init__(
        self, fn: Callable[[Job], Any], loop: asyncio.AbstractEventLoop, label: str = "", key: str | None = None
    ) -> None:
        self.fn = fn
        self.label = label
        self.key = key  # jobs with the same key (a session name) never run at once
        self._loop = loop
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancel = threading.Event()
        self._pending: list[str] = []  # pieces emitted, not yet handed to the loop
        self._pending_lock = threading.Lock()
        self.started = threading.Event()
        self.result: Any = None
        self.finished = threading.Event()

    # --- worker side ---------------------------------------------------------
    def cancelled(self) -> bool:
        """True once the client went away (the engine's `cancel` callable)."""
        return self._cancel.is_set()

    def emit(self, piece: str) -> None:
        """Send one text piece to the waiting request (called on the worker thread)."""
        if not piece:
            return
        with self._pending_lock:
            first = not self._pending
            self._pending.append(piece)
        if first:  # one wake-up of the loop per bunch of pieces
            self._call(self._flush)

    def _flush(self) -> None:
        with self._pending_lock:
            pieces, self._pending = self._pending, []
        for piece in pieces:
            self._events.put_nowait((_PIECE, piece))

    def _post(self, item: tuple[str, Any]) -> None:
        def put() -> None:
            self._flush()  # pieces first, then the end
            self._events.put_nowait(item)

        self._call(put)

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:
            pass  # the event loop is gone (server shutting down): nobody is listening

    # --- request side --------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    async def stream(self) -> AsyncIterator[str]:
        """The pieces as they come; the job's result is `self.result` after the loop ends."""
        async for bunch in self.bunches():
            for piece in bunch:
                yield piece

    async def bunches(self) -> AsyncIterator[list[str]]:
        """The pieces in bunches: each time, every piece that already arrived (one at least).

        A stream that falls behind (a busy loop, a slow client) then sends fewer, larger
        chunks instead of one per token.
        """
        while True:
            kind, value = await self._events.get()
            bunch: list[str] = []
            while kind == _PIECE:
                bunch.append(value)
                if self._events.empty():
                    break
                kind, value = self._events.get_nowait()
            if bunch:
                yield bunch
            if kind == _PIECE:
                continue
            if kind == _DONE:
                self.result = value
                return
            raise value

    async def wait(self) -> Any:
        """Run to the end, dropping the pieces; the job's result."""
        async for _ in self.stream():
            pass
        return self.result


class WorkerPool:
    """`workers` threads running submitted jobs in submission order, one job per session at a time."""

    def __init__(self, *, workers: int = 1, max_queue: int = 64, name: str = "weprompt-generation") -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.workers = workers
        self.max_queue = max_queue
        self._name = name
        self._cond = threading.Condition()
        self._waiting: list[Job] = []
        self._running: list[Job] = []
        self._busy_keys: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.completed = 0
        self._durations: deque[float] = deque(maxlen=32)  # seconds of the last jobs, for Retry-After

    def start(self) -> None:
        with self._cond:
            if self._threads:
                return
            for i in range(self.workers):
                suffix = f"-{i}" if self.workers > 1 else ""
                thread = threading.Thread(target=self._run, name=self._name + suffix, daemon=True)
                self._threads.append(thread)
                thread.start()

    def submit(self, fn: Callable[[Job], Any], label: str = "", key: str | None = None) -> Job:
        """Queue `fn`; raises `QueueFull` when `max_queue` jobs already wait."""
        self.start()
        job = Job(fn, asyncio.get_running_loop(), label, key)
        with self._cond:
            # Jobs an idle worker is about to take are not waiting: only those beyond count.
            behind = len(self._waiting) - (self.workers - len(self._running))
            if behind >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append(job)
            self._cond.notify()
        return job

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue ahead of it at the recent pace (1 to 60)."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        ahead = (len(self._waiting) + len(self._running)) / self.workers
        return max(1, min(60, math.ceil(mean * ahead)))

    def cancel_all(self) -> None:
        """Cancel the running jobs and every waiting one (the server is going down)."""
        with self._cond:
            jobs = self._running + self._waiting
        for job in jobs:
            job.cancel()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the running jobs, drop the waiting ones, and end the threads."""
        with self._cond:
            self._stopping = True
            dropped, self._waiting = self._waiting, []
            running = list(self._running)
            self._cond.notify_all()
        for job in running:
            job.cancel()
        for job in dropped:
            job.cancel()
            job._post((_ERROR, JobCancelled("the server is shutting down")))
            job.finished.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _next(self) -> Job | None:
        """The first waiting job whose session is not busy (taken off the list), or None."""
        for i, job in enumerate(self._waiting):
            if job.key is None or job.key not in self._busy_keys:
                del self._waiting[i]
                return job
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                job = None
                while not self._stopping:
                    job = self._next()
                    if job is not None:
                        break
                    self._cond.wait()
                if job is None:
                    return
                self._running.append(job)
                if job.key is not None:
                    self._busy_keys.add(job.key)
            self._execute(job)
            with self._cond:
                self._running.remove(job)
                if job.key is not None:
                    self._busy_keys.discard(job.key)
                self.completed += 1
                self._cond.notify_all()  # a job waiting for this session may go now

    def _execute(self, job: Job) -> None:
        if job.cancelled():
            job._post((_ERROR, JobCancelled("cancelled before it started")))
            job.finished.set()
            return
        job.started.set()
        start = time.monotonic()
        try:
            result = job.fn(job)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to its request
            if not isinstance(exc, Exception):
                log.error("job %s raised %s", job.label, type(exc).__name__)
            job._post((_ERROR, exc if isinstance(exc, Exception) else RuntimeError(repr(exc))))
        else:
            job._post((_DONE, result))
        finally:
            self._durations.append(time.monotonic() - start)
            job.finished.set()


class FifoWorker(WorkerPool):
    """The serialized worker: one thread, jobs one at a time in submission order."""

    def __init__(self, *, max_queue: int = 64, name: str = "weprompt-generation") -> None:
        super().__init__(workers=1, max_queue=max_queue, name=name)
