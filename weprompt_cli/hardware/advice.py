"""Which `rwkv` strategy string fits a model on this machine, and why.

`choose_strategy` is a pure function of an `Inventory` and a model's size, so a table
of made-up machines tests it. `auto_strategy(info)` is what the engine calls for
`--strategy auto`: it detects this machine and raises `HardwareError` (with what would
fit) when nothing does.

Facts of the `rwkv` package this follows (rwkv/model.py, 0.8.x):
- v4-v6 take a chain `dev dtype [*N] -> ...`: N of the n_layer+1 slots (blocks, then
  the head) per device; `emb.weight` always stays in CPU RAM; `i8` keeps matrices as
  uint8 plus four small vectors (about 1 byte per parameter).
- RWKV-7 takes one device and fp16/bf16/fp32 only: no split, no int8.
- bf16 on a CPU without native bf16 is about 12x slower than fp32: never chosen there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from weprompt_cli.hardware.inventory import GIB, GPU, Inventory

# Bytes per parameter as loaded (not as stored on disk).
BYTES_PER_PARAM: dict[str, float] = {
    "fp32": 4.0,
    "fp16": 2.0,
    "bf16": 2.0,
    "fp16i8": 1.02,  # uint8 matrices + fp16 row/col scales; small vectors stay fp16
    "fp32i8": 1.04,
    "bf16i8": 1.02,
}
# Working memory besides the weights: CUDA context, cuBLAS workspace, prefill buffers.
GPU_OVERHEAD = int(0.75 * GIB)
# Python, torch, the tokenizer (the pure-Python World tokenizer alone is about 300 MB).
CPU_OVERHEAD = int(1.0 * GIB)
SLACK = 1.05  # allocator fragmentation and small tensors


def weight_bytes(n_params: int, dtype: str) -> int:
    """Bytes the weights take once loaded in `dtype` (fp32, fp16, bf16, fp16i8, ...)."""
    return int(n_params * BYTES_PER_PARAM[dtype])


def memory_needed(n_params: int, dtype: str, *, device: str = "cuda") -> int:
    """Bytes a model of `n_params` needs on one device in `dtype`, working memory included."""
    overhead = CPU_OVERHEAD if device == "cpu" else GPU_OVERHEAD
    return int(weight_bytes(n_params, dtype) * SLACK) + overhead


def family(arch: str | float) -> int:
    """4, 5, 6 or 7 from 'v7', 'rwkv7', 'x070', 7, 5.2, 'v5.2', 'rwkv-4' ..."""
    match = re.match(r"^(?:rwkv[-_ ]?|x0|v)?([4-7])(?:0|\.\d+)?(?:$|[^0-9])", str(arch).lower().strip())
    if match is None:
        raise ValueError(f"unknown RWKV architecture: {arch!r}")
    return int(match.group(1))


@dataclass(frozen=True)
class Advice:
    """A strategy string for the `rwkv` package, why it was chosen, and whether it runs here."""

    strategy: str
    reason: str
    fits: bool
    where: str = "gpu"  # "gpu", "gpus" (split over GPUs), "gpu+cpu", "cpu" or "none"


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


@dataclass(frozen=True)
class _Shape:
    n_params: int
    n_layer: int
    head_params: int  # head.weight (+ ln_out): the last slot of the rwkv plan
    emb_params: int  # emb.weight: always in CPU RAM for v4-v6

    @property
    def block_params(self) -> int:
        return max(1, (self.n_params - self.head_params - self.emb_params) // max(1, self.n_layer))


def _shape(n_params: int, n_layer: int, n_embd: int | None, vocab_size: int | None) -> _Shape:
    if n_embd and vocab_size:
        head = emb = n_embd * vocab_size
    else:
        # Unknown shapes: treat emb and head like one block each (a fair guess for 1B+ models).
        head = emb = n_params // (n_layer + 2)
    return _Shape(n_params, n_layer, head, emb)


@dataclass(frozen=True)
class _Device:
    label: str  # "cuda", "cuda:1", "cpu"
    dtype: str
    capacity: int  # bytes available for weights (overhead already taken off)


def _split(devices: list[_Device], shape: _Shape) -> list[tuple[_Device, int]] | None:
    """Blocks per device in order, the head on the last one used; None if it can't fit."""
    plan: list[tuple[_Device, int]] = []
    remaining = shape.n_layer
    for dev in devices:
        per_block = shape.block_params * BYTES_PER_PARAM[dev.dtype] * SLACK
        head = shape.head_params * BYTES_PER_PARAM[dev.dtype] * SLACK
        if remaining * per_block + head <= dev.capacity:
            plan.append((dev, remaining))
            return plan
        take = min(remaining, int(dev.capacity // per_block))
        if take > 0:
            plan.append((dev, take))
            remaining -= take
    return None


def _plan_string(plan: list[tuple[_Device, int]]) -> str:
    parts = [f"{dev.label} {dev.dtype} *{n}" for dev, n in plan[:-1]]
    last = plan[-1][0]
    parts.append(f"{last.label} {last.dtype}")
    return " -> ".join(parts)


def _gpu_label(gpu: GPU, gpus: tuple[GPU, ...]) -> str:
    return "cuda" if len(gpus) == 1 and gpu.index == 0 else f"cuda:{gpu.index}"


def _cpu_advice(inv: Inventory, fam: int, n_params: int, why_not_gpu: str) -> Advice:
    """The best CPU strategy, or fits=False with what would be needed."""
    avail = inv.ram_available_bytes
    need32 = memory_needed(n_params, "fp32", device="cpu")
    prefix = f"{why_not_gpu}; " if why_not_gpu else ""
    if avail <= 0 or need32 <= avail:
        known = f"needs ~{gib(need32)} of {gib(avail)} free RAM" if avail > 0 else f"needs ~{gib(need32)} RAM"
        return Advice("cpu fp32", f"{prefix}runs on the CPU in fp32 ({known})", True, "cpu")
    need16 = memory_needed(n_params, "bf16", device="cpu")
    if inv.cpu_bf16 and need16 <= avail:
        return Advice(
            "cpu bf16",
            f"{prefix}fp32 needs ~{gib(need32)} RAM, {gib(avail)} free; this CPU has native bf16 (~{gib(need16)})",
            True,
            "cpu",
        )
    need8 = memory_needed(n_params, "fp32i8", device="cpu")
    if fam <= 6 and need8 <= avail:
        return Advice(
            "cpu fp32i8",
            f"{prefix}fp32 needs ~{gib(need32)} RAM, {gib(avail)} free; int8 weights need ~{gib(need8)} (slower)",
            True,
            "cpu",
        )
    smallest = need8 if fam <= 6 else (need16 if inv.cpu_bf16 else need32)
    gpu_need = memory_needed(n_params, "fp16")
    return Advice(
        "cpu fp32",
        f"{prefix}does not fit in RAM: needs ~{gib(smallest)}, {gib(avail)} free; "
        f"a GPU with ~{gib(gpu_need)} free would run it in fp16, or pick a smaller model",
        False,
        "none",
    )


def choose_strategy(
    inventory: Inventory,
    *,
    arch: str | float,
    n_params: int,
    n_layer: int,
    n_embd: int | None = None,
    vocab_size: int | None = None,
) -> Advice:
    """The strategy `auto` picks for a model of this size and family on `inventory`."""
    fam = family(arch)
    shape = _shape(n_params, n_layer, n_embd, vocab_size)
    gpus = inventory.usable_gpus
    if not gpus:
        if inventory.gpus:
            why = "GPUs found but torch cannot use CUDA"
        else:
            why = "no usable GPU"
        return _cpu_advice(inventory, fam, n_params, why)

    best = max(gpus, key=lambda g: g.free_bytes)
    need16 = memory_needed(n_params, "fp16")
    if need16 <= best.free_bytes:
        label = _gpu_label(best, gpus)
        return Advice(
            f"{label} fp16",
            f"fits on GPU {best.index} ({best.name}): needs ~{gib(need16)} of {gib(best.free_bytes)} free",
            True,
            "gpu",
        )

    if fam == 7:
        # The rwkv package runs RWKV-7 on one device in fp16/bf16/fp32: no split, no int8.
        why = (
            f"RWKV-7 needs ~{gib(need16)} on one GPU in fp16 but the largest has {gib(best.free_bytes)} free "
            f"(the rwkv package can't split RWKV-7 across devices or quantize it to int8)"
        )
        cpu = _cpu_advice(inventory, fam, n_params, why)
        if cpu.fits:
            slow = f"; slow: a GPU with ~{gib(need16)} free would be far faster"
            return Advice(cpu.strategy, cpu.reason + slow, True, "cpu")
        return Advice(
            "cuda fp16",
            f"{why}, and it does not fit in RAM either ({gib(inventory.ram_available_bytes)} free): "
            f"use a GPU with ~{gib(need16)} free or a smaller model",
            False,
            "none",
        )

    def gpu_devices(dtype: str) -> list[_Device]:
        return [_Device(_gpu_label(g, gpus), dtype, max(0, g.free_bytes - GPU_OVERHEAD)) for g in gpus]

    if len(gpus) > 1:
        plan = _split(gpu_devices("fp16"), shape)
        if plan is not None:
            return Advice(_plan_string(plan), f"fp16 split over {len(plan)} GPUs (~{gib(need16)} in all)", True, "gpus")
    need8 = memory_needed(n_params, "fp16i8")
    if need8 <= best.free_bytes:
        return Advice(
            f"{_gpu_label(best, gpus)} fp16i8",
            f"fp16 needs ~{gib(need16)}, GPU {best.index} has {gib(best.free_bytes)} free; "
            f"int8 weights need ~{gib(need8)}",
            True,
            "gpu",
        )
    if len(gpus) > 1:
        plan = _split(gpu_devices("fp16i8"), shape)
        if plan is not None:
            why = f"int8 weights split over {len(plan)} GPUs (~{gib(need8)} in all)"
            return Advice(_plan_string(plan), why, True, "gpus")
    # Some layers on the GPU(s) in int8 (the most layers per byte), the rest in CPU RAM in fp32.
    ram = max(0, inventory.ram_available_bytes - CPU_OVERHEAD - weight_bytes(shape.emb_params, "fp16"))
    if inventory.ram_available_bytes <= 0:
        ram = 1 << 62  # unknown RAM: don't refuse on a guess
    for cpu_dtype in ("fp32", "fp32i8"):
        plan = _split(gpu_devices("fp16i8") + [_Device("cpu", cpu_dtype, ram)], shape)
        if plan is not None and plan[0][0].label != "cpu":
            on_gpu = sum(n for dev, n in plan if dev.label != "cpu")
            return Advice(
                _plan_string(plan),
                f"too big for GPU memory even in int8 (~{gib(need8)}): {on_gpu} of {n_layer} blocks in int8 on the "
                f"GPU, the other blocks and the head in CPU RAM in {cpu_dtype} (slower)",
                True,
                "gpu+cpu",
            )
    cpu = _cpu_advice(inventory, fam, n_params, f"too big for the GPU (~{gib(need8)} even in int8)")
    return cpu


class _ModelInfo(Protocol):
    arch: Any
    n_params: int
    n_layer: int


def auto_strategy(info: _ModelInfo) -> str:
    """The strategy for `--strategy auto` on this machine; HardwareError if nothing fits.

    `info` needs `.arch`, `.n_params`, `.n_layer` (and uses `.n_embd`, `.vocab_size`,
    `.file_size` when present).
    """
    from weprompt_cli.errors import HardwareError
    from weprompt_cli.hardware.inventory import detect_inventory

    n_params = int(getattr(info, "n_params", 0) or 0)
    if n_params <= 0:
        # Checkpoints are stored in fp16/bf16: 2 bytes a parameter.
        n_params = int(getattr(info, "file_size", 0) or 0) // 2
    advice = choose_strategy(
        detect_inventory(),
        arch=info.arch,
        n_params=n_params,
        n_layer=int(info.n_layer),
        n_embd=getattr(info, "n_embd", None),
        vocab_size=getattr(info, "vocab_size", None),
    )
    if not advice.fits:
        raise HardwareError(
            f"the model does not fit this machine: {advice.reason}",
            hint="see 'weprompt doctor', or pass --strategy explicitly",
        )
    return advice.strategy
