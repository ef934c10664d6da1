"""Batched RWKV-7 decode on the CPU: `BatchForward` at batch 1/4/16 against B sequential package forwards.

    python bench/batch_cpu.py                 # the demo model and a random 12x768 RWKV-7 (World vocabulary)
    python bench/batch_cpu.py --threads 2     # torch threads (default 1: the numbers of one core)

Per model and batch size B, both sides decode B streams greedily for the same number of
steps from B different prefilled states, with an argmax per stream per step:

- sequential: B package states, `model.forward([token], state)` for each stream in turn
  (what `weprompt serve` does today, one request after another);
- batched: one `BatchState` of B slots, one `BatchForward.step` per step (eager on the CPU).

Each side runs 3 times, alternated, and its best time counts. Prints tok/s of both and
their ratio, and whether both decoded the same tokens; the output also goes to
bench/results/batch-cpu.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT)]

from gpu import Report  # bench/gpu.py's: prints and saves each line

BATCHES = (1, 4, 16)
ROUNDS = 3


def random_model(layers: int, embd: int) -> Path:
    """A random RWKV-7 of the World vocabulary, built once under the temp folder (bench/_models.py's path)."""
    from checkpoints import build_checkpoint

    path = Path(tempfile.gettempdir()) / "weprompt-bench" / f"random-v7-{layers}x{embd}.pth"
    if not path.exists():
        build_checkpoint("v7", path, n_layer=layers, n_embd=embd, vocab_size=65536, tokenizer=None)
    return path


def load(path: Path) -> Any:
    from weprompt_cli.engine.runtime import import_rwkv_model

    out = import_rwkv_model("v7", "cpu fp32")
    package = out[0] if isinstance(out, tuple) else out
    with contextlib.redirect_stdout(io.StringIO()):
        return package.RWKV(str(path)[: -len(".pth")], "cpu fp32")


def prefilled_states(model: Any, batch: int) -> tuple[list[list[Any]], list[int]]:
    """`batch` states after different 8-token prompts, and each stream's first token (the prompt's argmax)."""
    import torch

    vocab = model.z["emb.weight"].shape[0]
    g = torch.Generator().manual_seed(batch)
    states, first = [], []
    for _ in range(batch):
        logits, state = model.forward(torch.randint(1, vocab, (8,), generator=g).tolist(), model.generate_zero_state())
        states.append(state)
        first.append(int(logits.argmax()))
    return states, first


def sequential(model: Any, states: list[list[Any]], first: list[int], steps: int) -> list[list[int]]:
    import torch

    states = [[t.clone() for t in s] for s in states]
    tokens, out = list(first), [[] for _ in first]  # type: list[int], list[list[int]]
    with torch.no_grad():
        for _ in range(steps):
            for i in range(len(states)):
                logits, states[i] = model.forward([tokens[i]], states[i])
                tokens[i] = int(logits.argmax())
                out[i].append(tokens[i])
    return out


def batched(fwd: Any, states: list[list[Any]], first: list[int], steps: int) -> list[list[int]]:
    import torch

    batch = fwd.new_state(capacity=len(states))
    for state in states:
        batch.put(batch.alloc(), state)
    tokens, out = torch.tensor(first), [[] for _ in first]  # type: Any, list[list[int]]
    for _ in range(steps):
        tokens = fwd.step(tokens, batch).argmax(dim=-1)  # [B]
        for i, t in enumerate(tokens.tolist()):
            out[i].append(t)
    return out


def bench_model(name: str, path: Path, steps: int, out: Report) -> None:
    from weprompt_cli.engine.rwkv7_batch import BatchForward

    model = load(path)
    fwd = BatchForward(model, max_batch=max(BATCHES))
    out(f"## {name}: {fwd.n_layer} x {fwd.n_embd}, head size {fwd.head_size}, vocabulary {fwd.vocab_size}, fp32")
    for batch in BATCHES:
        states, first = prefilled_states(model, batch)
        sequential(model, states, first, 2), batched(fwd, states, first, 3)  # warm-up (TorchScript profiling)
        seq_s = bat_s = float("inf")
        for _ in range(ROUNDS):  # alternated, best of each: other work on the machine slows both alike
            start = time.perf_counter()
            seq_tokens = sequential(model, states, first, steps)
            seq_s = min(seq_s, time.perf_counter() - start)
            start = time.perf_counter()
            bat_tokens = batched(fwd, states, first, steps)
            bat_s = min(bat_s, time.perf_counter() - start)
        seq_tps, bat_tps = batch * steps / seq_s, batch * steps / bat_s
        same = sum(a == b for a, b in zip(seq_tokens, bat_tokens))
        out(
            f"batch {batch:2d}: sequential package {seq_tps:8,.1f} tok/s   BatchForward {bat_tps:8,.1f} tok/s   "
            f"x{bat_tps / seq_tps:.2f}   same greedy tokens: {same}/{batch} streams ({steps} steps)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--steps", type=int, default=0, help="decode steps per measurement (0: per model default)")
    args = parser.parse_args()
    import torch

    from weprompt_cli.demo import DEMO_MODEL_PATH, demo_available

    torch.set_num_threads(args.threads)
    out = Report(ROOT / "bench" / "results" / "batch-cpu.txt")
    from importlib.metadata import version

    out(f"# bench/batch_cpu.py: torch {torch.__version__}, rwkv {version('rwkv')}, {args.threads} torch thread(s)")
    out("# command: python bench/batch_cpu.py" + (f" --threads {args.threads}" if args.threads != 1 else ""))
    out(f"# load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other work slows both sides)")
    models = []
    if demo_available():
        models.append(("demo model", DEMO_MODEL_PATH, args.steps or 48))
    models.append(("random 12x768", random_model(12, 768), args.steps or 8))
    for name, path, steps in models:
        out()
        bench_model(name, path, steps, out)
    out()
    out(f"# load average at end: {os.getloadavg()[0]:.2f}")
    out(f"written to {out.path}")


if __name__ == "__main__":
    main()
