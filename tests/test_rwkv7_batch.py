"""The batched RWKV-7 forward (engine/rwkv7_batch.py) against the rwkv package's own forward.

On the CPU in fp32, with tiny random checkpoints and the shipped demo model: one batched
step gives, row for row, the logits and the state of `model.forward([token], state)`;
streams that join and leave a running batch decode exactly their solo greedy tokens; the
slot bookkeeping (alloc/free/grow/compact, take/put) keeps every other stream's state.
The bucket padding and graph cache run here with an eager stand-in for the CUDA capture;
the captured graph itself and fp16/bf16 need a GPU (skipped here, and bench/gpu_batch.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from checkpoints import tiny_model

from weprompt_cli.demo import DEMO_MODEL_PATH, demo_available
from weprompt_cli.engine.rwkv7_batch import BatchForward, BatchState, buckets_for, covers, eager_capture

ROOT = Path(__file__).resolve().parent.parent
RTOL = ATOL = 1e-5  # fp32 on the CPU, per unit of the largest |value|: observed |diff| 2e-5 on logits of about 18

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rwkv_package() -> Any:
    from weprompt_cli.engine.runtime import import_rwkv_model

    out = import_rwkv_model("v7", "cpu fp32")
    return out[0] if isinstance(out, tuple) else out  # the module (some versions also return a note)


def load_package_model(path: Path, strategy: str = "cpu fp32") -> Any:
    package = rwkv_package()
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints its progress
        return package.RWKV(str(path)[: -len(".pth")], strategy)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Loaded package models: tiny 2x128 (head 64), tiny 3x64 (head 16), and the demo model (4x128, head 32)."""
    base = tmp_path_factory.mktemp("batch-models")
    loaded = {
        "tiny-h64": load_package_model(tiny_model("v7", base)),
        "tiny-h16": load_package_model(tiny_model("v7", base, n_layer=3, n_embd=64, head_size=16, seed=5)),
    }
    if demo_available():
        loaded["demo"] = load_package_model(DEMO_MODEL_PATH)
    return loaded


MODEL_NAMES = ["tiny-h64", "tiny-h16", "demo"]


def get_model(models: dict[str, Any], name: str) -> Any:
    if name not in models:
        pytest.skip(f"{name} model not available")
    return models[name]


def close(got: Any, want: Any) -> None:
    from torch.testing import assert_close

    # the summation order differs from the package's, so the error grows with the values' scale
    scale = max(1.0, float(want.abs().max())) if hasattr(want, "abs") else 1.0
    assert_close(got, want, rtol=RTOL, atol=ATOL * scale)


def clone(state: list[Any]) -> list[Any]:
    return [t.clone() for t in state]


def prefilled(model: Any, seed: int, length: int) -> tuple[Any, list[Any]]:
    """(logits, state) after feeding `length` random tokens (0: the zero state and no logits)."""
    import torch

    state = model.generate_zero_state()
    if length == 0:
        return None, state
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(1, model.z["emb.weight"].shape[0], (length,), generator=g).tolist()
    logits, state = model.forward(prompt, state)
    return logits, state


def package_step(model: Any, token: int, state: list[Any]) -> tuple[Any, list[Any]]:
    logits, new_state = model.forward([token], clone(state))
    return logits.float(), new_state


# ---------------------------------------------------------------------------- one step


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_batch_step_gives_each_row_the_package_forward(models: dict[str, Any], name: str, batch: int) -> None:
    import torch

    model = get_model(models, name)
    fwd = BatchForward(model)
    assert fwd.wkv == "torch" and not fwd.graphs  # the CPU: torch ops, eager
    states = fwd.new_state()
    rows = [prefilled(model, seed=10 * batch + i, length=(0 if i == 1 else 3 + 5 * i))[1] for i in range(batch)]
    for state in rows:
        slot = states.alloc()
        states.put(slot, state)
    g = torch.Generator().manual_seed(batch)
    tokens = torch.randint(0, fwd.vocab_size, (batch,), generator=g)
    logits = fwd.step(tokens, states).clone()
    assert logits.shape == (batch, fwd.vocab_size) and logits.dtype == torch.float32
    for i, state in enumerate(rows):
        want_logits, want_state = package_step(model, int(tokens[i]), state)
        close(logits[i], want_logits)
        got_state = states.take(i)
        assert [t.dtype for t in got_state] == [t.dtype for t in want_state]
        for got, want in zip(got_state, want_state):
            close(got, want)


# ---------------------------------------------------------------------------- streams joining and leaving

