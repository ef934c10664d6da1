"""`weprompt serve` alone against 1 and 2 Ray Serve replicas (`weprompt cluster serve`), one run.

    python bench/cluster.py                         # 8 and 16 clients, a random 8x512 RWKV-7 on the CPU
    python bench/cluster.py --clients 8 --requests 4 --max-tokens 32 --layers 4 --width 256

Three servers in turn on one temporary home, each a real subprocess on 127.0.0.1 with one
torch thread per process (the machine has 2 cores): `weprompt serve`, then
`weprompt cluster serve --replicas 1`, then `--replicas 2`. Against each, C concurrent
clients (asyncio + httpx), each sending --requests turns of its own stored session over
OpenAI's endpoint (`session`, greedy, --max-tokens tokens; generation runs to the limit on
a random model). Per run: aggregate completion tok/s (completion tokens / wall time) and
p50/p95 request latency; then the issue's two ratios: Ray's overhead at 1 replica
(1 - tok/s of 1 replica / tok/s of serve) and the speed-up of 2 replicas over 1. The load
average before and after each run is printed: the 2 cores are shared with other work.
Output also goes to bench/results/cluster-cpu.txt (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Server:
    """A server subprocess in its own process group; `url` once it printed 'listening on'."""

    def __init__(self, cmd: list[str], home: Path) -> None:
        env = dict(os.environ, WEPROMPT_HOME=str(home), OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
        env.pop("WEPROMPT_API_KEY", None)
        started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "weprompt_cli", *cmd], env=env, cwd=str(ROOT),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        assert self.proc.stderr is not None
        self.log: list[str] = []
        for line in self.proc.stderr:
            self.log.append(line)
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                self.url = found.group(1)
                break
        else:
            raise SystemExit("server did not start:\n" + "".join(self.log))
        self.startup_s = time.monotonic() - started
        threading.Thread(target=lambda: [self.log.append(x) for x in self.proc.stderr or []], daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


async def _client(url: str, tag: str, requests: int, max_tokens: int, latencies: list[float], tokens: list[int]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        for i in range(requests):
            body = {"messages": [{"role": "user", "content": f"question {i} from {tag}"}], "session": tag,
                    "temperature": 0, "max_tokens": max_tokens}
            started = time.perf_counter()
            r = await client.post("/v1/chat/completions", json=body)
            if r.status_code != 200:
                raise SystemExit(f"{r.status_code}: {r.text}")
            latencies.append(time.perf_counter() - started)
            tokens.append(int(r.json()["usage"]["completion_tokens"]))


def run_load(url: str, label: str, clients: int, requests: int, max_tokens: int) -> dict[str, float]:
    """C clients, each `requests` session turns back to back; tok/s and latency percentiles."""
    latencies: list[float] = []
    tokens: list[int] = []

    async def main() -> None:
        await asyncio.gather(*(
            _client(url, f"{label}-c{c}", requests, max_tokens, latencies, tokens) for c in range(clients)))

    before = load()
    started = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=20)
    result = {"tok_s": sum(tokens) / wall, "p50": statistics.median(latencies), "p95": q[18], "wall": wall}
    say(f"  {clients:>2} clients: {result['tok_s']:7.1f} tok/s   p50 {result['p50']:6.2f} s   p95 {result['p95']:6.2f} s"
        f"   ({len(tokens)} requests, {sum(tokens)} tokens, {wall:5.1f} s; load {before} -> {load()})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="8,16")
    parser.add_argument("--requests", type=int, default=4, help="turns per client")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cluster-cpu.txt")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]

    from checkpoints import tiny_model

    work = Path(tempfile.mkdtemp(prefix="weprompt-bench-cluster-"))
    model = tiny_model("v7", work / "models", n_layer=args.layers, n_embd=args.width)
    say(f"bench/cluster.py: {os.cpu_count()} cores, RWKV-7 {args.layers}x{args.width} (random), cpu fp32, "
        f"1 torch thread per process; {args.requests} session turns per client, {args.max_tokens} tokens each")
    say(f"load average at start: {load()}")
    base = ["--model", str(model), "--strategy", "cpu fp32", "--port", "0"]
    setups = [
        ("serve", ["serve", *base]),
        ("ray x1", ["cluster", "serve", "--replicas", "1", "--num-cpus", "2", *base]),
        ("ray x2", ["cluster", "serve", "--replicas", "2", "--num-cpus", "2", *base]),
    ]
    results: dict[tuple[str, int], dict[str, float]] = {}
    for label, cmd in setups:
        home = work / f"home-{label.replace(' ', '')}"
        home.mkdir()
        server = Server(cmd, home)
        say(f"{label}: ready in {server.startup_s:.1f} s")
        try:
            run_load(server.url, f"warm-{label.replace(' ', '')}", 2, 1, 8)  # loads, first forwards
            for c in clients:
                results[(label, c)] = run_load(server.url, f"{label.replace(' ', '')}-{c}", c, args.requests, args.max_tokens)
        finally:
            server.stop()
    say()
    for c in clients:
        serve, one, two = (results[(x, c)]["tok_s"] for x in ("serve", "ray x1", "ray x2"))
        say(f"{c:>2} clients: Ray overhead at 1 replica {100 * (1 - one / serve):5.1f}% of serve's tok/s "
            f"(goal <= 10%); 2 replicas / 1 replica = {two / one:4.2f}x (goal >= 1.6x)")
    say(f"load average at the end: {load()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(LINES) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
