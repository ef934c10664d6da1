"""Tokenizers: which one a checkpoint needs, and a common interface over the backends.

Resolution order: `<model>.tokenizer.json` beside the checkpoint (a `tokenizers` JSON);
else by vocabulary size: 65536 is the World vocabulary shipped inside the rwkv package,
50277 the GPT-NeoX 20B `tokenizers` file of Raven models.

Every tokenizer here can give the exact bytes of a token sequence (`decode_bytes`) when
its backend allows, which is what streaming needs to never split a UTF-8 character.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from weprompt_cli.errors import InvalidFileError, NotFoundError

if TYPE_CHECKING:
    from weprompt_cli.engine.checkpoint import ModelInfo

WORLD_VOCAB_SIZE = 65536
NEOX_VOCAB_SIZE = 50277
NEOX_FILE = "20B_tokenizer.json"
NEOX_HINT = "'weprompt models pull raven-14b-v12' fetches it; or put 20B_tokenizer.json beside the model"


class Tokenizer:
    """encode/decode between text and token ids; `decode_bytes` when `has_bytes`."""

    name: str = "tokenizer"
    has_bytes: bool = False

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def decode_bytes(self, ids: list[int]) -> bytes:
        """The exact bytes of `ids` (only when `has_bytes`)."""
        raise NotImplementedError(f"{self.name} cannot give the bytes of tokens")

    def token_bytes(self, token: int) -> bytes:
        return self.decode_bytes([token])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


# ---------------------------------------------------------------------------- World


def world_vocab_file() -> Path:
    """The World vocabulary file inside the installed rwkv package."""
    import importlib.util

    spec = importlib.util.find_spec("rwkv")
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError("the rwkv package is not installed", hint="pip install rwkv")
    return Path(list(spec.submodule_search_locations)[0]) / "rwkv_vocab_v20230424.txt"


class _WorldVocab:
    """The World vocabulary file as two tables: id -> bytes, and bytes -> id with the token lengths that
    start with each pair of bytes (about 10 MB; pyrwkv_tokenizer's trie held 240 MB, the package's 300 MB)."""

    def __init__(self, vocab_file: Path) -> None:
        self.bytes_of: dict[int, bytes] = {0: b""}  # id 0 is <|endoftext|>, not in the file
        self.id_of: dict[bytes, int] = {}
        for line in vocab_file.read_text(encoding="utf-8").splitlines():
            idx, rest = line.split(" ", 1)
            # Each line is `<id> <python literal, str or bytes> <byte length>`; literal_eval runs nothing.
            literal = ast.literal_eval(rest[: rest.rindex(" ")])
            value = literal.encode("utf-8") if isinstance(literal, str) else bytes(literal)
            self.bytes_of[int(idx)] = value
            self.id_of[value] = int(idx)
        lengths: dict[bytes, set[int]] = {}
        for value in self.id_of:
            if len(value) >= 2:
                lengths.setdefault(value[:2], set()).add(len(value))
        self.lengths = {pair: tuple(sorted(found, reverse=True)) for pair, found in lengths.items()}

    def encode(self, data: bytes) -> list[int]:
        """Greedy longest match from the left, as the World tokenizer is defined (the rwkv package's TRIE)."""
        out: list[int] = []
        get, lengths, n, i = self.id_of.get, self.lengths.get, len(data), 0
        while i < n:
            for size in lengths(data[i:i + 2], ()):
                if i + size <= n and (token := get(data[i:i + size])) is not None:
                    out.append(token)
                    i += size
                    break
            else:  # every single byte is a token
                out.append(self.id_of[data[i:i + 1]])
                i += 1
        return out


class WorldTokenizer(Tokenizer):
    """The RWKV World vocabulary (65536 tokens), encoded by greedy longest match over its byte table."""

    has_bytes = True

    def __init__(self) -> None:
        self._vocab = _WorldVocab(world_vocab_file())
        self.name = "rwkv-world"

    def encode(self, text: str) -> list[int]:
        return self._vocab.encode(text.encode("utf-8"))

    def decode_bytes(self, ids: list[int]) -> bytes:
        get = self._vocab.bytes_of.get
        return b"".join(get(int(t), b"") for t in ids)  # an id the model has but the vocabulary lacks: nothing

    def token_bytes(self, token: int) -> bytes:
        return self._vocab.bytes_of.get(int(token), b"")

    def decode(self, ids: list[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


@functools.lru_cache(maxsize=1)
def world_tokenizer() -> WorldTokenizer:
    """The World tokenizer, loaded once per process (about a quarter of a second)."""
    return WorldTokenizer()


# ---------------------------------------------------------------------------- tokenizers JSON


def _byte_level_table() -> dict[str, int]:
    """The byte-level BPE alphabet: each byte is shown as one printable character.

    Bytes that are printable and not a space keep their own code point; the others are
    mapped, in order, to code points from 256 up.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in keep}
    extra = 0
    for b in range(256):
        if b not in keep:
            table[chr(256 + extra)] = b
            extra += 1
    return table


class JsonTokenizer(Tokenizer):
    """A Hugging Face `tokenizers` JSON file (GPT-NeoX 20B, or a model's own)."""

    def __init__(self, path: Path) -> None:
        import json

        from tokenizers import Tokenizer as HFTokenizer

        try:
            self._tok = HFTokenizer.from_file(str(path))
            spec = json.loads(path.read_text(encoding="utf-8"))
        except Exception as exc:
            raise InvalidFileError(f"not a tokenizers JSON file ({exc})", path=path) from None
        self.path = path
        self.name = path.name
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        decoder = spec.get("decoder") or {}
        self.has_bytes = decoder.get("type") == "ByteLevel"
        self._token_bytes: list[bytes] = []
        if self.has_bytes:
            table = _byte_level_table()
            special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
            for idx in range(self.vocab_size):
                piece = self._tok.id_to_token(idx)
                if piece is None or idx in special:
                    self._token_bytes.append(b"")  # decode() skips special tokens too
                elif all(ch in table for ch in piece):
                    self._token_bytes.append(bytes(table[ch] for ch in piece))
                else:
                    self._token_bytes.append(piece.encode("utf-8"))  # an added, non-byte-level token

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        if self.has_bytes:
            return self.decode_bytes(ids).decode("utf-8", errors="replace")
        return str(self._tok.decode([int(t) for t in ids]))

    def decode_bytes(self, ids: list[int]) -> bytes:
        if not self.has_bytes:
            return super().decode_bytes(ids)
        table = self._token_bytes
        return b"".join(table[int(t)] if 0 <= int(t) < len(table) else b"" for t in ids)

    def token_bytes(self, token: int) -> bytes:
        return self.decode_bytes([token])


# ---------------------------------------------------------------------------- resolution


def sidecar_path(model_path: Path) -> Path:
    """`<model path without .pth / .gguf>.tokenizer.json`."""
    model_path = Path(model_path)
    stem = model_path.name.removesuffix(".pth").removesuffix(".gguf")
    return model_path.with_name(stem + ".tokenizer.json")


def resolve_tokenizer(model_path: str | Path, info: ModelInfo, models_dir: str | Path | None = None) -> Tokenizer:
    """The tokenizer for a checkpoint: its own JSON file, World (65536) or GPT-NeoX 20B (50277)."""
    model_path = Path(model_path)
    own = sidecar_path(model_path)
    if own.is_file():
        tok = JsonTokenizer(own)
        if tok.vocab_size > info.vocab_size:
            raise InvalidFileError(
                f"the tokenizer has {tok.vocab_size} tokens but the model only {info.vocab_size}", path=own
            )
        return tok
    if info.vocab_size == WORLD_VOCAB_SIZE:
        return world_tokenizer()
    if info.vocab_size == NEOX_VOCAB_SIZE:
        candidates = [model_path.parent / NEOX_FILE]
        if models_dir is not None:
            candidates.append(Path(models_dir) / NEOX_FILE)
        for candidate in candidates:
            if candidate.is_file():
                return JsonTokenizer(candidate)
        raise NotFoundError(
            "this Raven (RWKV-4) model needs the GPT-NeoX 20B tokenizer file, which is missing",
            path=candidates[-1],
            hint=NEOX_HINT,
        )
    raise NotFoundError(
        f"no tokenizer for a model with a {info.vocab_size}-token vocabulary",
        path=own,
        hint=f"put the model's tokenizers JSON beside it as {own.name}",
    )
