"""The llama.cpp backend: RWKV-6/RWKV-7 GGUF files (F32/F16/Q8_0/Q5_1/Q4_0...) through llama-cpp-python.

WePrompt's tokenizer and sampler stay in charge: token ids go in, float32 logits come
out. A state is a `LlamaState`: the sequence's RNN state as llama.cpp's sequence-state
blob. The context runs one sequence; the state whose numbers sit in it is "live", and
switching to another state saves the live one's blob first (a few MB copied, only when
sessions or branches actually switch), so a turn decodes at llama.cpp's own speed.

Strategy strings: `cpu`, or a GPU backend with the number of layers to offload:
`cuda`, `cuda *20`, `metal`, `vulkan *8` (all layers when no count is given). A one-device
rwkv strategy (`cpu fp32`, `cuda fp16`) means its device: the file carries the weight format.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weprompt_cli.engine.base import Cancel, Engine, Progress
from weprompt_cli.engine.checkpoint import ModelInfo
from weprompt_cli.engine.sampling import Sampler
from weprompt_cli.engine.tokenizer import Tokenizer, resolve_tokenizer
from weprompt_cli.errors import HardwareError, InvalidFileError, UsageError

if TYPE_CHECKING:
    from weprompt_cli.engine.llama_context import LlamaContext

STATE_FORMAT = "llama.cpp-seq"  # `{"llama_seq": uint8 tensor}`: llama_state_seq_get_data's blob
STATE_KEY = "llama_seq"
GPU_DEVICES = ("cuda", "metal", "vulkan")
STRATEGY_EXAMPLES = "examples: 'cpu', 'cuda', 'cuda *20', 'metal', 'vulkan *8'"
_STRATEGY = re.compile(r"^(cpu|cuda|metal|vulkan)(?:\s+\*(\d+))?$")
_SYSTEM_INFO_NAMES = {"cuda": ("CUDA",), "metal": ("Metal", "MTL"), "vulkan": ("Vulkan",)}
ARCH_OF = {"rwkv7": "v7", "rwkv6": "v6"}


@dataclass(frozen=True)
class GgufStrategy:
    """Where a GGUF model runs: the device and how many layers go to it (None: all)."""

    device: str
    layers: int | None = None

    def __str__(self) -> str:
        return self.device if self.layers is None else f"{self.device} *{self.layers}"

    @property
    def n_gpu_layers(self) -> int:
        if self.device == "cpu":
            return 0
        return self.layers if self.layers is not None else 10_000  # llama.cpp clamps to the model's layers


def parse_gguf_strategy(text: str | None) -> GgufStrategy:
    """`cpu`, `cuda [*N]`, `metal [*N]`, `vulkan [*N]` (or "auto", which asks the build); UsageError otherwise."""
    raw = " ".join((text or "auto").split()).lower()
    if raw == "auto":
        return GgufStrategy(_auto_device())
    # An rwkv-package strategy of one device ("cpu fp32", "cuda fp16", e.g. from config.toml) means that
    # device: a GGUF file carries its own weight format.
    rwkv_style = re.match(r"^(cpu|cuda)(?::\d+)? (?:fp16|fp32|bf16)(?:i8)?(?: \*(\d+))?$", raw)
    if rwkv_style:
        raw = rwkv_style.group(1) + (f" *{rwkv_style.group(2)}" if rwkv_style.group(2) and rwkv_style.group(1) != "cpu" else "")
    match = _STRATEGY.match(raw)
    if not match:
        hint = STRATEGY_EXAMPLES
        if any(word in raw for word in ("fp16", "fp32", "bf16", "i8")):
            hint = "GGUF models carry their weight format in the file; " + STRATEGY_EXAMPLES
        raise UsageError(f"invalid strategy {text!r} for a GGUF model", hint=hint)
    device, layers = match.group(1), match.group(2)
    if device == "cpu" and layers is not None:
        raise UsageError(f"invalid strategy {text!r}: 'cpu' takes no layer count", hint=STRATEGY_EXAMPLES)
    return GgufStrategy(device, int(layers) if layers is not None else None)


def gpu_backends() -> list[str]:
    """The GPU backends this build of llama.cpp was compiled with ([] for a CPU build)."""
    from weprompt_cli.engine.llama_context import import_llama_cpp

    lib = import_llama_cpp()
    if not bool(lib.llama_supports_gpu_offload()):
        return []
    info = lib.llama_print_system_info().decode("utf-8", errors="replace")
    return [device for device, names in _SYSTEM_INFO_NAMES.items() if any(name in info for name in names)]


def _auto_device() -> str:
    found = gpu_backends()
    return found[0] if found else "cpu"


def check_gguf_strategy(strategy: GgufStrategy) -> None:
    """HardwareError when this build of llama.cpp cannot run `strategy`."""
    if strategy.device == "cpu":
        return
    found = gpu_backends()
    if strategy.device not in found:
        have = ", ".join(found) if found else "none: this build runs on the CPU only"
        raise HardwareError(
            f"strategy {str(strategy)!r} needs llama.cpp built with {strategy.device} support (GPU backends here: {have})",
            hint=f"use --strategy cpu, or rebuild: WEPROMPT_LLAMA_CMAKE_ARGS=\"-DGGML_{strategy.device.upper()}=on\" "
            "bash scripts/setup.sh --gguf",
        )


# ---------------------------------------------------------------------------- states


class LlamaState:
    """One sequence's RNN state: its llama.cpp blob, or the numbers live in the engine's context."""

    __slots__ = ("blob", "dirty")

    def __init__(self, blob: bytes | None = None) -> None:
        self.blob = blob  # None: the zero state (start of a document)
        self.dirty = False  # fed since `blob` was taken: the context holds newer numbers

    def __repr__(self) -> str:
        size = len(self.blob) if self.blob else 0
        return f"<LlamaState {size} bytes{' (live, newer)' if self.dirty else ''}>"


class _Step:
    """The per-token loop on llama.cpp: WePrompt's sampler, then one decode of that token."""

    def __init__(self, engine: LlamaEngine, logits: np.ndarray, state: LlamaState, sampler: Sampler) -> None:
        self.engine, self.logits, self.state, self.sampler = engine, logits, state, sampler

    def next_token(self) -> int:
        token = self.sampler.sample(self.logits)
        self.logits = self.engine._eval([token], self.state)
        return token

    def observe(self, token: int, text: str) -> None:
        self.sampler.observe(token, text)

    def finish(self) -> np.ndarray:
        return self.logits


