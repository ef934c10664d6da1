"""A typed wrapper over llama-cpp-python's low-level API for RWKV GGUF models.

Token ids go in, float32 logits of the last token come out; WePrompt's own tokenizer
and sampler stay in charge. Each sequence id is one independent RNN state, read and
written through llama.cpp's sequence-state API (`get_state`/`set_state`), so a session
can checkpoint per turn exactly as with `.pth` models.

Facts this module relies on (llama-cpp-python 0.3.36):
- RWKV has no positional encoding, but llama.cpp still checks that a sequence's batch
  positions continue from the last position in its memory (Y = X + 1). The memory is
  the source of truth: a state blob carries its position, so positions are read back
  with `llama_memory_seq_pos_max` before each decode instead of being counted here.
- The logits pointer points into the context's output buffer and is only valid until
  the next decode: it is copied at once.
- llama.cpp prints through one process-wide log callback; it is routed to a bounded
  list (`log_tail`) so nothing reaches the terminal and errors can quote its last lines.

llama_probe.py runs a model's first forward in a child process, so a build whose CPU
kernels die with SIGILL/SIGSEGV on a quantization becomes a `HardwareError` instead of
killing the caller.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from weprompt_cli.errors import (
    HardwareError,
    InvalidFileError,
    NotFoundError,
    UsageError,
    WePromptError,
)

INSTALL_HINT = "bash scripts/setup.sh --gguf  (or pip install 'weprompt[gguf]')"
# AVX2 kernels run on every x86-64 CPU of the last decade, and compute every RWKV-7 head size
# that is a multiple of 32 (see wkv7_simd_step); AMX kernels crashed with SIGILL here.
REBUILD_HINT = (
    'rebuild llama-cpp-python for this CPU: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=OFF '
    '-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" '
    "pip install --force-reinstall --no-cache-dir llama-cpp-python"
)
RWKV_ARCHES = ("rwkv6", "rwkv7")
GGUF_MAGIC = b"GGUF"

# llama_ftype values (include/llama.h) -> the names llama.cpp's tools print.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
}

# ---------------------------------------------------------------------------- import and logs

_LOG_LOCK = threading.Lock()
_LOG_LINES: deque[tuple[int, int, str]] = deque(maxlen=500)  # (serial, level, text)
_log_serial = 0
_log_partial: list[str] = []
_log_partial_level = 0
_log_callback: Any = None  # the ctypes callback object must outlive every call into llama.cpp
_backend_ready = False

# enum ggml_log_level
LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, _LOG_CONT = 1, 2, 3, 4, 5


def _on_log(level: int, text: bytes | None, _user: Any) -> None:
    """llama.cpp's log callback: collect whole lines, print nothing."""
    global _log_serial, _log_partial_level
    piece = (text or b"").decode("utf-8", errors="replace")
    with _LOG_LOCK:
        if not _log_partial and level != _LOG_CONT:
            _log_partial_level = level  # a continued line keeps the level it started with
        _log_partial.append(piece)
        *lines, rest = "".join(_log_partial).split("\n")
        for line in lines:
            if line.strip():
                _log_serial += 1
                _LOG_LINES.append((_log_serial, _log_partial_level, line.rstrip()))
        _log_partial[:] = [rest] if rest else []


def log_mark() -> int:
    """A marker for `log_tail(since=...)`: the serial of the last captured line."""
    with _LOG_LOCK:
        return _log_serial


def log_tail(n: int = 8, *, since: int = 0, min_level: int = 0) -> list[str]:
    """The last `n` captured llama.cpp log lines after marker `since`, at `min_level` (LOG_WARN...) or above."""
    with _LOG_LOCK:
        lines = [text for serial, level, text in _LOG_LINES if serial > since and level >= min_level]
    return lines[-n:]


def last_error(since: int, fallback: str) -> str:
    """The most specific llama.cpp error line logged after marker `since`, or `fallback`."""
    errors = log_tail(20, since=since, min_level=LOG_ERROR)
    texts = []
    for line in errors:
        # "llama_model_load: error loading model: <why>": drop the C function name and the repeated prefix.
        head, sep, tail = line.strip().partition(": ")
        text = tail if sep and " " not in head else line.strip()
        while text.startswith("error loading model: "):
            text = text.removeprefix("error loading model: ")
        texts.append(text)
    specific = [t for t in texts if "failed to load model" not in t]
    return (specific or texts or [fallback])[0]


