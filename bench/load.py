"""Raw vs pre-converted load time of a v4-v6 checkpoint (run by hand).

    python bench/load.py [--arch v6] [--layers 12] [--embd 768] [--repeat 3] [--strategy "cpu fp32" ...]

Builds a random checkpoint of a real layout (bf16, World vocabulary: 12 x 768 is about
190M parameters, 380 MB, the size of a 0.1B model) with tests/checkpoints.py, converts it
with `weprompt_cli.models.convert` for each strategy, then times `RWKV(path, strategy)`
in fresh processes (the rwkv package fixes its family at import), best of --repeat, with
the file already in the page cache (one untimed warm-up load each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

_LOAD = r"""
import os, sys, time, json
os.environ.update(RWKV_V7_ON="0", RWKV_JIT_ON="0", RWKV_CUDA_ON="0")
from rwkv.model import RWKV
t = time.perf_counter()
m = RWKV(sys.argv[1], sys.argv[2], verbose=False)
print(json.dumps({"load_s": time.perf_counter() - t}))
"""


def timed_load(path: Path, strategy: str) -> tuple[float, float]:
    """(seconds inside RWKV(...), seconds for the whole process) of one load."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _LOAD, str(path), strategy], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    return json.loads(out.stdout.strip().splitlines()[-1])["load_s"], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="v6", choices=["v4", "v5.2", "v6"])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--embd", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--strategy", action="append", default=None)
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    strategies = args.strategy or ["cpu fp32", "cpu fp32i8"]

    from checkpoints import build_checkpoint

    from weprompt_cli.models.convert import convert_model

    work = args.dir or Path(tempfile.mkdtemp(prefix="weprompt-bench-"))
    os.environ.setdefault("WEPROMPT_HOME", str(work / "home"))
    raw = work / f"bench-{args.arch}-{args.layers}x{args.embd}.pth"
    if not raw.exists():
        t = time.perf_counter()
        build_checkpoint(
            args.arch, raw, n_layer=args.layers, n_embd=args.embd, vocab_size=65536, dtype="bf16", tokenizer=None
        )
        print(f"built {raw.name}: {raw.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t:.1f} s", flush=True)
    print(f"{'strategy':<14} {'file':<9} {'size MB':>8} {'RWKV() s':>9} {'process s':>10}")
    for strategy in strategies:
        t = time.perf_counter()
        conv = convert_model(str(raw), strategy, work / f"{raw.stem}-{strategy.replace(' ', '-')}.pth").output
        convert_s = time.perf_counter() - t
        for label, path in (("raw", raw), ("converted", conv)):
            timed_load(path, strategy)  # warm the page cache
            runs = [timed_load(path, strategy) for _ in range(args.repeat)]
            best = min(runs)
            print(
                f"{strategy:<14} {label:<9} {path.stat().st_size / 1e6:>8.0f} {best[0]:>9.2f} {best[1]:>10.2f}",
                flush=True,
            )
        print(f"{'':<14} (conversion itself took {convert_s:.1f} s, once)", flush=True)


if __name__ == "__main__":
    main()
