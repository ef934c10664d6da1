"""`weprompt models convert`: pre-convert a v4-v6 checkpoint for one strategy.

The `rwkv` package does the work: `RWKV(model, strategy, convert_and_save_and_exit=OUT)`
runs the whole load-time preparation (transposes, dtype casts, int8 quantization, the
precomputed `emb` layer norm, the fp16 rescaling of every 6th layer), then `torch.save`s
the prepared weights with `_strategy`, `_version` and `_rescale_layer` entries and calls
`exit(0)`. A converted file loads only with exactly that strategy string.

It runs in a subprocess: `rwkv.model` fixes its family at import (RWKV_V7_ON) and the
converter ends its process. RWKV-7 has no converter in the package (the v7 class takes no
`convert_and_save_and_exit`), and it needs none: it memory-maps the checkpoint
(`torch.load(..., mmap=True)`) and only transposes a few matrices, so it loads fast as is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from weprompt_cli.errors import InvalidFileError, UsageError, WePromptError
from weprompt_cli.paths import Home

V7_REFUSAL = (
    "RWKV-7 checkpoints can't be pre-converted: the rwkv package has no converter for RWKV-7, "
    "and none is needed: it memory-maps the checkpoint and only transposes a few matrices, "
    "so it already loads fast; use the .pth as it is"
)

_CONVERT_SCRIPT = r"""
import os, sys
src, strategy, out = sys.argv[1], sys.argv[2], sys.argv[3]
from rwkv.model import RWKV
RWKV(src, strategy, verbose=False, convert_and_save_and_exit=out)
sys.exit(3)  # the converter exits by itself; reaching here means it did not save
"""


@dataclass(frozen=True)
class ConvertResult:
    source: Path
    output: Path
    arch: str
    strategy: str


def sniff_arch(path: Path) -> tuple[str, str | None]:
    """(family "v4"/"v5"/"v6"/"v7", converted strategy or None) from a checkpoint's keys."""
    try:
        from weprompt_cli.engine.checkpoint import inspect_checkpoint

        info = inspect_checkpoint(path)
        arch = "v" + str(info.arch)[1]
        return arch, getattr(info, "converted_strategy", None)
    except ImportError:
        pass
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:  # a pickle we refuse or a file that is no checkpoint
        raise InvalidFileError(f"not a loadable RWKV checkpoint: {exc}", path=path) from exc
    keys = list(state.keys())
    converted = state.get("_strategy") if isinstance(state.get("_strategy"), str) else None
    if any(k.endswith(("att.r_k", "att.x_r")) for k in keys):
        return "v7", converted
    if any("time_maa" in k for k in keys):
        return "v6", converted
    if any("ln_x" in k for k in keys):
        return "v5", converted
    if "emb.weight" not in keys:
        raise InvalidFileError("not an RWKV checkpoint (no emb.weight)", path=path)
    return "v4", converted


def default_output(source: Path, strategy: str) -> Path:
    """`<stem>-<strategy slug>.pth` beside the source, e.g. `x-cuda-fp16i8.pth`."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", strategy.replace("*", "x")).strip("-").lower()
    return source.with_name(f"{source.stem}-{slug}.pth")


def convert_model(
    model: str, strategy: str, output: Path | None = None, *, home: Home, timeout: float | None = None
) -> ConvertResult:
    """Convert catalog model or file `model` for `strategy`; returns where it was written."""
    from weprompt_cli.config import parse_value
    from weprompt_cli.models.resolve import resolve_model
    strategy = parse_value("strategy", strategy)  # UsageError on a malformed strategy
    resolved = resolve_model(model, home=home)
    source = resolved.path
    arch, converted = sniff_arch(source)
    if converted:
        raise UsageError(
            f"this file is already converted (for strategy {converted!r}); convert the original checkpoint",
            hint="a converted file loads only with the strategy it was converted for",
        )
    if arch == "v7":
        raise UsageError(V7_REFUSAL, hint="weprompt chat --model " + model)
    if strategy == "auto":
        from weprompt_cli.hardware.advice import auto_strategy

        entry = resolved.entry
        info = SimpleNamespace(
            arch=arch,
            n_params=entry.n_params if entry else source.stat().st_size // 2,
            n_layer=entry.n_layer if entry else 32,
            file_size=source.stat().st_size,
        )
        strategy = auto_strategy(info)
    out = Path(output).expanduser() if output else default_output(source, strategy)
    if out.resolve() == source.resolve():
        raise UsageError("the output would overwrite the source checkpoint", hint="pass -o OUT")
    tmp = out.with_name(f".tmp-{out.stem}.{os.getpid()}.pth")
    # JIT off: the converter only prepares weights, and TorchScript compilation would cost seconds.
    env = dict(os.environ, RWKV_V7_ON="0", RWKV_JIT_ON="0", RWKV_CUDA_ON="0")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-c", _CONVERT_SCRIPT, str(source), strategy, str(tmp)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or not tmp.is_file():
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit code {proc.returncode}"
            raise WePromptError(f"the rwkv converter failed: {why}", path=source)
        os.replace(tmp, out)
    except subprocess.TimeoutExpired as exc:
        raise WePromptError("the rwkv converter took too long and was stopped", path=source) from exc
    except OSError as exc:
        from weprompt_cli.errors import DiskError

        raise DiskError(f"cannot write the converted model: {exc.strerror or exc}", path=out) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return ConvertResult(source, out, arch, strategy)