# (join before step, prompt seed, prompt length, tokens to generate)
STREAMS = [(0, 1, 12, 14), (0, 2, 5, 4), (0, 3, 20, 9), (2, 4, 7, 10), (3, 5, 1, 6), (5, 6, 15, 8), (6, 7, 9, 3)]


def solo_greedy(model: Any, seed: int, length: int, count: int) -> tuple[list[int], list[Any]]:
    """The package's own greedy decoding of one stream: its tokens and its final state."""
    logits, state = prefilled(model, seed, length)
    tokens = [int(logits.float().argmax())]
    while len(tokens) < count:
        logits, state = model.forward([tokens[-1]], state)
        tokens.append(int(logits.float().argmax()))
    return tokens, state


@pytest.mark.parametrize("name", ["demo", "tiny-h64"])
@pytest.mark.parametrize("mode", ["eager", "buckets"])
def test_streams_joining_and_leaving_decode_their_solo_greedy_tokens(
    models: dict[str, Any], name: str, mode: str
) -> None:
    """Each stream is prefilled by the package, `put` into a slot, decoded in the shared batch, taken and freed."""
    import torch

    model = get_model(models, name)
    fwd = BatchForward(model, max_batch=8, graphs=mode == "buckets", capture=eager_capture)
    states = fwd.new_state()
    slot_of: dict[int, int] = {}
    produced: dict[int, list[int]] = {}
    finished: dict[int, list[Any]] = {}
    slots_ever: list[int] = []
    step = 0
    while len(finished) < len(STREAMS):
        for sid, (join, seed, length, _) in enumerate(STREAMS):
            if join == step:
                logits, state = prefilled(model, seed, length)
                slot = states.alloc()
                states.put(slot, state)
                slot_of[sid], produced[sid] = slot, [int(logits.float().argmax())]
                slots_ever.append(slot)
        for sid in [s for s in slot_of if len(produced[s]) == STREAMS[s][3]]:  # done: leave before the step
            finished[sid] = states.take(slot_of[sid])
            states.free(slot_of.pop(sid))
        if slot_of:
            tokens = torch.zeros(states.rows, dtype=torch.long)
            for sid, slot in slot_of.items():
                tokens[slot] = produced[sid][-1]
            logits = fwd.step(tokens, states)
            for sid, slot in slot_of.items():
                produced[sid].append(int(logits[slot].argmax()))
        step += 1
    assert len(slots_ever) > len(set(slots_ever)), "no freed slot was reused"
    for sid, (_, seed, length, count) in enumerate(STREAMS):
        want_tokens, want_state = solo_greedy(model, seed, length, count)
        assert produced[sid] == want_tokens, f"stream {sid}"
        # The last token was sampled, not fed: the state is the one after feeding count - 1 tokens.
        for got, want in zip(finished[sid], want_state):
            close(got, want)
    if mode == "buckets":
        assert fwd.graphs, fwd.graph_reason
        assert set(fwd._runners) <= set(fwd.buckets)


def test_padded_bucket_step_matches_the_unpadded_step(models: dict[str, Any]) -> None:
    import torch

    model = get_model(models, "tiny-h64")
    eager = BatchForward(model, max_batch=8, graphs=False)
    padded = BatchForward(model, max_batch=8, graphs=True, capture=eager_capture)
    a, b = eager.new_state(capacity=3), padded.new_state(capacity=3)
    for i in range(3):
        state = prefilled(model, seed=40 + i, length=4 + i)[1]
        a.put(a.alloc(), state)
        b.put(b.alloc(), state)
    tokens = torch.tensor([5, 17, 33])
    want = eager.step(tokens, a).clone()
    got = padded.step(tokens, b)  # padded to the bucket of 4: the state grows to hold it
    assert padded.bucket_for(3) == 4 and b.capacity >= 4 and got.shape == want.shape
    close(got, want)
    for i in range(3):
        for x, y in zip(b.take(i), a.take(i)):
            close(x, y)


def test_failed_capture_falls_back_to_eager_with_the_reason(models: dict[str, Any]) -> None:
    import torch

    def broken(fwd: BatchForward, bucket: int, states: BatchState) -> Any:
        raise RuntimeError("operation not permitted when stream is capturing")

    model = get_model(models, "tiny-h64")
    fwd = BatchForward(model, max_batch=4, graphs=True, capture=broken)
    states = fwd.new_state()
    state = prefilled(model, seed=3, length=6)[1]
    states.put(states.alloc(), state)
    logits = fwd.step(torch.tensor([9]), states)
    assert not fwd.graphs
    assert "graph capture failed at batch 1" in fwd.graph_reason and "stream is capturing" in fwd.graph_reason
    close(logits[0], package_step(model, 9, state)[0])


