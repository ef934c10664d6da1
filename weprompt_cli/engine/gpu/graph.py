"""Path choice, CUDA-graph capture/replay, the graph decode step and the prefill route.

One `GraphDecoder` per loaded model, captured once at load and reused for every turn and
session: a generation copies the caller's state into the static state, replays the graph
once per token, and copies the static state back at the end (restoring a checkpoint or
switching session is just that copy). Anything that goes wrong while capturing leaves
the engine on the plain path: `install` returns the path, the reason and the decoder,
and the engine keeps them (`decode_path`, `decode_path_reason`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weprompt_cli.engine.gpu.forward import StaticForward, covers

if TYPE_CHECKING:
    import torch

    from weprompt_cli.engine.sampling import Sampler

GRAPH = "graph"
PLAIN = "plain"

# Prefill: inputs of at most this many tokens go through the graph one token at a time,
# longer ones in chunks through `model.forward` (the package's CUDA kernel when built).
# Measured with bench/gpu.py on an H200 (bench/results/gpu-20261126-091758.txt): with the
# kernel a chunk costs about the same for 4 tokens as for 128 (1.5B: 17 ms), and the graph
# wins at 1-2 tokens at every size (at 4 it wins at 0.19B, ties at 1.5B, loses at 7.2B);
# without the kernel (1.5B) the graph wins up to 16 tokens (64 vs 67 ms) and loses from 32.
GRAPH_PREFILL_MAX_WITH_KERNEL = 2
GRAPH_PREFILL_MAX_WITHOUT_KERNEL = 16
PREFILL_ENV = "WEPROMPT_GRAPH_PREFILL_MAX"  # an integer overrides both defaults
OPS_ENV = "WEPROMPT_GRAPH_OPS"  # "package" (default) or "torch": see forward.py

# The block math inside the graph (forward.py): the package's own TorchScript functions measured
# faster on an H200 than plain torch ops (1.5B: 253 vs 209 tok/s; 7.2B: 120 vs 106 tok/s) and
# closer to the bare package's greedy tokens (7.2B: 200/200 equal against 187/200).
DEFAULT_OPS = "package"

Capture = Callable[[StaticForward], Any]


def decode_path(
    arch: str,
    strategy: str,
    *,
    graph: bool = True,
    cuda_available: bool | None = None,
    model: Any = None,
) -> tuple[str, str]:
    """("graph" | "plain", why) for a model of `arch` run with `strategy` on this machine."""
    if not graph:
        return PLAIN, "graph turned off (--no-graph)"
    if arch != "v7":
        return PLAIN, "RWKV-4/5/6 run the plain path (the graph covers RWKV-7)"
    device = strategy.split()[0] if strategy.split() else "cpu"
    if not device.startswith("cuda"):
        return PLAIN, f"strategy {strategy!r} is not on a CUDA GPU"
    if cuda_available is None:
        import torch

        cuda_available = bool(torch.cuda.is_available())
    if not cuda_available:
        return PLAIN, "CUDA is not available"
    if model is not None:
        ok, why = covers(model)
        if not ok:
            return PLAIN, why
    return GRAPH, "CUDA graph token loop, sampling on the GPU"


def auto_decode_path() -> str:
    """`weprompt doctor`'s line: the decode path an RWKV-7 model gets with `--strategy auto` here."""
    import torch

    if not torch.cuda.is_available():
        return f"{PLAIN} (CUDA is not available: auto runs RWKV-7 on 'cpu fp32')"
    path, why = decode_path("v7", "cuda fp16", cuda_available=True)
    return f"{path} ({why})"


# ---------------------------------------------------------------------------- capture


def cuda_capture(fwd: StaticForward, warmup: int = 3) -> torch.cuda.CUDAGraph:
    """Capture `fwd.step()` as a CUDA graph (warm-up on a side stream first, as torch requires)."""
    import torch

    with torch.cuda.device(fwd.device):
        torch.cuda.synchronize()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fwd.step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fwd.step()
        torch.cuda.synchronize()
    for t in fwd.state:  # warm-up and capture ran on it; every use loads a state first anyway
        t.zero_()
    return graph


