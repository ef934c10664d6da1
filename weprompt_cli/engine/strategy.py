"""Strategy strings: validation of the rwkv package's grammar, RWKV-7 limits, and `auto`.

Grammar (the package's): one or more segments joined by `->`, each
`DEVICE DTYPE[QUANT] [*N[+]]` with DEVICE `cpu`, `cuda`, `cuda:N`, `mps` or `dml`, DTYPE
`fp16`, `fp32` or `bf16`, QUANT `i8` (the regex also admits `i4`/`i3`, which the loader
silently ignores, so WePrompt refuses them), and `*N` the number of layers on that
segment (`+` streams the rest of the layers through it).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from weprompt_cli.errors import HardwareError, UsageError

if TYPE_CHECKING:
    from weprompt_cli.engine.checkpoint import ModelInfo

EXAMPLES = "examples: 'cpu fp32', 'cuda fp16', 'cuda fp16i8', 'cuda fp16 *20 -> cpu fp32'"
_SEGMENT = re.compile(r"^(cuda(?::\d+)?|cpu|mps|dml) (fp16|fp32|bf16)(i8|i4|i3)?(?: \*(\d+)(\+)?)?$")


class PerformanceWarning(UserWarning):
    """A strategy that runs, but much slower than another would."""


@dataclass(frozen=True)
class Segment:
    """One `->` part of a strategy string."""

    device: str  # "cpu", "cuda", "cuda:1", "mps", "dml"
    dtype: str  # "fp16", "fp32", "bf16"
    quant: str | None  # "i8" or None
    layers: int | None  # the `*N` count
    stream: bool  # the `+` suffix

    def __str__(self) -> str:
        text = f"{self.device} {self.dtype}{self.quant or ''}"
        if self.layers is not None:
            text += f" *{self.layers}{'+' if self.stream else ''}"
        return text


def parse_strategy(strategy: str) -> list[Segment]:
    """The segments of a strategy string; UsageError if it is not the rwkv grammar."""
    parts = [" ".join(p.split()) for p in strategy.split("->")]
    segments = []
    for part in parts:
        match = _SEGMENT.match(part)
        if not match:
            raise UsageError(f"invalid strategy {strategy!r}", hint=EXAMPLES)
        device, dtype, quant, layers, plus = match.groups()
        segments.append(Segment(device, dtype, quant, int(layers) if layers else None, bool(plus)))
    return segments


def format_strategy(segments: list[Segment]) -> str:
    """The canonical string the rwkv package expects (`a -> b`)."""
    return " -> ".join(str(s) for s in segments)


def resolve_strategy(strategy: str | None, info: ModelInfo) -> str:
    """A validated, canonical strategy for this model ("auto" asks the hardware advisor)."""
    text = (strategy or "auto").strip()
    if text.lower() == "auto":
        # A converted checkpoint runs only with the strategy it was converted for.
        text = info.converted_strategy or _auto_strategy(info)
    segments = parse_strategy(text)
    for seg in segments:
        if seg.quant in ("i4", "i3"):
            raise UsageError(
                f"strategy {text!r}: the rwkv package implements only i8 quantization, not {seg.quant}",
                hint="use e.g. 'cuda fp16i8'",
            )
    if info.arch == "v7":
        if len(segments) > 1 or segments[0].layers is not None:
            raise UsageError(
                f"strategy {text!r}: RWKV-7 models run on one device; the rwkv package ignores a layer split",
                hint="use one device, e.g. 'cuda fp16' or 'cpu fp32'",
            )
        if segments[0].quant:
            raise UsageError(
                f"strategy {text!r}: RWKV-7 models run only in fp16, bf16 or fp32 (no {segments[0].quant})",
                hint="use e.g. 'cuda fp16', or 'cpu fp32' without a GPU",
            )
        if segments[0].device not in ("cpu", "mps") and not segments[0].device.startswith("cuda"):
            raise UsageError(f"strategy {text!r}: RWKV-7 models run on cpu or cuda only", hint=EXAMPLES)
    if info.converted_strategy is not None and info.converted_strategy != format_strategy(segments):
        raise UsageError(
            f"this checkpoint was converted for strategy {info.converted_strategy!r}, not {text!r}",
            path=info.path,
            hint=f"pass --strategy {info.converted_strategy!r}, or convert the original model again",
        )
    _check_hardware(segments, text)
    return format_strategy(segments)


def _check_hardware(segments: list[Segment], text: str) -> None:
    import torch

    for seg in segments:
        if seg.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise HardwareError(
                    f"strategy {text!r} needs CUDA, but PyTorch sees no CUDA GPU here",
                    hint="use --strategy 'cpu fp32', or install a CUDA build of torch (see 'weprompt doctor')",
                )
            index = int(seg.device.split(":")[1]) if ":" in seg.device else 0
            if index >= torch.cuda.device_count():
                raise HardwareError(
                    f"strategy {text!r} names {seg.device}, but this machine has "
                    f"{torch.cuda.device_count()} CUDA device(s)",
                    hint="see 'weprompt doctor'",
                )
        elif seg.device == "mps":
            if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
                raise HardwareError(f"strategy {text!r} needs Apple MPS, which is not available here")
        elif seg.device == "dml":
            try:
                import torch_directml  # noqa: F401
            except ImportError:
                raise HardwareError(
                    f"strategy {text!r} needs DirectML", hint="pip install torch-directml"
                ) from None
        elif seg.device == "cpu" and seg.dtype in ("bf16", "fp16"):
            warnings.warn(
                f"{seg.dtype} on the CPU can be many times slower than fp32 (strategy {text!r})",
                PerformanceWarning,
                stacklevel=3,
            )


def _auto_strategy(info: ModelInfo) -> str:
    try:
        from weprompt_cli.hardware.advice import auto_strategy
    except ImportError:
        return _fallback_auto(info)
    return auto_strategy(info)  # type: ignore[arg-type]  # its Protocol wants settable fields; ours are frozen


def _fallback_auto(info: ModelInfo) -> str:
    """`auto` without the hardware advisor: a GPU in fp16 when the weights fit easily, else the CPU in fp32."""
    import torch

    if torch.cuda.is_available():
        try:
            free, _total = torch.cuda.mem_get_info()
        except RuntimeError:
            free = 0
        if info.n_params * 2 * 1.3 < free:  # fp16 weights plus room for activations
            return "cuda fp16"
    return "cpu fp32"  # never bf16 on a CPU: about 12x slower than fp32 there
