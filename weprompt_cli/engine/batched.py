"""Many turns at once behind the engine seam: one scheduler thread, one batched forward per step.

`BatchedEngine(inner)` wraps a loaded engine (the rwkv backend on RWKV-7, or llama.cpp)
and is used from many threads at once, each running one turn as it would on the plain
engine: `feed` a prompt, iterate `generate`. Behind the seam one scheduler thread owns
the model:

- Decoding: each step the scheduler samples every stream that asked for its next token
  from its own logits row (its own penalties, seed and banned ids; on the device when the
  model is on a GPU; greedy streams without penalties share one argmax), hands each its
  token, then runs ONE forward that feeds all of them (`rwkv7_batch.BatchForward.step`, or
  one llama.cpp `eval_batch` of many sequences): a stream's thread turns its token into
  text while the forward runs, and asks for the next one once that step is done. A stream
  joins on its first token (sampled on its own thread from the prompt's logits, so the
  answer starts at once; its state is copied into a slot) and leaves on `finish()` (the
  slot's state is written back into the caller's state, in the seam's format, and the
  slot is freed at once): continuous batching.
- Prefill: `feed` queues the prompt; between two decode steps the scheduler feeds at most
  `prefill_budget` prompt tokens, first come first served, in chunks, each into the
  stream's own state (on the CPU the first prompts in line go through one batched
  sequence forward, `prefill_rows`; on a GPU the package's own path), so running streams
  keep their pace while a long prompt arrives. `cancel()` is checked before every chunk.
- A stream that has not asked for its next token when a step starts (its thread is
  slow) is waited for a moment (half the last step's time); after that the step runs
  without it, and its state and logits are kept as they were.

States handed to callers stay in the inner engine's format, so cloning, checkpoints and
the prefix cache work as on the plain engine. Nothing here writes files: checkpoints are
written by the callers' own threads after `finish()`, never on the decode loop.

`generate()` registers its thread with `counters`: read from a thread that generates,
`counters.generated` counts that thread's tokens (what a turn measures); read from any
other thread (the server's `/health`), all tokens. `counters.total_generated` is always all.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weprompt_cli.engine.base import Cancel, Counters, Engine, Progress

if TYPE_CHECKING:
    import torch

    from weprompt_cli.engine.generation import Generation
    from weprompt_cli.engine.sampling import Sampler

DEFAULT_MAX_BATCH = 16
DEFAULT_PREFILL_BUDGET = 128  # prompt tokens fed between two decode steps
PREFILL_ROWS = 16  # prompts fed together in one batched sequence forward (CPU)
LAGGARD_SHARE = 0.5  # a slow stream is waited for this share of the last step's time
LAGGARD_MIN_S = 0.002
RATE_WINDOW_S = 10.0
LLAMA_MAX_SEQ = 256  # llama.cpp's limit on sequences per context
OFF_V4_V6 = "RWKV-4/5/6 run one stream at a time"


def batching_support(engine: Engine) -> tuple[bool, str]:
    """(can `BatchedEngine` run this engine, why not)."""
    backend = getattr(engine, "backend", "")
    if backend == "rwkv":
        if engine.info.arch != "v7":
            return False, OFF_V4_V6
        from weprompt_cli.engine.rwkv7_batch import covers

        return covers(getattr(engine, "model", None))
    if backend == "llama.cpp":
        return True, ""
    return False, f"the {backend or 'unknown'} backend runs one stream at a time"


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


# ---------------------------------------------------------------------------- backends: slots of states


class _RwkvSlots:
    """RWKV-7 on the rwkv package: `BatchForward` over a `BatchState`; prefill with the package's forward."""

    views = True  # step logits are rows of a buffer the next step overwrites

    def __init__(self, engine: Any, max_batch: int) -> None:
        from weprompt_cli.engine.rwkv7_batch import BatchForward

        self.engine = engine
        self.fwd = BatchForward(engine.model, max_batch=max_batch)
        self.states = self.fwd.new_state(capacity=max_batch)  # sized once: graphs are captured over it
        self.capacity = max_batch
        self.lock = threading.Lock()  # unused by callers: rwkv states are plain tensors they own
        if self.fwd.graphs:
            self.fwd.capture(self.states)

    def describe(self) -> str:
        return f"rwkv7_batch.BatchForward ({self.fwd.graph_reason}; wkv: {self.fwd.wkv_reason})"

    def free_slots(self) -> int:
        return self.capacity - len(self.states)

    def prefill(self, items: list[tuple[list[int], Any]]) -> list[torch.Tensor]:
        """Feed each item's ids (all of one length) into its own state; the logits after each item's last id.

        On the CPU they go through one batched sequence forward (`prefill_rows`: 2-3x faster per
        token than the package's CPU sequence forward even for one prompt, more for several); on a
        GPU each goes through the package's own path (its CUDA kernel, or the graph for short ones).
        """
        if self.fwd.device.type == "cpu":
            logits = prefill_rows(self.fwd, [ids for ids, _ in items], [state for _, state in items])
            self.engine.counters.fed += sum(len(ids) for ids, _ in items)
            return list(logits)
        out = []
        for ids, state in items:
            logits = self.engine.feed(ids, state, chunk=len(ids))  # the inner engine counts them
            out.append(logits.clone())  # the GPU path may return a buffer it reuses
        return out

    def join(self, state: Any) -> int:
        slot = self.states.alloc()
        self.states.put(slot, state)
        return slot

    def leave(self, slot: int, state: Any) -> None:
        state[:] = self.states.take(slot)  # in place: the caller holds this list
        self.states.free(slot)

    def compact(self) -> dict[int, int]:
        return self.states.compact()

    def step(self, tokens: dict[int, int]) -> dict[int, torch.Tensor]:
        states = self.states
        ids = [0] * states.rows
        for slot, token in tokens.items():
            ids[slot] = token
        idle = [(slot, states.take(slot)) for slot in states.slots if slot not in tokens]  # kept as they are
        logits = self.fwd.step(ids, states)  # [rows, V]
        for slot, kept in idle:
            states.put(slot, kept)
        return {slot: logits[slot] for slot in tokens}


