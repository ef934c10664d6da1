"""Model fingerprints: which exact checkpoint a session was made with.

A fingerprint combines the file size, the tensor names and shapes, and the SHA-256 of
the file. Hashing a multi-gigabyte file takes a while, so results are cached in
`<cache>/fingerprints.json` (the caller passes the cache folder; the CLI, its home's
`cache/`), keyed by the resolved path and checked against the file's size and mtime_ns:
a file is hashed once, until it changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from weprompt_cli.errors import NotFoundError
from weprompt_cli.hashing import file_sha256

CACHE_SCHEMA = 1


CACHE_FILE = "fingerprints.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("schema") != CACHE_SCHEMA or not isinstance(data.get("entries"), dict):
        return {}  # unknown or damaged: start over (it is only a cache)
    return dict(data["entries"])


def shapes_digest(path: Path) -> str:
    """A short hash of the checkpoint's tensor names and shapes (and, for GGUF, their types)."""
    if path.suffix.lower() == ".gguf":
        return _gguf_shapes_digest(path)
    import torch

    from weprompt_cli.engine.checkpoint import load_state_dict

    state = load_state_dict(path)
    shapes = sorted((k, list(v.shape)) for k, v in state.items() if isinstance(v, torch.Tensor))
    return hashlib.sha256(json.dumps(shapes).encode("utf-8")).hexdigest()[:12]


def _gguf_shapes_digest(path: Path) -> str:
    from weprompt_cli.engine.llama_context import import_gguf_reader

    reader = import_gguf_reader()(str(path), "r")
    shapes = sorted((t.name, [int(x) for x in t.shape], int(t.tensor_type)) for t in reader.tensors)
    return hashlib.sha256(json.dumps(shapes).encode("utf-8")).hexdigest()[:12]


def model_fingerprint(path: str | Path, *, cache_dir: Path | None = None) -> str:
    """`<sha256 prefix>-<shapes hash>-<size>` for a checkpoint, from `<cache_dir>/fingerprints.json`
    when the file is unchanged (no cache without a folder)."""
    path = Path(path).expanduser()
    try:
        resolved = path.resolve(strict=True)
        st = resolved.stat()
    except (OSError, RuntimeError):
        raise NotFoundError("model file not found", path=path) from None
    store = Path(cache_dir) / CACHE_FILE if cache_dir is not None else None
    key = str(resolved)
    if store is not None:
        entry = _read_cache(store).get(key)
        if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            return str(entry["fingerprint"])
    fingerprint = f"{file_sha256(resolved)[:32]}-{shapes_digest(resolved)}-{st.st_size}"
    if store is None:
        return fingerprint
    entries = _read_cache(store)  # re-read: another process may have added entries meanwhile
    entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "fingerprint": fingerprint}
    try:
        from weprompt_cli.atomic import atomic_write_json

        atomic_write_json(store, {"schema": CACHE_SCHEMA, "entries": entries})
    except Exception:  # noqa: BLE001 - a cache that cannot be written only costs time
        pass
    return fingerprint
