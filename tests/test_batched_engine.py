"""The batched executor (engine/batched.py): many turns at once, each exactly its solo turn.

In process on the CPU in fp32, with tiny random RWKV-7 checkpoints and the shipped demo
model: streams that start together, join a running batch, stop early on a stop string,
hit their token limit, are cancelled, or are read slowly each give the greedy (or seeded)
tokens of the same conversation run alone on the plain engine, and the state each leaves
behind is its solo state within 1e-5. Prompts arrive in chunks under the prefill budget
while others decode. The llama.cpp backend's multi-sequence batches are checked the same
way when llama-cpp-python is installed.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from checkpoints import tiny_model
from gguf_models import needs_llama_cpp

from weprompt_cli.demo import DEMO_MODEL_PATH, demo_available
from weprompt_cli.engine import Sampler, SamplingParams
from weprompt_cli.engine.batched import BatchedEngine, batching_support, run_concurrently, shared_batched

RTOL = ATOL = 1e-5
PROMPTS = [
    "User: How do I select every row of a table?\n\nAssistant:",
    "User: What is a primary key?\n\nAssistant:",
    "User: Write a query that counts the orders per customer.\n\nAssistant:",
    "User: How should I plan a small software project?\n\nAssistant:",
    "System: You answer questions about SQL.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: What is an index?\n\nAssistant:",
    "The quick brown fox jumps over the lazy dog.",
    "def main(): return 0\nfor i in range(10): print(i)",
    "User: Thanks! What is a join?\n\nAssistant:",
    "User: and count them,\nper customer?\n\nAssistant:",
    "User: Which products cost more than 50?\n\nAssistant:",
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from weprompt_cli.engine.rwkv_engine import load_rwkv_engine

    base = tmp_path_factory.mktemp("batched-models")
    loaded = {
        "tiny-h64": load_rwkv_engine(tiny_model("v7", base), "cpu fp32"),
        "tiny-h16": load_rwkv_engine(tiny_model("v7", base, n_layer=3, n_embd=64, head_size=16, seed=5), "cpu fp32"),
    }
    if demo_available():
        loaded["demo"] = load_rwkv_engine(DEMO_MODEL_PATH, "cpu fp32")
    return loaded


def get(engines: dict[str, Any], name: str) -> Any:
    if name not in engines:
        pytest.skip(f"{name} model not available")
    return engines[name]


def close(got: dict[str, Any], want: dict[str, Any]) -> None:
    from torch.testing import assert_close

    assert sorted(got) == sorted(want)
    for key in want:
        # fp32 sums in another order: the error grows with the values' scale (as in tests/test_rwkv7_batch.py)
        scale = max(1.0, float(want[key].abs().max())) if hasattr(want[key], "abs") else 1.0
        assert_close(got[key], want[key], rtol=RTOL, atol=ATOL * scale)


class Spec:
    """One conversation: its prompt, settings, and what happens to it in the batch."""

    def __init__(self, prompt: str, *, max_tokens: int = 16, stop: tuple[str, ...] = (), params: dict[str, Any] | None = None,
                 cancel_after: int | None = None, slow_s: float = 0.0, start: threading.Event | None = None) -> None:
        self.prompt, self.max_tokens, self.stop = prompt, max_tokens, stop
        self.params = SamplingParams(**{"temperature": 0, **(params or {})})
        self.cancel_after, self.slow_s, self.start = cancel_after, slow_s, start
        self.progress = threading.Event()  # set once the stream produced two pieces


def run(engine: Any, spec: Spec, *, chunk: int = 256) -> dict[str, Any]:
    """Feed the prompt, generate, and report the tokens, why it stopped, and the state as tensors."""
    if spec.start is not None:
        assert spec.start.wait(60)
    state = engine.zero_state()
    cancelled = threading.Event()
    logits = engine.feed(engine.encode(spec.prompt), state, chunk=chunk)
    generation = engine.generate(logits, state, engine.new_sampler(spec.params), stop=spec.stop, max_tokens=spec.max_tokens,
                                 cancel=cancelled.is_set)
    pieces = 0
    for _ in generation:
        pieces += 1
        if pieces >= 2:
            spec.progress.set()
        if spec.cancel_after is not None and pieces >= spec.cancel_after:
            cancelled.set()
        if spec.slow_s:
            time.sleep(spec.slow_s)
    spec.progress.set()
    result = generation.result
    return {"tokens": result.tokens, "reason": result.stop_reason, "state": engine.state_to_tensors(state)}


def replayed(engine: Any, prompt: str, tokens: list[int]) -> dict[str, Any]:
    """The solo state of a conversation cut after `tokens`: the prompt and those tokens fed on the plain engine."""
    state = engine.zero_state()
    engine.feed(engine.encode(prompt) + list(tokens), state)
    return engine.state_to_tensors(state)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- every stream is its solo stream


@pytest.mark.parametrize("name", ["tiny-h64", "tiny-h16", "demo"])
def test_each_stream_of_a_batch_gives_its_solo_tokens_and_state(engines: dict[str, Any], name: str) -> None:
    engine = get(engines, name)
    second_wave, third_wave = threading.Event(), threading.Event()
    # A stop string each conversation meets early: a piece of its own greedy reply.
    probe = run(engine, Spec(PROMPTS[2], max_tokens=12))
    early_stop = engine.tokenizer.decode(probe["tokens"][4:6]).strip() or engine.tokenizer.decode(probe["tokens"][4:6])
    specs = [
        Spec(PROMPTS[0], max_tokens=24),
        Spec(PROMPTS[1], max_tokens=3),  # hits its limit at once, and leaves: the third wave joins its slot
        Spec(PROMPTS[2], max_tokens=24, stop=(early_stop,)),  # stops early on a stop string
        Spec(PROMPTS[3], max_tokens=40, cancel_after=3),  # cancelled after three pieces
        Spec(PROMPTS[4], max_tokens=12, start=second_wave),  # these join a running batch
        Spec(PROMPTS[5], max_tokens=17, start=second_wave, params={"presence_penalty": 0.5, "frequency_penalty": 0.3}),
        Spec(PROMPTS[6], max_tokens=9, start=second_wave, params={"temperature": 1.0, "top_p": 0.9, "seed": 7}),
        Spec(PROMPTS[7], max_tokens=15, start=third_wave),
        Spec(PROMPTS[8], max_tokens=6, start=third_wave, params={"temperature": 0.8, "top_k": 20, "seed": 3}),
        Spec(PROMPTS[9], max_tokens=30, slow_s=0.02),  # read slowly: steps go on without it, its state kept
    ]
    solo = [run(engine, Spec(s.prompt, max_tokens=s.max_tokens, stop=s.stop, params=vars(s.params))) for s in specs]
    assert solo[2]["reason"] == "stop" and solo[1]["reason"] == "length"

    batched = BatchedEngine(engine, max_batch=8, prefill_budget=16)
    try:
        def opener() -> None:
            assert specs[0].progress.wait(60)
            second_wave.set()
            assert specs[1].progress.wait(60) and specs[4].progress.wait(60)
            third_wave.set()

        threading.Thread(target=opener, daemon=True).start()
        got = run_concurrently([lambda s=s: run(batched, s, chunk=7) for s in specs])
        stats = batched.stats()
    finally:
        batched.stop()

    for i, (spec, mine, alone) in enumerate(zip(specs, got, solo)):
        if spec.cancel_after is not None:
            assert mine["reason"] == "interrupted", i
            assert mine["tokens"] == alone["tokens"][: len(mine["tokens"])] and len(mine["tokens"]) < len(alone["tokens"])
            close(mine["state"], replayed(engine, spec.prompt, mine["tokens"]))
        else:
            assert (mine["tokens"], mine["reason"]) == (alone["tokens"], alone["reason"]), i
            close(mine["state"], alone["state"])
    assert stats["decoding"] == 0 and stats["steps"] > 0 and stats["mean_batch"] > 1
    assert stats["laggards"] > 0  # the slow reader's steps went on without it
    assert batched.counters.total_generated == sum(len(g["tokens"]) for g in got)


@pytest.mark.parametrize("name", ["tiny-h64", "tiny-h16", "demo"])
@pytest.mark.parametrize("length", [1, 9, 40])
def test_prompts_fed_together_give_each_its_own_sequence_forward(engines: dict[str, Any], name: str,
                                                                  length: int) -> None:
    import torch

    from weprompt_cli.engine.batch_slots import prefill_rows
    from weprompt_cli.engine.rwkv7_batch import BatchForward

    engine = get(engines, name)
    fwd = BatchForward(engine.model, max_batch=4)
    vocab = engine.info.vocab_size
    g = torch.Generator().manual_seed(length)
    rows = [torch.randint(1, vocab, (length,), generator=g).tolist() for _ in range(3)]
    starts = [engine.zero_state(), engine.zero_state(), engine.zero_state()]
    engine.feed([5, 6, 7], starts[1])  # rows start from different states
    mine = [engine.clone_state(s) for s in starts]
    logits = prefill_rows(fwd, rows, mine)
    for row, start, state, got in zip(rows, starts, mine, logits):
        want_state = engine.clone_state(start)
        want = engine.feed(row, want_state)
        close({"logits": got}, {"logits": want})
        close(engine.state_to_tensors(state), engine.state_to_tensors(want_state))


def test_a_long_prompt_is_fed_in_chunks_while_the_others_keep_decoding(engines: dict[str, Any]) -> None:
    engine = get(engines, "tiny-h64")
    long_prompt = " ".join(f"row {i} of the orders table" for i in range(150))
    n_long = len(engine.encode(long_prompt))
    budget = 32
    batched = BatchedEngine(engine, max_batch=4, prefill_budget=budget)
    times: list[float] = []
    feeding: dict[str, float] = {}
    runner_started = threading.Event()

    def runner() -> dict[str, Any]:
        state = batched.zero_state()
        logits = batched.feed(engine.encode(PROMPTS[0]), state)
        generation = batched.generate(logits, state, Sampler(SamplingParams(temperature=0)), stop=(), max_tokens=150)
        for _ in generation:
            times.append(time.monotonic())
            runner_started.set()
        return {"tokens": generation.result.tokens, "state": batched.state_to_tensors(state)}

    def reader() -> dict[str, Any]:
        assert runner_started.wait(60)
        state = batched.zero_state()
        seen: list[int] = []
        feeding["start"] = time.monotonic()
        batched.feed(engine.encode(long_prompt), state, chunk=256, progress=lambda done, total: seen.append(done))
        feeding["end"] = time.monotonic()
        return {"seen": seen, "state": batched.state_to_tensors(state)}

    try:
        decoded, read = run_concurrently([runner, reader])
    finally:
        batched.stop()
    # Never more than the budget between two decode steps: progress came in steps of at most `budget`.
    steps = [b - a for a, b in zip([0, *read["seen"]], read["seen"])]
    assert read["seen"][-1] == n_long and max(steps) <= budget
    # The running answer kept going while the long prompt was read: about one token per chunk.
    during = [t for t in times if feeding["start"] <= t <= feeding["end"]]
    assert len(during) >= (n_long // budget) // 2, (len(during), n_long // budget)
    # And both ended where they would have alone.
    solo_state = engine.zero_state()
    engine.feed(engine.encode(long_prompt), solo_state)
    close(read["state"], engine.state_to_tensors(solo_state))
    alone = run(engine, Spec(PROMPTS[0], max_tokens=150))
    assert decoded["tokens"] == alone["tokens"]
    close(decoded["state"], alone["state"])


def test_a_feed_cancelled_while_it_waits_or_between_chunks_stops_there(engines: dict[str, Any]) -> None:
    engine = get(engines, "tiny-h64")
    batched = BatchedEngine(engine, max_batch=2, prefill_budget=8)
    try:
        ids = engine.encode(" ".join(["select"] * 80))
        fed: list[int] = []
        stop_now = threading.Event()

        def progress(done: int, total: int) -> None:
            fed.append(done)
            if done >= 16:
                stop_now.set()

        state = batched.zero_state()
        logits = batched.feed(ids, state, chunk=8, progress=progress, cancel=stop_now.is_set)
        assert logits is not None and 16 <= fed[-1] < len(ids)
        partial = engine.zero_state()
        engine.feed(ids[: fed[-1]], partial)
        close(batched.state_to_tensors(state), engine.state_to_tensors(partial))
        assert batched.feed(ids, batched.zero_state(), cancel=lambda: True) is None  # cancelled before any chunk
    finally:
        batched.stop()


def test_streams_beyond_max_batch_wait_for_a_slot_and_still_match(engines: dict[str, Any]) -> None:
    engine = get(engines, "tiny-h16")
    specs = [Spec(p, max_tokens=5 + i) for i, p in enumerate(PROMPTS[:7])]
    solo = [run(engine, s) for s in specs]
    batched = BatchedEngine(engine, max_batch=2, prefill_budget=64)
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, batched.stats()["decoding"])
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        got = run_concurrently([lambda s=s: run(batched, s) for s in specs])
    finally:
        done.set()
        watcher.join()
        batched.stop()
    assert [g["tokens"] for g in got] == [s["tokens"] for s in solo]
    for mine, alone in zip(got, solo):
        close(mine["state"], alone["state"])
    assert 1 <= peak <= 2


def test_counters_give_each_generating_thread_its_own_count_and_health_the_total(engines: dict[str, Any]) -> None:
    engine = get(engines, "tiny-h64")
    batched = BatchedEngine(engine, max_batch=4)
    before_inner = engine.counters.generated
    try:
        def one(n: int) -> tuple[int, int]:
            state = batched.zero_state()
            logits = batched.feed(engine.encode(PROMPTS[n]), state)
            generation = batched.generate(logits, state, Sampler(SamplingParams(temperature=0)), stop=(),
                                          max_tokens=5 + 3 * n)
            start = batched.counters.generated  # read after generate(), as TurnStream does
            list(generation)
            return batched.counters.generated - start, len(generation.result.tokens)

        counts = run_concurrently([lambda n=n: one(n) for n in range(4)])
        assert all(own == made for own, made in counts)
        total = sum(made for _, made in counts)
        seen: list[int] = []
        reader = threading.Thread(target=lambda: seen.append(batched.counters.generated))  # a /health reader
        reader.start()
        reader.join()
        assert seen == [total] == [batched.counters.total_generated]
        assert engine.counters.generated - before_inner == total  # the plain engine's counters follow
        assert batched.counters.fed == sum(len(engine.encode(PROMPTS[n])) for n in range(4))
    finally:
        batched.stop()


def test_families_that_cannot_batch_say_why(engines: dict[str, Any]) -> None:
    engine = get(engines, "tiny-h64")
    assert batching_support(engine) == (True, "")

    class V5:
        backend = "rwkv"
        info = type("Info", (), {"arch": "v5"})()

    assert batching_support(V5()) == (False, "RWKV-4/5/6 run one stream at a time")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RWKV-4/5/6"):
        BatchedEngine(V5())  # type: ignore[arg-type]


def test_a_stopped_engine_refuses_new_work_with_a_clear_error(engines: dict[str, Any]) -> None:
    engine = get(engines, "tiny-h64")
    batched = BatchedEngine(engine, max_batch=2)
    batched.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        batched.feed(engine.encode("hello"), batched.zero_state())


def test_shared_batched_is_made_once_per_engine(engines: dict[str, Any]) -> None:
    engine = get(engines, "tiny-h64")
    first = shared_batched(engine, 4)
    assert first is not None and shared_batched(engine, 4) is first and shared_batched(first) is first


# ---------------------------------------------------------------------------- llama.cpp


@needs_llama_cpp
def test_llama_cpp_streams_batched_in_one_eval_give_their_solo_answers(tmp_path: Path, engines: dict[str, Any]) -> None:
    import numpy as np

    from weprompt_cli.engine.llama_engine import load_llama_engine
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    pth = engines["tiny-h64"].info.path
    gguf = tmp_path / "tiny.gguf"
    convert_to_gguf(pth, gguf, quant="f32")
    shutil.copyfile(pth.with_name(pth.name.removesuffix(".pth") + ".tokenizer.json"), tmp_path / "tiny.tokenizer.json")
    solo_engine = load_llama_engine(gguf, "cpu", probe=False)
    engine = load_llama_engine(gguf, "cpu", probe=False)
    try:
        specs = [Spec(p, max_tokens=4 + 2 * i) for i, p in enumerate(PROMPTS[:6])]
        solo = [run(solo_engine, s) for s in specs]
        batched = BatchedEngine(engine, max_batch=4, prefill_budget=16)
        try:
            got = run_concurrently([lambda s=s: run(batched, s, chunk=5) for s in specs])
            # The state each left behind continues like its solo state.
            for mine, alone in zip(got, solo):
                assert mine["tokens"] == alone["tokens"]
                a = solo_engine.state_from_tensors(alone["state"])
                b = batched.state_from_tensors(mine["state"])
                la = np.asarray(solo_engine.feed([5], a))  # the llama.cpp engine: numpy logits
                lb = batched.feed([5], b)  # numpy too: the batched llama.cpp path never converts to torch
                assert type(lb).__module__ == "numpy"
                assert np.allclose(la, lb, rtol=RTOL, atol=ATOL)
        finally:
            batched.stop()
    finally:
        solo_engine.close()
        engine.close()