def prefill_rows(fwd: Any, ids: list[list[int]], states: list[list[torch.Tensor]]) -> torch.Tensor:
    """Feed `ids[b]` (B rows of T tokens each) into the package-layout state `states[b]`; logits [B, V].

    The package's sequence forward with a batch dimension: every projection runs once over
    the B*T rows, the wkv recurrence steps through T on the [B, H, N, N] states, and only each
    row's last token gets logits. Uses `fwd`'s weights and block functions (`BatchForward`).
    """
    import torch
    import torch.nn.functional as F

    B, T = len(ids), len(ids[0])
    if any(len(row) != T for row in ids):
        raise ValueError("prefill_rows takes rows of one length")
    C, H, N = fwd.n_embd, fwd.n_head, fwd.head_size
    with torch.no_grad():
        index = torch.tensor(ids, dtype=torch.long, device=fwd.device)  # [B, T]
        x = fwd.emb.index_select(0, index.view(-1)).view(B, T, C)  # [B, T, C]
        v_first = x.reshape(B * T, C)  # replaced by layer 0's v
        for i, layer in enumerate(fwd.layers):
            att_prev = torch.stack([s[3 * i] for s in states])  # [B, C]
            kv = torch.stack([s[3 * i + 1] for s in states]).float()  # [B, H, N, N] fp32, a copy
            ffn_prev = torch.stack([s[3 * i + 2] for s in states])  # [B, C]
            xx = F.layer_norm(x, (C,), weight=layer.ln1[0], bias=layer.ln1[1])  # [B, T, C]
            shifted = torch.cat((att_prev.unsqueeze(1), xx[:, :-1]), dim=1)  # [B, T, C]: each token's previous x
            r, w, k, v, kk, a, g, v_first = fwd._tmix_in(
                i, H, N, xx.reshape(B * T, C), shifted.reshape(B * T, C), v_first, *layer.att_in
            )  # each [B*T, C]
            by_time = [t.view(B, T, C).transpose(0, 1).contiguous() for t in (r, w, k, v, kk, a)]  # [T, B, C]
            y = torch.stack([fwd._wkv_torch(H, N, kv, *(t[j] for t in by_time)) for j in range(T)], dim=1)  # [B, T, C]
            x = x + fwd._tmix_out(H, N, y.reshape(B * T, C), r, k, v, g, *layer.att_out).view(B, T, C)
            xx2 = F.layer_norm(x, (C,), weight=layer.ln2[0], bias=layer.ln2[1])  # [B, T, C]
            shifted = torch.cat((ffn_prev.unsqueeze(1), xx2[:, :-1]), dim=1)
            x = x + fwd._cmix(xx2.reshape(B * T, C), shifted.reshape(B * T, C), *layer.ffn).view(B, T, C)
            for b, s in enumerate(states):
                s[3 * i] = xx[b, -1].clone()
                s[3 * i + 1] = kv[b].clone()
                s[3 * i + 2] = xx2[b, -1].clone()
        last = F.layer_norm(x[:, -1], (C,), weight=fwd.ln_out[0], bias=fwd.ln_out[1])  # [B, C]
        return (last @ fwd.head).float()  # [B, V]


