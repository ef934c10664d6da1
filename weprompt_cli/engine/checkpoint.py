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
    quantization: str | None = None  # a GGUF file's weight format ("F16", "Q8_0", ...); None for .pth

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

    path = Path(path)
    if not path.exists():
        raise NotFoundError("model file not found", path=path, hint="check the path, or see 'weprompt models list'")
    if not path.is_file():
        raise InvalidFileError("not an RWKV checkpoint: this is a folder, not a .pth file", path=path)
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError as exc:
        if re.search(r"global", str(exc), re.IGNORECASE):
            # weights_only refused to import something: the pickle wanted to run code.
            raise UnsafeError(
                "refusing to load this file: its pickle would run code (not a plain tensor checkpoint)",
                path=path,
                hint="only load checkpoints from sources you trust; RWKV checkpoints hold tensors only",
            ) from None
        risky = sorted(name for name in pickle_imports(path) if not _allowed_import(name))
        if risky:
            # weights_only stopped earlier (an opcode it does not read), but the pickle imports code.
            raise UnsafeError(
                f"refusing to load this file: its pickle would run code ({', '.join(risky[:3])})",
                path=path,
                hint="only load checkpoints from sources you trust; RWKV checkpoints hold tensors only",
            ) from None
        if _torch_container(path):
            raise _truncated(path) from None
        raise InvalidFileError("not an RWKV checkpoint (unreadable pickle)", path=path) from None
    except MemoryError:
        raise
    except Exception as exc:  # zip errors, EOF, garbage: torch raises many kinds
        if _torch_container(path):
            # It starts as torch.save writes a file but cannot be read to its end.
            raise _truncated(path) from None
        if _is_pickle(path):
            # A plain pickle (pickle.dump, not torch.save): torch stops at its missing magic number.
            risky = sorted(name for name in pickle_imports(path) if not _allowed_import(name))
            if risky:
                raise UnsafeError(
                    f"refusing to load this file: its pickle would run code ({', '.join(risky[:3])})",
                    path=path,
                    hint="only load checkpoints from sources you trust; RWKV checkpoints hold tensors only",
                ) from None
            raise InvalidFileError(
                "not an RWKV checkpoint (a plain pickle, not a file written by torch.save)", path=path
            ) from None
        raise InvalidFileError(f"not an RWKV checkpoint ({type(exc).__name__})", path=path) from None
    if not isinstance(obj, dict) or "emb.weight" not in obj or not any(
        isinstance(k, str) and k.startswith("blocks.") for k in obj
    ):
        raise InvalidFileError("not an RWKV checkpoint (no emb.weight / blocks.* tensors)", path=path)
    return obj


def _torch_load(path: Path) -> Any:
    """torch.load with weights_only=True, memory-mapped when the file allows it; torch's own warnings silenced.

    torch warns (a UserWarning and a source line on stderr) about any pickle protocol
    above 2 before it refuses a plain pickle; WePrompt's one-line error says what matters.
    """
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", message=r".*pickle protocol", category=UserWarning)
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            # Legacy (non-zip) and some converted files cannot be memory-mapped.
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)


# torch.save's legacy (non-zip) format starts with this pickled magic number (protocol 2).
_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."


def _torch_container(path: Path) -> bool:
    """Whether the file starts the way torch.save writes one: a zip whose first member is `<name>/data.pkl`, or the legacy magic."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(512)
    except OSError:
        return False
    if head.startswith(_LEGACY_MAGIC):
        return True
    if head.startswith(b"PK\x03\x04") and len(head) >= 30:
        name_length = int.from_bytes(head[26:28], "little")
        return head[30 : 30 + name_length].endswith(b"data.pkl")
    return False


def _is_pickle(path: Path) -> bool:
    """Whether the file starts with a pickle protocol header (protocol 2 or later)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _truncated(path: Path) -> InvalidFileError:
    """The error for a PyTorch checkpoint that cannot be read to its end."""
    return InvalidFileError(
        "model file is truncated or corrupt: it starts as a PyTorch checkpoint but cannot be read",
        path=path,
        hint="the download or copy was probably cut short: fetch the file again "
        "('weprompt models pull NAME' fetches a catalog model again)",
    )


def pickle_imports(path: Path, *, max_pickles: int = 6) -> set[str]:
    """The `module.name` globals a checkpoint's pickle would import, read without unpickling.

    A zip checkpoint's `data.pkl` is scanned; a legacy file is a few pickles in a row
    followed by raw tensor bytes, so scanning stops at the first thing that is not a pickle.
    """
    import pickletools
    import zipfile

    found: set[str] = set()

    def scan(stream: Any) -> bool:
        strings: list[str] = []
        memo: dict[int, Any] = {}
        for opcode, arg, _pos in pickletools.genops(stream):
            name = opcode.name
            if name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING"):
                strings.append(str(arg))
            elif name == "MEMOIZE":
                memo[len(memo)] = strings[-1] if strings else None
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg or 0)] = strings[-1] if strings else None
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                value = memo.get(int(arg or 0))
                if isinstance(value, str):
                    strings.append(value)
            elif name == "GLOBAL":
                found.add(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL":
                found.add(".".join(strings[-2:]) if len(strings) >= 2 else "?")
            elif name in ("REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX") and not found:
                found.add("?")  # a call with nothing named to call: treat as unknown code
        return True

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith("data.pkl"):
                        with archive.open(member) as stream:
                            scan(stream)
        else:
            with open(path, "rb") as stream:
                for _ in range(max_pickles):
                    scan(stream)
    except Exception:  # noqa: BLE001 - the end of the pickles, or not a pickle at all
        pass
    return found


def _allowed_import(name: str) -> bool:
    """Globals a plain tensor checkpoint imports (torch rebuilds tensors with these)."""
    module, _, attr = name.rpartition(".")
    if name == "collections.OrderedDict" or (module == "torch._utils" and attr.startswith("_rebuild_")):
        return True
    return module == "torch" and (attr.endswith("Storage") or attr in _TORCH_DTYPES)


_TORCH_DTYPES = {"float32", "float16", "bfloat16", "float64", "uint8", "int8", "int16", "int32", "int64", "bool"}


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
