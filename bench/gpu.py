"""GPU decode and prefill: WePrompt's graph path against the bare rwkv package, in one run.

    python bench/gpu.py                      # on a CUDA machine: 0.19B, 1.5B and 7.2B shapes
    python bench/gpu.py --sizes 0.19B,1.5B   # a subset
    python bench/gpu.py --dry-run            # tiny shapes on the CPU: checks the script runs

For random-weight RWKV-7 checkpoints of real shape (World vocabulary, fp16, weights drawn
on the device with the layout and scales of tests/checkpoints.py, saved once under the
temp folder) it prints, per size:

- the bandwidth ceiling: bytes of weights one token reads against a device-to-device
  copy bandwidth measured in this process (bytes copied per second, as issue 10 counts it;
  the read+write figure is printed beside it);
- bare package decode: `out, state = model.forward([token], state)`, then `int(argmax)`,
  one sync per token as a sampler has;
- WePrompt decode: `Engine.generate` (graph replay + GPU sampler + streaming text), greedy,
  and with the default sampling settings; the ratio to the bare package and to the ceiling;
- greedy parity of the two over 200 tokens from the same state, and a teacher-forced
  comparison (both fed the bare package's tokens): where their argmaxes differ, the bare
  logits' top-two margin there (a near tie in fp16, or a real difference?);
- the other block math of the graph (forward.py `ops`), decode speed and parity;
- prefill tok/s at 1 to 1024 tokens per route: `chunk` (`model.forward` over the input:
  the package's CUDA kernel when it built) and `graph` (one replay per token);
- at 1.5B: time to first token after a 128-token message (bare: forward + argmax;
  WePrompt: until the first text leaves `Engine.generate`), after a warm-up; a new
  process's first prefills of unseen lengths (with and without the load-time warm-up and
  the shape-generic TorchScript fusion); the prefill routes with the kernel turned off.

`bash bench/gpu_session.sh` runs this after end-to-end CLI checks on the GPU, in one go.

Everything printed also goes to bench/results/gpu-<UTC time>.txt (dry run: gpu-dry-run.txt),
line by line, so a run cut short keeps what it measured. Goals (issue 10): WePrompt decode
>= 3x the bare package at 1.5B, >= 75% of the ceiling at 7.2B, TTFT < 30 ms at 1.5B.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

SIZES = {"0.19B": (12, 768), "1.5B": (24, 2048), "7.2B": (32, 4096)}
DRY_SIZES = {"tiny-a": (2, 128), "tiny-b": (2, 256)}
VOCAB = 65536
PREFILL_LENGTHS = (1, 2, 4, 8, 16, 128, 1024)
FRESH_LENGTHS = (37, 91, 150, 23, 64, 12)  # a new process's first messages: lengths it has not seen
TEXT = (
    "User: How do I find the customers who placed more than three orders last month, with their totals? "
    "Group the orders by customer and filter the groups with HAVING, then sort by the amount spent. "
)


class Report:
    """Prints each line and appends it to the results file at once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = path.open("w", encoding="utf-8")

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


# ---------------------------------------------------------------------------- checkpoints