class _LlamaSlots:
    """llama.cpp: one context of many sequences; a step is one `eval_batch` of one token per stream.

    Sequence 0 stays the inner engine's own; sequence 1 is for prefill; slot i is sequence 2 + i.
    """

    views = False
    FIRST = 2

    def __init__(self, engine: Any, max_batch: int) -> None:
        from weprompt_cli.engine.llama_context import LlamaContext

        if max_batch + self.FIRST > LLAMA_MAX_SEQ:
            raise ValueError(f"llama.cpp runs at most {LLAMA_MAX_SEQ - self.FIRST} streams at once, not {max_batch}")
        self.engine = engine
        old = engine.context
        context = LlamaContext.open(
            engine.info.path, n_threads=old.n_threads, n_threads_batch=old.n_threads_batch,
            n_gpu_layers=engine.gguf_strategy.n_gpu_layers, n_seq_max=max_batch + self.FIRST, n_batch=old.n_batch,
        )  # fmt: skip
        live = engine._live  # its newest numbers are in the old context: keep them
        if live is not None and live.dirty:
            live.blob, live.dirty = old.get_state(0), False
        engine._live = None
        engine.context = context
        old.close()
        self.capacity = max_batch
        self._free = list(range(max_batch))
        self.lock = threading.Lock()  # the context is not thread-safe: state methods take it too

    def describe(self) -> str:
        return f"llama.cpp eval_batch of up to {self.capacity} sequences"

    def free_slots(self) -> int:
        return len(self._free)

    def _load(self, seq: int, state: Any) -> None:
        blob = self.engine.clone_state(state).blob  # synced from sequence 0 if it lives there
        if blob:
            self.engine.context.set_state(seq, blob)
        else:
            self.engine.context.clear(seq)

    def _store(self, state: Any, seq: int) -> None:
        state.blob, state.dirty = self.engine.context.get_state(seq), False
        if self.engine._live is state:
            self.engine._live = None  # sequence 0 holds older numbers now

    def prefill(self, items: list[tuple[list[int], Any]]) -> list[torch.Tensor]:
        import torch

        out = []
        for ids, state in items:
            with self.lock:
                self._load(1, state)
                logits = self.engine.context.eval(ids, 1)
                self._store(state, 1)
            self.engine.counters.fed += len(ids)
            out.append(torch.from_numpy(logits))
        return out

    def join(self, state: Any) -> int:
        slot = self._free.pop(0)
        with self.lock:
            self._load(self.FIRST + slot, state)
        return slot

    def leave(self, slot: int, state: Any) -> None:
        with self.lock:
            self._store(state, self.FIRST + slot)
            self.engine.context.clear(self.FIRST + slot)
        self._free.append(slot)
        self._free.sort()

    def compact(self) -> dict[int, int]:
        return {}  # a batch names its sequences: holes cost nothing

    def step(self, tokens: dict[int, int]) -> dict[int, torch.Tensor]:
        import torch

        slots = list(tokens)
        with self.lock:
            out = self.engine.context.eval_batch([(self.FIRST + s, [tokens[s]]) for s in slots])
        return {s: torch.from_numpy(x) for s, x in zip(slots, out)}


# ---------------------------------------------------------------------------- what the scheduler serves


class _Stream:
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


class _Prefill:
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


class _Step:
    """The `DecodeStep` of one reply on a `BatchedEngine`."""

    def __init__(self, scheduler: _Scheduler, logits: Any, state: Any, sampler: Sampler) -> None:
        self.scheduler = scheduler
        self.stream = _Stream(state, logits, sampler)

    def next_token(self) -> int:
        return self.scheduler.token(self.stream)

    def observe(self, token: int, text: str) -> None:
        self.stream.sampler.observe(token, text)

    def finish(self) -> Any:
        return self.scheduler.leave(self.stream)


