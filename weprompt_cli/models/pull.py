"""`weprompt models pull/rm`: fetch catalog checkpoints from the Hugging Face hub.

Downloads go through huggingface_hub (`get_hf_file_metadata` for the HEAD call, then
`http_get`, the streaming GET behind `hf_hub_download`, with its progress bar and its
in-call retries that resume with a Range request). We keep our own partial file,
`<home>/models/.partial/<file>.<etag>.part`, instead of calling `hf_hub_download`:
huggingface_hub 2.x writes to a per-process temporary file and deletes it on any
failure, so a pull stopped with Ctrl-C (or a dropped network) would start over from
byte 0; with our partial file the next `pull` asks only for the missing bytes.

Verification: the size against the size the hub reports (and the catalog's, when exact),
and the sha256 against the catalog's pin or, for LFS files, the hub's ETag (which is the
file's sha256). A file that fails either is removed, never kept as a model.

Which file `pull NAME` fetches: the .pth, or a GGUF build (`--format gguf`, `--quant`).
Without either option it asks `resolve.auto_format`: the Q8_0 GGUF when this machine has
no usable GPU, llama-cpp-python loads and the catalog has one, else the .pth; `say`
gets one line with the choice and why.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlparse

from weprompt_cli.atomic import fsync_dir
from weprompt_cli.hashing import file_sha256
from weprompt_cli.errors import DiskError, InvalidFileError, NetworkError, NotFoundError, UsageError
from weprompt_cli.models.catalog import DEFAULT_QUANT, CatalogModel, GgufVariant, load_catalog, normalize_quant
from weprompt_cli.paths import Home

if TYPE_CHECKING:
    from weprompt_cli.hardware.inventory import Inventory
    from weprompt_cli.models.resolve import LlamaStatus

DEFAULT_ENDPOINT = "https://huggingface.co"
PARTIAL_DIR = ".partial"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


FORMATS = ("pth", "gguf")


@dataclass(frozen=True)
class PullPlan:
    """Which file of a catalog model a pull fetches, and why."""

    entry: CatalogModel
    variant: GgufVariant | None  # None: the .pth
    reason: str
    explicit: bool  # asked for with --format/--quant (else the machine decided)

    @property
    def format(self) -> str:
        return "pth" if self.variant is None else "gguf"

    @property
    def label(self) -> str:
        return ".pth" if self.variant is None else self.variant.label

    @property
    def filename(self) -> str:
        assert self.entry.file is not None
        return self.entry.file if self.variant is None else self.variant.filename

    def line(self) -> str:
        """The one stderr line: what is pulled and why."""
        text = f"{self.entry.name}: pulling the {self.label} ({self.filename}): {self.reason}"
        if not self.explicit:
            text += "; --format pth for the .pth" if self.variant is not None else (
                "; --format gguf for the GGUF" if self.entry.gguf else "")
        return text


@dataclass(frozen=True)
class PullResult:
    """What `pull_model` left on disk."""

    path: Path
    tokenizer_path: Path | None
    downloaded_bytes: int  # 0 when everything was already there
    already_present: bool
    plan: PullPlan | None = None


def hub_endpoint() -> str:
    """The hub to talk to: `$HF_ENDPOINT` (read now, not at import) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _network_error(exc: BaseException, endpoint: str, what: str) -> NetworkError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return NetworkError(
        f"cannot reach the Hugging Face hub at {endpoint} while {what}: {detail}",
        hint="check your connection (or HF_ENDPOINT / proxy settings) and run the same command again",
    )


