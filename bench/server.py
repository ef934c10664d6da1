"""Throughput and latency of `weprompt serve`, and what the prefix cache saves (run by hand).

    python bench/server.py [--model PATH] [--requests 4] [--max-tokens 32] [--turns 20]

1. Latency p50/p95 and requests/s with 1, 4 and 16 concurrent clients, on both
   endpoints: /generate-response (each client its own discussion, a stored session per
   client, one turn per request) and /v1/chat/completions (stateless, one question).
2. Time to first token of turn 1 and turn --turns of one conversation sent the OpenAI
   way (the whole history every time, as chat clients do), with the prefix cache and
   without it (`--cache-entries 0`), each on its own server.

The model is the embedded demo model when this install ships it, else a tiny random
RWKV-7 from tests/checkpoints.py (the table says which). Every server runs as a real
`weprompt serve --port 0` subprocess on 127.0.0.1 with a temporary home.
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
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import httpx

from weprompt_cli.server import sse

QUESTION = "Write a query that counts the orders per customer."
USER_TURN = (
    "Here is some more context about my database: the orders table has an id, a customer_id, "
    "a created_at timestamp and a total; customers have an id, a name and a country. Question {i}: "
    "which index would help a report that groups orders by country and month?"
)


class Server:
    """`weprompt serve --port 0` in a subprocess; `url` once it is listening."""

    def __init__(self, home: Path, model: Path, *extra: str) -> None:
        env = dict(os.environ, WEPROMPT_HOME=str(home))
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
        return httpx.get(f"{self.url}/health").json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def pick_model(arg: str | None, work: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), Path(arg).name
    try:
        from weprompt_cli.models.resolve import demo_model_path

        path = demo_model_path()
        return path, f"demo model ({path.name})"
    except Exception:  # noqa: BLE001 - no demo model in this install
        from checkpoints import build_checkpoint

        # The demo model's shape (4 x 128), random weights, the tests' 400-token tokenizer.
        path = build_checkpoint("v7", work / "tiny-v7.pth", n_layer=4, n_embd=128)
        return path, "random RWKV-7 of the demo's shape (4 x 128, 400-token vocabulary): no demo model shipped yet"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def load_test(srv: Server, endpoint: str, clients: int, per_client: int, max_tokens: int, tag: str) -> dict[str, Any]:
    """`clients` threads, each sending `per_client` requests back to back."""

    def one_client(c: int) -> list[float]:
        times = []
        with httpx.Client(base_url=srv.url, timeout=600) as http:
            for r in range(per_client):
                if endpoint == "generate-response":
                    body: dict[str, Any] = {"user_message": f"{QUESTION} ({r})", "user_id": f"bench-{tag}",
                                            "discussion_id": f"c{clients}-{c}", "prompt_file": "SQLAdvisor"}
                    path = "/generate-response"
                else:
                    body = {"messages": [{"role": "user", "content": QUESTION}]}
                    path = "/v1/chat/completions"
                body.update(temperature=0, max_tokens=max_tokens)
                t = time.perf_counter()
                response = http.post(path, json=body)
                times.append(time.perf_counter() - t)
                response.raise_for_status()
        return times

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [x for xs in pool.map(one_client, range(clients)) for x in xs]
    wall = time.perf_counter() - t0
    return {
        "endpoint": endpoint,
        "clients": clients,
        "requests": len(latencies),
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "rps": len(latencies) / wall,
    }


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
                    if first is None and b'"content":"' in chunk and re.search(rb'"content":"[^"]', chunk):
                        first = time.perf_counter() - t
            total = time.perf_counter() - t
            events = sse.parse(raw)
            text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
            usage = next(e["usage"] for e in events if e.get("usage"))
            rows.append({
                "turn": i,
                "ttft": first if first is not None else total,
                "total": total,
                "prompt_tokens": usage["prompt_tokens"],
                "cached": usage["prompt_tokens_details"]["cached_tokens"],
                "fed": srv.health()["stats"]["tokens_fed"] - fed_before,
            })
            messages.append({"role": "assistant", "content": text})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint to serve (default: the demo model, else a tiny random one)")
    ap.add_argument("--requests", type=int, default=4, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--clients", default="1,4,16")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="weprompt-bench-server-"))
    model, label = pick_model(args.model, work)
    print(f"model: {label}\nCPU cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}\n")

    (work / "home-cache").mkdir()
    srv = Server(work / "home-cache", model)
    try:
        # Warm-up: TorchScript's first forward, the persona state on disk.
        load_test(srv, "generate-response", 1, 1, 4, "warmup")
        load_test(srv, "chat/completions", 1, 1, 4, "warmup")
        results = []
        for clients in (int(c) for c in args.clients.split(",")):
            for endpoint in ("generate-response", "chat/completions"):
                results.append(load_test(srv, endpoint, clients, args.requests, args.max_tokens, "run"))
        print(f"Latency, {args.requests} requests per client, max_tokens={args.max_tokens}, greedy\n")
        print("| endpoint | clients | requests | p50 (s) | p95 (s) | requests/s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in results:
            print(f"| {r['endpoint']} | {r['clients']} | {r['requests']} | {r['p50']:.3f} | {r['p95']:.3f} "
                  f"| {r['rps']:.2f} |")
        with_cache = ttft_conversation(srv, args.turns, args.max_tokens)
    finally:
        srv.stop()

    (work / "home-nocache").mkdir()
    srv = Server(work / "home-nocache", model, "--cache-entries", "0")
    try:
        load_test(srv, "chat/completions", 1, 1, 4, "warmup")
        without = ttft_conversation(srv, args.turns, args.max_tokens)
    finally:
        srv.stop()

    print(f"\nOne conversation sent the OpenAI way (whole history each time), max_tokens={args.max_tokens}\n")
    print("| prefix cache | turn | prompt tokens | tokens fed | time to first token (s) | whole reply (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, rows in (("on", with_cache), ("off", without)):
        for row in (rows[0], rows[-1]):
            print(f"| {name} | {row['turn']} | {row['prompt_tokens']} | {row['fed']} | {row['ttft']:.3f} "
                  f"| {row['total']:.3f} |")
    ttft_on = statistics.median(r["ttft"] for r in with_cache[-3:])
    ttft_off = statistics.median(r["ttft"] for r in without[-3:])
    print(f"\nmedian TTFT of the last 3 turns: {ttft_on:.3f} s with the cache, {ttft_off:.3f} s without")


if __name__ == "__main__":
    main()
