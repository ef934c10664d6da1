"""Start-up cost (run by hand): `weprompt --help`, and `weprompt chat -m` to its first token.

    python bench/startup.py [--model PATH] [--runs 5]

1. `weprompt --help` vs `python -c pass`, median wall time of --runs processes each
   (goal: within 0.3 s of bare Python).
2. `weprompt chat -m hi` wall time from spawn to the first byte of the answer on stdout,
   median of --runs (goal: under 3 s on this CPU for a model under 50 MB), and the same
   path split into phases in one fresh process: interpreter + imports (torch, rwkv),
   checkpoint inspection, tokenizer load, model load, persona prefill (cache empty), the
   message's prefill, first token.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _models import bench_model

PHASES = r"""
import json, sys, time
t0 = float(sys.argv[1]); marks = {"start": time.time() - t0}
import torch
from weprompt_cli.engine import inspect_checkpoint, resolve_tokenizer
from weprompt_cli.engine.runtime import import_rwkv_model
marks["imports (torch, weprompt)"] = time.time() - t0
info = inspect_checkpoint(sys.argv[2]); marks["inspect checkpoint"] = time.time() - t0
from weprompt_cli.paths import resolve_home
tok = resolve_tokenizer(info.path, info, resolve_home().models); marks["tokenizer"] = time.time() - t0
import_rwkv_model(info.arch, "cpu fp32", verbose=False); marks["import rwkv.model"] = time.time() - t0
from weprompt_cli.engine import load_engine
engine = load_engine(info.path, "cpu fp32"); marks["model load"] = time.time() - t0
from weprompt_cli.chat.session import ChatSession
from weprompt_cli.engine import SamplingParams
from weprompt_cli.personas import find_persona
from weprompt_cli.store import SessionStore
chat = ChatSession.start(engine, SessionStore(resolve_home()), find_persona("sql", home=resolve_home()), SamplingParams(max_tokens=1))
marks["session + persona prefill"] = time.time() - t0
reply = chat.send("How many customers are there?")
next(iter(reply), None); marks["message prefill + first token"] = time.time() - t0
print(json.dumps(marks))
"""


def wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def first_byte(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.read(1)
    elapsed = time.perf_counter() - t0
    proc.wait()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    model = bench_model(args.model)
    env = {**os.environ, "WEPROMPT_HOME": tempfile.mkdtemp(prefix="weprompt-bench-startup-"), "PYTHONUNBUFFERED": "1"}
    py = sys.executable
    size_mb = model.stat().st_size / 1e6
    print(f"model {model.name} ({size_mb:.1f} MB), python {sys.version.split()[0]}")

    bare = statistics.median(wall([py, "-c", "pass"], env) for _ in range(args.runs))
    helped = statistics.median(wall([py, "-m", "weprompt_cli", "--help"], env) for _ in range(args.runs))
    print(f"\npython -c pass      {bare:6.3f} s")
    print(f"weprompt --help     {helped:6.3f} s   (+{helped - bare:.3f} s; goal +0.3 s)")

    chat = [py, "-m", "weprompt_cli", "chat", "--persona", "sql", "--model", str(model), "-m", "hi", "--max-tokens", "1"]
    first_byte(chat, env)  # the persona cache is filled once, as after any first chat
    ttft = statistics.median(first_byte(chat, env) for _ in range(args.runs))
    print(f"weprompt chat -m    {ttft:6.3f} s to the first answer byte (persona cached; goal < 3 s)")

    env_cold = {**env, "WEPROMPT_HOME": tempfile.mkdtemp(prefix="weprompt-bench-startup-cold-")}
    out = subprocess.run([py, "-c", PHASES, repr(time.time()), str(model)], env=env_cold,
                         capture_output=True, text=True, check=True)
    marks = json.loads(out.stdout.strip().splitlines()[-1])
    print("\nphases of one cold start (empty persona cache), seconds since spawn:")
    previous = 0.0
    for name, at in marks.items():
        print(f"  {name:<32} {at:6.3f}  (+{at - previous:.3f})")
        previous = at


if __name__ == "__main__":
    main()