def v7_weights(n_layer: int, c: int, vocab: int, device: str, seed: int = 0) -> dict[str, Any]:
    """tests/checkpoints.py's RWKV-7 weights (same keys, shapes and scales), drawn on `device` in fp16."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)

    def normal(*shape: int, std: float = 1.0, mean: float = 0.0) -> Any:
        return (torch.randn(*shape, generator=g, device=device, dtype=torch.float16) * std + mean).half()

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> Any:
        return (torch.rand(*shape, generator=g, device=device, dtype=torch.float16) * (high - low) + low).half()

    def matrix(out_dim: int, in_dim: int, gain: float = 1.0) -> Any:
        return normal(out_dim, in_dim, std=gain / in_dim**0.5)

    head_size, f = 64, 4 * c
    h = c // head_size
    d_decay, d_aaa, d_mv, d_gate = 16, 16, 16, 32
    w: dict[str, Any] = {"emb.weight": normal(vocab, c)}
    for i in range(n_layer):
        b, att, ffn = f"blocks.{i}.", f"blocks.{i}.att.", f"blocks.{i}.ffn."
        for ln in (["ln0"] if i == 0 else []) + ["ln1", "ln2"]:
            w[b + ln + ".weight"], w[b + ln + ".bias"] = normal(c, std=0.05, mean=1.0), normal(c, std=0.05)
        for m in "rwkvag":
            w[att + f"x_{m}"] = uniform(1, 1, c)
        w[att + "w0"] = uniform(1, 1, c, low=-2.0, high=1.0)
        w[att + "w1"], w[att + "w2"] = normal(c, d_decay, std=0.05), normal(d_decay, c, std=0.05)
        w[att + "a0"] = normal(1, 1, c, std=0.5)
        w[att + "a1"], w[att + "a2"] = normal(c, d_aaa, std=0.05), normal(d_aaa, c, std=0.05)
        if i > 0:
            w[att + "v0"] = normal(1, 1, c, std=0.5)
            w[att + "v1"], w[att + "v2"] = normal(c, d_mv, std=0.05), normal(d_mv, c, std=0.05)
        w[att + "g1"] = normal(c, d_gate, std=1.0 / c**0.5)
        w[att + "g2"] = normal(d_gate, c, std=1.0 / d_gate**0.5)
        w[att + "k_k"], w[att + "k_a"] = uniform(1, 1, c, low=0.7, high=1.0), uniform(1, 1, c, low=0.7, high=1.0)
        w[att + "r_k"] = normal(h, head_size, std=0.1)
        for name in ("receptance", "key", "value"):
            w[att + f"{name}.weight"] = matrix(c, c)
        w[att + "output.weight"] = matrix(c, c, gain=0.5)
        w[att + "ln_x.weight"], w[att + "ln_x.bias"] = normal(c, std=0.05, mean=1.0), normal(c, std=0.05)
        w[ffn + "x_k"] = uniform(1, 1, c)
        w[ffn + "key.weight"] = matrix(f, c)
        w[ffn + "value.weight"] = matrix(c, f, gain=0.5)
    w["ln_out.weight"], w["ln_out.bias"] = normal(c, std=0.05, mean=1.0), normal(c, std=0.05)
    w["head.weight"] = matrix(vocab, c, gain=3.0)
    return w


def check_layout_matches_tests() -> None:
    """The builder above writes what tests/checkpoints.py writes (keys and shapes)."""
    from checkpoints import _weights

    ours = {k: tuple(v.shape) for k, v in v7_weights(3, 128, 500, "cpu").items()}
    theirs = {k: tuple(v.shape) for k, v in _weights("v7", 3, 128, 500, 64, 0).items()}
    assert ours == theirs, sorted(set(ours.items()) ^ set(theirs.items()))[:5]


def build_model(name: str, n_layer: int, c: int, device: str) -> Path:
    import torch

    folder = Path(tempfile.gettempdir()) / "weprompt-bench-gpu"
    path = folder / f"rwkv7-{n_layer}x{c}-world-fp16.pth"
    if not path.exists():
        start = time.perf_counter()
        print(f"building {name} ({n_layer} x {c}) ...", file=sys.stderr, flush=True)
        weights = {k: v.cpu() for k, v in v7_weights(n_layer, c, VOCAB, device).items()}
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".building-{path.name}"
        torch.save(weights, str(tmp))
        tmp.rename(path)
        del weights
        print(f"  built in {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
    return path


# ---------------------------------------------------------------------------- timing


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def copy_bandwidth(device: str, nbytes: int) -> float:
    """Bytes copied per second by a device-to-device copy of `nbytes` (best of 5)."""
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(5):
        sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - start)
    del src, dst
    return nbytes / best


def timed(device: str, fn: Callable[[], Any]) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


# ---------------------------------------------------------------------------- one size


def bench_size(name: str, path: Path, args: argparse.Namespace, out: Report, bandwidth: float) -> None:
    import torch

    from weprompt_cli.engine import Sampler, SamplingParams, clone_state, load_engine
    from weprompt_cli.engine.gpu.graph import (
        PLAIN,
        cuda_capture,
        graph_feed,
        graph_prefill_max,
        install,
        prefill_route,
    )

    device = args.device
    start = time.perf_counter()
    engine = load_engine(path, args.strategy, verbose=False)
    if args.dry_run and engine.decode_path == PLAIN:
        engine.set_decode_path(*install(engine.model, capture=None))  # the CPU has no graphs: run the same static forward eagerly
    load_s = time.perf_counter() - start
    model = engine.model
    decoder = engine.decoder
    out(f"## {name}: {engine.info.n_layer} x {engine.info.n_embd}, {engine.info.n_params / 1e9:.2f}B parameters")
    out(f"load {load_s:.1f}s (incl. capture); decode path: {engine.decode_path} ({engine.decode_path_reason})")
    out(f"rwkv CUDA kernel in use: {engine.kernel}")
    if decoder is None:
        out("no graph decoder: skipping this size")
        return

    per_token = decoder.fwd.weight_bytes()
    ceiling = bandwidth / per_token
    out(
        f"weights read per token: {per_token / 1e9:.3f} GB; ceiling {ceiling:,.0f} tok/s "
        f"(read+write count: {2 * ceiling:,.0f} tok/s)"
    )

    ids = engine.encode(TEXT * 80)
    base = engine.zero_state()
    base_logits = engine.forward(ids[:32], base)  # a realistic starting state
    n = args.tokens

    def bare_decode(count: int) -> list[int]:
        state = clone_state(base)
        token = int(torch.argmax(base_logits))
        picked = []
        with torch.no_grad():
            for _ in range(count):
                picked.append(token)
                out_, state = model.forward([token], state)
                token = int(torch.argmax(out_))  # one sync per token, as a sampler has
        return picked

    def ours_decode(count: int, params: Any) -> list[int]:
        state = clone_state(base)
        generation = engine.generate(base_logits.clone(), state, Sampler(params), stop=(), max_tokens=count)
        for _ in generation:
            pass
        return generation.result.tokens

    greedy = SamplingParams(temperature=0)
    default = SamplingParams(presence_penalty=0.3, frequency_penalty=0.3, seed=1)
    bare_decode(8), ours_decode(8, greedy), ours_decode(8, default)  # warm-up (TorchScript, allocator)
    bare_s, bare_tokens = timed(device, lambda: bare_decode(n))
    ours_s, ours_tokens = timed(device, lambda: ours_decode(n, greedy))
    samp_s, _ = timed(device, lambda: ours_decode(n, default))
    bare_tps, ours_tps, samp_tps = n / bare_s, n / ours_s, n / samp_s
    out(f"decode bare package      {bare_tps:10,.1f} tok/s  ({bare_tps / ceiling:6.1%} of ceiling)")
    out(
        f"decode WePrompt greedy   {ours_tps:10,.1f} tok/s  ({ours_tps / ceiling:6.1%} of ceiling)  "
        f"x{ours_tps / bare_tps:.2f} the bare package"
    )
    out(
        f"decode WePrompt sampled  {samp_tps:10,.1f} tok/s  ({samp_tps / ceiling:6.1%} of ceiling)  "
        f"(top-p 0.85, penalties 0.3)"
    )
    same = sum(a == b for a, b in zip(bare_tokens, ours_tokens))
    first_diff = next((i for i, (a, b) in enumerate(zip(bare_tokens, ours_tokens)) if a != b), None)
    out(
        f"greedy parity over {n} tokens (ops={decoder.fwd.ops}): {'identical' if same == n else f'{same}/{n} equal, first difference at {first_diff}'}"
    )

    def chunk_feed(tokens: list[int]) -> Any:
        return model.forward(tokens, clone_state(base))

    def one_by_one(tokens: list[int]) -> Any:
        return graph_feed(decoder, tokens, clone_state(base))

    out(teacher_forced(engine, decoder, base, base_logits, bare_tokens))

    # The other block math (forward.py `ops`): plain torch vs the package's TorchScript functions.
    saved = (engine.decode_path, engine.decode_path_reason, engine.decoder)
    other = "package" if decoder.fwd.ops == "torch" else "torch"
    engine.set_decode_path(*install(engine.model, capture=None if args.dry_run else cuda_capture, ops=other))
    if engine.decoder is None:
        out(f"ops={other}: {engine.decode_path_reason}")
    else:
        ours_decode(8, greedy)
        other_s, other_tokens = timed(device, lambda: ours_decode(n, greedy))
        out(teacher_forced(engine, engine.decoder, base, base_logits, bare_tokens))
        same = sum(a == b for a, b in zip(bare_tokens, other_tokens))
        out(
            f"decode WePrompt greedy, ops={other} {n / other_s:10,.1f} tok/s  ({n / other_s / ceiling:6.1%} of ceiling)"
            f"  parity: {'identical' if same == n else f'{same}/{n} equal'}   (the run above: ops={decoder.fwd.ops})"
        )
    engine.set_decode_path(*saved)

    graph_wins = []
    for length in PREFILL_LENGTHS:
        chunk_ids = ids[:length]
        model.forward(chunk_ids, clone_state(base))  # warm-up of this length (TorchScript, kernel)
        chunk_s, _ = timed(device, partial(chunk_feed, chunk_ids))
        line = f"prefill {length:5d} tokens: chunk {length / chunk_s:10,.0f} tok/s"
        if length <= args.graph_prefill_max:
            graph_feed(decoder, chunk_ids[:4], clone_state(base))
            graph_s, _ = timed(device, partial(one_by_one, chunk_ids))
            line += f"   graph {length / graph_s:10,.0f} tok/s   faster: {'graph' if graph_s < chunk_s else 'chunk'}"
            if graph_s < chunk_s:
                graph_wins.append(length)
        out(line)
    out(
        f"graph prefill up to {graph_prefill_max(engine.kernel)} tokens now (engine default; "
        f"$WEPROMPT_GRAPH_PREFILL_MAX overrides); the graph won at: {graph_wins or 'none of the lengths'}"
    )

    if name in ("1.5B", "tiny-b"):
        message = ids[32 : 32 + 128]

        def ttft_bare() -> int:
            state = clone_state(base)
            logits, state = model.forward(message, state)
            return int(torch.argmax(logits))

        def ttft_ours() -> float:
            """Seconds until the first token's text is out of `Engine.generate` (its id on the host)."""
            state = clone_state(base)
            sync(device)
            start = time.perf_counter()
            logits = engine.feed(message, state)
            assert logits is not None
            generation = engine.generate(logits, state, Sampler(greedy), stop=(), max_tokens=2)
            next(generation)
            first = time.perf_counter() - start
            for _ in generation:
                pass
            return first

        for _ in range(2):
            ttft_bare(), ttft_ours()
        bare_t = min(timed(device, ttft_bare)[0] for _ in range(5))
        ours_t = min(ttft_ours() for _ in range(5))
        out(
            f"TTFT after a 128-token message (best of 5, warmed up): bare {bare_t * 1e3:.1f} ms "
            f"(forward + argmax), WePrompt {ours_t * 1e3:.1f} ms ({prefill_route(128, kernel=engine.kernel)} "
            f"prefill, sample, first text out of Engine.generate)"
        )
        if device == "cuda":
            out(fresh_prefill(path))
            out(no_kernel_routes(path))