class _Scheduler:
    """The one thread that runs the model: leaves, joins, one decode step, then prefill under a budget."""

    def __init__(self, slots: Any, counters: StreamCounters, *, prefill_budget: int, name: str) -> None:
        self.slots = slots
        self.counters = counters
        self.prefill_budget = prefill_budget
        self._cond = threading.Condition()
        self._active: dict[int, _Stream] = {}  # slot -> stream in the batch
        self._posted: list[_Stream] = []  # active streams waiting for their next token
        self._joins: deque[_Stream] = deque()
        self._leaves: list[_Stream] = []
        self._prefills: deque[_Prefill] = deque()
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
    def token(self, stream: _Stream) -> int:
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

    def _post(self, stream: _Stream) -> None:
        stream.posted = True
        self._posted.append(stream)

    def _alone(self, stream: _Stream) -> bool:
        """True when `stream` is the only one in the batch, its last token fed, and nothing waits for the scheduler."""
        return (len(self._active) == 1 and stream.slot is not None and self._active.get(stream.slot) is stream
                and stream.pending is None and not (self._posted or self._joins or self._leaves or self._prefills))

    def _direct(self, stream: _Stream) -> int:
        """A lone stream's step on its own thread (no hand-over to the scheduler and back); `_model` is held."""
        token = _sample([stream])[0]
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

    def leave(self, stream: _Stream) -> Any:
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

    def prefill(self, job: _Prefill, progress: Progress | None) -> Any:
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
        joinable = bool(self._joins) and (self.slots.free_slots() > 0 or any(map(_can_leave, self._leaves)))
        return (any(map(_can_leave, self._leaves)) or joinable or bool(self._prefills)
                or self._ready_to_step(now))

    def _main(self) -> None:
        import torch

        torch.set_grad_enabled(False)  # per thread
        device = getattr(getattr(self.slots, "fwd", None), "device", None)
        if device is not None and device.type == "cuda":
            torch.cuda.set_device(device)  # replays and sampling on the model's GPU, not this thread's default
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
                leaves = [x for x in self._leaves if _can_leave(x)]
                self._leaves = [x for x in self._leaves if not _can_leave(x)]
            with self._model:
                self._do_leaves(leaves)
                self._do_joins()
                if self._ready_to_step(time.monotonic()):
                    self._do_step()
                self._do_prefill()
            self._rates.append((time.monotonic(), self.decoded, self.prefilled))

    def _do_leaves(self, leaves: list[_Stream]) -> None:
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
        for stream, token in zip(unsampled, _sample(unsampled)):
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

    def _finish_prefills(self, jobs: list[_Prefill]) -> None:
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


def _can_leave(stream: _Stream) -> bool:
    """A leaving stream's slot may go once its last token handed out was fed (or it failed)."""
    return stream.pending is None or stream.error is not None


def _sample(batch: list[_Stream]) -> list[int | BaseException]:
    """Each stream's next token from its own logits: one argmax for plain greedy streams, else its sampler."""
    import torch

    out: list[int | BaseException] = [0] * len(batch)
    greedy = [i for i, s in enumerate(batch) if _plain_greedy(s.sampler)]
    if len(greedy) > 1 and len({batch[i].logits.device for i in greedy}) == 1:
        rows = torch.stack([batch[i].logits for i in greedy])  # [G, V]
        for j, i in enumerate(greedy):
            banned = [t for t in batch[i].sampler.banned if 0 <= t < rows.shape[-1]]
            if banned:
                rows[j, banned] = float("-inf")
        for i, token in zip(greedy, rows.argmax(dim=-1).tolist()):
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


def _plain_greedy(sampler: Sampler) -> bool:
    """True when the sampler's pick is the argmax of the logits (greedy, no penalties)."""
    p = sampler.params
    return p.temperature == 0 and not p.presence_penalty and not p.frequency_penalty


# ---------------------------------------------------------------------------- the engine


