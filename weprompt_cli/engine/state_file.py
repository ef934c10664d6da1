"""State files: the initial RNN state that RWKV-PEFT state tuning learns, read safely.

State tuning (`--train_type state`) trains one matrix per layer, `blocks.{i}.att.time_state`
of shape [heads, head size, head size], and saves only those tensors (a `.pth`; converted
copies are `.safetensors` with the same keys). Loaded as the wkv part of the initial state
of the base model it was tuned on, it acts as a persona with no prompt to prefill.

Orientation (docs/g1-templates.md has the sources): the trainer keeps each head's matrix
as [value, key], rows indexed by the value channel. The `rwkv` package's RWKV-7 state is
[value, key] too (`v @ k^T` is added to it, it is read as `state @ r`), so an RWKV-7 state
file is used as it is; the package's RWKV-5/6 state is [key, value], so those files are
transposed, as the package itself does for a checkpoint that carries `time_state`.

Nothing here touches the model: callers get float32 CPU tensors and place them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weprompt_cli.hashing import file_sha256
from weprompt_cli.errors import InvalidFileError, NotFoundError, UnsafeError

if TYPE_CHECKING:
    import torch

__all__ = ["file_sha256", "load_state_file", "state_file_shape", "state_from_wkv"]

_KEY = re.compile(r"^blocks\.(\d+)\.att\.time_state$")
_UNSAFE_HINT = "only load state files from sources you trust; a state file holds tensors only"
_FIT_HINT = "a state file only works with the base model it was tuned on"
# The package's own state orientation per family: True where it is [key, value] (transpose the file).
_TRANSPOSE = {"v5": True, "v5.1": True, "v5.2": True, "v6": True, "v7": False}


def load_state_file(path: str | Path, *, n_layer: int, n_head: int, head_size: int, arch: str = "v7") -> list[torch.Tensor]:
    """Per layer, the wkv matrix [n_head, head_size, head_size] (float32, CPU) in the orientation
    the `rwkv` package's state of `arch` uses.

    NotFoundError if the file is missing; UnsafeError if its pickle would run code;
    InvalidFileError if it is not a state file, or was tuned for another model shape
    (one line naming the file and both shapes).
    """
    import torch

    path = Path(path).expanduser()
    if arch not in _TRANSPOSE:
        raise InvalidFileError(f"state files need an RWKV-5, 6 or 7 model, not RWKV-{arch[1:]}", path=path)
    tensors = _read(path)
    layers = _time_states(tensors, path)
    shape = state_file_shape(layers, path)
    if shape != (n_layer, n_head, head_size):
        have = f"{shape[0]} layers x {shape[1]} heads x {shape[2]}"
        want = f"{n_layer} layers x {n_head} heads x {head_size}"
        raise InvalidFileError(f"state file has {have}, the model {want}", path=path, hint=_FIT_HINT)
    out = []
    for i, t in enumerate(layers):
        if not t.is_floating_point():
            raise InvalidFileError(f"state file tensors are {str(t.dtype).replace('torch.', '')}, not floating point",
                                   path=path)
        t = t.to(torch.float32)
        if not bool(torch.isfinite(t).all()):
            raise InvalidFileError(f"state file holds NaN or infinite values (layer {i})", path=path)
        if _TRANSPOSE[arch]:
            t = t.transpose(1, 2)
        out.append(t.contiguous().clone())  # clone: nothing stays tied to the file's storage
    return out


def read_state_file_shape(path: str | Path) -> tuple[int, int, int]:
    """(layers, heads, head size) a state file was tuned for, read safely (no model needed)."""
    path = Path(path).expanduser()
    return state_file_shape(_time_states(_read(path), path), path)


def state_file_shape(layers: list[Any], path: Path | None = None) -> tuple[int, int, int]:
    """(layers, heads, head size) of a state file's time_state tensors; InvalidFileError if they disagree."""
    first = tuple(layers[0].shape)
    for i, t in enumerate(layers):
        shape = tuple(t.shape)
        if len(shape) != 3 or shape[1] != shape[2] or shape != first:
            raise InvalidFileError(
                f"not an RWKV state file: layer {i}'s time_state has shape {list(shape)}, "
                f"expected [heads, head size, head size] like layer 0 {list(first)}",
                path=path,
            )
    return len(layers), int(first[0]), int(first[1])


