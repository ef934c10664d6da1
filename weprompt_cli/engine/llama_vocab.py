"""The bytes behind the token texts of a GGUF vocabulary, for each tokenizer model llama.cpp reads.

A GGUF stores tokens as text: llama.cpp's "rwkv" tokenizer as escaped bytes (`\\n`, `\\x0b`,
a backslash doubled), a "gpt2" byte-level BPE with one printable character per byte. To
compare a GGUF's vocabulary with WePrompt's tokenizer, both are turned back into bytes.
"""

from __future__ import annotations

import functools
import re

_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[\\tnr])")
_NAMED = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r"}
_PLACEHOLDER = re.compile(rb"\[PAD\d+\]")


def token_bytes_of(model: str, text: bytes) -> bytes | None:
    """The bytes token `text` stands for in a vocabulary of tokenizer `model`; None when unknown."""
    if _PLACEHOLDER.fullmatch(text):
        return None  # an unused row the converter filled in
    if model == "rwkv":
        return _ESCAPE.sub(lambda m: bytes([int(m.group(1)[1:], 16)]) if m.group(1)[:1] == b"x"
                           else _NAMED[m.group(1)], text)
    if model == "gpt2":
        table = _byte_level_table()
        chars = text.decode("utf-8", errors="replace")
        if all(ch in table for ch in chars):
            return bytes(table[ch] for ch in chars)
        return text  # an added token, stored as its own text
    return None


@functools.lru_cache(maxsize=1)
def _byte_level_table() -> dict[str, int]:
    from weprompt_cli.engine.tokenizer import _byte_level_table as table

    return table()