class BatchedEngine(Engine):
    """`inner` behind the seam for many threads at once: one scheduler thread, one batched forward per step."""

    def __init__(
        self,
        inner: Engine,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        prefill_budget: int = DEFAULT_PREFILL_BUDGET,
    ) -> None:
        ok, why = batching_support(inner)
        if not ok:
            raise ValueError(f"this model cannot run batched: {why}")
        if max_batch < 1 or prefill_budget < 1:
            raise ValueError("max_batch and prefill_budget must be at least 1")
        super().__init__()
        self.inner = inner
        self.backend, self.info, self.strategy = inner.backend, inner.info, inner.strategy
        self.tokenizer, self.state_format = inner.tokenizer, inner.state_format
        self.counters: StreamCounters = StreamCounters(mirror=inner.counters)
        self.max_batch = max_batch
        self.prefill_budget = prefill_budget
        self._slots: Any = _RwkvSlots(inner, max_batch) if inner.backend == "rwkv" else _LlamaSlots(inner, max_batch)
        self.notes = [*inner.notes, f"batched: up to {max_batch} streams per step, {prefill_budget} prompt tokens "
                      f"between steps; {self._slots.describe()}"]
        self._scheduler = _Scheduler(self._slots, self.counters, prefill_budget=prefill_budget,
                                     name="weprompt-batch-scheduler")

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def describe(self) -> list[str]:
        return [*self.inner.describe(), self.notes[-1]]

    def stats(self) -> dict[str, Any]:
        """Batch occupancy, queues and speeds, for `/health`."""
        return {"max_batch": self.max_batch, "prefill_budget": self.prefill_budget,
                "forward": self._slots.describe(), **self._scheduler.stats()}

    def stop(self) -> None:
        """End the scheduler (streams still running fail); the inner engine stays loaded."""
        self._scheduler.stop()

    def close(self) -> None:
        self.stop()
        self.inner.close()

    # ------------------------------------------------------------------ the seam
    def zero_state(self) -> Any:
        with self._slots.lock:
            return self.inner.zero_state()

    def feed(
        self,
        tokens: list[int],
        state: Any,
        *,
        chunk: int = 256,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> torch.Tensor | None:
        ids = [int(t) for t in tokens]
        if not ids:
            raise ValueError("feed() needs at least one token")
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        if cancel is not None and cancel():
            return None
        return self._scheduler.prefill(_Prefill(ids, state, chunk, cancel), progress)  # type: ignore[no-any-return]

    def decode_step(self, logits: Any, state: Any, sampler: Sampler) -> _Step:
        return _Step(self._scheduler, logits, state, sampler)

    def generate(self, logits: Any, state: Any, sampler: Sampler, **kwargs: Any) -> Generation:
        self.counters.watch_thread()
        return super().generate(logits, state, sampler, **kwargs)

    def clone_state(self, state: Any) -> Any:
        with self._slots.lock:
            return self.inner.clone_state(state)

    def state_nbytes(self, state: Any) -> int:
        with self._slots.lock:
            return self.inner.state_nbytes(state)

    def state_to_tensors(self, state: Any) -> dict[str, torch.Tensor]:
        with self._slots.lock:
            return self.inner.state_to_tensors(state)

    def state_from_tensors(self, tensors: dict[str, torch.Tensor]) -> Any:
        with self._slots.lock:
            return self.inner.state_from_tensors(tensors)


def run_concurrently(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run each job on its own thread (a batched engine advances them together); results in order.

    An exception of any job is raised here once all have ended.
    """
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"weprompt-batch-job-{i}", daemon=True)
               for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


_SHARED: dict[int, tuple[Engine, BatchedEngine]] = {}
_SHARED_LOCK = threading.Lock()


def shared_batched(engine: Engine, max_batch: int = 8) -> Engine | None:
    """A `BatchedEngine` over `engine` for occasional batched passes (`/alternatives`), made once per engine.

    `engine` itself when it is batched already; None when its model cannot batch (run the
    streams one after another then). The wrapper lives as long as the process and runs
    on the same model: use it while nothing else uses `engine` (the REPL is sequential).
    A llama.cpp engine gets a context of more sequences once, the first time.
    """
    if isinstance(engine, BatchedEngine):
        return engine
    if not batching_support(engine)[0]:
        return None
    with _SHARED_LOCK:
        found = _SHARED.get(id(engine))
        if found is None or found[0] is not engine or found[1].max_batch < max_batch:
            if found is not None and found[0] is engine:
                found[1].stop()
            found = (engine, BatchedEngine(engine, max_batch=max_batch))
            _SHARED[id(engine)] = found
        return found[1]
