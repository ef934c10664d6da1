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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weprompt_cli.engine.base import Cancel, Engine, Progress
from weprompt_cli.engine.batch_scheduler import Prefill, Scheduler, Step, StreamCounters
from weprompt_cli.engine.batch_slots import LlamaSlots, RwkvSlots

if TYPE_CHECKING:
    import torch

    from weprompt_cli.engine.generation import Generation
    from weprompt_cli.engine.sampling import Sampler
    from weprompt_cli.params import SamplingParams

DEFAULT_MAX_BATCH = 16
DEFAULT_PREFILL_BUDGET = 128  # prompt tokens fed between two decode steps
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
        self._slots: Any = RwkvSlots(inner, max_batch) if inner.backend == "rwkv" else LlamaSlots(inner, max_batch)
        self.notes = [*inner.notes, f"batched: up to {max_batch} streams per step, {prefill_budget} prompt tokens "
                      f"between steps; {self._slots.describe()}"]
        self._scheduler = Scheduler(self._slots, self.counters, prefill_budget=prefill_budget,
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
        return self._scheduler.prefill(Prefill(ids, state, chunk, cancel), progress)  # type: ignore[no-any-return]

    @property
    def tensor_framework(self) -> str:  # type: ignore[override]
        """The inner engine's: its states are what checkpoints hold."""
        return self.inner.tensor_framework

    def new_sampler(self, params: SamplingParams) -> Sampler:
        """The inner engine's sampler: the scheduler samples each row in the inner engine's framework (numpy logits
        for llama.cpp, so a batched GGUF server never imports torch)."""
        return self.inner.new_sampler(params)

    def decode_step(self, logits: Any, state: Any, sampler: Sampler) -> Step:
        return Step(self._scheduler, logits, state, sampler)

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