def state_from_wkv(wkv: list[torch.Tensor], *, n_embd: int, dtype: Any, device: Any = "cpu") -> list[torch.Tensor]:
    """A whole `rwkv` package state (RWKV-5/6/7: three tensors per layer) from the wkv matrices:
    the token-shift vectors are zeros of `dtype` (the model's), the wkv matrices float32."""
    import torch

    state: list[torch.Tensor] = []
    for kv in wkv:
        state += [
            torch.zeros(n_embd, dtype=dtype, device=device),  # time-mix token shift
            kv.to(dtype=torch.float32, device=device).contiguous(),  # [H, N, N]
            torch.zeros(n_embd, dtype=dtype, device=device),  # channel-mix token shift
        ]
    return state


# ---------------------------------------------------------------------------- reading


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise NotFoundError("state file not found", path=path, hint="check the persona's `state = ...` path")
    if not path.is_file():
        raise InvalidFileError("not a state file: this is a folder", path=path)
    obj = _read_safetensors(path) if _is_safetensors(path) else _read_pickled(path)
    if not isinstance(obj, dict):
        raise InvalidFileError(f"not a state file (it holds a {type(obj).__name__}, not named tensors)", path=path)
    return obj


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with its JSON header's length (8 bytes, little-endian), then `{`."""
    with open(path, "rb") as stream:
        head = stream.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 0 < int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several kinds for a damaged file
        raise InvalidFileError(f"not a state file (unreadable safetensors: {exc})", path=path) from None


def _read_pickled(path: Path) -> Any:
    """torch.load with weights_only=True; a pickle that wants to import code is refused before it runs.

    The same rule as model checkpoints (engine/checkpoint.py): weights_only refuses any
    global outside torch's tensor rebuilding, and a plain pickle (not torch.save's) is
    scanned for its imports without being unpickled.
    """
    import pickle
    import warnings

    import torch

    from weprompt_cli.engine.checkpoint import _allowed_import, pickle_imports

    def risky() -> list[str]:
        return sorted(name for name in pickle_imports(path) if not _allowed_import(name))

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
            warnings.filterwarnings("ignore", message=r".*pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip errors, EOF, garbage: torch raises many kinds
        names = risky()
        refused = isinstance(exc, pickle.UnpicklingError) and re.search(r"global", str(exc), re.IGNORECASE)
        if names or refused:
            which = f" ({', '.join(names[:3])})" if names else ""
            raise UnsafeError(f"refusing to load this state file: its pickle would run code{which}", path=path,
                              hint=_UNSAFE_HINT) from None
        raise InvalidFileError(f"not a state file (unreadable: {type(exc).__name__})", path=path) from None


def _time_states(tensors: dict[str, Any], path: Path) -> list[Any]:
    """The time_state tensors in layer order; InvalidFileError if there are none or a layer is missing."""
    import torch

    found: dict[int, Any] = {}
    for key, value in tensors.items():
        match = _KEY.match(key) if isinstance(key, str) else None
        if match and isinstance(value, torch.Tensor):
            found[int(match.group(1))] = value
    if not found:
        raise InvalidFileError(
            "not an RWKV state file: no blocks.N.att.time_state tensors",
            path=path,
            hint="state files come from RWKV-PEFT state tuning (--train_type state)",
        )
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise InvalidFileError(f"state file lacks layer(s) {', '.join(map(str, missing[:5]))}", path=path)
    return [found[i] for i in range(len(found))]
