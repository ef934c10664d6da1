"""State checkpoint files: `states/NNNNNN.safetensors`, the RNN state after turn N.

Tensors are stored on the CPU as `{"s000": t0, "s001": t1, ...}` (docs/architecture.md)
with string metadata: format, schema, fingerprint, turn, tokens, arch, dtypes, and a
crc32 of the tensor bytes. Reading checks the header, the file length, the metadata
and the checksum before any tensor is trusted; each failure is a `StateUnavailable`
with a `reason`, so the chat layer can replay the transcript instead.

torch and safetensors.torch are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from weprompt_cli.errors import InvalidFileError

if TYPE_CHECKING:
    import torch

STATE_FORMAT = "weprompt-state"
STATE_SCHEMA = "1"
STATE_FILE_RE = re.compile(r"(\d{6})\.safetensors")
_MAX_HEADER = 16 * 1024 * 1024  # a state header is a few KB; more means garbage

StateTensors = Union[Mapping[str, "torch.Tensor"], Sequence["torch.Tensor"]]

# Reasons a state cannot be used (StateUnavailable.reason).
MISSING = "missing"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
FINGERPRINT = "fingerprint"
FORMAT = "format"
_WHY = {
    MISSING: "is missing",
    TRUNCATED: "is truncated",
    CORRUPT: "is corrupt",
    FINGERPRINT: "was made by another model",
    FORMAT: "is not a WePrompt state file of this version",
}


class StateUnavailable(InvalidFileError):
    """A state checkpoint that cannot be used; `reason` is one of missing, truncated,
    corrupt, fingerprint, format. The transcript can rebuild it."""

    def __init__(self, reason: str, turn: int, path: Path, detail: str = "") -> None:
        msg = f"the state after turn {turn} {_WHY.get(reason, reason)}" + (f" ({detail})" if detail else "")
        super().__init__(msg, path=path)
        self.reason = reason
        self.turn = turn


def state_filename(turn: int) -> str:
    return f"{turn:06d}.safetensors"


def state_key(i: int) -> str:
    return f"s{i:03d}"


def as_state_dict(tensors: StateTensors) -> dict[str, torch.Tensor]:
    """The `{"s000": ...}` dict of a state given as that dict or as the rwkv list of tensors."""
    if isinstance(tensors, Mapping):
        return dict(tensors)
    return {state_key(i): t for i, t in enumerate(tensors)}


def as_state_list(tensors: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """The rwkv package's list of tensors from a loaded `{"s000": ...}` dict."""
    return [tensors[k] for k in sorted(tensors)]


def _is_numpy(t: Any) -> bool:
    return type(t).__module__ == "numpy"


def _raw_bytes(t: Any) -> Any:
    """The bytes of a CPU tensor or numpy array, in memory order (for the checksum)."""
    if _is_numpy(t):
        import numpy as np

        return np.ascontiguousarray(t).reshape(-1).view(np.uint8).data
    import torch

    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().data


def _crc(tensors: Mapping[str, Any]) -> str:
    crc = 0
    for key in sorted(tensors):
        data = _raw_bytes(tensors[key])
        if len(data):
            crc = zlib.crc32(data, crc)
    return f"{crc:08x}"


DEFAULT_LAYOUT = "rwkv"  # files from before the layout was recorded are the rwkv package's lists of tensors


def _metadata(tensors: Mapping[str, Any], fingerprint: str, turn: int, tokens: int, arch: str,
              layout: str) -> dict[str, str]:
    return {
        "format": STATE_FORMAT,
        "schema": STATE_SCHEMA,
        "fingerprint": fingerprint,
        "turn": str(turn),
        "tokens": str(tokens),
        "arch": arch,
        "layout": layout,
        "dtypes": json.dumps({k: str(t.dtype).removeprefix("torch.") for k, t in sorted(tensors.items())}),
        "crc32": _crc(tensors),
    }


def encode_state(
    tensors: StateTensors, *, fingerprint: str, turn: int, tokens: int, arch: str, layout: str = DEFAULT_LAYOUT
) -> bytes:
    """The safetensors bytes of one state checkpoint (tensors moved to the CPU).

    `layout` names the backend's state format (Engine.state_format: "rwkv", "llama.cpp-seq").
    numpy arrays (a llama.cpp state) are written without torch.
    """
    tensors = as_state_dict(tensors)
    if tensors and all(_is_numpy(t) for t in tensors.values()):
        import numpy as np
        from safetensors.numpy import save as save_numpy

        arrays = {k: np.ascontiguousarray(t) for k, t in tensors.items()}
        return save_numpy(arrays, metadata=_metadata(arrays, fingerprint, turn, tokens, arch, layout))
    from safetensors.torch import save

    cpu = {k: t.detach().to("cpu").contiguous() for k, t in tensors.items()}
    metadata = _metadata(cpu, fingerprint, turn, tokens, arch, layout)
    try:
        return save(cpu, metadata=metadata)
    except (RuntimeError, ValueError):
        # Tensors that share memory (views of one buffer) cannot be saved as they are.
        return save({k: t.clone() for k, t in cpu.items()}, metadata=metadata)