def import_llama_cpp() -> ModuleType:
    """The `llama_cpp` module, its log routed to `log_tail()` and its backend initialised.

    Raises UsageError when llama-cpp-python is not installed (or its library won't load).
    """
    global _log_callback, _backend_ready
    try:
        import llama_cpp
    except ImportError:
        raise UsageError("the GGUF backend needs llama-cpp-python", hint=INSTALL_HINT) from None
    except OSError as exc:  # the package is there but its shared library is not loadable
        raise UsageError(f"llama-cpp-python is installed but its library does not load ({exc})",
                         hint=INSTALL_HINT) from None
    if _log_callback is None:
        # Importing llama_cpp installs its own callback, which prints everything to stderr.
        _log_callback = llama_cpp.llama_log_callback(_on_log)
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    if not _backend_ready:
        llama_cpp.llama_backend_init()
        _backend_ready = True
    return llama_cpp


def import_gguf_reader() -> Any:
    """`gguf.GGUFReader` (the format's own reader, installed with the [gguf] extra); UsageError when missing."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise UsageError("GGUF models need the gguf package (the [gguf] extra)", hint=INSTALL_HINT) from None
    return GGUFReader


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version ("" when it is not installed), without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama_cpp_python")
    except PackageNotFoundError:
        return ""


# ---------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class GgufMetadata:
    """What a loaded GGUF model is, as llama.cpp reads it."""

    path: Path
    architecture: str  # "rwkv7" or "rwkv6"
    name: str
    n_layer: int
    n_embd: int
    head_size: int
    n_head: int
    vocab_size: int
    file_type: str  # "F32", "F16", "Q8_0", ...
    size: int  # bytes of tensor data
    n_params: int
    file_size: int
    description: str  # llama.cpp's one-line description, e.g. "rwkv7 ?B Q8_0"
    state_size: int  # bytes of one sequence's state blob (after at least one token)


def _check_gguf_file(path: Path) -> None:
    """NotFoundError / InvalidFileError for a path that is not a GGUF file at all."""
    if not path.exists():
        raise NotFoundError("model file not found", path=path, hint="check the path, or see 'weprompt models list'")
    if not path.is_file():
        raise InvalidFileError("not a GGUF file: this is a folder", path=path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise InvalidFileError(f"cannot read the model file ({exc.strerror or exc})", path=path) from None
    if magic != GGUF_MAGIC:
        raise InvalidFileError("not a GGUF file (no GGUF header)", path=path)


# ---------------------------------------------------------------------------- the context


class LlamaContext:
    """One loaded RWKV GGUF model and its context: ids in, logits out, one RNN state per sequence id.

    Not thread-safe: one thread at a time (llama.cpp runs its own threads inside each call).
    """

    def __init__(self, lib: ModuleType, path: Path, model: Any, ctx: Any, *, n_batch: int, n_seq_max: int,
                 n_threads: int, n_threads_batch: int) -> None:
        # Use LlamaContext.open(); this only takes ownership of the handles.
        self._lib = lib
        self._model = model
        self._ctx = ctx
        self._mem = lib.llama_get_memory(ctx)
        self._batch = lib.llama_batch_init(n_batch, 0, 1)
        self.path = path
        self.n_batch = n_batch
        self.n_seq_max = n_seq_max
        self.n_threads = n_threads
        self.n_threads_batch = n_threads_batch
        self.n_vocab = int(lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model)))
        self.tokens_evaluated = 0  # every token fed through llama_decode (tests spy on it)
        self.decode_calls = 0
        self.metadata = self._read_metadata()

    # ------------------------------------------------------------------ open / close

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        n_threads: int,
        n_threads_batch: int | None = None,
        n_gpu_layers: int = 0,
        n_seq_max: int = 1,
        n_ctx: int = 0,
        n_batch: int = 512,
    ) -> LlamaContext:
        """Load an RWKV GGUF file: NotFoundError, InvalidFileError (not GGUF, not RWKV, corrupt) or UsageError."""
        path = Path(path).expanduser()
        _check_gguf_file(path)
        if n_threads < 1 or n_seq_max < 1 or n_batch < 1 or n_ctx < 0:
            raise ValueError("n_threads, n_seq_max and n_batch must be >= 1, n_ctx >= 0")
        lib = import_llama_cpp()
        mark = log_mark()
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = n_gpu_layers
        model = lib.llama_model_load_from_file(str(path).encode(), mparams)
        if not model:
            raise InvalidFileError(f"llama.cpp cannot load this GGUF: {last_error(mark, 'unknown error')}", path=path)
        ctx = None
        try:
            arch = _meta_str(lib, model, "general.architecture") or "?"
            if arch not in RWKV_ARCHES:
                raise InvalidFileError(f"this GGUF holds a {arch} model, not RWKV-6/RWKV-7", path=path)
            if arch == "rwkv7":
                _check_wkv7_head_size(lib, int(_meta_str(lib, model, "rwkv7.wkv.head_size") or 0), path)
            cparams = lib.llama_context_default_params()
            # RWKV's state does not grow with the context; n_ctx only bounds the batch size.
            cparams.n_ctx = n_ctx
            cparams.n_batch = n_batch
            cparams.n_ubatch = n_batch
            cparams.n_seq_max = n_seq_max
            cparams.n_threads = n_threads
            cparams.n_threads_batch = n_threads_batch or n_threads
            cparams.no_perf = True
            ctx = lib.llama_init_from_model(model, cparams)
            if not ctx:
                why = last_error(mark, "unknown error")
                raise InvalidFileError(f"llama.cpp cannot create a context: {why}", path=path)
            # llama.cpp may clamp n_batch to n_ctx.
            return cls(lib, path, model, ctx, n_batch=int(lib.llama_n_batch(ctx)),
                       n_seq_max=int(lib.llama_n_seq_max(ctx)), n_threads=n_threads,
                       n_threads_batch=n_threads_batch or n_threads)
        except BaseException:
            if ctx:
                lib.llama_free(ctx)
            lib.llama_model_free(model)
            raise

    def close(self) -> None:
        """Free the batch, context and model (safe to call twice)."""
        lib = self._lib
        if self._ctx is not None:
            lib.llama_batch_free(self._batch)
            lib.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            lib.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> LlamaContext:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown the library may be gone
            self.close()

    def _live(self) -> Any:
        if self._ctx is None:
            raise RuntimeError("this LlamaContext is closed")
        return self._ctx

    def set_threads(self, n_threads: int, n_threads_batch: int | None = None) -> None:
        """Threads for one-token steps and for prompt batches."""
        self.n_threads, self.n_threads_batch = n_threads, n_threads_batch or n_threads
        self._lib.llama_set_n_threads(self._live(), self.n_threads, self.n_threads_batch)

    # ------------------------------------------------------------------ metadata

    def _read_metadata(self) -> GgufMetadata:
        lib, model = self._lib, self._model
        arch = _meta_str(lib, model, "general.architecture") or "?"
        head_size = int(_meta_str(lib, model, f"{arch}.wkv.head_size") or 0)
        n_embd = int(lib.llama_model_n_embd(model))
        ftype_text = _meta_str(lib, model, "general.file_type")
        buf = ctypes.create_string_buffer(256)
        lib.llama_model_desc(model, buf, len(buf))
        description = buf.value.decode("utf-8", errors="replace")
        if ftype_text and ftype_text.isdigit():
            file_type = FILE_TYPES.get(int(ftype_text), f"type {ftype_text}")
        else:
            file_type = description.rsplit(" ", 1)[-1] if description else "?"
        n_layer = int(lib.llama_model_n_layer(model))
        state_size = 0
        if head_size:
            # Per layer: 2 token-shift rows of n_embd and a head_size x n_embd WKV matrix, all f32.
            state_size = n_layer * (2 * n_embd + n_embd * head_size) * 4
        return GgufMetadata(
            path=self.path.resolve(),
            architecture=arch,
            name=_meta_str(lib, model, "general.name") or self.path.stem,
            n_layer=n_layer,
            n_embd=n_embd,
            head_size=head_size,
            n_head=n_embd // head_size if head_size else 0,
            vocab_size=self.n_vocab,
            file_type=file_type,
            size=int(lib.llama_model_size(model)),
            n_params=int(lib.llama_model_n_params(model)),
            file_size=self.path.stat().st_size,
            description=description,
            state_size=state_size,
        )

    def meta(self, key: str) -> str | None:
        """One GGUF metadata value as text (None when absent)."""
        self._live()
        return _meta_str(self._lib, self._model, key)

    def token_text(self, token_id: int) -> bytes:
        """A token's text as the GGUF's vocabulary stores it, read from the loaded model (no second read of the file)."""
        self._live()
        if not 0 <= token_id < self.n_vocab:
            raise ValueError(f"token id {token_id} is outside the vocabulary (0..{self.n_vocab - 1})")
        text = self._lib.llama_vocab_get_text(self._lib.llama_model_get_vocab(self._model), token_id)
        return bytes(text or b"")

    # ------------------------------------------------------------------ evaluation

    def position(self, seq_id: int = 0) -> int:
        """How many tokens sequence `seq_id` has seen (the next position), as llama.cpp's memory says."""
        self._check_seq(seq_id)
        self._live()
        return int(self._lib.llama_memory_seq_pos_max(self._mem, seq_id)) + 1

    def eval(self, tokens: Sequence[int], seq_id: int = 0) -> Any:
        """Feed `tokens` to sequence `seq_id`; the numpy float32 logits after the last one."""
        return self.eval_batch([(seq_id, tokens)])[0]

    def eval_batch(self, items: Sequence[tuple[int, Sequence[int]]]) -> list[Any]:
        """Feed several sequences at once; the logits after each item's last token, in item order.

        Each item is (seq_id, tokens); seq ids must differ. The tokens share llama_decode
        calls of up to n_batch tokens. If a decode fails, the sequences in it may have
        advanced part of the way: restore them from saved states.
        """
        self._live()
        seqs = [int(seq_id) for seq_id, _ in items]
        ids = [[int(t) for t in tokens] for _, tokens in items]
        if len(set(seqs)) != len(seqs):
            raise ValueError("a sequence id appears twice in one batch")
        for seq_id, tokens in zip(seqs, ids):
            self._check_seq(seq_id)
            if not tokens:
                raise ValueError("nothing to evaluate: an empty token list")
            bad = [t for t in tokens if not 0 <= t < self.n_vocab]
            if bad:
                raise ValueError(f"token id {bad[0]} is outside the vocabulary (0..{self.n_vocab - 1})")
        fed = [0] * len(items)  # tokens of each item already decoded
        results: list[Any] = [None] * len(items)
        batch = self._batch
        while any(done < len(tokens) for done, tokens in zip(fed, ids)):
            n = 0
            finishing: list[tuple[int, int]] = []  # (item index, batch index of its last token)
            for index, (seq_id, tokens) in enumerate(zip(seqs, ids)):
                done = fed[index]
                if done == len(tokens) or n == self.n_batch:
                    continue
                take = min(len(tokens) - done, self.n_batch - n)
                start = self.position(seq_id)  # the memory's position, right after a set_state too
                for j in range(take):
                    batch.token[n + j] = tokens[done + j]
                    batch.pos[n + j] = start + j
                    batch.n_seq_id[n + j] = 1
                    batch.seq_id[n + j][0] = seq_id
                    batch.logits[n + j] = 0
                fed[index] = done + take
                if fed[index] == len(tokens):
                    batch.logits[n + take - 1] = 1
                    finishing.append((index, n + take - 1))
                n += take
            batch.n_tokens = n
            self._decode(n)
            for index, at in finishing:
                results[index] = self._logits(at)
        return results

    def _decode(self, n: int) -> None:
        mark = log_mark()
        rc = int(self._lib.llama_decode(self._live(), self._batch))
        self.decode_calls += 1
        if rc != 0:
            raise WePromptError(f"llama.cpp could not evaluate the batch (llama_decode returned {rc}): "
                                f"{last_error(mark, 'no detail')}", path=self.path)
        self.tokens_evaluated += n

    def _logits(self, batch_index: int) -> Any:
        import numpy as np

        ptr = self._lib.llama_get_logits_ith(self._ctx, batch_index)
        if not ptr:
            raise WePromptError("llama.cpp returned no logits for this token", path=self.path)
        # The buffer is reused by the next decode: copy now.
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float32, copy=True)

    # ------------------------------------------------------------------ states

    def get_state(self, seq_id: int = 0) -> bytes:
        """Sequence `seq_id`'s RNN state (and its position) as an opaque blob."""
        self._check_seq(seq_id)
        ctx = self._live()
        size = int(self._lib.llama_state_seq_get_size(ctx, seq_id))
        buf = (ctypes.c_uint8 * max(size, 1))()
        written = int(self._lib.llama_state_seq_get_data(ctx, buf, size, seq_id))
        if written != size:
            raise WePromptError(f"llama.cpp wrote {written} of {size} state bytes", path=self.path)
        return ctypes.string_at(buf, written)

    def set_state(self, seq_id: int, data: bytes) -> None:
        """Replace sequence `seq_id`'s state with a blob from `get_state` (this model's; InvalidFileError otherwise)."""
        self._check_seq(seq_id)
        ctx = self._live()
        if not data:
            raise InvalidFileError("an empty state blob")
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        mark = log_mark()
        read = int(self._lib.llama_state_seq_set_data(ctx, buf, len(data), seq_id))
        if read == 0:
            raise InvalidFileError(f"this state does not fit this model: {last_error(mark, 'llama.cpp rejected it')}")

    def clear(self, seq_id: int = 0) -> None:
        """Reset sequence `seq_id` to the zero state at position 0."""
        self._check_seq(seq_id)
        self._live()
        self._lib.llama_memory_seq_rm(self._mem, seq_id, -1, -1)

    def _check_seq(self, seq_id: int) -> None:
        if not 0 <= seq_id < self.n_seq_max:
            raise ValueError(f"sequence id {seq_id} is outside 0..{self.n_seq_max - 1} (n_seq_max={self.n_seq_max})")

    def __repr__(self) -> str:
        m = self.metadata
        return f"<LlamaContext {m.architecture} {m.n_layer}x{m.n_embd} {m.file_type} {self.path.name}>"