class LlamaEngine(Engine):
    """A GGUF model in a llama.cpp context: `feed` a prompt, then `generate` a reply."""

    backend = "llama.cpp"
    state_format = STATE_FORMAT
    tensor_framework = "numpy"  # logits, sampler and checkpoints without torch: a GGUF chat never imports it

    def __init__(
        self,
        context: LlamaContext,
        info: ModelInfo,
        strategy: GgufStrategy,
        tokenizer: Tokenizer,
        *,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(cache_dir=cache_dir)
        self.context = context
        self.info = info
        self.gguf_strategy = strategy
        self.strategy = str(strategy)
        self.tokenizer = tokenizer
        self._live: LlamaState | None = None  # the state whose numbers are in sequence 0

    def describe(self) -> list[str]:
        m = self.context.metadata
        from weprompt_cli.engine.llama_context import llama_cpp_version

        where = "CPU" if self.gguf_strategy.device == "cpu" else f"{self.gguf_strategy.device} ({self.strategy})"
        return [
            f"backend llama.cpp (llama-cpp-python {llama_cpp_version()}) · {self.info.arch_label} "
            f"{m.n_layer} x {m.n_embd} · {m.file_type} · {self.info.path.name} · {where}, "
            f"{self.context.n_threads} threads",
            *self.notes,
        ]

    def close(self) -> None:
        self._live = None
        self.context.close()

    # ------------------------------------------------------------------ states
    def zero_state(self) -> LlamaState:
        return LlamaState()

    def _activate(self, state: LlamaState) -> None:
        """Make `state` the one in sequence 0 (saving the state that was there)."""
        if self._live is state:
            return
        previous = self._live
        if previous is not None and previous.dirty:
            previous.blob = self.context.get_state(0)
            previous.dirty = False
        self._live = None
        self.context.clear(0)
        if state.blob is not None:
            self.context.set_state(0, state.blob)
        self._live = state

    def _sync(self, state: LlamaState) -> bytes | None:
        """`state`'s blob, taken from the context first when it is live and newer."""
        if state.dirty and self._live is state:
            state.blob = self.context.get_state(0)
            state.dirty = False
        return state.blob

    def clone_state(self, state: LlamaState) -> LlamaState:
        return LlamaState(self._sync(state))

    def state_nbytes(self, state: LlamaState) -> int:
        blob = self._sync(state)
        return len(blob) if blob is not None else self.context.metadata.state_size

    def state_to_tensors(self, state: LlamaState) -> dict[str, np.ndarray]:
        blob = self._sync(state) or b""
        return {STATE_KEY: np.frombuffer(blob, dtype=np.uint8).copy()}

    def state_from_tensors(self, tensors: dict[str, Any]) -> LlamaState:
        blob = tensors.get(STATE_KEY) if sorted(tensors) == [STATE_KEY] else None
        if blob is None or str(blob.dtype).removeprefix("torch.") != "uint8":
            raise InvalidFileError(
                f"this state was not saved by the llama.cpp backend ({len(tensors)} tensors: {', '.join(sorted(tensors)[:3])})"
            )
        data = np.asarray(blob.numpy() if hasattr(blob, "numpy") else blob).tobytes()
        state = LlamaState(data or None)
        if data:
            self._activate(state)  # llama.cpp checks that the blob fits this model now, not mid-turn
        return state

    # ------------------------------------------------------------------ model
    def _eval(self, tokens: list[int], state: LlamaState) -> np.ndarray:
        self._activate(state)
        state.dirty = True
        return self.context.eval(tokens, 0)

    def feed(
        self,
        tokens: list[int],
        state: LlamaState,
        *,
        chunk: int = 256,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> np.ndarray | None:
        ids = [int(t) for t in tokens]
        if not ids:
            raise ValueError("feed() needs at least one token")
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        total, logits = len(ids), None
        for begin in range(0, total, chunk):
            if cancel is not None and cancel():
                break
            part = ids[begin : begin + chunk]
            logits = self._eval(part, state)
            self.counters.fed += len(part)
            if progress is not None:
                progress(min(begin + chunk, total), total)
        return logits

    def decode_step(self, logits: np.ndarray, state: LlamaState, sampler: Sampler) -> _Step:
        return _Step(self, logits, state, sampler)


# ---------------------------------------------------------------------------- loading


def gguf_info(context: LlamaContext) -> ModelInfo:
    """ModelInfo of a loaded GGUF model (its shapes as llama.cpp reads them)."""
    m = context.metadata
    arch = ARCH_OF.get(m.architecture)
    if arch is None:
        raise InvalidFileError(f"this GGUF holds a {m.architecture} model, not RWKV-6/RWKV-7", path=m.path)
    return ModelInfo(
        path=m.path,
        arch=arch,
        n_layer=m.n_layer,
        n_embd=m.n_embd,
        vocab_size=m.vocab_size,
        n_head=m.n_head,
        head_size=m.head_size,
        n_params=m.n_params,
        file_size=m.file_size,
        quantization=m.file_type,
    )


def default_threads() -> int:
    """Threads for llama.cpp: the CPUs this process may use ($WEPROMPT_THREADS overrides)."""
    text = os.environ.get("WEPROMPT_THREADS", "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_llama_engine(
    path: str | Path,
    strategy: str | None = "auto",
    *,
    models_dir: Path | None = None,
    cache_dir: Path | None = None,
    probe: bool = True,
) -> LlamaEngine:
    """Load a GGUF model: check the strategy, probe the first forward in a child process
    (once per file and build: a build that crashes on this quantization is a HardwareError,
    not a dead chat), then open the context and WePrompt's tokenizer for it."""
    from weprompt_cli.engine.llama_context import LlamaContext, import_llama_cpp
    from weprompt_cli.engine.llama_probe import probe_forward

    path = Path(path).expanduser()
    import_llama_cpp()  # UsageError with the install line when the extra is missing
    parsed = parse_gguf_strategy(strategy)
    check_gguf_strategy(parsed)
    notes = []
    threads = default_threads()
    if probe and parsed.device == "cpu":
        result = probe_forward(path, cache_dir=cache_dir, n_threads=min(threads, 2))
        notes.append("first-forward probe: " + ("passed before (cached)" if result.cached else
                                                f"passed in a child process ({result.seconds:.1f} s)"))
    context = LlamaContext.open(path, n_threads=threads, n_gpu_layers=parsed.n_gpu_layers, n_batch=512)
    try:
        info = gguf_info(context)
        tokenizer = resolve_tokenizer(path, info, models_dir)
        check_vocabulary(path, tokenizer, info, context)
    except BaseException:
        context.close()
        raise
    engine = LlamaEngine(context, info, parsed, tokenizer, cache_dir=cache_dir)
    engine.notes.extend(notes)
    return engine


def check_vocabulary(path: Path, tokenizer: Tokenizer, info: ModelInfo, context: LlamaContext) -> None:
    """InvalidFileError when the GGUF's own vocabulary is not the one WePrompt's tokenizer encodes with.

    A GGUF embeds the vocabulary it was converted with; the sidecar `<stem>.tokenizer.json`
    (or the World vocabulary) is what WePrompt encodes with. Ids only mean the same words
    when both list the same tokens, so a sample of them is compared. The tokens are read from
    the model llama.cpp loaded: reading them from the file again (the `gguf` package's reader)
    raised the process's peak memory by half (+135 MiB on a 12x768 Q8_0).
    """
    from weprompt_cli.engine.llama_vocab import token_bytes_of
    from weprompt_cli.engine.tokenizer import JsonTokenizer, WorldTokenizer

    model = context.meta("tokenizer.ggml.model")
    if model is None:
        return  # no vocabulary in the file: nothing to compare
    n_tokens = context.n_vocab
    size = getattr(tokenizer, "vocab_size", None)
    if isinstance(tokenizer, JsonTokenizer) and size is not None and size != n_tokens:
        raise InvalidFileError(
            f"the GGUF's vocabulary has {n_tokens} tokens but its tokenizer file {tokenizer.path.name} has {size}",
            path=path,
            hint="use the tokenizer the model was converted with (weprompt models convert copies it beside the GGUF)",
        )
    n = min(n_tokens, info.vocab_size)
    for token_id in range(0, n, max(1, n // 512)):
        if isinstance(tokenizer, WorldTokenizer) and token_id == 0:
            continue
        ours = tokenizer.token_bytes(token_id) if tokenizer.has_bytes else tokenizer.decode([token_id]).encode()
        theirs = token_bytes_of(model, context.token_text(token_id))
        if theirs is not None and ours and ours != theirs:
            raise InvalidFileError(
                f"the GGUF's vocabulary does not match the tokenizer WePrompt would use ({tokenizer.name}): "
                f"token {token_id} is {theirs!r} in the file and {ours!r} in the tokenizer",
                path=path,
                hint="put the model's own tokenizer beside it as <stem>.tokenizer.json",
            )
