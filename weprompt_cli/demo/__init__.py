"""The embedded demo model: a small RWKV-7 trained by this project (`python -m training`), shipped as package data.

It is the default when no model is configured. How it is made: `models/README.md`.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
DEMO_MODEL_PATH = DEMO_DIR / "weprompt-demo-rwkv7.pth"
DEMO_TOKENIZER_PATH = DEMO_DIR / "weprompt-demo-rwkv7.tokenizer.json"  # the engine's `<model-stem>.tokenizer.json`
DEMO_DESCRIPTION = (
    "a small demo model (RWKV-7, 1.6M parameters) that only knows the sql, project and general personas; "
    "pull a real one with `weprompt models pull NAME` or pass `--model PATH`"
)


def demo_available() -> bool:
    """True when the shipped checkpoint and its tokenizer are both present."""
    return DEMO_MODEL_PATH.is_file() and DEMO_TOKENIZER_PATH.is_file()
