"""The batched executor's scheduler: one thread that owns the model and serves every stream.

Each loop: streams that leave, then streams that join, then one decode step for every
stream that asked for its next token, then prefill up to the token budget. See
batched.py (`BatchedEngine`) for the behaviour a caller sees.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from weprompt_cli.engine.base import Cancel, Counters, Progress

if TYPE_CHECKING:

    from weprompt_cli.engine.sampling import Sampler

PREFILL_ROWS = 16  # prompts fed together in one batched sequence forward (CPU)
LAGGARD_SHARE = 0.5  # a slow stream is waited for this share of the last step's time
LAGGARD_MIN_S = 0.002
RATE_WINDOW_S = 10.0


class StreamCounters(Counters):
    """Counters shared by many threads: `fed` and all tokens generated, plus each generating thread's own."""

    def __init__(self, mirror: Counters | None = None) -> None:  # noqa: D107 - no dataclass init
        self._lock = threading.Lock()
        self._fed = 0
        self._generated = 0
        self._local = threading.local()
        self._mirror = mirror  # the inner engine's counters, kept in step

    @property  # type: ignore[override]
    def fed(self) -> int:
        return self._fed

    @fed.setter
    def fed(self, value: int) -> None:
        with self._lock:
            delta, self._fed = value - self._fed, value
            if self._mirror is not None:
                self._mirror.fed += delta

    @property  # type: ignore[override]
    def generated(self) -> int:
        own = getattr(self._local, "n", None)
        return self._generated if own is None else own

    @generated.setter
    def generated(self, value: int) -> None:
        with self._lock:
            own = getattr(self._local, "n", None)
            delta = value - (self._generated if own is None else own)
            self._generated += delta
            if own is not None:
                self._local.n = own + delta
            if self._mirror is not None:
                self._mirror.generated += delta

    @property
    def total_generated(self) -> int:
        return self._generated

    def add_fed(self, n: int) -> None:
        with self._lock:
            self._fed += n

    def watch_thread(self) -> None:
        """From now on, `generated` read on this thread counts this thread's tokens."""
        if getattr(self._local, "n", None) is None:
            self._local.n = 0

    def __repr__(self) -> str:
        return f"StreamCounters(fed={self._fed}, generated={self._generated})"


class Stream:
    """One decoding reply: its state (in a slot while it decodes), current logits, sampler, and hand-over.

    A sampled token is handed to the stream's thread as its step starts (`pending` until that
    step has fed it), so the thread turns it into text, and asks for the next one (`wants`),
    while the forward runs; the next step samples it from the logits this one left: one
    wake-up per token.
    """

    def __init__(self, state: Any, logits: Any, sampler: Sampler) -> None:
        self.state, self.logits, self.sampler = state, logits, sampler
        self.view = False  # logits is a row of the step buffer (cloned before the next step if unused)
        self.slot: int | None = None
        self.joined = False
        self.left = False
        self.token = -1
        self.pending: int | None = None  # handed out, not yet fed
        self.wants = False  # asked for its next token
        self.posted = False  # in the scheduler's list of streams for the next step
        self.leaving = False
        self.error: BaseException | None = None  # raised by next_token
        self.leave_error: BaseException | None = None  # raised by finish
        self.sampled = threading.Event()  # its next token is there (or an error)
        self.done = threading.Event()  # its leave was processed


class Prefill:
    """One `feed` call: its ids, the state it goes into, how far it got."""

    def __init__(self, ids: list[int], state: Any, chunk: int, cancel: Cancel | None) -> None:
        self.ids, self.state, self.chunk, self.cancel = ids, state, chunk, cancel
        self.done = 0
        self.logits: Any = None
        self.finished = False
        self.error: BaseException | None = None
        self.ready = threading.Event()

    def cancelled(self) -> bool:
        return self.cancel is not None and bool(self.cancel())


class Step:
    """The `DecodeStep` of one reply on a `BatchedEngine`."""

    def __init__(self, scheduler: Scheduler, logits: Any, state: Any, sampler: Sampler) -> None:
        self.scheduler = scheduler
        self.stream = Stream(state, logits, sampler)

    def next_token(self) -> int:
        return self.scheduler.token(self.stream)

    def observe(self, token: int, text: str) -> None:
        self.stream.sampler.observe(token, text)

    def finish(self) -> Any:
        return self.scheduler.leave(self.stream)