def teacher_forced(engine: Any, decoder: Any, base: Any, base_logits: Any, tokens: list[int]) -> str:
    """Feed the bare package's greedy tokens through both forwards; where do their argmaxes differ, and by how much?

    A greedy run diverges for good at the first flip, so token-for-token equality over a long
    run mostly measures how close the random model's top two logits come. Feeding the same
    tokens to both shows each step's logit difference and whether a flip was a near tie
    (the bare logits' top-two margin is printed for every flip).
    """
    import torch

    from weprompt_cli.engine import clone_state

    model, fwd = engine.model, decoder.fwd
    bare_state = clone_state(base)
    fwd.load_state(base)
    flips, worst, margins = 0, 0.0, []
    bare_logits = base_logits.float()
    ours_logits = base_logits.float()
    with torch.no_grad():
        for token in tokens:
            a, b = int(torch.argmax(bare_logits)), int(torch.argmax(ours_logits))
            if a != b:
                flips += 1
                top2 = torch.topk(bare_logits, 2).values
                margins.append(float(top2[0] - top2[1]))
            worst = max(worst, float((bare_logits - ours_logits).abs().max()))
            out_, bare_state = model.forward([token], bare_state)
            bare_logits = out_.float()
            fwd.token.fill_(token)
            decoder.run()
            ours_logits = fwd.logits.float()
    state_diff = max(float((fwd.state[i].float() - bare_state[i].float()).abs().max()) for i in range(len(bare_state)))
    near = ", ".join(f"{m:.4f}" for m in margins[:8]) or "-"
    return (
        f"  teacher-forced over {len(tokens)} tokens (ops={fwd.ops}): argmax differs at {flips}, "
        f"bare top-2 margin there: {near}; max |logit diff| {worst:.4f}; max |state diff| {state_diff:.4f}"
    )