# ---------------------------------------------------------------------------- the state's slots


def test_take_put_round_trip_keeps_layout_dtypes_and_the_other_slots(models: dict[str, Any]) -> None:
    import torch

    model = get_model(models, "demo" if "demo" in models else "tiny-h64")
    fwd = BatchForward(model)
    states = fwd.new_state(capacity=2)
    s0, s1 = prefilled(model, seed=1, length=9)[1], prefilled(model, seed=2, length=4)[1]
    a, b = states.alloc(), states.alloc()
    states.put(a, s0)
    states.put(b, s1)
    for slot, want in ((a, s0), (b, s1)):
        got = states.take(slot)
        assert len(got) == len(want) == 3 * fwd.n_layer
        for x, y in zip(got, want):
            assert x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)
    taken = states.take(a)
    taken[1].fill_(7.0)  # a copy: the batch does not change with it
    assert torch.equal(states.take(a)[1], s0[1])
    states.put(a, s1)
    assert all(torch.equal(x, y) for x, y in zip(states.take(b), s1))
    with pytest.raises(ValueError, match="tensors"):
        states.put(a, s0[:-1])
    with pytest.raises(ValueError, match="shape"):
        states.put(a, [t.view(-1) for t in s0])
    states.free(b)
    with pytest.raises(ValueError, match="not allocated"):
        states.take(b)


def test_slots_grow_by_doubling_and_keep_every_stream_state() -> None:
    import torch

    states = BatchState(2, 8, 2, 4, dtype=torch.float32, capacity=1, max_capacity=6)
    marks = {}
    for n in range(5):
        slot = states.alloc()
        assert slot == n
        states.put(slot, [torch.full(t.shape, float(n + 1)) for t in states.take(slot)])
        marks[slot] = float(n + 1)
    assert states.capacity == 6  # 1, 2, 4, then 8 capped at 6
    assert states.rows == 5 and len(states) == 5
    for slot, mark in marks.items():
        assert all(bool((t == mark).all()) for t in states.take(slot))
    states.free(1)
    states.free(3)
    assert states.slots == [0, 2, 4] and states.rows == 5
    assert states.alloc() == 1  # the lowest free slot, zeroed
    assert all(bool((t == 0).all()) for t in states.take(1))
    moved = states.compact()  # 4 -> 3
    assert moved == {4: 3} and states.slots == [0, 1, 2, 3] and states.rows == 4
    assert all(bool((t == marks[4]).all()) for t in states.take(3))
    states.alloc(), states.alloc()
    with pytest.raises(ValueError, match="max_capacity"):
        states.alloc()


def test_step_must_cover_every_used_slot(models: dict[str, Any]) -> None:
    import torch

    fwd = BatchForward(get_model(models, "tiny-h64"), max_batch=4)
    states = fwd.new_state()
    states.alloc(), states.alloc(), states.alloc()
    states.free(0)
    with pytest.raises(ValueError, match="every used slot"):
        fwd.step(torch.tensor([1, 2]), states)
    assert fwd.step(torch.tensor([1, 2, 3]), states).shape == (3, fwd.vocab_size)
    with pytest.raises(ValueError, match="1 to 4"):
        fwd.bucket_for(5)


def test_buckets_and_coverage() -> None:
    assert buckets_for(1) == (1,)
    assert buckets_for(8) == (1, 2, 4, 8)
    assert buckets_for(100) == (1, 2, 4, 8, 16, 32, 64, 100)
    assert covers(types.SimpleNamespace(z={}))[0] is False
    deep = {"emb.weight": 0, "blocks.0.att.r_k": 0, "blocks.0.ffn.s_emb.weight": 0}
    assert "DeepEmbed" in covers(types.SimpleNamespace(z=deep))[1]
    with pytest.raises(ValueError, match="RWKV-7"):
        BatchForward(types.SimpleNamespace(z={}))