class Scheduler:
    """The one thread that runs the model: leaves, joins, one decode step, then prefill under a budget."""

    def __init__(self, slots: Any, counters: StreamCounters, *, prefill_budget: int, name: str) -> None:
        self.slots = slots
        self.counters = counters
        self.prefill_budget = prefill_budget
        self._cond = threading.Condition()
        self._active: dict[int, Stream] = {}  # slot -> stream in the batch
        self._posted: list[Stream] = []  # active streams waiting for their next token
        self._joins: deque[Stream] = deque()
        self._leaves: list[Stream] = []
        self._prefills: deque[Prefill] = deque()
        self._model = threading.Lock()  # held while the model runs: by this thread, or a lone stream's (`_direct`)
        self._deadline = 0.0  # after this, a step runs without the streams that have not asked yet
        self._last_step_s = 0.0
        self._stopping = False
        self._failure: BaseException | None = None
        # figures for /health
        self.steps = 0
        self.decoded = 0
        self.prefilled = 0
        self.laggards = 0
        self._rates: deque[tuple[float, int, int]] = deque(maxlen=4096)  # (time, decoded, prefilled)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ called by stream threads
    def token(self, stream: Stream) -> int:
        if not stream.joined:
            # The first token comes from the prompt's logits, which this thread owns: sample it here, hand
            # it out at once (the answer starts without waiting for a step), and join the batch to feed it.
            self._check()
            token = stream.sampler.sample(stream.logits)
            with self._cond:
                self._check()
                stream.token = stream.pending = token
                stream.joined = True
                self._joins.append(stream)
                self._cond.notify()
            return token
        if stream.error is not None:
            raise stream.error
        with self._cond:
            self._check()
            alone = self._alone(stream)
        if alone and self._model.acquire(blocking=False):
            try:
                return self._direct(stream)
            finally:
                self._model.release()
        with self._cond:
            self._check()
            stream.sampled.clear()
            stream.wants = True
            if stream.slot is not None and stream.pending is None and not stream.posted:
                self._post(stream)  # else: it is posted once its pending token is fed (`_do_step`)
            if len(self._posted) >= len(self._active) or time.monotonic() >= self._deadline:
                self._cond.notify()
        self._wait(stream.sampled)
        if stream.error is not None:
            raise stream.error
        return stream.token

    def _post(self, stream: Stream) -> None:
        stream.posted = True
        self._posted.append(stream)

    def _alone(self, stream: Stream) -> bool:
        """True when `stream` is the only one in the batch, its last token fed, and nothing waits for the scheduler."""
        return (len(self._active) == 1 and stream.slot is not None and self._active.get(stream.slot) is stream
                and stream.pending is None and not (self._posted or self._joins or self._leaves or self._prefills))

    def _direct(self, stream: Stream) -> int:
        """A lone stream's step on its own thread (no hand-over to the scheduler and back); `_model` is held."""
        token = sample_streams([stream])[0]
        if isinstance(token, BaseException):
            raise token
        assert stream.slot is not None
        with self._cond:
            others = [s for s in self._active.values() if s is not stream]  # one may have joined meanwhile
        for other in others:
            if other.view:
                other.logits, other.view = other.logits.clone(), False
        start = time.monotonic()
        rows = self.slots.step({stream.slot: token})
        self._last_step_s = time.monotonic() - start
        stream.token = token
        stream.logits, stream.view = rows[stream.slot], self.slots.views
        self.steps += 1
        self.decoded += 1
        self._rates.append((time.monotonic(), self.decoded, self.prefilled))
        return token

    def leave(self, stream: Stream) -> Any:
        if not stream.joined or stream.left:
            return stream.logits
        with self._cond:
            stream.done.clear()
            stream.leaving = True
            self._leaves.append(stream)  # processed once its last token is fed
            self._cond.notify()
        self._wait(stream.done)
        stream.left = True
        if stream.leave_error is not None:
            raise stream.leave_error
        if stream.error is not None:
            raise stream.error
        return stream.logits

    def prefill(self, job: Prefill, progress: Progress | None) -> Any:
        with self._cond:
            self._check()
            self._prefills.append(job)
            self._cond.notify()
        total = len(job.ids)
        while True:
            self._wait(job.ready)
            job.ready.clear()
            if job.error is not None:
                raise job.error
            if progress is not None and job.done:
                progress(job.done, total)
            if job.finished:
                return job.logits

    def _wait(self, event: threading.Event) -> None:
        while not event.wait(1.0):
            if not self._thread.is_alive():
                raise RuntimeError("the batched engine's scheduler stopped") from self._failure

    def _check(self) -> None:
        if self._stopping or not self._thread.is_alive():
            raise RuntimeError("the batched engine is stopped") from self._failure

    # ------------------------------------------------------------------ figures
    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._cond:
            decoding, joining, prefilling = len(self._active), len(self._joins), len(self._prefills)
            window = [r for r in self._rates if now - r[0] <= RATE_WINDOW_S]
        decode_rate = prefill_rate = 0.0
        if window:
            span = max(now - window[0][0], 1e-3)
            decode_rate = (self.decoded - window[0][1]) / span
            prefill_rate = (self.prefilled - window[0][2]) / span
        return {
            "decoding": decoding,
            "waiting_for_slot": joining,
            "prefilling": prefilling,
            "occupancy": round(decoding / self.slots.capacity, 3),
            "steps": self.steps,
            "mean_batch": round(self.decoded / self.steps, 2) if self.steps else 0.0,
            "laggards": self.laggards,
            "decode_tokens_per_s": round(decode_rate, 1),
            "prefill_tokens_per_s": round(prefill_rate, 1),
            "last_step_ms": round(self._last_step_s * 1000, 2),
        }

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ the loop
    def _ready_to_step(self, now: float) -> bool:
        if not self._posted:
            return False
        # A stream that is leaving waits for its last token's step: never hold that one back.
        return len(self._posted) >= len(self._active) or now >= self._deadline or any(s.leaving for s in self._posted)

    def _has_work(self, now: float) -> bool:
        joinable = bool(self._joins) and (self.slots.free_slots() > 0 or any(map(can_leave, self._leaves)))
        return (any(map(can_leave, self._leaves)) or joinable or bool(self._prefills)
                or self._ready_to_step(now))

    def _main(self) -> None:
        fwd = getattr(self.slots, "fwd", None)  # the torch forward of RWKV slots; llama.cpp slots need no torch
        if fwd is not None:
            import torch

            torch.set_grad_enabled(False)  # per thread
            if fwd.device.type == "cuda":
                torch.cuda.set_device(fwd.device)  # replays and sampling on the model's GPU, not this thread's default
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - wake everyone with the reason
            self._failure = exc
            self._fail_all(exc)
            raise
        finally:
            self._fail_all(RuntimeError("the batched engine stopped"))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._stopping:
                        return
                    if self._has_work(now):
                        break
                    timeout = self._deadline - now if self._posted else None
                    self._cond.wait(timeout if timeout is None or timeout > 0 else 0.0005)
                leaves = [x for x in self._leaves if can_leave(x)]
                self._leaves = [x for x in self._leaves if not can_leave(x)]
            with self._model:
                self._do_leaves(leaves)
                self._do_joins()
                if self._ready_to_step(time.monotonic()):
                    self._do_step()
                self._do_prefill()
            self._rates.append((time.monotonic(), self.decoded, self.prefilled))

    def _do_leaves(self, leaves: list[Stream]) -> None:
        for stream in leaves:
            try:
                if stream.slot is not None:
                    if stream.view:
                        stream.logits, stream.view = stream.logits.clone(), False
                    self.slots.leave(stream.slot, stream.state)
            except BaseException as exc:  # noqa: BLE001 - the stream's own failure
                stream.leave_error = exc
            with self._cond:
                if stream.slot is not None:
                    self._active.pop(stream.slot, None)
                if stream.posted:
                    self._posted.remove(stream)
                    stream.posted = False
            stream.slot = None
            stream.done.set()
        if leaves:
            moved = self.slots.compact()
            if moved:
                with self._cond:
                    streams = {old: self._active.pop(old) for old in moved}
                    for old, new in moved.items():
                        streams[old].slot = new
                        self._active[new] = streams[old]

    def _do_joins(self) -> None:
        while True:
            with self._cond:
                if not self._joins or self.slots.free_slots() <= 0:
                    return
                stream = self._joins.popleft()
            try:
                slot = self.slots.join(stream.state)
            except BaseException as exc:  # noqa: BLE001
                stream.error, stream.slot, stream.pending = exc, None, None
                stream.sampled.set()
                continue
            with self._cond:
                stream.slot = slot
                self._active[slot] = stream
                self._post(stream)  # its first token (pending) is fed by the next step

    def _do_step(self) -> None:
        with self._cond:
            batch, self._posted = self._posted, []
            for stream in batch:
                stream.posted = False
            stepping = {id(s) for s in batch}
            waiting_out = [s for s in self._active.values() if id(s) not in stepping]
        unsampled = [s for s in batch if s.pending is None and s.error is None]  # joiners bring their first token
        for stream, token in zip(unsampled, sample_streams(unsampled)):
            stream.wants = False
            if isinstance(token, BaseException):
                stream.error = token
            else:
                stream.token = stream.pending = token
            stream.sampled.set()  # its thread turns the token into text while the step runs
        batch = [s for s in batch if s.pending is not None]
        if not batch:
            return
        tokens = {s.slot: s.pending for s in batch}
        for stream in waiting_out:  # their logits rows are about to be overwritten
            if stream.view:
                stream.logits, stream.view = stream.logits.clone(), False
        self.laggards += len(waiting_out)
        start = time.monotonic()
        try:
            rows = self.slots.step(tokens)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - every stream of this step fails with it
            rows = None
            failure: BaseException | None = exc
        else:
            failure = None
        end = time.monotonic()
        self._last_step_s = end - start
        if rows is not None:
            self.steps += 1
            self.decoded += len(tokens)
        with self._cond:
            for stream in batch:
                stream.pending = None
                if rows is not None:
                    stream.logits, stream.view = rows[stream.slot], self.slots.views
                else:
                    stream.error = failure
                if stream.wants and not stream.posted and stream.error is None:
                    self._post(stream)  # it asked for its next token while this step ran
                elif stream.error is not None:
                    stream.sampled.set()
            self._deadline = end + max(LAGGARD_MIN_S, LAGGARD_SHARE * self._last_step_s)

    def _do_prefill(self) -> None:
        """Feed queued prompts, first come first served, up to `prefill_budget` tokens in all.

        The first jobs in line (up to PREFILL_ROWS) advance together by the same number of
        tokens: as many as the shortest of them has left, within the budget and their chunks.
        """
        with self._cond:
            queued = [j for j in self._prefills if j.done == 0]
        gone = [j for j in queued if j.cancelled()]  # their clients left while they waited: nothing fed
        if gone:
            self._finish_prefills(gone)
        budget = self.prefill_budget
        while budget > 0:
            with self._cond:
                group = list(self._prefills)[: min(PREFILL_ROWS, budget)]
            if not group:
                return
            stopped = [j for j in group if j.done > 0 and j.cancelled()]
            if stopped:
                self._finish_prefills(stopped)
                continue
            n = min(min(len(j.ids) - j.done for j in group), min(j.chunk for j in group), budget // len(group))
            items = [(j.ids[j.done : j.done + n], j.state) for j in group]
            try:
                logits = self.slots.prefill(items)
            except BaseException as exc:  # noqa: BLE001 - these prompts fail, the others go on
                for job in group:
                    job.error = exc
                self._finish_prefills(group)
                continue
            budget -= n * len(group)
            self.prefilled += n * len(group)
            self.counters.add_fed(n * len(group))
            done = []
            for job, row in zip(group, logits):
                job.logits = row
                job.done += n
                if job.done == len(job.ids):
                    done.append(job)
                else:
                    job.ready.set()  # progress
            self._finish_prefills(done)

    def _finish_prefills(self, jobs: list[Prefill]) -> None:
        with self._cond:
            for job in jobs:
                if job in self._prefills:
                    self._prefills.remove(job)
        for job in jobs:
            job.finished = True
            job.ready.set()

    def _fail_all(self, exc: BaseException) -> None:
        with self._cond:
            self._stopping = True
            streams = list(self._active.values()) + list(self._joins) + list(self._leaves)
            jobs = list(self._prefills)
            self._active.clear()
            self._joins.clear()
            self._leaves.clear()
            self._prefills.clear()
            self._posted = []
        for stream in streams:
            stream.error = stream.error or exc
            for event in (stream.sampled, stream.done):
                event.set()
        for job in jobs:
            job.error = job.error or exc
            job.ready.set()


def can_leave(stream: Stream) -> bool:
    """A leaving stream's slot may go once its last token handed out was fed (or it failed)."""
    return stream.pending is None or stream.error is not None


def sample_streams(batch: list[Stream]) -> list[int | BaseException]:
    """Each stream's next token from its own logits: one argmax for plain greedy streams, else its sampler."""
    out: list[int | BaseException] = [0] * len(batch)
    greedy = [i for i, s in enumerate(batch) if plain_greedy(s.sampler)]
    if len(greedy) > 1 and len({_where(batch[i].logits) for i in greedy}) == 1:
        rows = _stack([batch[i].logits for i in greedy])  # [G, V], a copy
        for j, i in enumerate(greedy):
            banned = [t for t in batch[i].sampler.banned if 0 <= t < rows.shape[-1]]
            if banned:
                rows[j, banned] = float("-inf")
        for i, token in zip(greedy, rows.argmax(-1).tolist()):
            out[i] = int(token)
        done = set(greedy)
    else:
        done = set()
    for i, stream in enumerate(batch):
        if i not in done:
            try:
                out[i] = stream.sampler.sample(stream.logits)
            except BaseException as exc:  # noqa: BLE001 - only this stream fails
                out[i] = exc
    return out


def plain_greedy(sampler: Sampler) -> bool:
    """True when the sampler's pick is the argmax of the logits (greedy, no penalties)."""
    p = sampler.params
    return p.temperature == 0 and not p.presence_penalty and not p.frequency_penalty


def _where(logits: Any) -> str:
    """Which rows can be stacked together: numpy arrays, or torch tensors on one device."""
    return "numpy" if type(logits).__module__ == "numpy" else f"torch:{logits.device}"


def _stack(rows: list[Any]) -> Any:
    if type(rows[0]).__module__ == "numpy":
        import numpy as np

        return np.stack(rows)
    import torch

    return torch.stack(rows)
