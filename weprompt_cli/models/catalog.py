"""The model catalog: `catalog.toml` (package data) loaded into frozen dataclasses."""

from __future__ import annotations

import difflib
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weprompt_cli.errors import InvalidFileError, NotFoundError
from weprompt_cli.paths import PACKAGE_DIR, Home

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CATALOG_FILE = Path(__file__).with_name("catalog.toml")
CATALOG_SCHEMA = 1
DTYPES = ("fp32", "fp16", "bf16", "fp16i8")


@dataclass(frozen=True)
class TokenizerSource:
    """Where a model's tokenizer comes from: built in, or a file on the hub."""

    name: str
    builtin: bool = False
    repo: str | None = None
    repo_type: str = "model"
    file: str | None = None


@dataclass(frozen=True)
class CatalogModel:
    """One catalog entry: where to get a checkpoint and what it is."""

    name: str
    title: str
    arch: str  # "v4", "v5", "v6" or "v7"
    n_params: int
    n_layer: int
    n_embd: int
    vocab_size: int
    ctx_len: int
    size_bytes: int
    size_exact: bool
    tokenizer: TokenizerSource
    chat_format: str  # "world" or "raven"
    repo: str | None = None
    file: str | None = None
    revision: str = "main"
    sha256: str | None = None
    package_file: str | None = None  # embedded models: a path under weprompt_cli/

    @property
    def embedded(self) -> bool:
        """True for package data (the demo), which is never downloaded."""
        return self.package_file is not None

    @property
    def memory(self) -> dict[str, int]:
        """Bytes needed to run it per dtype on one GPU (estimates; int8 only for v4-v6)."""
        from weprompt_cli.hardware.advice import memory_needed

        dtypes = DTYPES if self.arch != "v7" else tuple(d for d in DTYPES if "i8" not in d)
        return {d: memory_needed(self.n_params, d) for d in dtypes}

    def local_path(self, home: Home) -> Path:
        """Where the checkpoint lives once downloaded (or inside the package)."""
        if self.package_file is not None:
            return PACKAGE_DIR / self.package_file
        assert self.file is not None
        return home.models / self.file

    def tokenizer_path(self, home: Home) -> Path | None:
        """The tokenizer file pull fetches beside the checkpoint (None: built in)."""
        if self.tokenizer.builtin:
            return None
        path = self.local_path(home)
        return path.with_name(path.stem + ".tokenizer.json")

    def is_downloaded(self, home: Home) -> bool:
        """Checkpoint (and tokenizer, when one is needed) present where pull puts them."""
        if not self.local_path(home).is_file():
            return False
        tok = self.tokenizer_path(home)
        return tok is None or tok.is_file()


@dataclass(frozen=True)
class Catalog:
    """All catalog entries, in file order."""

    models: tuple[CatalogModel, ...]

    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def find(self, name: str) -> CatalogModel | None:
        for m in self.models:
            if m.name == name:
                return m
        return None

    def get(self, name: str) -> CatalogModel:
        """The entry called `name`; NotFoundError naming close matches."""
        found = self.find(name)
        if found is not None:
            return found
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see 'weprompt models list'"
        raise NotFoundError(f"no model called {name!r} in the catalog", hint=hint)


def _need(entry: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in entry:
        raise InvalidFileError(f"{where}: missing {key!r}", path=CATALOG_FILE)
    value = entry[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidFileError(f"{where}: {key!r} must be {kind.__name__}", path=CATALOG_FILE)
    return value


def parse_catalog(data: dict[str, Any]) -> Catalog:
    """Validate the TOML document and build the catalog (InvalidFileError on a bad entry)."""
    if data.get("schema") != CATALOG_SCHEMA:
        raise InvalidFileError(f"unsupported catalog schema {data.get('schema')!r}", path=CATALOG_FILE)
    tokenizers: dict[str, TokenizerSource] = {}
    for tname, t in data.get("tokenizer", {}).items():
        src = TokenizerSource(
            name=tname,
            builtin=bool(t.get("builtin", False)),
            repo=t.get("repo"),
            repo_type=t.get("repo_type", "model"),
            file=t.get("file"),
        )
        if not src.builtin and not (src.repo and src.file):
            raise InvalidFileError(f"tokenizer {tname!r}: needs builtin = true or repo and file", path=CATALOG_FILE)
        tokenizers[tname] = src
    models: list[CatalogModel] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("model", [])):
        where = f"model #{i + 1} ({entry.get('name', '?')})"
        name = _need(entry, "name", str, where)
        if name in seen:
            raise InvalidFileError(f"{where}: duplicate name", path=CATALOG_FILE)
        seen.add(name)
        arch = _need(entry, "arch", str, where)
        if arch not in ("v4", "v5", "v6", "v7"):
            raise InvalidFileError(f"{where}: arch must be v4, v5, v6 or v7", path=CATALOG_FILE)
        tok_name = _need(entry, "tokenizer", str, where)
        if tok_name not in tokenizers:
            raise InvalidFileError(f"{where}: unknown tokenizer {tok_name!r}", path=CATALOG_FILE)
        package_file = entry.get("package_file")
        if package_file is None:
            _need(entry, "repo", str, where)
            _need(entry, "file", str, where)
        sha = entry.get("sha256")
        if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise InvalidFileError(f"{where}: sha256 must be 64 lowercase hex digits", path=CATALOG_FILE)
        models.append(
            CatalogModel(
                name=name,
                title=_need(entry, "title", str, where),
                arch=arch,
                n_params=_need(entry, "params", int, where),
                n_layer=_need(entry, "n_layer", int, where),
                n_embd=_need(entry, "n_embd", int, where),
                vocab_size=_need(entry, "vocab_size", int, where),
                ctx_len=_need(entry, "ctx_len", int, where),
                size_bytes=_need(entry, "size", int, where),
                size_exact=bool(entry.get("size_exact", False)),
                tokenizer=tokenizers[tok_name],
                chat_format=_need(entry, "chat_format", str, where),
                repo=entry.get("repo"),
                file=entry.get("file"),
                revision=entry.get("revision", "main"),
                sha256=sha,
                package_file=package_file,
            )
        )
    return Catalog(tuple(models))


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The catalog shipped with this package."""
    try:
        data = tomllib.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidFileError(f"cannot read the model catalog: {exc}", path=CATALOG_FILE) from exc
    return parse_catalog(data)