# ---------------------------------------------------------------------------- the Triton kernel, the GPU


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_triton_wkv_kernel_in_the_interpreter_gives_the_package_logits(tmp_path: Path) -> None:
    """The kernel's indexing and math, run by Triton's CPU interpreter (TRITON_INTERPRET=1) in a new process."""
    path = tiny_model("v7", tmp_path, n_layer=2, n_embd=64, head_size=32, seed=9)
    code = f"""
        import contextlib, io, json, torch
        from weprompt_cli.engine.runtime import import_rwkv_model
        from weprompt_cli.engine.rwkv7_batch import BatchForward
        out = import_rwkv_model("v7", "cpu fp32")
        package = out[0] if isinstance(out, tuple) else out
        with contextlib.redirect_stdout(io.StringIO()):
            model = package.RWKV({str(path)[:-4]!r}, "cpu fp32")
        fwd = BatchForward(model, wkv="triton")
        states, refs = fwd.new_state(), []
        for i in range(3):
            state = model.generate_zero_state()
            _, state = model.forward([3 + i, 7, 11 + i, 2], state)
            states.put(states.alloc(), state)
            refs.append(state)
        tokens = [4, 9, 1]
        logits = fwd.step(torch.tensor(tokens), states)
        worst = 0.0
        for i, state in enumerate(refs):
            want, want_state = model.forward([tokens[i]], state)
            worst = max(worst, float((logits[i] - want.float()).abs().max()))
            worst = max(worst, max(float((a - b).abs().max()) for a, b in zip(states.take(i), want_state)))
        print(json.dumps({{"wkv": fwd.wkv, "worst": worst}}))
    """
    result = run_json(code, TRITON_INTERPRET="1")
    assert result["wkv"] == "triton"
    assert result["worst"] < 1e-4


def run_json(code: str, **env: str) -> Any:
    """Run `code` in a new process (tests/ and the checkout on sys.path); the JSON it prints last."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **env)
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT), full_env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=full_env, cwd=str(ROOT), timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bf16_model_keeps_the_package_dtypes(tmp_path: Path) -> None:
    """x states and activations in the model dtype, the wkv state in fp32, logits float32 (a new process:
    the package keeps the dtype of the last model loaded in a module global)."""
    path = tiny_model("v7", tmp_path, n_layer=2, n_embd=128, seed=4)
    result = run_json(f"""
        import contextlib, io, json, torch
        from weprompt_cli.engine.runtime import import_rwkv_model
        from weprompt_cli.engine.rwkv7_batch import BatchForward
        out = import_rwkv_model("v7", "cpu bf16")
        package = out[0] if isinstance(out, tuple) else out
        with contextlib.redirect_stdout(io.StringIO()):
            model = package.RWKV({str(path)[:-4]!r}, "cpu bf16")
        fwd = BatchForward(model)
        states, refs = fwd.new_state(), []
        for i in range(3):
            _, state = model.forward([5 + i, 9, 2 * i + 1], model.generate_zero_state())
            states.put(states.alloc(), state)
            refs.append(state)
        logits = fwd.step(torch.tensor([3, 8, 13]), states)
        worst, agree = 0.0, 0
        for i, state in enumerate(refs):
            want, _ = model.forward([[3, 8, 13][i]], state)
            worst = max(worst, float((logits[i] - want.float()).abs().max() / want.float().abs().max()))
            agree += int(logits[i].argmax()) == int(want.float().argmax())
        print(json.dumps({{
            "logits": str(logits.dtype), "state": [str(t.dtype) for t in states.take(0)[:3]],
            "worst": worst, "agree": agree,
        }}))
    """)  # fmt: skip
    assert result["logits"] == "torch.float32"
    assert result["state"] == ["torch.bfloat16", "torch.float32", "torch.bfloat16"]
    assert result["worst"] < 0.05 and result["agree"] == 3, result


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.skipif(not _cuda(), reason="CUDA is not available (the captured graph and fp16/bf16 need a GPU)")
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cuda_graph_step_matches_eager_and_the_package(tmp_path: Path, dtype: str) -> None:
    import torch

    path = tiny_model("v7", tmp_path, n_layer=2, n_embd=128)
    model = load_package_model(path, f"cuda {dtype}")
    graph = BatchForward(model, max_batch=8)
    eager = BatchForward(model, max_batch=8, graphs=False)
    assert graph.graphs and graph.device.type == "cuda"
    sg, se, refs = graph.new_state(capacity=8), eager.new_state(capacity=8), []
    for i in range(5):
        state = prefilled(model, seed=i, length=3 + i)[1]
        sg.put(sg.alloc(), state)
        se.put(se.alloc(), state)
        refs.append(state)
    tokens = torch.tensor([1, 5, 9, 13, 17], device="cuda")
    got = graph.step(tokens, sg).clone()
    assert graph.graphs, graph.graph_reason  # captured, not fallen back
    want = eager.step(tokens, se)
    assert float((got - want).abs().max()) < 0.05
    for i, state in enumerate(refs):
        ref = package_step(model, int(tokens[i]), state)[0]
        assert float((got[i] - ref).abs().max()) < 0.1 * max(1.0, float(ref.abs().max()))
