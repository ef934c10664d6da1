"""The GPU decode path (engine/gpu), exercised on the CPU with a real tiny RWKV-7 model.

There is no GPU here: the CUDA-graph capture itself is skipped (`install(engine,
capture=None)` runs the same static-buffer forward eagerly), and `bench/gpu.py` checks
the captured graph on a GPU. Everything else (the static forward's math, the path choice
and its fallbacks, the device sampler's rules, state dtypes) is checked here.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from checkpoints import tiny_model
from helpers import run_python_json

from weprompt_cli.engine import (
    Engine,
    Sampler,
    SamplingParams,
    clone_state,
    load_engine,
    state_from_tensors,
    state_to_tensors,
)
from weprompt_cli.engine.gpu.forward import StaticForward, covers
from weprompt_cli.engine.gpu.graph import GRAPH, PLAIN, PREFILL_ENV, decode_path, graph_feed, install, prefill_route
from weprompt_cli.engine.gpu.sampler import DeviceSampler
from weprompt_cli.engine.sampling import apply_penalties, sampling_weights, top_p_cutoff, top_p_cutoff_on_device

PROMPT = "User: How do I count rows?\n\nAssistant:"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model("v7", tmp_path_factory.mktemp("gpu-path"))


@pytest.fixture(scope="module")
def engine(model_path: Path) -> Engine:
    return load_engine(model_path, "cpu fp32")


@pytest.fixture(autouse=True)
def keep_decode_path(engine: Engine) -> Iterator[None]:
    """Tests switch the shared engine's path: put the loaded one back after each."""
    saved = (engine.decode_path, engine.decode_path_reason, engine.decoder)
    yield
    engine.set_decode_path(*saved)


@pytest.fixture()
def graph_engine(engine: Engine) -> Engine:
    """The same loaded model on the graph path, capture skipped (the eager static forward)."""
    engine.set_decode_path(*install(engine.model, capture=None))
    assert engine.decode_path == GRAPH
    return engine


def greedy_run(engine: Engine, count: int, params: SamplingParams | None = None) -> tuple[list[int], list[Any], Any]:
    state = engine.zero_state()
    logits = engine.feed(engine.encode(PROMPT), state)
    generation = engine.generate(
        logits, state, Sampler(params or SamplingParams(temperature=0)), stop=(), max_tokens=count
    )
    list(generation)
    return generation.result.tokens, state, generation.result.logits


# ---------------------------------------------------------------------------- the static forward


@pytest.mark.parametrize("ops", ["torch", "package"])
def test_static_forward_equals_the_package_forward_over_a_greedy_run(engine: Engine, ops: str) -> None:
    fwd = StaticForward(engine.model, ops)
    state = engine.zero_state()
    fwd.load_state(state)
    token = engine.encode(PROMPT)[0]
    for _ in range(50):
        out, state = engine.model.forward([token], state)
        fwd.token.fill_(token)
        fwd.step()
        assert (out.float() - fwd.logits.float()).abs().max().item() < 1e-4
        for ours, theirs in zip(fwd.state, state):
            assert ours.dtype == theirs.dtype and (ours - theirs).abs().max().item() < 1e-4
        token = int(out.argmax())
        assert int(fwd.logits.argmax()) == token


def test_graph_path_generation_matches_the_plain_path(engine: Engine) -> None:
    plain_tokens, plain_state, plain_logits = greedy_run(engine, 50)
    sampled = SamplingParams(temperature=0.9, top_p=0.8, top_k=30, presence_penalty=0.4, frequency_penalty=0.3, seed=7)
    plain_sampled = greedy_run(engine, 40, sampled)[0]
    engine.set_decode_path(*install(engine.model, capture=None))
    tokens, state, logits = greedy_run(engine, 50)
    assert tokens == plain_tokens
    assert max((a - b).abs().max().item() for a, b in zip(state, plain_state)) < 1e-4
    assert (logits - plain_logits).abs().max().item() < 1e-4
    # Seeded sampling with penalties: the device sampler on the CPU draws what the plain one draws.
    assert greedy_run(engine, 40, sampled)[0] == plain_sampled
    assert engine.decoder.fwd.ops == "package"  # the default: the package's own block functions
    engine.set_decode_path(*install(engine.model, capture=None, ops="torch"))  # the same math in plain torch ops, same buffers
    assert engine.decoder.fwd.ops == "torch"
    assert greedy_run(engine, 50)[0] == plain_tokens


def test_an_abandoned_graph_generation_still_writes_its_state_back(graph_engine: Engine) -> None:
    state = graph_engine.zero_state()
    logits = graph_engine.feed(graph_engine.encode(PROMPT), state)
    before = clone_state(state)
    generation = graph_engine.generate(logits, state, Sampler(SamplingParams(temperature=0)), stop=(), max_tokens=20)
    next(generation)
    result = generation.close()
    replay = clone_state(before)
    graph_engine.set_decode_path(PLAIN, "compare", None)
    graph_engine.feed(result.tokens, replay, chunk=1)
    assert max((a - b).abs().max().item() for a, b in zip(state, replay)) < 1e-4