def run_child(flag: str, path: Path, **env: str) -> str:
    """Run this script as `--flag PATH` in a new process with `env` added; its output (or its error's end)."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, __file__, flag, str(path)],
        capture_output=True, text=True, env=dict(os.environ, **env), timeout=120, check=False,
    )  # fmt: skip
    return proc.stdout.rstrip() or proc.stderr.strip()[-500:]


def fresh_prefill(path: Path) -> str:
    """A new process's first prefills of lengths it has not seen (TorchScript profiles each new shape).

    The engine's load-time warm-up asks for the shape-generic fusion itself; run 3 in
    bench/results measured it before that, so its "warm-up at load" line is the default fusion.
    """
    variants = [
        ("warm-up at load (the engine's default)", "1", ""),
        ("no warm-up", "0", ""),
        ("dynamic fusion, no warm-up", "0", "dynamic"),
    ]
    lines = []
    for label, warm, fusion in variants:
        out = run_child("--fresh-prefill", path, WEPROMPT_PREFILL_WARMUP=warm, BENCH_JIT_FUSION=fusion)
        lines.append(f"  fresh process, {label}: {out.splitlines()[-1] if out else '?'}")
    return "\n".join(lines)


def fresh_prefill_child(path: str, strategy: str) -> None:
    import torch

    from weprompt_cli.engine import load_engine

    if os.environ.get("BENCH_JIT_FUSION") == "dynamic":
        torch.jit.set_fusion_strategy([("DYNAMIC", 20)])  # one shape-generic fusion instead of 2 static ones first
    start = time.perf_counter()
    engine = load_engine(path, strategy, verbose=False)
    load_s = time.perf_counter() - start
    ids = engine.encode(TEXT * 80)
    times = []
    for n in FRESH_LENGTHS:
        state = engine.zero_state()
        torch.cuda.synchronize()
        start = time.perf_counter()
        engine.feed(ids[:n], state)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    each = ", ".join(f"{n}: {t * 1e3:.0f} ms" for n, t in zip(FRESH_LENGTHS, times))
    print(
        f"load {load_s:.2f}s; first prefills (tokens: ms) {each}; {sum(FRESH_LENGTHS) / sum(times):,.0f} tok/s; "
        f"load + first three {load_s + sum(times[:3]):.2f}s"
    )


def no_kernel_routes(path: Path) -> str:
    """Prefill routes with the kernel off ($WEPROMPT_CUDA_KERNEL=0), in a new process."""
    return run_child("--routes", path, WEPROMPT_CUDA_KERNEL="0")


def routes_child(path: str, strategy: str) -> None:
    from weprompt_cli.engine import clone_state, load_engine
    from weprompt_cli.engine.gpu.graph import graph_feed

    engine = load_engine(path, strategy, verbose=False)
    ids = engine.encode(TEXT * 80)
    base = engine.zero_state()
    print(f"  kernel in use: {engine.kernel}; decode path {engine.decode_path}")
    for length in (1, 2, 4, 8, 16, 32, 64, 128):
        chunk = ids[:length]
        engine.model.forward(chunk, clone_state(base)), engine.model.forward(chunk, clone_state(base))
        chunk_s, _ = timed("cuda", lambda c=chunk: engine.model.forward(c, clone_state(base)))
        graph_feed(engine.decoder, chunk, clone_state(base))
        graph_s, _ = timed("cuda", lambda c=chunk: graph_feed(engine.decoder, c, clone_state(base)))
        print(
            f"  no kernel, prefill {length:4d}: chunk {chunk_s * 1e3:7.2f} ms   graph {graph_s * 1e3:7.2f} ms   "
            f"faster: {'graph' if graph_s < chunk_s else 'chunk'}"
        )


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (checks the script)")
    parser.add_argument("--sizes", default=None, help=f"comma-separated subset of {', '.join(SIZES)}")
    parser.add_argument("--tokens", type=int, default=200, help="decode tokens per run (and for greedy parity)")
    parser.add_argument("--graph-prefill-max", type=int, default=1024, help="longest input timed on the graph route")
    parser.add_argument(
        "--build-only", action="store_true", help="write the checkpoints (and print their paths), then exit"
    )
    parser.add_argument("--fresh-prefill", metavar="PTH", help=argparse.SUPPRESS)  # child process of fresh_prefill
    parser.add_argument("--routes", metavar="PTH", help=argparse.SUPPRESS)  # child process of no_kernel_routes
    args = parser.parse_args()
    if args.fresh_prefill or args.routes:
        os.environ.setdefault("WEPROMPT_HOME", str(Path(tempfile.gettempdir()) / "weprompt-bench-home"))
        (fresh_prefill_child if args.fresh_prefill else routes_child)(args.fresh_prefill or args.routes, "cuda fp16")
        return

    os.environ.setdefault("WEPROMPT_HOME", str(Path(tempfile.gettempdir()) / "weprompt-bench-home"))
    import torch

    if args.dry_run:
        torch.set_num_threads(1)
        sizes = DRY_SIZES
        args.device, args.strategy = "cpu", "cpu fp32"
        args.tokens = min(args.tokens, 40)
    else:
        if not torch.cuda.is_available():
            sys.exit("bench/gpu.py needs a CUDA GPU (or --dry-run)")
        sizes = {k: SIZES[k] for k in (args.sizes.split(",") if args.sizes else SIZES)}
        args.device, args.strategy = "cuda", "cuda fp16"
    if args.build_only:
        for name, (n_layer, c) in sizes.items():
            print(build_model(name, n_layer, c, args.device), flush=True)
        return
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Report(ROOT / "bench" / "results" / ("gpu-dry-run.txt" if args.dry_run else f"gpu-{stamp}.txt"))
    check_layout_matches_tests()
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (dry run: tiny shapes)"
    from importlib.metadata import version

    out(f"# bench/gpu.py {stamp} UTC on {device_name}")
    out(f"torch {torch.__version__} (CUDA {torch.version.cuda}), rwkv {version('rwkv')}")
    bandwidth = copy_bandwidth(args.device, (1 << 30) if args.device == "cuda" else (64 << 20))
    out(f"device copy bandwidth: {bandwidth / 1e9:,.0f} GB/s copied ({2 * bandwidth / 1e9:,.0f} GB/s read+write)")
    for name, (n_layer, c) in sizes.items():
        out()
        try:
            path = build_model(name, n_layer, c, args.device)
            bench_size(name, path, args, out, bandwidth)
        except Exception:  # noqa: BLE001 - one size failing must not lose the others' numbers
            import traceback

            out(f"{name} FAILED:")
            for line in traceback.format_exc().rstrip().splitlines():
                out("    " + line)
        gc.collect()  # the model of this size goes before the next one loads
        if args.device == "cuda":
            torch.cuda.empty_cache()
    out()
    out(f"written to {out.path}")


if __name__ == "__main__":
    main()
