"""Batched RWKV-7 decode (engine/rwkv7_batch.py, issue 18) against the rwkv package, in one run.

    python bench/gpu_batch.py                 # on a CUDA machine: 1.5B and 7.2B shapes, fp16
    python bench/gpu_batch.py --sizes 1.5B    # a subset
    python bench/gpu_batch.py --dry-run       # tiny shapes on the CPU, fp32: checks the script runs

Random-weight RWKV-7 checkpoints of real shape (bench/gpu.py's `build_model`: World
vocabulary, fp16, the scales of tests/checkpoints.py) loaded by the package (`cuda fp16`,
its CUDA kernel off: neither path timed here uses it, and its build costs a minute). Per size:

- checks first: one batched step of 8 prefilled streams against 8 calls of the package's
  `model.forward([token], state)` (max |logit diff|, argmax agreement), and the captured
  graph against the eager step; the wkv implementation and the graph status, with reasons;
- the package's best single stream: its plain `model.forward([token], state)` and, where
  the installed package has it (0.8.31+), `forward_one_alt` captured as a CUDA graph
  (embedding lookup, forward, state copy-back and argmax inside the graph);
- `BatchForward.step` (graphs) at batch 1, 8, 64 and 256: aggregate and per-stream tok/s.

Every decode loop is greedy with the argmax on the device and one copy of the tokens to the
host per step (what an executor needs to detokenize), so each step syncs once.

Goals (issue 18), printed as ratios: 1.5B >= 10,000 tok/s aggregate at batch 64; 7.2B >=
8,000 tok/s at batch 256; single stream (batch 1) no slower than the package's best.
Output goes line by line to bench/results/gpu-batch-<UTC time>.txt (dry run:
gpu-batch-dry-run.txt). Sized to finish in under 8 minutes on one H200.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT)]

from gpu import Report, build_model, sync  # bench/gpu.py's checkpoint builder and report

SIZES = {"1.5B": (24, 2048), "7.2B": (32, 4096)}
DRY_SIZES = {"tiny-a": (2, 128), "tiny-b": (2, 256)}
BATCHES = (1, 8, 64, 256)
DRY_BATCHES = (1, 4, 8)
GOALS = {"1.5B": (64, 10_000.0), "7.2B": (256, 8_000.0)}  # size: (batch, aggregate tok/s)


def load_package_model(path: Path, strategy: str) -> Any:
    from weprompt_cli.engine.runtime import import_rwkv_model

    out = import_rwkv_model("v7", strategy, head_size=64)
    package = out[0] if isinstance(out, tuple) else out  # the module (some versions return a note too)
    with contextlib.redirect_stdout(io.StringIO()):
        return package.RWKV(str(path)[: -len(".pth")], strategy)


def timed(device: str, fn: Callable[[], Any]) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------- the package's single stream


def package_plain(model: Any, first: int, count: int) -> list[int]:
    """`model.forward([token], state)` and a host argmax per token."""
    import torch

    state, token, picked = model.generate_zero_state(), first, []
    with torch.no_grad():
        for _ in range(count):
            logits, state = model.forward([token], state)
            token = int(torch.argmax(logits))
            picked.append(token)
    return picked


class PackageAltGraph:
    """The package's `forward_one_alt` captured as a CUDA graph (eager on the CPU): one greedy token per `run`."""

    def __init__(self, model: Any, device: str) -> None:
        import torch

        self.model, self.cuda = model, device.startswith("cuda")
        self.emb = model.z["emb.weight"]  # [V, C]
        self.token = torch.zeros(1, dtype=torch.long, device=self.emb.device)  # [1]
        self.state = [t.clone() for t in model.generate_zero_state()]
        self.graph: Any = None
        if self.cuda:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._body()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._body()
            torch.cuda.synchronize()

    def _body(self) -> None:
        import torch

        with torch.no_grad():
            x = self.emb.index_select(0, self.token).view(-1)  # [C]
            logits, new = self.model.forward_one_alt(x, self.state)
            for static, t in zip(self.state, new):
                static.copy_(t)
            self.token.copy_(torch.argmax(logits).view(1))

    def decode(self, first: int, count: int) -> list[int]:
        for t, z in zip(self.state, self.model.generate_zero_state()):
            t.copy_(z)
        self.token.fill_(first)
        picked = []
        for _ in range(count):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._body()
            picked.append(int(self.token))  # one sync per token
        return picked


# ---------------------------------------------------------------------------- checks


