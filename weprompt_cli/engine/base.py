"""The engine seam: what a turn needs from a loaded model, whatever runs it.

A backend (the `rwkv` package for `.pth` files, llama.cpp for `.gguf` files) subclasses
`Engine` and implements the abstract methods; the chat layer, the session store and the
server use nothing else. Token ids go in and float32 logits come out, so WePrompt's own
tokenizer, sampler and stop handling behave the same on every backend.

A *state* is opaque to callers: a backend-specific object that `feed` and `generate`
update in place. Callers only pass states back to the same engine, and use the engine
to copy (`clone_state`), measure (`state_nbytes`), save (`state_to_tensors`: CPU
tensors for a safetensors checkpoint, with `state_format` naming the layout) and load
(`state_from_tensors`) them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weprompt_cli.engine.generation import Generation

if TYPE_CHECKING:
    import torch

    from weprompt_cli.engine.checkpoint import ModelInfo
    from weprompt_cli.engine.generation import DecodeStep
    from weprompt_cli.engine.sampling import Sampler
    from weprompt_cli.engine.tokenizer import Tokenizer
    from weprompt_cli.params import SamplingParams

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


@dataclass
class Counters:
    """Tokens this engine fed (prompts, personas, replays) and generated, since it was loaded.

    The server's `/health` reports them; tests read them to prove a resume fed nothing.
    """

    fed: int = 0
    generated: int = 0


class Engine(ABC):
    """A loaded model behind the seam: tokenize, feed, generate, and handle states.

    Attributes every backend sets:
      backend      "rwkv" or "llama.cpp"
      info         ModelInfo: path, arch ("v4".."v7"), n_layer, n_embd, vocab_size, n_head, head_size...
      strategy     how it runs, in the backend's words ("cpu fp32", "cuda fp16", "cpu q8_0"...)
      tokenizer    WePrompt's tokenizer for the model (encode/decode/token_bytes)
      state_format the layout name written into state checkpoints ("rwkv", "llama.cpp-seq")
      tensor_framework  what its logits and state tensors are: "torch" tensors or "numpy" arrays (a
                   llama.cpp engine needs no torch in the process: its sampler and checkpoints are numpy)
      notes        what loading decided and why (kernel, decode path, device): the CLI prints them with --verbose
      counters     tokens fed and generated
    """

    backend: str
    info: ModelInfo
    strategy: str
    tokenizer: Tokenizer
    state_format: str
    tensor_framework: str = "torch"

    def __init__(self, *, cache_dir: Path | None = None) -> None:
        self.notes: list[str] = []
        self.counters = Counters()
        self._cache_dir = cache_dir
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ identity
    @property
    def fingerprint(self) -> str:
        """The model's identity (file hash, shapes, size): computed once, cached under the cache folder."""
        if self._fingerprint is None:
            from weprompt_cli.engine.fingerprint import model_fingerprint

            self._fingerprint = model_fingerprint(self.info.path, cache_dir=self._cache_dir)
        return self._fingerprint

    def describe(self) -> list[str]:
        """Lines for `--verbose` and `/info`: which backend, format, device; then the load notes."""
        return [f"backend {self.backend} · {self.info.arch_label} · strategy {self.strategy}", *self.notes]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.info.path.name} {self.info.arch_label} {self.strategy!r}>"

    # ------------------------------------------------------------------ tokens
    def encode(self, text: str) -> list[int]:
        """The token ids of `text`."""
        return self.tokenizer.encode(text)

    @abstractmethod
    def zero_state(self) -> Any:
        """A fresh state: the start of a document."""

    @abstractmethod
    def feed(
        self,
        tokens: list[int],
        state: Any,
        *,
        chunk: int = 256,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> torch.Tensor | None:
        """Prefill `tokens` into `state` (in place); the float32 logits after the last token.

        `progress(done, total)` runs after each chunk; `cancel()` is checked between
        chunks. When cancelled, the state holds the chunks fed so far and the logits of
        the last one are returned (None if none was fed): check `cancel()` after the call.
        Every backend adds the tokens it fed to `counters.fed`.
        """

    def new_sampler(self, params: SamplingParams) -> Sampler:
        """A sampler for one reply, working on this engine's logits (torch tensors, or numpy arrays)."""
        if self.tensor_framework == "numpy":
            from weprompt_cli.engine.sampling_np import NumpySampler

            return NumpySampler(params)  # type: ignore[return-value]  (the same interface, numpy logits)
        from weprompt_cli.engine.sampling import Sampler

        return Sampler(params)

    @abstractmethod
    def decode_step(self, logits: Any, state: Any, sampler: Sampler) -> DecodeStep:
        """The per-token loop `generate` drives for one reply, starting from `logits` and `state`."""

    def generate(
        self,
        logits: Any,
        state: Any,
        sampler: Sampler,
        *,
        stop: tuple[str, ...] | list[str] = ("\n\n",),
        max_tokens: int | None = None,
        cancel: Cancel | None = None,
        strip_leading_space: bool = True,
        ban: tuple[int, ...] = (),
    ) -> Generation:
        """Stream a reply from `logits` (those `feed` returned) as text pieces; `.result` at the end.

        Every sampled token is fed to `state`, the one completing a stop string too. Text
        is released whole characters at a time and never at or after a stop string.
        `cancel()` is checked between tokens. `max_tokens` defaults to the sampler's.
        `ban`: token ids never sampled (e.g. end of document).
        """
        limit = max_tokens if max_tokens is not None else sampler.params.max_tokens
        if ban:
            sampler.ban(ban)
        return Generation(
            self,
            logits,
            state,
            sampler,
            stop=tuple(stop),
            max_tokens=int(limit),
            cancel=cancel,
            strip_leading_space=strip_leading_space,
        )

    # ------------------------------------------------------------------ states
    @abstractmethod
    def clone_state(self, state: Any) -> Any:
        """A deep copy (feeding one never changes the other)."""

    @abstractmethod
    def state_nbytes(self, state: Any) -> int:
        """Bytes a state takes in memory."""

    @abstractmethod
    def state_to_tensors(self, state: Any) -> dict[str, torch.Tensor]:
        """The state as named CPU tensors, ready for a safetensors checkpoint."""

    @abstractmethod
    def state_from_tensors(self, tensors: dict[str, torch.Tensor]) -> Any:
        """A state from `state_to_tensors` output; InvalidFileError when it does not fit this model."""

    def close(self) -> None:
        """Free what the backend holds outside Python (a llama.cpp context); idempotent."""
