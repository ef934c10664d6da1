"""Throughput and latency of `weprompt serve`: continuous batching against the serialized worker (run by hand).

    python bench/server.py                              # the demo model and a random 12x768 RWKV-7, CPU
    python bench/server.py --models demo --clients 1,4,16 --requests 2 --max-tokens 32
    python bench/server.py --model PATH                 # any checkpoint instead
    python bench/server.py --prefix-cache               # also: one growing conversation, cache on/off

1. For each model, two servers side by side: `--max-batch 1` (the serialized FIFO worker,
   one request at a time) and `--max-batch N` (continuous batching). With 1, 4 and 16
   concurrent clients, each sending `--requests` streamed requests back to back (at least
   `--min-requests` in all, so the 1-client row is not 3 requests): half
   turns of a stored session (`session` + persona, checkpointed like /generate-response),
   half stateless OpenAI requests. Each row runs `--rounds` times, the two servers
   alternated (other work on a shared machine drifts), and the run with the best tok/s
   is shown: p50/p95 time to first token (first content chunk; also p95 without each
   client's first request, which all arrive in one burst) and total time, completion
   tokens, aggregate decode tok/s (completion tokens / wall time), requests/s and tokens
   per batched step; then the ratios the batching goals are stated in.
2. The executor alone: the same turns through a `BatchedEngine` in the bench's own process
   (no HTTP, no sessions), to tell the executor's scaling from the web server's costs.
3. With --prefix-cache: time to first token of turn 1 and turn --turns of one conversation
   sent the OpenAI way (the whole history every time), with the prefix cache and without.

Every server is a real `weprompt serve --port 0` subprocess on 127.0.0.1 with a temporary
home, `--threads` torch threads (OMP_NUM_THREADS; 1 by default: the 2 cores are shared).
The output also goes to bench/results/server-cpu.txt (or --out).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT)]

import httpx

from weprompt_cli.server import sse

QUESTION = "Write a query that counts the orders per customer."
USER_TURN = (
    "Here is some more context about my database: the orders table has an id, a customer_id, "
    "a created_at timestamp and a total; customers have an id, a name and a country. Question {i}: "
    "which index would help a report that groups orders by country and month?"
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


class Server:
    """`weprompt serve --port 0` in a subprocess; `url` once it is listening."""

    def __init__(self, home: Path, model: Path, *extra: str, threads: int = 1) -> None:
        env = dict(os.environ, WEPROMPT_HOME=str(home), OMP_NUM_THREADS=str(threads), WEPROMPT_THREADS=str(threads))
        env.pop("WEPROMPT_API_KEY", None)
        cmd = [sys.executable, "-m", "weprompt_cli", "serve", "--port", "0", "--model", str(model),
               "--strategy", "cpu fp32", *extra]
        self.proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        log = []
        for line in self.proc.stderr:
            log.append(line)
            found = re.match(r"listening on (http://\S+)", line.strip())
            if found:
                self.url = found.group(1)
                break
        else:
            raise SystemExit("the server did not start:\n" + "".join(log))
        threading.Thread(target=lambda: [None for _ in self.proc.stderr or ()], daemon=True).start()

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=60).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def pick_models(arg_model: str | None, names: str, work: Path) -> list[tuple[str, Path]]:
    if arg_model:
        return [(Path(arg_model).name, Path(arg_model))]
    from batch_cpu import random_model

    from weprompt_cli.demo import DEMO_MODEL_PATH, demo_available

    models = []
    for name in names.split(","):
        if name == "demo" and demo_available():
            models.append(("demo model (4 x 128)", DEMO_MODEL_PATH))
        elif name == "12x768":
            models.append(("random RWKV-7 12 x 768 (World vocabulary)", random_model(12, 768)))
    return models


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def streamed(http: httpx.Client, body: dict[str, Any]) -> tuple[float, float, int]:
    """(time to first content, total time, completion tokens) of one streamed chat completion."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    t = time.perf_counter()
    first: float | None = None
    raw: list[bytes] = []
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            raw.append(chunk)
            if first is None and re.search(rb'"content":"[^"]', chunk):
                first = time.perf_counter() - t
    total = time.perf_counter() - t
    usage = next(e["usage"] for e in sse.parse(b"".join(raw)) if e.get("usage"))
    return (first if first is not None else total), total, int(usage["completion_tokens"])


