"""Checkpoint inspection: which RWKV family a `.pth` file is, and its shape.

A checkpoint is read with `weights_only=True` (and memory-mapped where the file allows
it), so an untrusted pickle never runs code and a big file is not read into memory just
to learn its shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weprompt_cli.errors import InvalidFileError, NotFoundError, UnsafeError

ARCHES = ("v4", "v5", "v5.1", "v5.2", "v6", "v7")


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint is, learnt from its keys and shapes (no weights are computed)."""

    path: Path
    arch: str  # one of ARCHES
    n_layer: int
    n_embd: int
    vocab_size: int
    n_head: int  # 0 for RWKV-4, which has no heads
    head_size: int  # 0 for RWKV-4
    n_params: int
    file_size: int
    converted_strategy: str | None = None  # set for files written by the rwkv package's converter

    @property
    def family(self) -> str:
        """The `rwkv.model` import mode this model needs: "v7" or "v4-v6"."""
        return "v7" if self.arch == "v7" else "v4-v6"

    @property
    def arch_label(self) -> str:
        """A human name: "RWKV-7", "RWKV-5.2"..."""
        return "RWKV-" + self.arch[1:]


def load_state_dict(path: Path) -> dict[str, Any]:
    """The checkpoint's dict of tensors, loaded safely (memory-mapped when possible)."""
    import pickle

    import torch

    path = Path(path)
    if not path.exists():
        raise NotFoundError("model file not found", path=path, hint="check the path, or see 'weprompt models list'")
    if not path.is_file():
        raise InvalidFileError("not an RWKV checkpoint: this is a folder, not a .pth file", path=path)
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            # Legacy (non-zip) and some converted files cannot be memory-mapped.
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if re.search(r"global", str(exc), re.IGNORECASE):
            # weights_only refused to import something: the pickle wanted to run code.
            raise UnsafeError(
                "refusing to load this file: its pickle would run code (not a plain tensor checkpoint)",
                path=path,
                hint="only load checkpoints from sources you trust; RWKV checkpoints hold tensors only",
            ) from None
        raise InvalidFileError("not an RWKV checkpoint (unreadable pickle)", path=path) from None
    except MemoryError:
        raise
    except Exception as exc:  # zip errors, EOF, garbage: torch raises many kinds
        raise InvalidFileError(f"not an RWKV checkpoint ({type(exc).__name__})", path=path) from None
    if not isinstance(obj, dict) or "emb.weight" not in obj or not any(
        isinstance(k, str) and k.startswith("blocks.") for k in obj
    ):
        raise InvalidFileError("not an RWKV checkpoint (no emb.weight / blocks.* tensors)", path=path)
    return obj


def detect_arch(keys: list[str], shapes: dict[str, tuple[int, ...]]) -> str:
    """The RWKV family from the key names (DESIGN.md: v4 no ln_x, v5 ln_x, v6 time_maa, v7 r_k/x_r)."""
    if any(k.endswith(("att.r_k", "att.x_r")) for k in keys):
        return "v7"
    if any("time_maa" in k for k in keys):
        return "v6"
    if any("ln_x" in k for k in keys):
        if any(k.endswith("att.gate.weight") for k in keys):
            decay = [shapes[k] for k in keys if k.endswith("att.time_decay")]
            if decay and len(decay[0]) > 1 and decay[0][1] > 1:
                return "v5.2"
            return "v5.1"
        return "v5"
    return "v4"


def inspect_checkpoint(path: str | Path) -> ModelInfo:
    """Read a checkpoint's keys and shapes: NotFoundError, InvalidFileError or UnsafeError if it can't be used."""
    path = Path(path).expanduser()
    if not path.exists() and path.suffix != ".pth" and path.with_name(path.name + ".pth").exists():
        path = path.with_name(path.name + ".pth")  # the rwkv package's habit: a path without .pth
    state = load_state_dict(path)
    return info_from_state_dict(state, path)


def info_from_state_dict(state: dict[str, Any], path: Path) -> ModelInfo:
    """ModelInfo from an already loaded checkpoint dict."""
    import torch

    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    keys = list(tensors)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    converted = state.get("_strategy")
    arch = detect_arch(keys, shapes)
    try:
        vocab_size, n_embd = shapes["emb.weight"]
        n_layer = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("blocks."))
        n_head = head_size = 0
        if arch == "v7":
            n_head, head_size = shapes["blocks.0.att.r_k"]
        elif arch in ("v5", "v5.1", "v5.2"):
            n_head = shapes["blocks.0.att.time_decay"][0]
        elif arch == "v6":
            first = "blocks.0.att.time_faaaa" if "blocks.0.att.time_faaaa" in shapes else "blocks.0.att.time_first"
            n_head = shapes[first][0]
        if arch != "v7" and n_head:
            # The attention width is the key matrix's output size (stored transposed once converted).
            n_att = shapes["blocks.0.att.key.weight"][1 if converted else 0]
            head_size = n_att // n_head
    except (KeyError, ValueError, IndexError):
        raise InvalidFileError(f"not an RWKV checkpoint (unexpected layout for {arch})", path=path) from None
    n_params = sum(int(t.numel()) for t in tensors.values())
    return ModelInfo(
        path=path.resolve(),
        arch=arch,
        n_layer=int(n_layer),
        n_embd=int(n_embd),
        vocab_size=int(vocab_size),
        n_head=int(n_head),
        head_size=int(head_size),
        n_params=n_params,
        file_size=path.stat().st_size,
        converted_strategy=str(converted) if converted is not None else None,
    )