def check_against_package(model: Any, fwd: Any, device: str) -> str:
    """One batched step of 8 prefilled streams vs 8 package forwards; graph vs eager on the same inputs."""
    import torch

    from weprompt_cli.engine.rwkv7_batch import BatchForward

    n = 8
    g = torch.Generator().manual_seed(0)
    states, eager_states, refs = fwd.new_state(capacity=n), None, []
    for i in range(n):
        state = model.generate_zero_state()
        prompt = torch.randint(1, fwd.vocab_size, (4 + 3 * i,), generator=g).tolist()
        _, state = model.forward(prompt, state)
        states.put(states.alloc(), state)
        refs.append(state)
    tokens = torch.randint(1, fwd.vocab_size, (n,), generator=g)
    snapshot = [states.take(i) for i in range(n)]
    got = fwd.step(tokens.to(device), states).clone()
    worst, agree = 0.0, 0
    for i, state in enumerate(refs):
        want, _ = model.forward([int(tokens[i])], state)
        worst = max(worst, float((got[i] - want.float()).abs().max()))
        agree += int(got[i].argmax()) == int(want.float().argmax())
    line = f"check: batch of {n} vs the package's forward: max |logit diff| {worst:.2e}, argmax equal {agree}/{n}"
    if fwd.graphs:
        eager = BatchForward(model, max_batch=n, graphs=False, wkv=fwd.wkv)
        eager_states = eager.new_state(capacity=n)
        for i, state in enumerate(snapshot):
            eager_states.put(eager_states.alloc(), state)
        want = eager.step(tokens.to(device), eager_states)
        line += f"; graph vs eager: max |logit diff| {float((got - want).abs().max()):.2e}"
    return line


# ---------------------------------------------------------------------------- one size