def load_test(srv: Server, clients: int, per_client: int, max_tokens: int, tag: str) -> dict[str, Any]:
    """`clients` threads, each sending `per_client` streamed requests back to back (sessions and stateless)."""

    def one_client(c: int) -> list[tuple[float, float, int, int]]:
        rows = []
        with httpx.Client(base_url=srv.url, timeout=1800) as http:
            for r in range(per_client):
                if (c + r) % 2 == 0:  # a stored session's next turn
                    body: dict[str, Any] = {"messages": [{"role": "user", "content": f"{QUESTION} (client {c}.{r})"}],
                                            "session": f"bench-{tag}-{clients}-{c}", "persona": "sql"}
                else:  # a stateless request
                    body = {"messages": [{"role": "user", "content": f"Question {c}.{r}: {QUESTION}"}]}
                body.update(temperature=0, max_tokens=max_tokens)
                rows.append((*streamed(http, body), r))
        return rows

    before = srv.health()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        rows = [x for xs in pool.map(one_client, range(clients)) for x in xs]
    wall = time.perf_counter() - t0
    after = srv.health()
    ttft, total, tokens = [r[0] for r in rows], [r[1] for r in rows], sum(r[2] for r in rows)
    steady = [r[0] for r in rows if r[3] > 0] or ttft  # each client's first request arrives in one burst
    steps = after.get("batching", {}).get("steps", 0) - before.get("batching", {}).get("steps", 0)
    return {
        "clients": clients,
        "requests": len(rows),
        "ttft_p50": percentile(ttft, 0.5),
        "ttft_p95": percentile(ttft, 0.95),
        "ttft_p95_steady": percentile(steady, 0.95),
        "total_p50": percentile(total, 0.5),
        "total_p95": percentile(total, 0.95),
        "tokens": tokens,
        "tok_s": tokens / wall,
        "rps": len(rows) / wall,
        "mean_batch": (after["stats"]["tokens_generated"] - before["stats"]["tokens_generated"]) / steps if steps else 1.0,
    }


