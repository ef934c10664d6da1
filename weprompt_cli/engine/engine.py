"""The engine: a loaded RWKV model with its tokenizer, prefill, streaming generation and states.

A state is the rwkv package's list of tensors. `feed` and `generate` update it in place
(the package replaces the list's items, and its CUDA kernels also write into them), so
clone a state before branching from it.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weprompt_cli.chat.formats import RAVEN, WORLD, ChatFormat
from weprompt_cli.engine.checkpoint import ModelInfo, inspect_checkpoint
from weprompt_cli.engine.sampling import Sampler
from weprompt_cli.engine.stream import StopScanner, TokenText
from weprompt_cli.engine.tokenizer import NEOX_FILE, JsonTokenizer, Tokenizer, resolve_tokenizer
from weprompt_cli.errors import ExitCode, HardwareError, InvalidFileError

if TYPE_CHECKING:
    import torch

    State = list[torch.Tensor]

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


@dataclass(frozen=True)
class Timing:
    """How fast a reply came: seconds to the first shown text, and decode speed."""

    first_token_s: float | None
    elapsed_s: float
    n_tokens: int

    @property
    def tokens_per_s(self) -> float | None:
        return self.n_tokens / self.elapsed_s if self.n_tokens and self.elapsed_s > 0 else None


@dataclass
class GenerationResult:
    """What a finished generation produced; the state now includes exactly `tokens`."""

    text: str  # what was streamed: stop string and what follows cut, leading space stripped
    raw_text: str  # the exact decoded text of every token fed (stop string included)
    tokens: list[int]  # every token sampled, all of them fed to the model
    stop_reason: str  # "stop" | "length" | "interrupted"
    stop_string: str | None  # which stop string ended it
    timing: Timing
    logits: Any = field(default=None, repr=False)  # after the last token fed (None if none was)


class Generation(Iterator[str]):
    """An iterator of text pieces; `.result` once it is exhausted (or closed)."""

    def __init__(
        self,
        engine: Engine,
        logits: torch.Tensor,
        state: State,
        sampler: Sampler,
        *,
        stop: tuple[str, ...],
        max_tokens: int,
        cancel: Cancel | None,
        strip_leading_space: bool,
    ) -> None:
        self._engine = engine
        self._logits = logits
        self._state = state
        self._sampler = sampler
        self._stop = tuple(stop)
        self._max_tokens = max_tokens
        self._cancel = cancel
        self._strip = strip_leading_space
        self._result: GenerationResult | None = None
        self._run_iter = self._run()

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> str:
        return next(self._run_iter)

    @property
    def result(self) -> GenerationResult:
        if self._result is None:
            raise RuntimeError("the generation is not finished: iterate it to the end, or close() it")
        return self._result

    def close(self) -> GenerationResult:
        """Stop now (between tokens) and return the result, marked interrupted if it was still running."""
        if self._result is None:
            self._cancel = lambda: True
            for _ in self._run_iter:
                pass
        return self.result

    def _run(self) -> Iterator[str]:
        engine, state, sampler = self._engine, self._state, self._sampler
        tokenizer = engine.tokenizer
        assembler = TokenText(tokenizer)
        scanner = StopScanner(self._stop)
        step = engine._decode_step(self._logits, state, sampler)
        tokens: list[int] = []
        shown: list[str] = []
        first_s: float | None = None
        lead_pending = self._strip
        reason = "length"
        start = time.perf_counter()

        def show(piece: str) -> str:
            nonlocal lead_pending
            if lead_pending and piece:
                lead_pending = False
                piece = piece.removeprefix(" ")
            return piece

        finished = False
        try:
            for _ in range(self._max_tokens):
                if self._cancel is not None and self._cancel():
                    reason = "interrupted"
                    break
                token = step.next_token()  # the token is fed even when it ends the reply
                tokens.append(token)
                if tokenizer.has_bytes:
                    token_text = tokenizer.token_bytes(token).decode("utf-8", errors="replace")
                else:
                    token_text = tokenizer.decode([token])
                step.observe(token, token_text)
                piece = show(scanner.push(assembler.push(token)))
                if piece:
                    if first_s is None:
                        first_s = time.perf_counter() - start
                    shown.append(piece)
                    yield piece
                if scanner.matched is not None:
                    reason = "stop"
                    break
            logits = step.finish()
            finished = True
        finally:
            if not finished:
                step.finish()  # an abandoned generation still leaves the state of the tokens fed
        tail = ""
        if reason != "stop":
            rest = assembler.finish()
            if rest.strip("\ufffd"):  # an incomplete last character is not shown (raw_text keeps it)
                tail = show(scanner.push(rest))
            if scanner.matched is not None:
                reason = "stop"  # the stop string completed in the held-back bytes
            else:
                tail += show(scanner.flush())
        if tail:
            if first_s is None:
                first_s = time.perf_counter() - start
            shown.append(tail)
            yield tail
        elapsed = time.perf_counter() - start
        self._result = GenerationResult(
            text="".join(shown),
            raw_text=tokenizer.decode(tokens),
            tokens=tokens,
            stop_reason=reason,
            stop_string=scanner.matched,
            timing=Timing(first_token_s=first_s, elapsed_s=elapsed, n_tokens=len(tokens)),
            logits=logits,
        )


class _PlainStep:
    """The plain per-token step: the sampler on the logits, then `model.forward` (the package's path)."""

    def __init__(self, engine: Engine, logits: torch.Tensor, state: State, sampler: Sampler) -> None:
        self.engine, self.logits, self.state, self.sampler = engine, logits, state, sampler

    def next_token(self) -> int:
        token = self.sampler.sample(self.logits)
        self.logits = self.engine._forward([token], self.state)
        return token

    def observe(self, token: int, text: str) -> None:
        self.sampler.observe(token, text)

    def finish(self) -> torch.Tensor:
        return self.logits


class Engine:
    """A loaded model: `feed` a prompt, then `generate` a reply; states are lists of tensors."""

    def __init__(
        self,
        model: Any,
        info: ModelInfo,
        strategy: str,
        tokenizer: Tokenizer,
        chat_format: ChatFormat,
        *,
        verbose: bool = False,
    ) -> None:
        self.model = model
        self.info = info
        self.strategy = strategy
        self.tokenizer = tokenizer
        self.chat_format = chat_format
        self.verbose = verbose
        self._fingerprint: str | None = None
        self._template: list[tuple[tuple[int, ...], Any, Any]] | None = None
        # The decode path (engine/gpu): "graph" (CUDA graph + GPU sampler) or "plain" (model.forward).
        self.decode_path = "plain"
        self.decode_path_reason = "graph not set up"
        self._decoder: Any = None  # gpu.graph.GraphDecoder on the graph path
        self.kernel = False  # whether the rwkv package's CUDA kernel (RWKV_CUDA_ON=1) is in use

    def _set_decode(self, path: str, reason: str, decoder: Any) -> None:
        self.decode_path, self.decode_path_reason, self._decoder = path, reason, decoder

    def _decode_step(self, logits: torch.Tensor, state: State, sampler: Sampler) -> Any:
        if self._decoder is not None:
            from weprompt_cli.engine.gpu.graph import GraphStep

            return GraphStep(self._decoder, logits, state, sampler)
        return _PlainStep(self, logits, state, sampler)

    def __repr__(self) -> str:
        return f"<Engine {self.info.path.name} {self.info.arch_label} {self.strategy!r} {self.tokenizer.name}>"

    @property
    def fingerprint(self) -> str:
        """The model's identity (size, shapes, file hash): computed once, cached on disk."""
        if self._fingerprint is None:
            from weprompt_cli.engine.fingerprint import model_fingerprint

            self._fingerprint = model_fingerprint(self.info.path)
        return self._fingerprint

    # ------------------------------------------------------------------ states
    def zero_state(self) -> State:
        """A fresh state (the start of a document)."""
        import torch

        model = self.model
        if self.info.arch == "v7":
            return list(model.generate_zero_state())
        args = model.args
        state: list[torch.Tensor] = []
        for i in range(args.n_layer):
            dev, atype = model.strategy[i].device, model.strategy[i].atype
            if self.info.arch == "v4":
                # att_xx, att_aa, att_bb, att_pp (starts very negative), ffn_xx
                state += [
                    torch.zeros(args.n_embd, dtype=atype, device=dev),
                    torch.zeros(args.n_att, dtype=torch.float, device=dev),
                    torch.zeros(args.n_att, dtype=torch.float, device=dev),
                    torch.zeros(args.n_att, dtype=torch.float, device=dev) - 1e30,
                    torch.zeros(args.n_embd, dtype=atype, device=dev),
                ]
            else:
                if getattr(args, "time_state", False):
                    # A state-tuned checkpoint carries its own initial state.
                    kv = model.w[f"blocks.{i}.att.time_state"].transpose(1, 2).to(dtype=torch.float, device=dev)
                    kv = kv.contiguous()
                else:
                    size = args.n_att // args.n_head
                    kv = torch.zeros((args.n_head, size, size), dtype=torch.float, device=dev)
                state += [torch.zeros(args.n_embd, dtype=atype, device=dev), kv, torch.zeros(args.n_embd, dtype=atype, device=dev)]
        return state

    def _state_template(self) -> list[tuple[tuple[int, ...], Any, Any]]:
        if self._template is None:
            self._template = [(tuple(t.shape), t.dtype, t.device) for t in self.zero_state()]
        return self._template

    # ------------------------------------------------------------------ model
    def _forward(self, tokens: list[int], state: State) -> torch.Tensor:
        out, new_state = self.model.forward(tokens, state)
        if new_state is not state:
            # TorchScript (RWKV-7) works on a copy of the list: put the new tensors in the caller's list.
            state[:] = new_state
        return out.float()  # RWKV-7 returns the model dtype

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def feed(
        self,
        tokens: list[int],
        state: State,
        *,
        chunk: int = 256,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> torch.Tensor | None:
        """Prefill `tokens` into `state` (in place), in chunks; the float32 logits after the last token.

        `progress(done, total)` runs after each chunk; `cancel()` is checked between chunks.
        When cancelled, the state holds the chunks fed so far and the logits of the last
        one are returned (None if none was fed): check `cancel()` after the call.
        """
        ids = [int(t) for t in tokens]  # the model indexes with python ints
        if not ids:
            raise ValueError("feed() needs at least one token")
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        total = len(ids)
        logits: torch.Tensor | None = None
        if self._decoder is not None:
            from weprompt_cli.engine.gpu.graph import GRAPH, graph_feed, prefill_route

            if prefill_route(total, kernel=self.kernel) == GRAPH and not (cancel is not None and cancel()):
                logits = graph_feed(self._decoder, ids, state)
                if progress is not None:
                    progress(total, total)
                return logits
        for begin in range(0, total, chunk):
            if cancel is not None and cancel():
                break
            logits = self._forward(ids[begin : begin + chunk], state)
            if progress is not None:
                progress(min(begin + chunk, total), total)
        return logits

    def generate(
        self,
        logits: torch.Tensor,
        state: State,
        sampler: Sampler,
        *,
        stop: tuple[str, ...] | list[str] = ("\n\n",),
        max_tokens: int | None = None,
        cancel: Cancel | None = None,
        strip_leading_space: bool = True,
    ) -> Generation:
        """Stream a reply from `logits` (those `feed` returned) as text pieces; `.result` at the end.

        Every sampled token is fed to `state`, the one completing a stop string too. Text
        is released whole characters at a time and never at or after a stop string.
        `cancel()` is checked between tokens. `max_tokens` defaults to the sampler's.
        """
        limit = max_tokens if max_tokens is not None else sampler.params.max_tokens
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


# ---------------------------------------------------------------------------- states


def clone_state(state: State) -> State:
    """A deep copy of a state (forward may write into its tensors)."""
    return [t.clone() for t in state]


def state_nbytes(state: State) -> int:
    """Bytes a state takes in memory."""
    return sum(t.numel() * t.element_size() for t in state)


def state_to_tensors(state: State) -> dict[str, torch.Tensor]:
    """The state as `{"s000": t0, ...}` CPU tensors, ready for safetensors."""
    return {f"s{i:03d}": t.detach().to("cpu", copy=True).contiguous() for i, t in enumerate(state)}


def state_from_tensors(tensors: dict[str, torch.Tensor], engine: Engine) -> State:
    """A state for `engine` from `state_to_tensors` output (dtype and device converted); InvalidFileError on a mismatch."""
    template = engine._state_template()
    keys = [f"s{i:03d}" for i in range(len(template))]
    if sorted(tensors) != keys:
        raise InvalidFileError(
            f"this state does not fit the model: {len(tensors)} tensors, the model needs {len(template)}"
        )
    state = []
    for key, (shape, dtype, device) in zip(keys, template):
        t = tensors[key]
        if tuple(t.shape) != shape:
            raise InvalidFileError(f"this state does not fit the model: {key} is {tuple(t.shape)}, not {shape}")
        state.append(t.to(device=device, dtype=dtype, copy=True).contiguous())
    return state


# ---------------------------------------------------------------------------- loading


def chat_format_for(info: ModelInfo, tokenizer: Tokenizer) -> ChatFormat:
    """Raven for RWKV-4 on the GPT-NeoX 20B vocabulary, World for everything else."""
    if info.arch == "v4" and isinstance(tokenizer, JsonTokenizer) and tokenizer.path.name == NEOX_FILE:
        return RAVEN
    return WORLD


def load_engine(
    path: str | Path,
    strategy: str | None = "auto",
    *,
    verbose: bool = False,
    models_dir: str | Path | None = None,
    graph: bool = True,
) -> Engine:
    """Inspect, pick the tokenizer and strategy, import rwkv for the family, and load the model.

    `graph=False` keeps the plain decode path (`--no-graph`); otherwise RWKV-7 on CUDA
    gets the CUDA-graph path when its capture succeeds (see `engine.decode_path_reason`).
    """
    from weprompt_cli.engine.runtime import import_rwkv_model, kernel_in_use
    from weprompt_cli.engine.strategy import resolve_strategy

    info = inspect_checkpoint(path)
    if not info.path.name.endswith(".pth"):
        raise InvalidFileError(
            "the rwkv package loads only files named *.pth", path=info.path, hint="rename the file to end in .pth"
        )
    resolved = resolve_strategy(strategy, info)
    if models_dir is None:
        from weprompt_cli.paths import resolve_home

        models_dir = resolve_home().models
    tokenizer = resolve_tokenizer(info.path, info, models_dir)
    module = import_rwkv_model(info.arch, resolved, verbose=verbose, head_size=info.head_size)
    model = _construct(module, info, resolved, verbose)
    engine = Engine(model, info, resolved, tokenizer, chat_format_for(info, tokenizer), verbose=verbose)
    engine.kernel = kernel_in_use()
    _choose_decode_path(engine, graph)
    _warm_up_prefill(engine)
    return engine


WARMUP_ENV = "WEPROMPT_PREFILL_WARMUP"  # "0" skips the warm-up below (bench/gpu.py compares)
WARMUP_LENGTHS = (5, 9, 13, 17)


def _warm_up_prefill(engine: Engine) -> None:
    """On CUDA, prefill a few short inputs of different lengths on a scratch state at load.

    TorchScript profiles and specializes the package's sequence functions for the first
    input shapes it meets: by default two fixed-shape versions, then a shape-generic one, so
    a new process's second and third messages took 320-350 ms each to prefill at 1.5B on an
    H200 instead of about 20 ms. Asking for the shape-generic version at once and compiling
    it here moves that to load, where it costs about 0.1 s (bench/gpu.py, "fresh process":
    load plus the first three prefills 4.6 s, against 5.1 s without either). The one-token
    functions of the graph were specialized before this, under the default.
    """
    if not engine.strategy.startswith("cuda") or os.environ.get(WARMUP_ENV, "").strip() == "0":
        return
    import torch

    torch.jit.set_fusion_strategy([("DYNAMIC", 20)])
    for n in WARMUP_LENGTHS:
        engine._forward([0] * n, engine.zero_state())


def _choose_decode_path(engine: Engine, graph: bool) -> None:
    from weprompt_cli.engine.gpu.graph import GRAPH, decode_path, install

    path, reason = decode_path(engine.info.arch, engine.strategy, graph=graph, model=engine.model)
    if path == GRAPH:
        install(engine)  # a failed capture leaves the plain path, with the reason
    else:
        engine._set_decode(path, reason, None)
    if engine.verbose:
        print(f"decode path: {engine.decode_path} ({engine.decode_path_reason})", file=sys.stderr)


def _construct(module: Any, info: ModelInfo, strategy: str, verbose: bool) -> Any:
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    try:
        with sink:
            if info.arch == "v7":
                # The RWKV-7 loader appends ".pth" itself.
                return module.RWKV(model=str(info.path)[: -len(".pth")], strategy=strategy)
            return module.RWKV(model=str(info.path), strategy=strategy, verbose=verbose)
    except MemoryError:
        raise HardwareError(
            "not enough memory to load this model", path=info.path, hint="try a smaller model or an i8 strategy"
        ) from None
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise HardwareError(
                "not enough GPU memory for this model with strategy " + repr(strategy),
                path=info.path,
                hint="try 'cuda fp16i8', a layer split (RWKV-4/5/6), or 'cpu fp32'",
            ) from None
        raise InvalidFileError(f"the rwkv package could not load this checkpoint: {exc}", path=info.path) from None
    except (KeyError, AssertionError, ValueError, IndexError) as exc:
        raise InvalidFileError(
            f"the rwkv package could not load this checkpoint ({type(exc).__name__}: {exc})", path=info.path
        ) from None


__all__ = [
    "Engine",
    "ExitCode",
    "Generation",
    "GenerationResult",
    "Timing",
    "chat_format_for",
    "clone_state",
    "load_engine",
    "state_from_tensors",
    "state_nbytes",
    "state_to_tensors",
]
