"""Test helpers: run Python in a fresh process (one rwkv model family per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from weprompt_cli.chat.formats import chat_format_for

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _env(env: dict[str, str] | None) -> dict[str, str]:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    # Tiny test models gain nothing from threads, and idle OpenMP threads spin on a busy CPU.
    full_env.setdefault("OMP_NUM_THREADS", "1")
    if env:
        full_env.update(env)
    return full_env


def run_python(code: str, *, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `code` with this interpreter in a new process (tests/ and the checkout on sys.path)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(env),
        cwd=str(ROOT),
    )


def run_python_many(codes: dict[str, str], *, timeout: float = 300) -> dict[str, Any]:
    """Run several snippets in parallel processes; each prints JSON last; {name: parsed JSON or error text}."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(None),
            cwd=str(ROOT),
        )
        for name, code in codes.items()
    }
    results: dict[str, Any] = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            results[name] = f"timed out after {timeout}s\n{err[-3000:]}"
            continue
        lines = [line for line in out.splitlines() if line.strip()]
        if proc.returncode != 0 or not lines:
            results[name] = f"failed ({proc.returncode}):\n{out[-2000:]}\n{err[-4000:]}"
        else:
            results[name] = json.loads(lines[-1])
    return results


def run_python_json(code: str, **kwargs: Any) -> Any:
    """Run `code`, which prints one JSON document as its last stdout line; return it parsed."""
    result = run_python(code, **kwargs)
    assert result.returncode == 0, f"subprocess failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, f"no output; stderr:\n{result.stderr[-3000:]}"
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------- engine checks
# Shared by the in-process RWKV-7 tests and the per-family subprocesses.

CHAT = [
    ("How do I select every row of a table?", 8),
    ("And count them,\n\n\nper customer?", 3),  # a short limit: this reply is cut by length
    ("Thanks! What is a primary key?", 6),
]


def pipeline_tokens(engine: Any, prompt: str, count: int, *, presence: float = 0.0, frequency: float = 0.0,
                    decay: float = 0.996) -> list[int]:
    """The token ids `rwkv.utils.PIPELINE.generate` picks greedily (temperature 0) after `prompt`."""
    from rwkv.utils import PIPELINE, PIPELINE_ARGS

    from weprompt_cli.engine.tokenizer import JsonTokenizer

    picked: list[int] = []

    class Recording(PIPELINE):  # type: ignore[misc]
        def sample_logits(self, logits: Any, temperature: float = 1.0, top_p: float = 0.85, top_k: int = 0) -> int:
            token = super().sample_logits(logits, temperature=temperature, top_p=top_p, top_k=top_k)
            picked.append(token)
            return token

    vocab = str(engine.tokenizer.path) if isinstance(engine.tokenizer, JsonTokenizer) else "rwkv_vocab_v20230424"
    pipeline = Recording(engine.model, vocab)
    args = PIPELINE_ARGS(temperature=0, top_p=0.85, top_k=0, alpha_frequency=frequency, alpha_presence=presence,
                         alpha_decay=decay, token_ban=[], token_stop=[], chunk_len=256)
    pipeline.generate(prompt, token_count=count, args=args)
    return picked


def engine_tokens(engine: Any, prompt: str, count: int, *, presence: float = 0.0, frequency: float = 0.0,
                  decay: float = 0.996) -> list[int]:
    """The token ids the engine generates greedily after `prompt` (no stop strings)."""
    from weprompt_cli.engine import Sampler, SamplingParams

    params = SamplingParams(temperature=0, presence_penalty=presence, frequency_penalty=frequency,
                            penalty_decay=decay)
    state = engine.zero_state()
    logits = engine.feed(engine.tokenizer.encode(prompt), state)
    generation = engine.generate(logits, state, Sampler(params), stop=(), max_tokens=count)
    list(generation)
    return list(generation.result.tokens)


def multi_turn_state_gap(engine: Any, *, seed: int = 5) -> dict[str, Any]:
    """Chat several turns, then feed every recorded id in one go: how far apart are the two states?"""
    from weprompt_cli.engine import Sampler, SamplingParams, clone_state

    fmt = chat_format_for(engine.info, engine.tokenizer)
    params = SamplingParams(temperature=1.0, top_p=0.9, seed=seed, presence_penalty=0.2, frequency_penalty=0.2)
    state = engine.zero_state()
    ids = engine.tokenizer.encode(fmt.persona_prefix("You answer questions about SQL.", [("Hi", "Hello!")]))
    engine.feed(ids, state)
    recorded = list(ids)
    reasons = []
    previous = "stop"
    for user, limit in CHAT:
        prompt = engine.tokenizer.encode(fmt.turn_prompt(user, needs_boundary=previous != "stop"))
        logits = engine.feed(prompt, state, chunk=7)  # several chunks
        generation = engine.generate(logits, state, Sampler(params), stop=fmt.stop, max_tokens=limit)
        pieces = list(generation)
        result = generation.result
        assert "".join(pieces) == result.text
        assert result.raw_text == engine.tokenizer.decode(result.tokens)
        recorded += prompt + result.tokens
        previous = result.stop_reason
        reasons.append(previous)
    replay = engine.zero_state()
    engine.feed(recorded, replay, chunk=10_000)
    gaps = [float((a.double() - b.double()).abs().max()) for a, b in zip(state, replay)]
    scale = max(float(b.double().abs().max()) for b in replay)
    copy = clone_state(state)
    moved = max(float((a.double() - z.double()).abs().max()) for a, z in zip(state, engine.zero_state()))
    return {"max_gap": max(gaps), "scale": scale, "reasons": reasons, "tokens": len(recorded),
            "same_length": len(copy) == len(replay), "moved": moved}


def one_turn(engine: Any) -> dict[str, Any]:
    """One chat turn through the engine, as the chat layer runs it."""
    from weprompt_cli.engine import Sampler, SamplingParams

    fmt = chat_format_for(engine.info, engine.tokenizer)
    state = engine.zero_state()
    prompt = fmt.persona_prefix("You are helpful.", []) + fmt.turn_prompt("Hello, who are you?", needs_boundary=False)
    logits = engine.feed(engine.tokenizer.encode(prompt), state)
    generation = engine.generate(logits, state, Sampler(SamplingParams(seed=1, max_tokens=12)), stop=fmt.stop)
    pieces = list(generation)
    result = generation.result
    return {
        "arch": engine.info.arch,
        "format": fmt.name,
        "pieces": pieces,
        "text": result.text,
        "tokens": result.tokens,
        "reason": result.stop_reason,
        "logits_dtype": str(logits.dtype),
    }


def run_main(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """Run the `weprompt` entry point in this process: (exit code, stdout, stderr)."""
    from weprompt_cli.cli import main

    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