def bench_size(name: str, path: Path, args: argparse.Namespace, out: Report) -> None:
    import torch

    from weprompt_cli.engine.rwkv7_batch import BatchForward

    device = args.device
    start = time.perf_counter()
    model = load_package_model(path, args.strategy)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    if args.dry_run:  # no CUDA graphs on the CPU: the bucket padding and per-storage cache run eagerly
        from weprompt_cli.engine.rwkv7_batch import eager_capture

        fwd = BatchForward(model, max_batch=max(args.batches), graphs=True, capture=eager_capture)
    else:
        fwd = BatchForward(model, max_batch=max(args.batches))
    out(f"## {name}: {fwd.n_layer} x {fwd.n_embd}, head size {fwd.head_size}, {fwd.dtype}")
    out(f"load {load_s:.1f}s; BatchForward {time.perf_counter() - start:.1f}s")
    out(f"wkv: {fwd.wkv} ({fwd.wkv_reason}); steps: {fwd.graph_reason}")
    weight_gb = fwd.weight_bytes() / 1e9
    state_mb = 4 * fwd.n_layer * fwd.n_head * fwd.head_size**2 / 1e6
    out(f"weights read per step {weight_gb:.2f} GB; wkv state per stream {state_mb:.1f} MB (fp32)")
    out(check_against_package(model, fwd, device))

    n = args.tokens
    first = 1234 % fwd.vocab_size
    package_plain(model, first, 4)
    plain_tps = n / timed(device, lambda: package_plain(model, first, n))
    best_name, best_tps = "plain forward", plain_tps
    out(f"package plain forward          {plain_tps:10,.1f} tok/s (single stream)")
    if hasattr(type(model), "forward_one_alt"):
        try:
            alt = PackageAltGraph(model, device)
            alt.decode(first, 4)
            alt_tps = n / timed(device, lambda: alt.decode(first, n))
        except Exception as exc:  # noqa: BLE001 - the baseline failing must not lose the batched numbers
            out(f"package forward_one_alt + CUDA graph FAILED ({type(exc).__name__}: {str(exc)[:200]})")
        else:
            label = "forward_one_alt + CUDA graph" if alt.graph is not None else "forward_one_alt (eager)"
            out(f"package {label:<22} {alt_tps:10,.1f} tok/s (single stream)")
            if alt_tps > best_tps:
                best_name, best_tps = label, alt_tps
            del alt
    else:
        out("package forward_one_alt: not in this rwkv version (0.8.31+ has it); baseline = plain forward")

    results: dict[int, float] = {}
    for batch in args.batches:
        states = fwd.new_state(capacity=batch)
        for _ in range(batch):
            states.alloc()
        g = torch.Generator().manual_seed(batch)
        tokens = torch.randint(1, fwd.vocab_size, (batch,), generator=g).to(device)
        start = time.perf_counter()
        fwd.capture(states, [fwd.bucket_for(batch)])
        capture_s = time.perf_counter() - start

        def decode(count: int, tokens: Any = tokens, states: Any = states) -> None:
            for _ in range(count):
                tokens = fwd.step(tokens, states).argmax(dim=-1)  # [B] on the device
                tokens.cpu()  # one copy to the host per step, as an executor has

        decode(4)
        steps = max(8, n // 2) if batch >= 64 else n
        elapsed = timed(device, partial_steps(decode, steps))
        agg, per = batch * steps / elapsed, steps / elapsed
        results[batch] = agg
        out(
            f"BatchForward batch {batch:4d}: {agg:12,.1f} tok/s aggregate  {per:9,.1f} tok/s per stream  "
            f"{elapsed / steps * 1e3:8.2f} ms/step  (capture {capture_s:.2f}s; {fwd.graph_reason})"
        )
        del states
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

    out(f"package's best single stream: {best_name}, {best_tps:,.1f} tok/s")
    if 1 in results:
        out(f"goal: single stream no slower than the package's best: x{results[1] / best_tps:.2f}")
    if name in GOALS and GOALS[name][0] in results:
        batch, goal = GOALS[name]
        out(f"goal: {name} >= {goal:,.0f} tok/s aggregate at batch {batch}: x{results[batch] / goal:.2f}")
    for batch, agg in results.items():
        if batch > 1 and 1 in results:
            out(
                f"  batch {batch}: x{agg / results[1]:.1f} the aggregate of batch 1, x{agg / best_tps:.1f} the package's best"
            )


def partial_steps(decode: Callable[[int], None], steps: int) -> Callable[[], None]:
    return lambda: decode(steps)


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (checks the script)")
    parser.add_argument("--sizes", default=None, help=f"comma-separated subset of {', '.join(SIZES)}")
    parser.add_argument("--tokens", type=int, default=100, help="decode steps per measurement")
    args = parser.parse_args()
    os.environ.setdefault("WEPROMPT_HOME", str(Path(tempfile.gettempdir()) / "weprompt-bench-home"))
    os.environ.setdefault("WEPROMPT_CUDA_KERNEL", "0")  # no path timed here uses the package's kernel
    import torch

    if args.dry_run:
        torch.set_num_threads(1)
        sizes, args.batches = DRY_SIZES, DRY_BATCHES
        args.device, args.strategy = "cpu", "cpu fp32"
        args.tokens = min(args.tokens, 12)
    else:
        if not torch.cuda.is_available():
            sys.exit("bench/gpu_batch.py needs a CUDA GPU (or --dry-run)")
        sizes = {k: SIZES[k] for k in (args.sizes.split(",") if args.sizes else SIZES)}
        args.batches, args.device, args.strategy = BATCHES, "cuda", "cuda fp16"
        shm = Path("/dev/shm")
        if shm.is_dir() and shutil.disk_usage(shm).free > 40e9:
            tempfile.tempdir = str(shm)  # the 14 GB checkpoint of 7.2B is written and read from RAM
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Report(ROOT / "bench" / "results" / ("gpu-batch-dry-run.txt" if args.dry_run else f"gpu-batch-{stamp}.txt"))
    from importlib.metadata import version

    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (dry run: tiny shapes, fp32)"
    out(f"# bench/gpu_batch.py {stamp} UTC on {device_name}")
    out(f"torch {torch.__version__} (CUDA {torch.version.cuda}), rwkv {version('rwkv')}")
    begin = time.perf_counter()
    for name, (n_layer, c) in sizes.items():
        out()
        try:
            start = time.perf_counter()
            path = build_model(name, n_layer, c, args.device)
            out(f"checkpoint {path.name} ready in {time.perf_counter() - start:.1f}s")
            bench_size(name, path, args, out)
        except Exception:  # noqa: BLE001 - one size failing must not lose the others' numbers
            import traceback

            out(f"{name} FAILED:")
            for line in traceback.format_exc().rstrip().splitlines():
                out("    " + line)
        gc.collect()
        if args.device == "cuda":
            torch.cuda.empty_cache()
    out()
    out(f"total {time.perf_counter() - begin:.0f}s; written to {out.path}")


if __name__ == "__main__":
    main()
