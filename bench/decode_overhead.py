"""Engine overhead: streaming generation and prefill vs a bare `model.forward` loop (run by hand).

    python bench/decode_overhead.py [--layers 12] [--embd 768] [--tokens 48] [--prompt 256]
                                    [--repeat 3] [--threads 1] [--strategy "cpu fp32"]

Builds (once, cached in the temp folder) a random RWKV-7 checkpoint of a realistic shape
with the World vocabulary (12 x 768 is about 190M parameters, a 0.1B-class model) using
tests/checkpoints.py, loads it once through `load_engine`, and times on the same model
and strategy:

- decode, bare: `out, state = model.forward([token], state)`, then argmax, in a loop;
- decode, engine: `Engine.generate` (streaming text pieces, stop-string scan, sampler),
  greedy, and with the default sampling (temperature 1, top-p 0.85, penalties);
- prefill, bare: `model.forward(chunk, state)` over 256-token chunks;
- prefill, engine: `Engine.feed(tokens, state)`.

Runs alternate bare/engine (after an untimed warm-up of each) so load from other
processes hits both alike; the table shows the median and the best of --repeat runs
(on a shared CPU the best is the steadier estimate of the overhead). Goal: ratio >= 0.95.
One torch thread by default: on a small shared CPU, idle OpenMP threads spin and make
both loops several times slower and much noisier.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from _models import CHAT_SAMPLE as TEXT  # noqa: E402


def build_model(layers: int, embd: int) -> Path:
    from checkpoints import build_checkpoint

    folder = Path(tempfile.gettempdir()) / "weprompt-bench"
    path = folder / f"rwkv7-{layers}x{embd}-world.pth"
    if not path.exists():
        print(f"building {path.name} ...", file=sys.stderr)
        tmp = folder / f".building-{path.name}"
        build_checkpoint("v7", tmp, n_layer=layers, n_embd=embd, vocab_size=65536, tokenizer=None, dtype="bf16")
        tmp.rename(path)
    return path


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    count = fn()
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--embd", type=int, default=768)
    parser.add_argument("--tokens", type=int, default=48, help="tokens generated per decode run")
    parser.add_argument("--prompt", type=int, default=256, help="tokens per prefill run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, 0 for torch's choice (default 1)")
    parser.add_argument("--strategy", default="cpu fp32")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    path = build_model(args.layers, args.embd)

    from weprompt_cli.engine import Sampler, SamplingParams, load_engine

    t = time.perf_counter()
    engine = load_engine(path, args.strategy)
    load_s = time.perf_counter() - t
    model = engine.model
    prompt = engine.tokenizer.encode(TEXT * (args.prompt // 100 + 2))[: args.prompt]
    start = engine.zero_state()
    first_logits = engine.feed(prompt[:32], start)
    n = args.tokens

    def fresh() -> list[Any]:
        return [t.clone() for t in start]

    # ---------------------------------------------------------------- decode
    def bare_decode() -> int:
        state = fresh()
        token = int(torch.argmax(first_logits))
        for _ in range(n):
            out, state = model.forward([token], state)
            token = int(torch.argmax(out.float()))
        return n

    def engine_decode(params: SamplingParams) -> Callable[[], int]:
        def run() -> int:
            state = fresh()
            generation = engine.generate(first_logits, state, Sampler(params), stop=("\n\n",), max_tokens=n)
            for _piece in generation:
                pass
            return len(generation.result.tokens)

        return run

    greedy = SamplingParams(temperature=0, max_tokens=n)
    sampled = SamplingParams(temperature=1.0, top_p=0.85, presence_penalty=0.2, frequency_penalty=0.2, seed=1)

    # The stop string could end a run early: count what each run really generated.
    def _greedy_stops_early() -> bool:
        state = fresh()
        generation = engine.generate(first_logits, state, Sampler(greedy), stop=("\n\n",), max_tokens=n)
        list(generation)
        return generation.result.stop_reason == "stop"

    if _greedy_stops_early():
        print("note: greedy output hits the separator early; rates use the real token counts", file=sys.stderr)

    # ---------------------------------------------------------------- prefill
    def bare_prefill() -> int:
        state = fresh()
        for i in range(0, len(prompt), 256):
            _out, state = model.forward(prompt[i : i + 256], state)
        return len(prompt)

    def engine_prefill() -> int:
        state = fresh()
        engine.feed(prompt, state, chunk=256)
        return len(prompt)

    pairs = {
        "decode, greedy": (bare_decode, engine_decode(greedy)),
        "decode, top-p + penalties": (bare_decode, engine_decode(sampled)),
        "prefill": (bare_prefill, engine_prefill),
    }
    rows = []
    for name, (bare, ours) in pairs.items():
        print(f"timing {name} ...", file=sys.stderr, flush=True)
        bare()  # warm-up: TorchScript profiles the first calls of each shape
        ours()
        bare_rates, our_rates = [], []
        for _ in range(args.repeat):
            s, c = timed(bare)
            bare_rates.append(c / s)
            s, c = timed(ours)
            our_rates.append(c / s)
        b, o = statistics.median(bare_rates), statistics.median(our_rates)
        rows.append((name, b, o, o / b, max(bare_rates), max(our_rates)))

    info = engine.info
    print(
        f"model: random RWKV-7 {info.n_layer}x{info.n_embd}, vocab {info.vocab_size}, "
        f"{info.n_params / 1e6:.0f}M params; strategy {engine.strategy!r}; torch threads {torch.get_num_threads()}; "
        f"load {load_s:.1f}s; decode {n} tokens, prefill {len(prompt)} tokens; median and best of {args.repeat}"
    )
    print(f"{'':28} {'bare tok/s':>11} {'engine tok/s':>13} {'ratio':>7}   {'best bare':>9} {'best engine':>11} {'ratio':>7}")
    for name, b, o, r, bb, bo in rows:
        print(f"{name:28} {b:11.1f} {o:13.1f} {r:7.3f}   {bb:9.1f} {bo:11.1f} {bo / bb:7.3f}")


if __name__ == "__main__":
    main()