def read_header(path: Path, turn: int) -> tuple[dict[str, Any], dict[str, str], int]:
    """(tensor header, metadata, header length) of a state file, checked against its size.

    Needs no torch: `sessions show` can report states cheaply.
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            head = f.read(8)
            if len(head) < 8:
                raise StateUnavailable(TRUNCATED, turn, path, f"{size} bytes")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER:
                raise StateUnavailable(CORRUPT, turn, path, "bad safetensors header")
            raw = f.read(n)
    except FileNotFoundError:
        raise StateUnavailable(MISSING, turn, path) from None
    except IsADirectoryError:
        raise StateUnavailable(CORRUPT, turn, path, "a folder") from None
    except OSError as exc:
        raise StateUnavailable(CORRUPT, turn, path, exc.strerror or str(exc)) from None
    if len(raw) < n:
        raise StateUnavailable(TRUNCATED, turn, path, f"{size} bytes")
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError
        metadata = header.pop("__metadata__", None) or {}
        end = 0
        for entry in header.values():
            begin, stop = entry["data_offsets"]
            if not (isinstance(begin, int) and isinstance(stop, int) and 0 <= begin <= stop):
                raise ValueError
            end = max(end, stop)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise StateUnavailable(CORRUPT, turn, path, "bad safetensors header") from None
    if 8 + n + end > size:
        raise StateUnavailable(TRUNCATED, turn, path, f"{size} of {8 + n + end} bytes")
    if 8 + n + end < size:
        raise StateUnavailable(CORRUPT, turn, path, "trailing bytes after the tensors")
    if not isinstance(metadata, dict):
        raise StateUnavailable(CORRUPT, turn, path, "bad safetensors metadata")
    return header, metadata, n


def check_metadata(
    metadata: Mapping[str, str], *, turn: int, fingerprint: str | None, path: Path, layout: str | None = None
) -> None:
    """Raise StateUnavailable unless the metadata says: our format, this turn, this model (and layout)."""
    if metadata.get("format") != STATE_FORMAT or metadata.get("schema") != STATE_SCHEMA:
        raise StateUnavailable(
            FORMAT, turn, path, f"format={metadata.get('format')!r} schema={metadata.get('schema')!r}"
        )
    if metadata.get("turn") != str(turn):
        raise StateUnavailable(FORMAT, turn, path, f"it holds turn {metadata.get('turn')}")
    if fingerprint is not None and metadata.get("fingerprint") != fingerprint:
        raise StateUnavailable(FINGERPRINT, turn, path)
    if layout is not None and metadata.get("layout", DEFAULT_LAYOUT) != layout:
        raise StateUnavailable(FORMAT, turn, path, f"a {metadata.get('layout', DEFAULT_LAYOUT)} state, not {layout}")


def decode_state(
    path: Path, *, turn: int, fingerprint: str | None, layout: str | None = None, framework: str = "torch"
) -> dict[str, Any]:
    """The tensors of the state file at `path`, checked; `StateUnavailable` otherwise.

    `fingerprint=None` skips the model check (inspection only). `framework` is the engine's
    (`Engine.tensor_framework`): torch tensors, or numpy arrays read without torch.
    """
    _, metadata, _ = read_header(path, turn)
    check_metadata(metadata, turn=turn, fingerprint=fingerprint, path=path, layout=layout)
    if framework == "numpy":
        from safetensors.numpy import load
    else:
        from safetensors.torch import load

    try:
        data = path.read_bytes()
        tensors = load(data)
    except FileNotFoundError:
        raise StateUnavailable(MISSING, turn, path) from None
    except Exception as exc:  # noqa: BLE001 -- safetensors raises its own SafetensorError type
        raise StateUnavailable(CORRUPT, turn, path, str(exc).splitlines()[0][:120]) from None
    if "crc32" in metadata and _crc(tensors) != metadata["crc32"]:
        raise StateUnavailable(CORRUPT, turn, path, "checksum mismatch")
    return tensors


def state_files(states_dir: Path) -> dict[int, Path]:
    """turn -> path of every state file in `states_dir` (temp files ignored)."""
    found: dict[int, Path] = {}
    try:
        entries = list(states_dir.iterdir())
    except OSError:
        return found
    for p in entries:
        m = STATE_FILE_RE.fullmatch(p.name)
        if m:
            found[int(m.group(1))] = p
    return found