def _metadata(url: str, endpoint: str, name: str) -> Any:
    """HEAD the file on the hub; hub and network failures become one clear WePromptError."""
    import httpx2
    from huggingface_hub import get_hf_file_metadata
    from huggingface_hub.errors import (
        FileMetadataError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return get_hf_file_metadata(url, endpoint=endpoint)
    except GatedRepoError as exc:
        raise NetworkError(
            f"the hub refuses {name}: the repository is gated", hint="accept its terms on the hub and set HF_TOKEN"
        ) from exc
    except (RepositoryNotFoundError, RemoteEntryNotFoundError, RevisionNotFoundError) as exc:
        raise NotFoundError(f"the hub has no such file: {url}", hint="the catalog entry may be out of date") from exc
    except OfflineModeIsEnabled as exc:
        raise NetworkError("HF_HUB_OFFLINE is set: downloads are off", hint="unset HF_HUB_OFFLINE") from exc
    except (httpx2.HTTPError, HfHubHTTPError, FileMetadataError, OSError) as exc:
        raise _network_error(exc, endpoint, f"looking up {name}") from exc


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def download_file(
    repo: str,
    filename: str,
    dest: Path,
    *,
    repo_type: str = "model",
    revision: str = "main",
    expected_size: int | None = None,
    sha256: str | None = None,
    label: str | None = None,
    endpoint: str | None = None,
    say: Callable[[str], None] | None = None,
) -> int:
    """Download one hub file to `dest` (resuming a partial one); returns bytes fetched.

    `expected_size` is checked only when given (exact sizes); the hub's own size and
    LFS sha256 are always checked. A bad download is removed and raises InvalidFileError.
    """
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    say = say or (lambda _msg: None)
    label = label or filename
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    if _offline():
        raise NetworkError("HF_HUB_OFFLINE is set: downloads are off", hint="unset HF_HUB_OFFLINE to pull models")
    url = hf_hub_url(repo, filename, repo_type=repo_type, revision=revision, endpoint=endpoint)
    meta = _metadata(url, endpoint, label)
    hub_size: int | None = meta.size
    etag = (meta.etag or "").strip('"')
    lfs_sha = etag if _SHA256.match(etag) else None
    if sha256 and lfs_sha and sha256 != lfs_sha:
        raise InvalidFileError(
            f"the hub's {label} is not the file the catalog pins (sha256 {lfs_sha[:12]}… vs {sha256[:12]}…)",
            hint="the catalog entry may be out of date",
        )
    if expected_size is not None and hub_size is not None and hub_size != expected_size:
        raise InvalidFileError(
            f"the hub's {label} has {hub_size} bytes, the catalog expects {expected_size}",
            hint="the catalog entry may be out of date",
        )
    want_sha = sha256 or lfs_sha
    want_size = hub_size if hub_size is not None else expected_size

    if dest.is_file() and (want_size is None or dest.stat().st_size == want_size):
        return 0  # verified before it was moved into place

    partial = dest.parent / PARTIAL_DIR / f"{dest.name}.{(etag or 'noetag')[:16]}.part"
    try:
        partial.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DiskError(f"cannot create the models folder: {exc.strerror or exc}", path=partial.parent) from exc
    resume = partial.stat().st_size if partial.is_file() else 0
    if want_size is not None and resume > want_size:
        _remove(partial)
        resume = 0
    if resume:
        say(f"resuming {label} at {resume / 1e6:.1f} MB")

    headers = build_hf_headers()
    if urlparse(meta.location).netloc != urlparse(url).netloc:
        headers.pop("authorization", None)  # never send a token to a CDN
    _download(http_get, meta.location, partial, resume, headers, want_size, label, endpoint)

    got = partial.stat().st_size
    if want_size is not None and got != want_size:
        _remove(partial)
        raise InvalidFileError(
            f"downloaded {label} has {got} bytes, expected {want_size}; the bad file was removed",
            hint="run the same command again",
        )
    if want_sha is not None:
        say(f"verifying sha256 of {label}")
        actual = file_sha256(partial)
        if actual != want_sha:
            _remove(partial)
            raise InvalidFileError(
                f"downloaded {label} is corrupt (sha256 {actual[:12]}…, expected {want_sha[:12]}…); "
                "the bad file was removed",
                hint="run the same command again",
            )
    try:
        os.replace(partial, dest)
    except OSError as exc:
        raise DiskError(f"cannot move the download into place: {exc.strerror or exc}", path=dest) from exc
    fsync_dir(dest.parent)
    return got - resume


def _download(
    http_get: Any, url: str, partial: Path, resume: int, headers: dict, size: int | None, label: str, endpoint: str
) -> None:
    """Stream into `partial` from byte `resume`; errors become WePromptErrors, the partial file stays."""
    import httpx2

    try:
        with open(partial, "r+b" if resume else "wb") as f:
            f.seek(resume)
            f.truncate()
            http_get(url, f, resume_size=resume, headers=headers, expected_size=size, displayed_filename=label)
    except httpx2.HTTPError as exc:
        kept = partial.stat().st_size if partial.is_file() else 0
        err = _network_error(exc, endpoint, f"downloading {label}")
        err.hint = f"{kept / 1e6:.1f} MB kept; run the same command again to resume"
        raise err from exc
    except OSError as exc:
        if "Consistency check failed" in str(exc):
            _remove(partial)
            raise InvalidFileError(
                f"downloaded {label} does not have the size the hub announced; the bad file was removed",
                hint="run the same command again",
            ) from exc
        from huggingface_hub.errors import HfHubHTTPError

        if isinstance(exc, HfHubHTTPError):
            raise _network_error(exc, endpoint, f"downloading {label}") from exc
        raise DiskError(f"cannot write the download: {exc.strerror or exc}", path=partial) from exc


def plan_pull(
    entry: CatalogModel,
    *,
    fmt: str | None = None,
    quant: str | None = None,
    inventory: Inventory | None = None,
    llama: LlamaStatus | None = None,
) -> PullPlan:
    """The file `pull` fetches: `fmt` ("pth"/"gguf") and `quant` when given, else what `auto` runs here.

    UsageError for an unknown format or quantization (or --quant with --format pth);
    NotFoundError when the model has no such GGUF build. `inventory`/`llama` default to
    this machine's and are only looked at when the choice depends on them.
    """
    from weprompt_cli.models.resolve import INSTALL_GGUF, auto_format, llama_cpp_status

    if entry.embedded:
        raise UsageError(f"{entry.name!r} is embedded in WePrompt; there is nothing to download")
    if fmt is not None:
        fmt = fmt.strip().lower().lstrip(".")
        if fmt not in FORMATS:
            raise UsageError(f"unknown model format {fmt!r}", hint="--format pth (rwkv package) or --format gguf (llama.cpp)")
    if quant is not None:
        quant = normalize_quant(quant)
        if fmt == "pth":
            raise UsageError("--quant is for GGUF builds; a .pth has none", hint=f"--format gguf --quant {quant}")
        fmt = "gguf"
    if fmt == "pth":
        return PullPlan(entry, None, "asked for with --format pth", True)
    if fmt == "gguf":
        variant = entry.gguf_variant(quant or DEFAULT_QUANT)
        asked = f"--quant {quant}" if quant else "--format gguf"
        reason = f"asked for with {asked}"
        llama = llama or llama_cpp_status()
        if not llama.usable:
            reason += f"; to chat with it, install llama-cpp-python: {INSTALL_GGUF}"
        return PullPlan(entry, variant, reason, True)
    q8 = entry.find_gguf(DEFAULT_QUANT)
    if q8 is None:
        why = f"{entry.name} has no GGUF build in the catalog" if not entry.gguf else (
            f"{entry.name} has no Q8_0 GGUF build (--format gguf --quant {entry.gguf[0].quant} for its GGUF)")
        return PullPlan(entry, None, why, False)
    if inventory is None:
        from weprompt_cli.hardware.inventory import detect_inventory

        inventory = detect_inventory()
    choice = auto_format(inventory, llama or llama_cpp_status(), entry)
    return PullPlan(entry, q8 if choice.format == "gguf" else None, choice.reason, False)


def pull_model(
    name: str,
    *,
    home: Home,
    say: Callable[[str], None] | None = None,
    fmt: str | None = None,
    quant: str | None = None,
    inventory: Inventory | None = None,
    llama: LlamaStatus | None = None,
) -> PullResult:
    """Download catalog model `name` (the .pth or a GGUF build, see `plan_pull`; and the
    tokenizer it needs) into `<home>/models/`; `say` gets the choice line first."""
    entry = load_catalog().get(name)
    plan = plan_pull(entry, fmt=fmt, quant=quant, inventory=inventory, llama=llama)
    if say is not None:
        say(plan.line())
    if plan.variant is not None:
        return _pull_gguf(plan, plan.variant, home, say)
    assert entry.repo and entry.file
    dest = entry.local_path(home)
    was_there = entry.is_downloaded(home)
    fetched = download_file(
        entry.repo,
        entry.file,
        dest,
        revision=entry.revision,
        expected_size=entry.size_bytes if entry.size_exact else None,
        sha256=entry.sha256,
        label=entry.file,
        say=say,
    )
    tok_path = entry.tokenizer_path(home)
    if tok_path is not None:
        src = entry.tokenizer
        assert src.repo and src.file
        fetched += download_file(
            src.repo, src.file, tok_path, repo_type=src.repo_type, label=f"{src.file} (tokenizer)", say=say
        )
    return PullResult(dest, tok_path, fetched, was_there and fetched == 0, plan)


def _pull_gguf(plan: PullPlan, variant: GgufVariant, home: Home, say: Callable[[str], None] | None) -> PullResult:
    entry = plan.entry
    dest = variant.local_path(home)
    was_there = entry.gguf_is_downloaded(variant, home)
    try:
        fetched = download_file(
            variant.repo,
            variant.file,
            dest,
            revision=variant.revision,
            expected_size=variant.size_bytes if variant.size_exact else None,
            sha256=variant.sha256,
            label=variant.filename,
            say=say,
        )
    except NotFoundError as exc:
        if variant.inferred:
            others = [f"--quant {v.quant}" for v in entry.gguf if v is not variant] + ["--format pth"]
            exc.hint = (f"the catalog infers this file name from the uploader's naming; see which files exist: "
                        f"https://huggingface.co/{variant.repo}/tree/{variant.revision}; or pull {' or '.join(others)}")
        raise
    tok_path = entry.gguf_tokenizer_path(variant, home)
    if tok_path is not None:
        src = entry.tokenizer
        assert src.repo and src.file
        fetched += download_file(
            src.repo, src.file, tok_path, repo_type=src.repo_type, label=f"{src.file} (tokenizer)", say=say
        )
    return PullResult(dest, tok_path, fetched, was_there and fetched == 0, plan)


def remove_model(name: str, *, home: Home, fmt: str | None = None, quant: str | None = None) -> list[Path]:
    """Delete a downloaded catalog model: every format (default), only the .pth (`fmt="pth"`),
    or its GGUF builds (`fmt="gguf"`, or one of them with `quant`), with their tokenizers and
    partial downloads; returns what was removed."""
    entry: CatalogModel = load_catalog().get(name)
    if entry.embedded:
        raise UsageError(f"{name!r} is embedded in WePrompt and cannot be removed")
    if fmt is not None:
        fmt = fmt.strip().lower().lstrip(".")
        if fmt not in FORMATS:
            raise UsageError(f"unknown model format {fmt!r}", hint="--format pth or --format gguf")
    if quant is not None:
        if fmt == "pth":
            raise UsageError("--quant is for GGUF builds; a .pth has none", hint=f"--format gguf --quant {quant}")
        fmt = "gguf"
    files: list[tuple[Path, Path | None]] = []  # (model file, its tokenizer)
    if fmt in (None, "pth"):
        files.append((entry.local_path(home), entry.tokenizer_path(home)))
    if fmt in (None, "gguf"):
        variants = [entry.gguf_variant(quant)] if quant is not None else list(entry.gguf)
        if fmt == "gguf" and not variants:
            entry.gguf_variant()  # NotFoundError: no GGUF build in the catalog
        files += [(v.local_path(home), entry.gguf_tokenizer_path(v, home)) for v in variants]
    candidates: list[Path] = []
    for path, tok in files:
        candidates += [path, *([tok] if tok is not None else [])]
        candidates += sorted((path.parent / PARTIAL_DIR).glob(f"{path.name}.*.part"))
    path = files[0][0]
    removed = []
    for p in candidates:
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DiskError(f"cannot remove: {exc.strerror or exc}", path=p) from exc
    if not removed:
        what = {None: "", "pth": " (.pth)", "gguf": f" ({quant.upper() if quant else 'GGUF'})"}[fmt]
        raise NotFoundError(f"model {name!r}{what} is not downloaded", path=path if len(files) == 1 else None)
    return removed