def test_short_prefill_goes_through_the_graph_and_matches_chunks(
    graph_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = graph_engine.encode(PROMPT)
    assert prefill_route(4, kernel=True, limit=8) == GRAPH and prefill_route(9, kernel=True, limit=8) == "chunk"
    monkeypatch.setenv(PREFILL_ENV, "1000")
    assert prefill_route(len(ids), kernel=True) == GRAPH
    graph_state = graph_engine.zero_state()
    graph_logits = graph_engine.feed(ids, graph_state)
    chunk_state = graph_engine.zero_state()
    chunk_logits = graph_engine.forward(ids, chunk_state)
    assert (graph_logits - chunk_logits).abs().max().item() < 1e-4
    assert max((a - b).abs().max().item() for a, b in zip(graph_state, chunk_state)) < 1e-4
    assert graph_feed(graph_engine.decoder, ids[:1], graph_engine.zero_state()).dtype.is_floating_point


# ---------------------------------------------------------------------------- path choice and fallbacks


def test_decode_path_choice() -> None:
    assert decode_path("v7", "cpu fp32")[0] == PLAIN
    path, why = decode_path("v7", "cuda fp16", cuda_available=False)
    assert (path, why) == (PLAIN, "CUDA is not available")
    assert decode_path("v7", "cuda fp16", cuda_available=True)[0] == GRAPH
    assert decode_path("v7", "cuda fp16", cuda_available=True, graph=False) == (PLAIN, "graph turned off (--no-graph)")
    for arch in ("v4", "v5", "v6"):
        path, why = decode_path(arch, "cuda fp16", cuda_available=True)
        assert path == PLAIN and "RWKV-4/5/6" in why


def test_a_model_the_graph_does_not_cover_runs_plain(engine: Engine) -> None:
    assert covers(engine.model) == (True, "")
    deep_embed = types.SimpleNamespace(z={**engine.model.z, "blocks.0.ffn.s_emb.weight": None}, head_size=64)
    path, why = decode_path("v7", "cuda fp16", cuda_available=True, model=deep_embed)
    assert path == PLAIN and "DeepEmbed" in why


def test_cpu_and_no_graph_loads_run_plain_and_generate(
    model_path: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (engine.decode_path, engine.decoder) == (PLAIN, None)
    assert "not on a CUDA GPU" in engine.decode_path_reason
    off = load_engine(model_path, "cpu fp32", graph=False, verbose=True)
    assert off.decode_path == PLAIN and "--no-graph" in off.decode_path_reason
    # The engine prints nothing itself: it describes what it chose, and the CLI shows that with --verbose.
    assert "decode path: plain (graph turned off (--no-graph))" in off.describe()
    assert "decode path" not in capsys.readouterr().err
    assert len(greedy_run(off, 5)[0]) == 5


def test_a_failed_capture_falls_back_to_plain_and_generation_still_works(engine: Engine) -> None:
    expected = greedy_run(engine, 12)[0]

    def boom(fwd: StaticForward) -> None:
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    engine.set_decode_path(*install(engine.model, capture=boom))
    assert engine.decode_path == PLAIN and engine.decoder is None
    assert "graph capture failed (RuntimeError: operation not permitted" in engine.decode_path_reason
    assert "\n" not in engine.decode_path_reason
    assert greedy_run(engine, 12)[0] == expected


def test_an_uncovered_family_loads_plain_and_generates(tmp_path: Path) -> None:
    path = tiny_model("v6", tmp_path)
    out = run_python_json(
        f"""
        import json, torch
        torch.set_num_threads(1)
        from weprompt_cli.engine import load_engine
        from helpers import engine_tokens
        e = load_engine({str(path)!r}, "cpu fp32")
        print(json.dumps([e.decode_path, e.decode_path_reason, len(engine_tokens(e, "User: hi", 4))]))
        """,
        timeout=120,
    )
    assert out[0] == PLAIN and out[2] == 4


def test_doctor_prints_the_decode_path() -> None:
    from typer.testing import CliRunner

    from weprompt_cli.cli.app import app

    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["decode_path"].startswith("plain (CUDA is not available")


# ---------------------------------------------------------------------------- the device sampler


def _logits(seed: int, vocab: int = 2000, spread: float = 3.0) -> Any:
    import torch

    return torch.randn(vocab, generator=torch.Generator().manual_seed(seed)) * spread


def test_device_sampler_greedy_with_penalties_equals_the_plain_sampler() -> None:
    params = SamplingParams(temperature=0, presence_penalty=0.5, frequency_penalty=0.4, penalty_decay=0.9)
    plain, device = Sampler(params), DeviceSampler(params, "cpu", 2000)
    texts = ["a", " ", "7", "bc"]
    for step in range(40):
        logits = _logits(step % 3, spread=0.3)  # few distinct logits: the penalties decide
        token = plain.sample(logits)
        picked = device.sample(logits)
        assert int(picked[0]) == token
        assert torch_equal(device.penalized(logits), _plain_penalized(plain, logits))
        plain.observe(token, texts[step % 4])
        device.observe(picked, texts[step % 4])


def _plain_penalized(plain: Sampler, logits: Any) -> Any:
    p = plain.params
    if plain._ids is None:
        return logits.float()
    return apply_penalties(logits.float().clone(), plain._ids, plain._counts, p.presence_penalty, p.frequency_penalty)


def torch_equal(a: Any, b: Any) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_device_sampler_is_seeded_and_draws_as_the_plain_sampler() -> None:
    params = SamplingParams(temperature=0.8, top_p=0.9, top_k=50, seed=11)

    def draws(make: Any) -> list[int]:
        sampler = make()
        return [
            int(sampler.sample(_logits(i))) if isinstance(sampler, Sampler) else int(sampler.sample(_logits(i))[0])
            for i in range(30)
        ]

    first = draws(lambda: DeviceSampler(params, "cpu", 2000))
    assert first == draws(lambda: DeviceSampler(params, "cpu", 2000))
    assert first == draws(lambda: Sampler(params))
    assert first != draws(lambda: DeviceSampler(params.with_overrides(seed=12), "cpu", 2000))


@pytest.mark.parametrize(
    ("temperature", "top_p", "top_k", "spread"),
    [
        (1.0, 0.85, 0, 3.0),
        (0.7, 0.5, 0, 8.0),
        (1.3, 0.99, 0, 0.5),
        (1.0, 1.0, 40, 3.0),
        (0.5, 0.9, 10, 1.0),
        (2.0, 0.3, 5, 3.0),
    ],
)
def test_device_sampler_distribution_rules_equal_the_plain_ones(
    temperature: float, top_p: float, top_k: int, spread: float
) -> None:
    import torch

    logits = _logits(3, spread=spread)  # spread 0.5 with top_p 0.99: the nucleus is beyond the top-256 prefilter
    probs = torch.softmax(logits, dim=-1)
    assert torch_equal(top_p_cutoff_on_device(probs, top_p), top_p_cutoff(probs, top_p))
    ours = sampling_weights(logits, temperature=temperature, top_p=top_p, top_k=top_k, cutoff=top_p_cutoff_on_device)
    theirs = sampling_weights(logits, temperature=temperature, top_p=top_p, top_k=top_k)
    assert torch_equal(ours, theirs)
    kept = int((ours > 0).sum())
    assert kept >= 1 and (top_k == 0 or kept <= top_k)


# ---------------------------------------------------------------------------- states across paths


def test_fp16_gpu_style_state_resumes_on_fp32_and_back(engine: Engine, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    state = engine.zero_state()
    engine.feed(engine.encode(PROMPT), state)
    # What the GPU path keeps: fp16 activations (x_prev), fp32 wkv state.
    gpu_style = [t.to(torch.float16) if t.dim() == 1 else t.clone() for t in state]
    restored = state_from_tensors(state_to_tensors(gpu_style), engine)
    assert [t.dtype for t in restored] == [t.dtype for t in state] == [torch.float32] * len(state)
    assert max((a - b).abs().max().item() for a, b in zip(restored, state)) < 1e-2
    tokens = greedy_run(engine, 1)[0]
    assert tokens  # the restored state generates
    logits = engine.forward([tokens[0]], restored)
    assert torch.isfinite(logits).all()

    # fp32 CPU state -> an fp16 engine (a separate process: the package's dtype is global) -> back.
    save_file(state_to_tensors(state), str(tmp_path / "fp32.safetensors"))
    out = run_python_json(
        f"""
        import json, torch, warnings
        warnings.simplefilter("ignore")
        torch.set_num_threads(1)
        from safetensors.torch import load_file, save_file
        from weprompt_cli.engine import load_engine, state_from_tensors, state_to_tensors
        e = load_engine({str(engine.info.path)!r}, "cpu fp16")
        s = state_from_tensors(load_file({str(tmp_path / "fp32.safetensors")!r}), e)
        dtypes = sorted({{str(t.dtype) for t in s}})
        e.feed([5, 6], s)
        save_file(state_to_tensors(s), {str(tmp_path / "fp16.safetensors")!r})
        print(json.dumps(dtypes))
        """,
        timeout=120,
    )
    assert out == ["torch.float16", "torch.float32"]
    back = state_from_tensors(load_file(str(tmp_path / "fp16.safetensors")), engine)
    assert [t.dtype for t in back] == [torch.float32] * len(state)
    reference = clone_state(state)
    engine.feed([5, 6], reference)
    assert max((a - b).abs().max().item() for a, b in zip(back, reference)) < 5e-2