def run_model(out: Report, model: Path, work: Path, args: argparse.Namespace) -> dict[int, list[dict[str, Any]]]:
    """Both servers side by side; per client count, `--rounds` alternated runs of each; the best of each kept."""
    servers: dict[int, Server] = {}
    summaries: dict[int, str] = {}
    best: dict[int, list[dict[str, Any]]] = {1: [], args.max_batch: []}
    try:
        for max_batch in best:
            home = work / f"home-{model.stem}-b{max_batch}"
            home.mkdir(parents=True)
            servers[max_batch] = Server(home, model, "--max-batch", str(max_batch), "--prefill-budget",
                                        str(args.prefill_budget), threads=args.threads)
            # Warm-up: TorchScript's first forwards (one and several streams), the persona state on disk.
            load_test(servers[max_batch], 1, 2, 4, "warmup")
            load_test(servers[max_batch], 4, 1, 4, "warmup")
        for clients in (int(c) for c in args.clients.split(",")):
            runs: dict[int, list[dict[str, Any]]] = {m: [] for m in best}
            for round_ in range(args.rounds):
                order = list(best) if round_ % 2 == 0 else list(best)[::-1]  # alternated: the load drifts
                per_client = max(args.requests, -(-args.min_requests // clients))  # enough requests per row
                for max_batch in order:
                    runs[max_batch].append(load_test(servers[max_batch], clients, per_client, args.max_tokens,
                                                     f"r{round_}"))
            for max_batch in best:
                best[max_batch].append(max(runs[max_batch], key=lambda r: r["tok_s"]))
        summaries = {m: srv.health()["batching"]["summary"] for m, srv in servers.items()}
    finally:
        for srv in servers.values():
            srv.stop()
    for max_batch, rows in best.items():
        out(f"\n--max-batch {max_batch}: batching {summaries.get(max_batch, '?')}\n")
        out("| clients | requests | TTFT p50 (s) | TTFT p95 (s) | TTFT p95 after the first request (s) "
            "| total p50 (s) | total p95 (s) | completion tokens | tok/s | requests/s | tokens per step |")
        out("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            out(f"| {r['clients']} | {r['requests']} | {r['ttft_p50']:.3f} | {r['ttft_p95']:.3f} "
                f"| {r['ttft_p95_steady']:.3f} | {r['total_p50']:.3f} | {r['total_p95']:.3f} | {r['tokens']} "
                f"| {r['tok_s']:.1f} | {r['rps']:.2f} | {r['mean_batch']:.2f} |")
    return best


def compare(out: Report, name: str, serial: list[dict[str, Any]], batched: list[dict[str, Any]], goal: float) -> None:
    first, last = batched[0], batched[-1]
    out(f"\n{name}:")
    for s, b in zip(serial, batched):
        out(f"  {b['clients']:2d} clients: batched/serialized tok/s x{b['tok_s'] / s['tok_s']:.2f}, "
            f"TTFT p95 {s['ttft_p95']:.3f} s -> {b['ttft_p95']:.3f} s, total p95 {s['total_p95']:.3f} s -> "
            f"{b['total_p95']:.3f} s")
    scale = last["tok_s"] / first["tok_s"]
    ttft = last["ttft_p95"] / first["ttft_p95"]
    steady = last["ttft_p95_steady"] / first["ttft_p95_steady"]
    out(f"  goal: {last['clients']}-client aggregate tok/s >= {goal:g}x the 1-client figure: x{scale:.2f} "
        f"({'met' if scale >= goal else 'missed'}; against the serialized 1-client figure: "
        f"x{last['tok_s'] / serial[0]['tok_s']:.2f}; serialized alone: x{serial[-1]['tok_s'] / serial[0]['tok_s']:.2f})")
    out(f"  goal: {last['clients']}-client TTFT p95 <= 3x the 1-client p95: x{ttft:.2f} "
        f"({'met' if ttft <= 3 else 'missed'}; after each client's first request: x{steady:.2f}; "
        f"serialized: x{serial[-1]['ttft_p95'] / serial[0]['ttft_p95']:.2f})")


# ---------------------------------------------------------------------------- the executor alone


def engine_rows(path: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The same turns through a `BatchedEngine` in this process, no HTTP: how far the executor itself scales."""
    import torch

    from weprompt_cli.engine import Sampler, SamplingParams
    from weprompt_cli.engine.batched import BatchedEngine, run_concurrently
    from weprompt_cli.engine.rwkv_engine import load_rwkv_engine

    torch.set_num_threads(args.threads)
    plain = load_rwkv_engine(path, "cpu fp32")
    batched = BatchedEngine(plain, max_batch=args.max_batch, prefill_budget=args.prefill_budget)
    prompt = "User: " + QUESTION + " (client {c}.{r})\n\nAssistant:"

    def turns(engine: Any, clients: int, per_client: int) -> dict[str, Any]:
        def client(c: int) -> list[tuple[float, int]]:
            rows = []
            for r in range(per_client):
                t = time.perf_counter()
                state = engine.zero_state()
                logits = engine.feed(engine.encode(prompt.format(c=c, r=r)), state)
                generation = engine.generate(logits, state, Sampler(SamplingParams(temperature=0)), stop=(),
                                             max_tokens=args.max_tokens)
                first = None
                for _ in generation:
                    first = first if first is not None else time.perf_counter() - t
                rows.append((first if first is not None else time.perf_counter() - t, len(generation.result.tokens)))
            return rows

        t0 = time.perf_counter()
        rows = [x for xs in run_concurrently([lambda c=c: client(c) for c in range(clients)]) for x in xs]
        wall = time.perf_counter() - t0
        return {"clients": clients, "ttft_p95": percentile([r[0] for r in rows], 0.95),
                "tok_s": sum(r[1] for r in rows) / wall}

    try:
        turns(plain, 1, 2), turns(batched, 4, 1)  # warm-up
        out = [{**turns(plain, 1, args.min_requests), "clients": "1, plain engine"}]
        for clients in (int(c) for c in args.clients.split(",")):
            per_client = max(args.requests, -(-args.min_requests // clients))
            out.append(max((turns(batched, clients, per_client) for _ in range(args.rounds)), key=lambda r: r["tok_s"]))
        return out
    finally:
        batched.stop()


def report_engine(out: Report, rows: list[dict[str, Any]]) -> None:
    out("\nThe executor alone (BatchedEngine in one process, the same prompts and max_tokens, no HTTP):\n")
    out("| clients | TTFT p95 (s) | tok/s | x the 1-client figure |")
    out("| --- | ---: | ---: | ---: |")
    one = rows[1]["tok_s"]
    for r in rows:
        out(f"| {r['clients']} | {r['ttft_p95']:.3f} | {r['tok_s']:.1f} | x{r['tok_s'] / one:.2f} |")


# ---------------------------------------------------------------------------- the prefix cache


def ttft_conversation(srv: Server, turns: int, max_tokens: int) -> list[dict[str, Any]]:
    """One conversation of `turns` requests, each resending the whole history; per turn: TTFT, tokens."""
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are a careful SQL advisor."}]
    rows = []
    with httpx.Client(base_url=srv.url, timeout=600) as http:
        for i in range(1, turns + 1):
            messages.append({"role": "user", "content": USER_TURN.format(i=i)})
            body = {"messages": messages, "stream": True, "stream_options": {"include_usage": True},
                    "temperature": 0, "max_tokens": max_tokens}
            fed_before = srv.health()["stats"]["tokens_fed"]
            t = time.perf_counter()
            first: float | None = None
            raw = b""
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    raw += chunk
                    if first is None and re.search(rb'"content":"[^"]', chunk):
                        first = time.perf_counter() - t
            total = time.perf_counter() - t
            events = sse.parse(raw)
            text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
            usage = next(e["usage"] for e in events if e.get("usage"))
            rows.append({"turn": i, "ttft": first if first is not None else total, "total": total,
                         "prompt_tokens": usage["prompt_tokens"], "cached": usage["prompt_tokens_details"]["cached_tokens"],
                         "fed": srv.health()["stats"]["tokens_fed"] - fed_before})
            messages.append({"role": "assistant", "content": text})
    return rows


def prefix_cache(out: Report, model: Path, work: Path, args: argparse.Namespace) -> None:
    results = {}
    for name, extra in (("on", ()), ("off", ("--cache-entries", "0"))):
        home = work / f"home-cache-{name}"
        home.mkdir()
        srv = Server(home, model, *extra, threads=args.threads)
        try:
            load_test(srv, 1, 1, 4, "warmup")
            results[name] = ttft_conversation(srv, args.turns, args.max_tokens)
        finally:
            srv.stop()
    out(f"\nOne conversation sent the OpenAI way (whole history each time), max_tokens={args.max_tokens}\n")
    out("| prefix cache | turn | prompt tokens | tokens fed | time to first token (s) | whole reply (s) |")
    out("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, rows in results.items():
        for row in (rows[0], rows[-1]):
            out(f"| {name} | {row['turn']} | {row['prompt_tokens']} | {row['fed']} | {row['ttft']:.3f} "
                f"| {row['total']:.3f} |")
    on = statistics.median(r["ttft"] for r in results["on"][-3:])
    off = statistics.median(r["ttft"] for r in results["off"][-3:])
    out(f"\nmedian TTFT of the last 3 turns: {on:.3f} s with the cache, {off:.3f} s without")


GOALS = {"demo": 10.0, "12x768": 6.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="one checkpoint to serve instead of --models")
    ap.add_argument("--models", default="demo,12x768", help="demo and/or 12x768 (a random RWKV-7, World vocabulary)")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=3, help="requests per client")
    ap.add_argument("--min-requests", type=int, default=12, help="at least this many requests per row (1 client: 12)")
    ap.add_argument("--rounds", type=int, default=2, help="alternated runs of each server per client count (best kept)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=16, help="the batched server's --max-batch")
    ap.add_argument("--prefill-budget", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each server")
    ap.add_argument("--no-engine", dest="engine", action="store_false", help="skip the executor-alone table")
    ap.add_argument("--prefix-cache", action="store_true", help="also time one growing conversation, cache on/off")
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "server-cpu.txt"))
    args = ap.parse_args()

    out = Report(Path(args.out))
    work = Path(tempfile.mkdtemp(prefix="weprompt-bench-server-"))
    out(f"# bench/server.py: {os.cpu_count()} CPUs, {args.threads} torch thread(s) per server")
    out("# command: python " + " ".join(["bench/server.py", *sys.argv[1:]]))
    out(f"# {args.requests} streamed requests per client, at least {args.min_requests} per row "
        "(sessions and stateless alternating), "
        f"max_tokens={args.max_tokens}, greedy; prefill budget {args.prefill_budget}; "
        f"{args.rounds} alternated rounds per row, the best tok/s kept")
    for name, path in pick_models(args.model, args.models, work):
        out(f"\n## {name} ({path.name}); load average at start: {os.getloadavg()[0]:.2f}")
        best = run_model(out, path, work, args)
        serial, batched = best[1], best[args.max_batch]
        goal = GOALS["demo"] if "demo" in name else GOALS["12x768"] if "12 x 768" in name else 6.0
        compare(out, name, serial, batched, goal)
        if args.engine:
            report_engine(out, engine_rows(path, args))
        out(f"load average at end: {os.getloadavg()[0]:.2f}")
        if args.prefix_cache:
            prefix_cache(out, path, work, args)
    out(f"\nwritten to {out.path}")


if __name__ == "__main__":
    main()
