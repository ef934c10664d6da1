"""Models and text for the benchmarks: the shipped demo model when present, else a random RWKV-7; a chat sample."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

# A chat exchange the benchmarks repeat to make prompts of any length.
CHAT_SAMPLE = (
    "User: How do I find the customers who placed more than three orders last month, with their totals?\n\n"
    "Assistant: Group the orders by customer and filter the groups with HAVING:\n"
    "SELECT c.id, c.name, COUNT(*) AS orders, SUM(o.total) AS spent FROM customers c "
    "JOIN orders o ON o.customer_id = c.id WHERE o.created_at >= date('now', '-1 month') "
    "GROUP BY c.id, c.name HAVING COUNT(*) > 3 ORDER BY spent DESC;\n\n"
)


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
