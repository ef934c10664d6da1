"""The model catalog: `catalog.toml` (package data) loaded into frozen dataclasses."""

from __future__ import annotations

import difflib
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weprompt_cli.errors import InvalidFileError, NotFoundError, UsageError
from weprompt_cli.paths import PACKAGE_DIR, Home

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CATALOG_FILE = Path(__file__).with_name("catalog.toml")
CATALOG_SCHEMA = 1
DTYPES = ("fp32", "fp16", "bf16", "fp16i8")
# llama.cpp's file-type names (llama_ftype, as its tools print them), lower case: what a
# `[[model.gguf]]` quant and `--quant` may say.
GGUF_QUANTS = (
    "f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q5_1", "q5_0", "q4_k_m", "q4_k_s",
    "q4_1", "q4_0", "q3_k_l", "q3_k_m", "q3_k_s", "q2_k", "tq2_0", "tq1_0",
)
DEFAULT_QUANT = "q8_0"
GGUF_ARCHES = ("v6", "v7")  # what llama.cpp (and WePrompt's GGUF backend) runs
_VARIANT_KEYS = {"quant", "repo", "file", "size", "size_exact", "sha256", "revision", "inferred"}


def normalize_quant(text: str) -> str:
    """`Q8_0`, ` q8_0 ` -> `q8_0`; UsageError naming the known ones for anything else."""
    quant = text.strip().lower()
    if quant not in GGUF_QUANTS:
        raise UsageError(f"unknown GGUF quantization {text!r}", hint=f"one of: {', '.join(GGUF_QUANTS)}")
    return quant


@dataclass(frozen=True)
class TokenizerSource:
    """Where a model's tokenizer comes from: built in, or a file on the hub."""

    name: str
    builtin: bool = False
    repo: str | None = None
    repo_type: str = "model"
    file: str | None = None


@dataclass(frozen=True)
class GgufVariant:
    """One published GGUF build of a catalog model: where it is and how big."""

    quant: str  # lower case, one of GGUF_QUANTS
    repo: str
    file: str  # path in the hub repository; saved flat under <home>/models by its base name
    size_bytes: int
    size_exact: bool
    sha256: str | None = None
    revision: str = "main"
    inferred: bool = False  # the file name follows the uploader's pattern; no listing showed it

    @property
    def label(self) -> str:
        """`GGUF Q8_0`: how messages name it."""
        return f"GGUF {self.quant.upper()}"

    @property
    def filename(self) -> str:
        return self.file.rsplit("/", 1)[-1]

    def local_path(self, home: Home) -> Path:
        """Where pull puts it."""
        return home.models / self.filename

    def is_downloaded(self, home: Home) -> bool:
        return self.local_path(home).is_file()


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
    chat_format: str  # "world", "g1" or "raven" (weprompt_cli.chat.formats)
    repo: str | None = None
    file: str | None = None
    revision: str = "main"
    sha256: str | None = None
    package_file: str | None = None  # embedded models: a path under weprompt_cli/
    gguf: tuple[GgufVariant, ...] = ()  # published GGUF builds, in catalog order

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

    def gguf_tokenizer_path(self, variant: GgufVariant, home: Home) -> Path | None:
        """The tokenizer file pull fetches beside a GGUF build (None: built in)."""
        if self.tokenizer.builtin:
            return None
        path = variant.local_path(home)
        return path.with_name(path.stem + ".tokenizer.json")

    def gguf_is_downloaded(self, variant: GgufVariant, home: Home) -> bool:
        """The GGUF file (and its tokenizer, when one is needed) is where pull puts it."""
        tok = self.gguf_tokenizer_path(variant, home)
        return variant.is_downloaded(home) and (tok is None or tok.is_file())

    def find_gguf(self, quant: str) -> GgufVariant | None:
        """The GGUF build with this quantization (any case), or None."""
        quant = quant.strip().lower()
        return next((v for v in self.gguf if v.quant == quant), None)

    def gguf_variant(self, quant: str = DEFAULT_QUANT) -> GgufVariant:
        """The GGUF build `quant`: UsageError for an unknown quantization, NotFoundError when
        this model has no such build (both name what there is)."""
        quant = normalize_quant(quant)
        found = self.find_gguf(quant)
        if found is not None:
            return found
        if not self.gguf:
            if self.arch in GGUF_ARCHES and not self.embedded:
                hint = f"pull the .pth and convert it: weprompt models convert {self.name} --to gguf --quant {quant}"
            else:
                hint = "llama.cpp runs RWKV-6 and RWKV-7 only: use the .pth (--format pth)"
            raise NotFoundError(f"{self.name} has no GGUF build in the catalog", hint=hint)
        have = ", ".join(v.quant for v in self.gguf)
        raise NotFoundError(
            f"{self.name} has no GGUF {quant.upper()} build in the catalog (it has: {have})",
            hint=f"weprompt models pull {self.name} --quant {self.gguf[0].quant}",
        )

    def downloaded_gguf(self, home: Home) -> list[GgufVariant]:
        """The GGUF builds on disk, Q8_0 first, then in catalog order."""
        found = [v for v in self.gguf if self.gguf_is_downloaded(v, home)]
        return sorted(found, key=lambda v: v.quant != DEFAULT_QUANT)


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