class GraphDecoder:
    """The static forward and, on CUDA, its captured graph; `run()` computes one token."""

    def __init__(self, model: Any, ops: str | None = None) -> None:
        self.fwd = StaticForward(model, ops or os.environ.get(OPS_ENV, "").strip() or DEFAULT_OPS)
        self.graph: Any = None
        self.cuda = self.fwd.device.type == "cuda"

    def capture(self, capture: Capture) -> None:
        self.graph = capture(self.fwd)

    def run(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.fwd.step()  # eager: the same math (CPU tests, or a capture skipped on purpose)


def install(
    model: Any, *, capture: Capture | None = cuda_capture, reason: str | None = None, ops: str | None = None
) -> tuple[str, str, GraphDecoder | None]:
    """(path, why, decoder) for a loaded RWKV-7 `model` on the graph path (capture=None: eager, no capture).

    Any failure gives the plain path with the reason, never an error: a failed capture costs speed, not the chat.
    """
    try:
        decoder = GraphDecoder(model, ops)
        if capture is not None:
            decoder.capture(capture)
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return PLAIN, f"graph capture failed ({type(exc).__name__}: {first}); plain path", None
    why = reason or (
        "CUDA graph token loop, sampling on the GPU" if decoder.graph is not None else "static forward, no capture"
    )
    return GRAPH, why, decoder


# ---------------------------------------------------------------------------- decode


class GraphStep:
    """`Generation`'s per-token step on the graph path: sample on the device, replay, one id to the host."""

    def __init__(
        self, decoder: GraphDecoder, logits: torch.Tensor, state: list[torch.Tensor], sampler: Sampler
    ) -> None:
        import torch

        from weprompt_cli.engine.gpu.sampler import DeviceSampler

        self.decoder = decoder
        fwd = decoder.fwd
        self.state = state
        fwd.load_state(state)
        device_sampler = getattr(sampler, "_device_sampler", None)
        if device_sampler is None or device_sampler.device != fwd.device:
            device_sampler = DeviceSampler(sampler.params, fwd.device, fwd.vocab_size, sampler.banned)
            sampler._device_sampler = device_sampler  # type: ignore[attr-defined]  # one per reply, as Sampler
        self.sampler = device_sampler
        self.logits = logits if logits.device == fwd.device else logits.to(fwd.device)
        self.fed = False
        self.host = torch.zeros(1, dtype=torch.long, pin_memory=decoder.cuda)  # [1]
        self.copied = torch.cuda.Event() if decoder.cuda else None

    def next_token(self) -> int:
        """Sample from the current logits, feed the token (the graph), return its id."""
        fwd = self.decoder.fwd
        fwd.token.copy_(self.sampler.sample(self.logits))
        if self.copied is not None:
            # The id travels to the host while the GPU already runs the next forward.
            self.host.copy_(fwd.token, non_blocking=True)
            self.copied.record()
            self.decoder.run()
            self.copied.synchronize()
        else:
            self.decoder.run()
            self.host.copy_(fwd.token)
        self.logits = fwd.logits
        self.fed = True
        return int(self.host[0])

    def observe(self, token: int, text: str) -> None:
        self.sampler.observe(self.decoder.fwd.token, text)

    def finish(self) -> torch.Tensor:
        """Copy the static state back into the caller's; the float32 logits after the last token fed."""
        self.decoder.fwd.store_state(self.state)
        return self.logits.float().clone() if self.fed else self.logits


# ---------------------------------------------------------------------------- prefill


def graph_prefill_max(kernel: bool) -> int:
    """The longest input the graph prefills one token at a time ($WEPROMPT_GRAPH_PREFILL_MAX overrides)."""
    text = os.environ.get(PREFILL_ENV, "").strip()
    if text.isdigit():
        return int(text)
    return GRAPH_PREFILL_MAX_WITH_KERNEL if kernel else GRAPH_PREFILL_MAX_WITHOUT_KERNEL


def prefill_route(n_tokens: int, *, kernel: bool, limit: int | None = None) -> str:
    """ "graph" (one token at a time) or "chunk" (`model.forward` chunks) for an input of `n_tokens`."""
    return GRAPH if n_tokens <= (graph_prefill_max(kernel) if limit is None else limit) else "chunk"


def graph_feed(decoder: GraphDecoder, tokens: list[int], state: list[torch.Tensor]) -> torch.Tensor:
    """Feed `tokens` one at a time through the graph; the state updated in place; float32 logits."""
    import torch

    fwd = decoder.fwd
    ids = torch.tensor(tokens, dtype=torch.long).to(fwd.device, non_blocking=True)  # [T]
    fwd.load_state(state)
    for i in range(len(tokens)):
        fwd.token.copy_(ids[i : i + 1])
        decoder.run()
    fwd.store_state(state)
    return fwd.logits.float().clone()
