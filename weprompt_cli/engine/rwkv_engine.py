"""The `rwkv` package backend: `.pth` checkpoints of RWKV-4 to RWKV-7 on PyTorch.

A state is the package's list of tensors. `feed` and `generate` update it in place
(the package replaces the list's items, and its CUDA kernels also write into them), so
clone a state before branching from it. RWKV-7 on CUDA decodes through a captured CUDA
graph with sampling on the GPU (engine/gpu); everything else runs `model.forward`.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weprompt_cli.engine.base import Cancel, Engine, Progress
from weprompt_cli.engine.checkpoint import ModelInfo, inspect_checkpoint
from weprompt_cli.engine.sampling import Sampler
from weprompt_cli.engine.tokenizer import Tokenizer, resolve_tokenizer
from weprompt_cli.errors import HardwareError, InvalidFileError

if TYPE_CHECKING:
    import torch

    State = list[torch.Tensor]

STATE_FORMAT = "rwkv"  # `{"s000": t0, ...}`: the package's list of state tensors, in order


class _PlainStep:
    """The plain per-token step: the sampler on the logits, then `model.forward` (the package's path)."""

    def __init__(self, engine: RwkvEngine, logits: torch.Tensor, state: State, sampler: Sampler) -> None:
        self.engine, self.logits, self.state, self.sampler = engine, logits, state, sampler

    def next_token(self) -> int:
        token = self.sampler.sample(self.logits)
        self.logits = self.engine.forward([token], self.state)
        return token

    def observe(self, token: int, text: str) -> None:
        self.sampler.observe(token, text)

    def finish(self) -> torch.Tensor:
        return self.logits


class RwkvEngine(Engine):
    """A model loaded by the rwkv package: `feed` a prompt, then `generate` a reply."""

    backend = "rwkv"
    state_format = STATE_FORMAT

    def __init__(
        self,
        model: Any,
        info: ModelInfo,
        strategy: str,
        tokenizer: Tokenizer,
        *,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(cache_dir=cache_dir)
        self.model = model
        self.info = info
        self.strategy = strategy
        self.tokenizer = tokenizer
        self._template: list[tuple[tuple[int, ...], Any, Any]] | None = None
        # The decode path (engine/gpu): "graph" (CUDA graph + GPU sampler) or "plain" (model.forward).
        self.decode_path = "plain"
        self.decode_path_reason = "graph not set up"
        self.decoder: Any = None  # gpu.graph.GraphDecoder on the graph path
        self.kernel = False  # whether the rwkv package's CUDA kernel (RWKV_CUDA_ON=1) is in use

    def set_decode_path(self, path: str, reason: str, decoder: Any) -> None:
        """Use `decoder` (gpu.graph.install's result) for decoding; None keeps `model.forward`."""
        self.decode_path, self.decode_path_reason, self.decoder = path, reason, decoder

    def describe(self) -> list[str]:
        size = f"{self.info.n_layer} x {self.info.n_embd}"
        return [
            f"backend rwkv (PyTorch) · {self.info.arch_label} {size} · {self.info.path.name} · strategy {self.strategy}",
            f"decode path: {self.decode_path} ({self.decode_path_reason})",
            *self.notes,
        ]

    def decode_step(self, logits: torch.Tensor, state: State, sampler: Sampler) -> Any:
        if self.decoder is not None:
            from weprompt_cli.engine.gpu.graph import GraphStep

            return GraphStep(self.decoder, logits, state, sampler)
        return _PlainStep(self, logits, state, sampler)

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

    def state_template(self) -> list[tuple[tuple[int, ...], Any, Any]]:
        """(shape, dtype, device) of each tensor of a state of this model."""
        if self._template is None:
            self._template = [(tuple(t.shape), t.dtype, t.device) for t in self.zero_state()]
        return self._template

    def clone_state(self, state: State) -> State:
        return clone_state(state)

    def state_nbytes(self, state: State) -> int:
        return state_nbytes(state)

    def state_to_tensors(self, state: State) -> dict[str, torch.Tensor]:
        return state_to_tensors(state)

    def state_from_tensors(self, tensors: dict[str, torch.Tensor]) -> State:
        return state_from_tensors(tensors, self)

    # ------------------------------------------------------------------ model
    def forward(self, tokens: list[int], state: State) -> torch.Tensor:
        """One `model.forward` over `tokens` (the state updated in place); float32 logits."""
        out, new_state = self.model.forward(tokens, state)
        if new_state is not state:
            # TorchScript (RWKV-7) works on a copy of the list: put the new tensors in the caller's list.
            state[:] = new_state
        return out.float()  # RWKV-7 returns the model dtype

    def feed(
        self,
        tokens: list[int],
        state: State,
        *,
        chunk: int = 256,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> torch.Tensor | None:
        ids = [int(t) for t in tokens]  # the model indexes with python ints
        if not ids:
            raise ValueError("feed() needs at least one token")
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        total = len(ids)
        logits: torch.Tensor | None = None
        if self.decoder is not None:
            from weprompt_cli.engine.gpu.graph import GRAPH, graph_feed, prefill_route

            if prefill_route(total, kernel=self.kernel) == GRAPH and not (cancel is not None and cancel()):
                logits = graph_feed(self.decoder, ids, state)
                self.counters.fed += total
                if progress is not None:
                    progress(total, total)
                return logits
        for begin in range(0, total, chunk):
            if cancel is not None and cancel():
                break
            part = ids[begin : begin + chunk]
            logits = self.forward(part, state)
            self.counters.fed += len(part)
            if progress is not None:
                progress(min(begin + chunk, total), total)
        return logits


# ---------------------------------------------------------------------------- states (lists of tensors)


def clone_state(state: State) -> State:
    """A deep copy of a state (forward may write into its tensors)."""
    return [t.clone() for t in state]


def state_nbytes(state: State) -> int:
    """Bytes a state takes in memory."""
    return sum(t.numel() * t.element_size() for t in state)


def state_to_tensors(state: State) -> dict[str, torch.Tensor]:
    """The state as `{"s000": t0, ...}` CPU tensors, ready for safetensors."""
    return {f"s{i:03d}": t.detach().to("cpu", copy=True).contiguous() for i, t in enumerate(state)}


def state_from_tensors(tensors: dict[str, torch.Tensor], engine: RwkvEngine) -> State:
    """A state for `engine` from `state_to_tensors` output (dtype and device converted); InvalidFileError on a mismatch."""
    template = engine.state_template()
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


def load_rwkv_engine(
    path: str | Path,
    strategy: str | None = "auto",
    *,
    models_dir: Path | None = None,
    cache_dir: Path | None = None,
    graph: bool = True,
    verbose: bool = False,
) -> RwkvEngine:
    """Inspect, pick the tokenizer and strategy, import rwkv for the family, and load the model.

    `graph=False` keeps the plain decode path (`--no-graph`); otherwise RWKV-7 on CUDA
    gets the CUDA-graph path when its capture succeeds (see `engine.decode_path_reason`).
    `models_dir` is searched for shared tokenizer files; `cache_dir` holds the fingerprint
    cache and the CUDA kernel build. `verbose` lets the package's own loading output through.
    """
    from weprompt_cli.engine.runtime import import_rwkv_model, kernel_in_use
    from weprompt_cli.engine.strategy import resolve_strategy

    info = inspect_checkpoint(path)
    if not info.path.name.endswith(".pth"):
        raise InvalidFileError(
            "the rwkv package loads only files named *.pth", path=info.path, hint="rename the file to end in .pth"
        )
    resolved = resolve_strategy(strategy, info)
    tokenizer = resolve_tokenizer(info.path, info, models_dir)
    module, kernel_note = import_rwkv_model(
        info.arch, resolved, verbose=verbose, head_size=info.head_size, build_dir=cache_dir
    )
    model = _construct(module, info, resolved, verbose)
    engine = RwkvEngine(model, info, resolved, tokenizer, cache_dir=cache_dir)
    if kernel_note:
        engine.notes.append(kernel_note)
    engine.kernel = kernel_in_use()
    _choose_decode_path(engine, graph)
    _warm_up_prefill(engine)
    return engine


WARMUP_ENV = "WEPROMPT_PREFILL_WARMUP"  # "0" skips the warm-up below (bench/gpu.py compares)
WARMUP_LENGTHS = (5, 9, 13, 17)


def _warm_up_prefill(engine: RwkvEngine) -> None:
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
        engine.forward([0] * n, engine.zero_state())


def _choose_decode_path(engine: RwkvEngine, graph: bool) -> None:
    from weprompt_cli.engine.gpu.graph import GRAPH, decode_path, install

    path, reason = decode_path(engine.info.arch, engine.strategy, graph=graph, model=engine.model)
    if path == GRAPH:
        engine.set_decode_path(*install(engine.model))  # a failed capture gives the plain path, with the reason
    else:
        engine.set_decode_path(path, reason, None)


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