def _sha256(value: Any, where: str) -> str | None:
    if value is not None and (
        not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value)
    ):
        raise InvalidFileError(f"{where}: sha256 must be 64 lowercase hex digits", path=CATALOG_FILE)
    return value


def _parse_variants(entry: dict[str, Any], arch: str, where: str) -> tuple[GgufVariant, ...]:
    """The `[[model.gguf]]` tables of one entry, validated."""
    raw = entry.get("gguf", [])
    if not isinstance(raw, list) or not all(isinstance(v, dict) for v in raw):
        raise InvalidFileError(f"{where}: 'gguf' must be [[model.gguf]] tables", path=CATALOG_FILE)
    if raw and arch not in GGUF_ARCHES:
        raise InvalidFileError(f"{where}: GGUF builds need arch v6 or v7 (llama.cpp runs RWKV-6/7 only)",
                               path=CATALOG_FILE)
    if raw and entry.get("package_file") is not None:
        raise InvalidFileError(f"{where}: an embedded model has no GGUF builds to download", path=CATALOG_FILE)
    variants: list[GgufVariant] = []
    for j, v in enumerate(raw):
        vwhere = f"{where} gguf #{j + 1} ({v.get('quant', '?')})"
        unknown = sorted(set(v) - _VARIANT_KEYS)
        if unknown:
            raise InvalidFileError(f"{vwhere}: unknown key {unknown[0]!r}", path=CATALOG_FILE)
        quant = _need(v, "quant", str, vwhere)
        if quant not in GGUF_QUANTS:
            raise InvalidFileError(
                f"{vwhere}: quant must be one of {', '.join(GGUF_QUANTS)} (lower case)", path=CATALOG_FILE
            )
        if any(other.quant == quant for other in variants):
            raise InvalidFileError(f"{vwhere}: duplicate quant", path=CATALOG_FILE)
        repo = _need(v, "repo", str, vwhere)
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise InvalidFileError(f"{vwhere}: repo must be 'owner/name'", path=CATALOG_FILE)
        file = _need(v, "file", str, vwhere)
        parts = file.split("/")
        if not file.endswith(".gguf") or file.startswith("/") or "\\" in file or ".." in parts or "" in parts:
            raise InvalidFileError(f"{vwhere}: file must be a relative path ending in .gguf", path=CATALOG_FILE)
        size = _need(v, "size", int, vwhere)
        if size <= 0:
            raise InvalidFileError(f"{vwhere}: size must be positive", path=CATALOG_FILE)
        for flag in ("size_exact", "inferred"):
            if flag in v and not isinstance(v[flag], bool):
                raise InvalidFileError(f"{vwhere}: {flag!r} must be true or false", path=CATALOG_FILE)
        revision = v.get("revision", "main")
        if not isinstance(revision, str) or not revision:
            raise InvalidFileError(f"{vwhere}: 'revision' must be a non-empty string", path=CATALOG_FILE)
        variants.append(
            GgufVariant(
                quant=quant,
                repo=repo,
                file=file,
                size_bytes=size,
                size_exact=bool(v.get("size_exact", False)),
                sha256=_sha256(v.get("sha256"), vwhere),
                revision=revision,
                inferred=bool(v.get("inferred", False)),
            )
        )
    return tuple(variants)


def _chat_format(entry: dict[str, Any], where: str) -> str:
    value = _need(entry, "chat_format", str, where)
    if value not in ("world", "g1", "raven"):
        raise InvalidFileError(f"{where}: chat_format must be world, g1 or raven", path=CATALOG_FILE)
    return str(value)


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
    local_files: dict[str, str] = {}  # file name under <home>/models -> the model it belongs to
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
        sha = _sha256(entry.get("sha256"), where)
        variants = _parse_variants(entry, arch, where)
        for local in [entry.get("file"), *(v.filename for v in variants)]:
            if local is None:
                continue
            name_of = Path(local).name
            if name_of in local_files:
                raise InvalidFileError(
                    f"{where}: {name_of!r} would be saved over {local_files[name_of]}'s file", path=CATALOG_FILE
                )
            local_files[name_of] = name
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
                chat_format=_chat_format(entry, where),
                repo=entry.get("repo"),
                file=entry.get("file"),
                revision=entry.get("revision", "main"),
                sha256=sha,
                package_file=package_file,
                gguf=variants,
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
