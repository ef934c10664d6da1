"""Models for the benchmarks: the shipped demo model when present, else a random RWKV-7."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]


def bench_model(arg: str | None, *, layers: int = 6, embd: int = 512) -> Path:
    """`arg` if given; else the demo model if shipped; else a random v7 (World vocabulary) built once."""
    if arg:
        return Path(arg)
    from weprompt_cli.demo import DEMO_MODEL_PATH, demo_available

    if demo_available():
        return DEMO_MODEL_PATH
    from checkpoints import build_checkpoint

    path = Path(tempfile.gettempdir()) / "weprompt-bench" / f"random-v7-{layers}x{embd}.pth"
    if not path.exists():
        build_checkpoint("v7", path, n_layer=layers, n_embd=embd, vocab_size=65536, tokenizer=None)
    return path
