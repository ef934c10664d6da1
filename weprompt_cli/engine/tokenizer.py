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
from typing import TYPE_CHECKING, Any

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


class _WorldBytes:
    """Token id -> bytes from the vocabulary file, each line parsed on first use."""

    def __init__(self, vocab_file: Path) -> None:
        self._lines: dict[int, str] = {}
        for line in vocab_file.read_text(encoding="utf-8").splitlines():
            idx, rest = line.split(" ", 1)
            self._lines[int(idx)] = rest
        self._cache: dict[int, bytes] = {0: b""}  # id 0 is <|endoftext|>, not in the file

    def __len__(self) -> int:
        return len(self._lines) + 1

    def get(self, token: int) -> bytes:
        try:
            return self._cache[token]
        except KeyError:
            pass
        rest = self._lines.get(token)
        if rest is None:
            value = b""  # an id the model has but the vocabulary lacks: decodes to nothing
        else:
            # Each line is `<id> <python literal, str or bytes> <byte length>`; literal_eval runs nothing.
            literal = ast.literal_eval(rest[: rest.rindex(" ")])
            value = literal.encode("utf-8") if isinstance(literal, str) else bytes(literal)
        self._cache[token] = value
        return value


class WorldTokenizer(Tokenizer):
    """The RWKV World vocabulary: pyrwkv_tokenizer (Rust) to encode, else the rwkv package's TRIE."""

    has_bytes = True

    def __init__(self, backend: str = "auto") -> None:
        vocab = world_vocab_file()
        self._encoder: Any
        if backend in ("auto", "rust"):
            try:
                import pyrwkv_tokenizer

                self._encoder = pyrwkv_tokenizer.RWKVTokenizer()
                self.backend = "rust"
            except ImportError:
                if backend == "rust":
                    raise
                backend = "python"
        if backend == "python":
            self._encoder = _trie_tokenizer(vocab)
            self.backend = "python"
        # Decoding goes through our own byte table: pyrwkv_tokenizer panics on partial UTF-8.
        self._bytes = _WorldBytes(vocab)
        self.name = f"rwkv-world ({self.backend})"

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in self._encoder.encode(text)]

    def decode_bytes(self, ids: list[int]) -> bytes:
        get = self._bytes.get
        return b"".join(get(int(t)) for t in ids)

    def token_bytes(self, token: int) -> bytes:
        return self._bytes.get(int(token))

    def decode(self, ids: list[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def _trie_tokenizer(vocab: Path) -> Any:
    import importlib

    module = importlib.import_module("rwkv.rwkv_tokenizer")
    return module.TRIE_TOKENIZER(str(vocab))


@functools.lru_cache(maxsize=2)
def world_tokenizer(backend: str = "auto") -> WorldTokenizer:
    """The World tokenizer, loaded once per process (about a second)."""
    return WorldTokenizer(backend)


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