def wkv7_simd_step(lib: ModuleType | None = None) -> int:
    """The head-size multiple this build's CPU WKV-7 kernel needs (1: any head size).

    Its SIMD loop walks a head in strides of GGML_F32_STEP floats with no remainder loop
    that works, so a head size that is not a multiple of the stride reads and writes past
    the head: silently wrong logits, no crash (measured: head size 32 and 96 wrong, 64 and
    128 exact on an AVX-512 build). Real RWKV-7 models use head size 64.
    """
    lib = lib or import_llama_cpp()
    info = lib.llama_print_system_info().decode("utf-8", errors="replace").replace(" ", "")
    if "AVX512=1" in info:
        return 64  # 16 floats per register x 4 registers
    if "SVE=1" in info:
        return 1  # the SVE build takes the scalar path
    if any(f"{flag}=1" in info for flag in ("AVX2", "AVX", "SSE3")):
        return 32
    if "NEON=1" in info:
        return 16
    return 1


def _check_wkv7_head_size(lib: ModuleType, head_size: int, path: Path) -> None:
    step = wkv7_simd_step(lib)
    if head_size and head_size % step:
        raise HardwareError(
            f"this build of llama.cpp computes RWKV-7 wrongly for head size {head_size}: its CPU WKV-7 kernel "
            f"needs head sizes that are multiples of {step}" + (" on an AVX-512 build" if step == 64 else ""),
            path=path,
            hint=REBUILD_HINT + "; or run the .pth checkpoint instead",
        )


def _meta_str(lib: ModuleType, model: Any, key: str) -> str | None:
    buf = ctypes.create_string_buffer(512)
    n = int(lib.llama_model_meta_val_str(model, key.encode(), buf, len(buf)))
    if n < 0:
        return None
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        lib.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    return buf.value.decode("utf-8", errors="replace")
