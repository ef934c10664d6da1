"""Convert an RWKV-7 (or RWKV-6) `.pth` checkpoint to a GGUF file that llama.cpp loads.

The GGUF holds the tensor names, shapes and metadata of llama.cpp's RWKV loaders
(`src/models/rwkv7.cpp`, `rwkv6.cpp`): BlinkDL's `[out, in]` matrices map straight to
ggml's `{in, out}`, the low-rank (LoRA) matrices are stored the other way round and are
transposed, the six token-shift mixes of RWKV-7 (five of RWKV-6) are fused into one
tensor, and `[1, 1, C]` vectors are flattened. Layer 0 of RWKV-7 has no value-residual
LoRA, but llama.cpp wants one (rank = the ICLR rank): it gets zeros, which it never reads.

A vocabulary is embedded because llama.cpp needs one to load (WePrompt never uses it):
the World vocabulary as llama.cpp's "rwkv" tokenizer, a byte-level BPE sidecar
(`<stem>.tokenizer.json`) as a "gpt2" BPE with its merges, and anything else as a
placeholder vocabulary of the right size. Its size always equals the model's rows.

`f32` and `f16` are written directly (as llama.cpp's own converter does, vectors, the
fused mixes and the decay LoRA stay f32); `q8_0`, `q5_1` and `q4_0` write an f16 file
first and quantize it with llama.cpp's quantize API, which keeps small tensors in float.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weprompt_cli.errors import DiskError, InvalidFileError, NotFoundError, UsageError, WePromptError

QUANTS = ("f32", "f16", "q8_0", "q5_1", "q4_0")
_LLAMA_FTYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q5_1": 9}  # enum llama_ftype
_BITS = {"f32": 32.0, "f16": 16.0, "q8_0": 8.5, "q5_1": 6.0, "q4_0": 4.5}  # bits per weight, for the disk check
_F16_MAX = 65504.0
CONTEXT_LENGTH = 1048576  # RWKV is not context-limited; llama.cpp's converter writes this too
LAYER_NORM_EPS = 1e-5  # torch's layer_norm default, which the rwkv package uses

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GgufConvertResult:
    """Where the GGUF was written, and what it holds."""

    source: Path
    output: Path
    arch: str  # "v7" or "v6"
    quant: str  # one of QUANTS
    n_layer: int
    n_embd: int
    vocab_size: int
    head_size: int
    tokenizer: str  # "rwkv-world", "bpe (<file>)" or "placeholder"
    tokenizer_file: Path | None  # the sidecar copied beside the output, if any
    file_size: int
    seconds: float


def default_gguf_output(source: Path, quant: str) -> Path:
    """`<stem>-<quant>.gguf` beside the source."""
    return source.with_name(f"{source.name.removesuffix('.pth')}-{quant}.gguf")


def convert_to_gguf(
    src: Path, out: Path | None = None, *, quant: str = "f16", progress: Progress | None = None
) -> GgufConvertResult:
    """Write `src` (an RWKV-7/6 .pth) as a GGUF file (default `<stem>-<quant>.gguf` beside it)."""
    started = time.monotonic()
    quant = quant.lower()
    if quant not in QUANTS:
        raise UsageError(f"unknown GGUF quantization {quant!r}; choose one of {', '.join(QUANTS)}")
    src = Path(src).expanduser()
    if not src.exists() and src.suffix != ".pth" and src.with_name(src.name + ".pth").exists():
        src = src.with_name(src.name + ".pth")  # the rwkv package's habit: a path without .pth
    if not src.exists():
        raise NotFoundError("model file not found", path=src, hint="check the path, or see 'weprompt models list'")
    if src.suffix == ".gguf" and src.is_file():
        raise UsageError("this file is already a GGUF model; convert the original .pth checkpoint", path=src)
    out = Path(out).expanduser() if out is not None else default_gguf_output(src, quant)
    _check_output(src, out)
    gguf = _import_gguf()
    lib = None
    if quant not in ("f32", "f16"):
        from weprompt_cli.engine.llama_context import import_llama_cpp

        lib = import_llama_cpp()

    from weprompt_cli.engine.checkpoint import info_from_state_dict, load_state_dict

    state = load_state_dict(src)
    info = info_from_state_dict(state, src)
    if info.converted_strategy:
        raise UsageError(f"this file was converted by the rwkv package (for {info.converted_strategy!r}); "
                         "convert the original checkpoint", path=src)
    if info.arch == "v7":
        meta, specs = _plan_v7(state, info.n_layer, src)
    elif info.arch == "v6":
        meta, specs = _plan_v6(state, info.n_layer, src)
    else:
        raise UsageError(f"GGUF conversion supports RWKV-7 and RWKV-6 checkpoints; this is {info.arch_label}",
                         path=src, hint="run RWKV-4/5 models from the .pth with the rwkv package")
    vocab = _vocabulary(src, info.vocab_size)
    _check_free_space(out, info.n_params, quant)

    tmp = out.with_name(f".tmp-{out.name}.{os.getpid()}")
    tmp_float = out.with_name(f".tmp-{out.name}.{os.getpid()}.f16")
    total = len(specs) + 1  # one step per tensor, and a last one to quantize or finish
    float_quant = "f32" if quant == "f32" else "f16"
    try:
        written = tmp if lib is None else tmp_float
        _write_gguf(gguf, written, meta, specs, vocab, float_quant, src.name.removesuffix(".pth"), progress, total)
        if lib is not None:
            _quantize(lib, tmp_float, tmp, quant)
            tmp_float.unlink()
        _fsync_file(tmp)
        os.replace(tmp, out)
        from weprompt_cli.atomic import fsync_dir

        fsync_dir(out.parent)
    except OSError as exc:
        from weprompt_cli.atomic import _disk_error

        raise _disk_error(exc, out) from None
    finally:
        for leftover in (tmp, tmp_float):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
    tokenizer_file = _copy_sidecar(src, out)
    if progress is not None:
        progress(total, total)
    return GgufConvertResult(
        source=src.resolve(), output=out.resolve(), arch=info.arch, quant=quant, n_layer=info.n_layer,
        n_embd=info.n_embd, vocab_size=info.vocab_size, head_size=info.head_size, tokenizer=vocab.label,
        tokenizer_file=tokenizer_file, file_size=out.stat().st_size, seconds=time.monotonic() - started,
    )


# ---------------------------------------------------------------------------- checks


def _check_output(src: Path, out: Path) -> None:
    if out.is_dir():
        raise UsageError("the output is a folder; give a file name such as model-q8_0.gguf", path=out)
    if not out.parent.is_dir():
        raise NotFoundError("the output folder does not exist", path=out.parent, hint="create it first, or choose another output path")
    same = out.resolve() == src.resolve()
    if not same and out.exists() and src.exists():
        same = os.path.samefile(out, src)
    if same:
        raise UsageError("the output would overwrite the input checkpoint", path=out, hint="pass another output path")


def _import_gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise UsageError("GGUF conversion needs the gguf package (installed with llama-cpp-python's extra)",
                         hint="bash scripts/setup.sh --gguf  (or pip install 'weprompt[gguf]')") from None
    return gguf


def _check_free_space(out: Path, n_params: int, quant: str) -> None:
    """DiskError before any work when the output (and the f16 step of a quantization) cannot fit."""
    need = n_params * _BITS[quant] / 8
    if quant not in ("f32", "f16"):
        need += n_params * 2  # the f16 file quantization starts from
    free = shutil.disk_usage(out.parent).free
    if need * 1.02 > free:
        raise DiskError(f"not enough disk space: the conversion needs about {need / 1e9:.2f} GB, "
                        f"{free / 1e9:.2f} GB are free", path=out.parent)


# ---------------------------------------------------------------------------- tensor plans


@dataclass
class _Spec:
    """One GGUF tensor: its name, numpy shape (ggml's reversed), how to make it, and whether it must stay f32."""

    name: str
    shape: tuple[int, ...]
    make: Callable[[], Any]  # -> a torch tensor of `shape`
    keep_f32: bool


class _Source:
    """The checkpoint's tensors, remembering which ones a plan used (the rest is an error)."""

    def __init__(self, state: dict[str, Any], path: Path) -> None:
        import torch

        self.tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        self.used: set[str] = set()
        self.path = path

    def __contains__(self, key: str) -> bool:
        return key in self.tensors

    def get(self, key: str) -> Any:
        if key not in self.tensors:
            raise InvalidFileError(f"not a complete RWKV checkpoint: {key} is missing", path=self.path)
        self.used.add(key)
        return self.tensors[key]

    def check_all_used(self) -> None:
        left = sorted(set(self.tensors) - self.used)
        if left:
            more = f" and {len(left) - 1} more" if len(left) > 1 else ""
            raise UsageError(f"this checkpoint has tensors the GGUF converter does not know ({left[0]}{more}): "
                             "an RWKV variant llama.cpp does not run", path=self.path)


def _emit(specs: list[_Spec], name: str, tensor: Any, *, transform: str = "", keep_f32: bool = False) -> None:
    """Add `tensor` as GGUF tensor `name`; transform is "" (as is), "t" (transpose), "flat" or "p021"."""
    shape = tuple(int(s) for s in tensor.shape)
    if transform == "t":
        shape = (shape[1], shape[0])
    elif transform == "flat":
        shape = (int(tensor.numel()),)
    elif transform == "p021":
        shape = (shape[0], shape[2], shape[1])

    def make() -> Any:
        if transform == "t":
            return tensor.t()
        if transform == "flat":
            return tensor.reshape(-1)
        if transform == "p021":
            return tensor.permute(0, 2, 1)
        return tensor

    specs.append(_Spec(name, shape, make, keep_f32 or len(shape) == 1))


def _common(src: _Source, specs: list[_Spec]) -> None:
    """Embedding, its layer norm (ln0), the output norm and head: the same in RWKV-6 and RWKV-7."""
    _emit(specs, "token_embd.weight", src.get("emb.weight"))
    _emit(specs, "token_embd_norm.weight", src.get("blocks.0.ln0.weight"))
    _emit(specs, "token_embd_norm.bias", src.get("blocks.0.ln0.bias"))
    _emit(specs, "output_norm.weight", src.get("ln_out.weight"))
    _emit(specs, "output_norm.bias", src.get("ln_out.bias"))
    _emit(specs, "output.weight", src.get("head.weight"))


def _block_norms(src: _Source, specs: list[_Spec], i: int) -> None:
    b, blk = f"blocks.{i}.", f"blk.{i}."
    for part in ("weight", "bias"):
        _emit(specs, f"{blk}attn_norm.{part}", src.get(f"{b}ln1.{part}"))
        _emit(specs, f"{blk}attn_norm_2.{part}", src.get(f"{b}ln2.{part}"))
        _emit(specs, f"{blk}time_mix_ln.{part}", src.get(f"{b}att.ln_x.{part}"))


def _fused(src: _Source, keys: list[str]) -> tuple[tuple[int, ...], Callable[[], Any]]:
    """The token-shift mixes stacked as [k, 1, 1, C] (ggml {C, 1, 1, k}): (shape, maker)."""
    import torch

    parts = [src.get(k) for k in keys]
    c = int(parts[0].numel())
    return (len(parts), 1, 1, c), lambda: torch.stack([p.reshape(1, 1, c) for p in parts])


def _zeros(shape: tuple[int, ...]) -> Callable[[], Any]:
    import torch

    return lambda: torch.zeros(shape)


def _plan_v7(state: dict[str, Any], n_layer: int, path: Path) -> tuple[dict[str, Any], list[_Spec]]:

    src = _Source(state, path)
    specs: list[_Spec] = []
    _common(src, specs)
    n_head, head_size = (int(s) for s in src.get("blocks.0.att.r_k").shape)
    n_embd = n_head * head_size
    rank = {name: int(src.get(f"blocks.0.att.{name}1").shape[1]) for name in ("w", "a", "g")}
    value_key = "blocks.1.att.v1" if n_layer > 1 else None
    rank["v"] = int(src.get(value_key).shape[1]) if value_key else rank["a"]
    n_ff = int(src.get("blocks.0.ffn.key.weight").shape[0])
    for i in range(n_layer):
        att, blk = f"blocks.{i}.att.", f"blk.{i}."
        _block_norms(src, specs, i)
        shape, make = _fused(src, [att + f"x_{m}" for m in "rwkvag"])
        specs.append(_Spec(blk + "time_mix_lerp_fused.weight", shape, make, True))
        for name in "wav" if i > 0 else "wa":
            _emit(specs, f"{blk}time_mix_{name}0.weight", src.get(att + f"{name}0"), transform="flat")
            # The decay LoRA stays f32 at f16, as in llama.cpp's converter (precision of exp(-exp(w))).
            _emit(specs, f"{blk}time_mix_{name}1.weight", src.get(att + f"{name}1"), transform="t", keep_f32=name == "w")
            _emit(specs, f"{blk}time_mix_{name}2.weight", src.get(att + f"{name}2"), transform="t", keep_f32=name == "w")
        if i == 0:
            # Layer 0 has no value residual; llama.cpp still loads one, of the ICLR rank, and ignores it.
            for key in ("v0", "v1", "v2"):
                if att + key in src:
                    src.get(att + key)
            zero_v = {"v0": (n_embd,), "v1": (rank["a"], n_embd), "v2": (n_embd, rank["a"])}
            for key, shp in zero_v.items():
                specs.append(_Spec(f"{blk}time_mix_{key}.weight", shp, _zeros(shp), len(shp) == 1))
        _emit(specs, blk + "time_mix_g1.weight", src.get(att + "g1"), transform="t")
        _emit(specs, blk + "time_mix_g2.weight", src.get(att + "g2"), transform="t")
        for key in ("k_k", "k_a", "r_k"):
            _emit(specs, f"{blk}time_mix_{key}.weight", src.get(att + key), transform="flat")
        for ours, theirs in (("receptance", "receptance"), ("key", "key"), ("value", "value"), ("output", "output")):
            _emit(specs, f"{blk}time_mix_{ours}.weight", src.get(f"{att}{theirs}.weight"))
        ffn = f"blocks.{i}.ffn."
        _emit(specs, blk + "channel_mix_lerp_k.weight", src.get(ffn + "x_k"), transform="flat")
        _emit(specs, blk + "channel_mix_key.weight", src.get(ffn + "key.weight"))
        _emit(specs, blk + "channel_mix_value.weight", src.get(ffn + "value.weight"))
    src.check_all_used()
    meta = {
        "arch": "rwkv7", "n_layer": n_layer, "n_embd": n_embd, "n_ff": n_ff, "head_size": head_size,
        "decay_lora_rank": rank["w"], "iclr_lora_rank": rank["a"], "value_residual_mix_lora_rank": rank["v"],
        "gate_lora_rank": rank["g"], "vocab_size": int(src.get("emb.weight").shape[0]),
    }
    return meta, specs


def _plan_v6(state: dict[str, Any], n_layer: int, path: Path) -> tuple[dict[str, Any], list[_Spec]]:
    src = _Source(state, path)
    specs: list[_Spec] = []
    _common(src, specs)
    n_head, head_size = (int(s) for s in src.get("blocks.0.att.time_faaaa").shape)
    n_embd = int(src.get("emb.weight").shape[1])
    mix_dim = int(src.get("blocks.0.att.time_maa_w1").shape[1]) // 5
    decay_dim = int(src.get("blocks.0.att.time_decay_w1").shape[1])
    n_ff = int(src.get("blocks.0.ffn.key.weight").shape[0])
    for i in range(n_layer):
        att, ffn, blk = f"blocks.{i}.att.", f"blocks.{i}.ffn.", f"blk.{i}."
        _block_norms(src, specs, i)
        _emit(specs, blk + "time_mix_lerp_x.weight", src.get(att + "time_maa_x"), transform="flat")
        shape, make = _fused(src, [att + f"time_maa_{m}" for m in "wkvrg"])
        specs.append(_Spec(blk + "time_mix_lerp_fused.weight", shape, make, True))
        _emit(specs, blk + "time_mix_w1.weight", src.get(att + "time_maa_w1"), transform="t", keep_f32=True)
        _emit(specs, blk + "time_mix_w2.weight", src.get(att + "time_maa_w2"), transform="p021", keep_f32=True)
        _emit(specs, blk + "time_mix_first.weight", src.get(att + "time_faaaa"), keep_f32=True)
        _emit(specs, blk + "time_mix_decay.weight", src.get(att + "time_decay"), transform="flat")
        _emit(specs, blk + "time_mix_decay_w1.weight", src.get(att + "time_decay_w1"), transform="t", keep_f32=True)
        _emit(specs, blk + "time_mix_decay_w2.weight", src.get(att + "time_decay_w2"), transform="t", keep_f32=True)
        for name in ("key", "value", "receptance", "gate", "output"):
            _emit(specs, f"{blk}time_mix_{name}.weight", src.get(f"{att}{name}.weight"))
        _emit(specs, blk + "channel_mix_lerp_k.weight", src.get(ffn + "time_maa_k"), transform="flat")
        _emit(specs, blk + "channel_mix_lerp_r.weight", src.get(ffn + "time_maa_r"), transform="flat")
        for name in ("key", "value", "receptance"):
            _emit(specs, f"{blk}channel_mix_{name}.weight", src.get(f"{ffn}{name}.weight"))
    src.check_all_used()
    meta = {
        "arch": "rwkv6", "n_layer": n_layer, "n_embd": n_embd, "n_ff": n_ff, "head_size": head_size,
        "time_mix_extra_dim": mix_dim, "time_decay_extra_dim": decay_dim, "n_head": n_head,
        "vocab_size": int(src.get("emb.weight").shape[0]),
    }
    return meta, specs


# ---------------------------------------------------------------------------- vocabulary


@dataclass
class _Vocab:
    model: str  # llama.cpp's tokenizer model: "rwkv", "gpt2" or "none"
    label: str
    tokens: list[str]
    types: list[int]  # gguf.TokenType values
    merges: list[str]


_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED = 1, 2, 3, 4, 5  # gguf.TokenType


def _vocabulary(src: Path, rows: int) -> _Vocab:
    """The tokenizer section for a model with `rows` embedding rows."""
    from weprompt_cli.engine.tokenizer import WORLD_VOCAB_SIZE, sidecar_path

    sidecar = sidecar_path(src)
    vocab: _Vocab | None = None
    if sidecar.is_file():
        vocab = _bpe_vocab(sidecar, rows)
    elif rows == WORLD_VOCAB_SIZE:
        vocab = _world_vocab(rows)
    if vocab is None or len(set(vocab.tokens)) != len(vocab.tokens):
        # llama.cpp aborts on duplicate token texts; a placeholder vocabulary loads anywhere.
        vocab = _Vocab("none", "placeholder", [], [], [])
    return vocab


def _escape_bytes(data: bytes) -> str:
    """A token's bytes in the escaped text form llama.cpp's "rwkv" tokenizer reads back."""
    named = {0x5C: "\\\\", 0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
    return "".join(named.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in data)


def _world_vocab(rows: int) -> _Vocab:
    from weprompt_cli.engine.tokenizer import world_vocab_file

    tokens = [f"[PAD{i}]" for i in range(rows)]
    types = [_UNUSED] * rows
    tokens[0], types[0] = "<s>", _CONTROL  # id 0 ends a document; it is not in the file
    for line in world_vocab_file().read_text(encoding="utf-8").splitlines():
        idx_text, rest = line.split(" ", 1)
        idx = int(idx_text)
        # `<id> <python str or bytes literal> <byte length>`; literal_eval runs nothing.
        literal = ast.literal_eval(rest[: rest.rindex(" ")])
        data = literal.encode("utf-8") if isinstance(literal, str) else bytes(literal)
        if 0 < idx < rows:
            tokens[idx], types[idx] = _escape_bytes(data), _NORMAL
    return _Vocab("rwkv", "rwkv-world", tokens, types, [])


def _bpe_vocab(sidecar: Path, rows: int) -> _Vocab | None:
    """A byte-level BPE `tokenizers` JSON as llama.cpp's "gpt2" BPE; None for other kinds."""
    try:
        spec = json.loads(sidecar.read_text(encoding="utf-8"))
        model = spec["model"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidFileError(f"not a tokenizers JSON file ({type(exc).__name__})", path=sidecar) from None
    pre = spec.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) \
            or spec.get("normalizer"):
        return None  # llama.cpp's gpt2 BPE would split text differently
    tokens: list[str | None] = [None] * rows
    types = [_UNUSED] * rows
    entries = [(int(i), str(piece), _NORMAL) for piece, i in model.get("vocab", {}).items()]
    for added in spec.get("added_tokens", []):
        entries.append((int(added["id"]), str(added["content"]), _CONTROL if added.get("special") else _USER_DEFINED))
    for idx, piece, kind in entries:
        if idx >= rows:
            raise InvalidFileError(f"the tokenizer has token id {idx} but the model only {rows} rows", path=sidecar)
        tokens[idx], types[idx] = piece, kind
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    filled = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]
    return _Vocab("gpt2", f"bpe ({sidecar.name})", filled, types, merges)


# ---------------------------------------------------------------------------- writing


def _write_gguf(gguf: Any, path: Path, meta: dict[str, Any], specs: list[_Spec], vocab: _Vocab, quant: str,
                name: str, progress: Progress | None, total: int) -> None:
    """Write the GGUF (quant "f32" or "f16") one tensor at a time, so a big model never sits in memory twice."""
    import numpy as np
    import torch

    arch = meta["arch"]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_context_length(CONTEXT_LENGTH)
    w.add_embedding_length(meta["n_embd"])
    w.add_block_count(meta["n_layer"])
    w.add_feed_forward_length(meta["n_ff"])
    w.add_layer_norm_eps(LAYER_NORM_EPS)
    w.add_wkv_head_size(meta["head_size"])
    w.add_head_count(0)  # read by llama.cpp's common loader, unused by RWKV
    if arch == "rwkv7":
        w.add_decay_lora_rank(meta["decay_lora_rank"])
        w.add_iclr_lora_rank(meta["iclr_lora_rank"])
        w.add_value_residual_mix_lora_rank(meta["value_residual_mix_lora_rank"])
        w.add_gate_lora_rank(meta["gate_lora_rank"])
    else:
        w.add_time_mix_extra_dim(meta["time_mix_extra_dim"])
        w.add_time_decay_extra_dim(meta["time_decay_extra_dim"])
        w.add_rescale_every_n_layers(0)  # .pth weights are not rescaled
    w.add_file_type(_LLAMA_FTYPES[quant])
    w.add_tokenizer_model(vocab.model)
    if vocab.model == "none":
        w.add_vocab_size(meta["vocab_size"])
    else:
        if vocab.model == "gpt2":
            w.add_tokenizer_pre("gpt-2")
            w.add_token_merges(vocab.merges)
        w.add_token_list(vocab.tokens)
        w.add_token_types(vocab.types)
        w.add_add_bos_token(False)
    # Decide each tensor's type before the header: f16 unless it must stay f32 or would overflow f16.
    types: list[Any] = []
    for spec in specs:
        f16 = quant == "f16" and not spec.keep_f32 and _fits_f16(spec.make())
        types.append(np.float16 if f16 else np.float32)
        nbytes = int(np.prod(spec.shape)) * (2 if f16 else 4)
        w.add_tensor_info(spec.name, spec.shape, np.dtype(types[-1]), nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for done, (spec, dtype) in enumerate(zip(specs, types), start=1):
        tensor = spec.make().detach().to(torch.float32)
        array = np.ascontiguousarray(tensor.numpy().astype(dtype, copy=False))
        if array.shape != spec.shape:
            raise WePromptError(f"internal error: {spec.name} has shape {array.shape}, planned {spec.shape}")
        w.write_tensor_data(array)
        if progress is not None:
            progress(done, total)
    w.close()


def _fits_f16(tensor: Any) -> bool:
    """True when every value is within f16's range (else the tensor is written as f32)."""
    import torch

    lo, hi = torch.aminmax(tensor.detach().to(torch.float32) if tensor.dtype == torch.bfloat16 else tensor.detach())
    return max(abs(float(lo)), abs(float(hi))) <= _F16_MAX


def _quantize(lib: Any, source: Path, target: Path, quant: str) -> None:
    """Quantize `source` (an f16 GGUF) into `target` with llama.cpp; WePromptError with its last log line."""
    import ctypes

    from weprompt_cli.engine.llama_context import last_error, log_mark

    params = lib.llama_model_quantize_default_params()
    params.ftype = _LLAMA_FTYPES[quant]
    params.nthread = max(1, os.cpu_count() or 1)
    mark = log_mark()
    rc = int(lib.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params)))
    if rc != 0 or not target.is_file():
        raise WePromptError(f"llama.cpp could not quantize to {quant}: {last_error(mark, f'error {rc}')}", path=source)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_sidecar(src: Path, out: Path) -> Path | None:
    """Copy `<stem>.tokenizer.json` beside the output as `<outstem>.tokenizer.json`; its path, or None."""
    from weprompt_cli.atomic import atomic_write_bytes
    from weprompt_cli.engine.tokenizer import sidecar_path

    sidecar = sidecar_path(src)
    if not sidecar.is_file():
        return None
    target = out.with_name(out.name.removesuffix(".gguf") + ".tokenizer.json")
    if target.exists() and os.path.samefile(target, sidecar):
        return target
    try:
        data = sidecar.read_bytes()
    except OSError as exc:
        raise InvalidFileError(f"cannot read the tokenizer file ({exc.strerror or exc})", path=sidecar) from None
    atomic_write_bytes(target, data)
    return target
