"""Importing `rwkv.model` for one model family, once per process.

`rwkv.model` reads RWKV_V7_ON, RWKV_JIT_ON and RWKV_CUDA_ON when it is imported, and
with RWKV_V7_ON=1 its `RWKV` class only loads RWKV-7: the family is fixed for the life
of the process. This module sets the variables, imports, and refuses a second family.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from weprompt_cli.errors import WePromptError

FAMILY_LABELS = {"v7": "RWKV-7", "v4-v6": "RWKV-4/5/6"}


def family_of(arch: str) -> str:
    """The import mode an architecture needs: "v7" or "v4-v6"."""
    return "v7" if arch == "v7" else "v4-v6"


def loaded_family() -> str | None:
    """The family `rwkv.model` was imported for in this process, or None if not imported yet."""
    module = sys.modules.get("rwkv.model")
    if module is None or not hasattr(module, "RWKV"):
        return None
    # With RWKV_V7_ON=1 the package aliases RWKV to its RWKV-7 class.
    return "v7" if module.RWKV.__name__ == "RWKV_x070" else "v4-v6"


def cuda_compiler_available() -> bool:
    """True when the rwkv package's CUDA kernels could be built here (nvcc and ninja)."""
    nvcc = shutil.which("nvcc")
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if nvcc is None and cuda_home:
        candidate = os.path.join(cuda_home, "bin", "nvcc")
        nvcc = candidate if os.path.exists(candidate) else None
    if nvcc is None:
        return False
    from torch.utils.cpp_extension import is_ninja_available  # what torch will use to build

    return bool(is_ninja_available())


# The package compiles its RWKV-7 kernel for one head size (`-D_N_=64`) and uses it for every
# RWKV-7 prompt once imported with RWKV_CUDA_ON=1: a model of another head size would read past
# its state there, so such a model runs on plain torch.
V7_KERNEL_HEAD_SIZE = 64


def import_rwkv_model(
    arch: str,
    strategy: str,
    *,
    verbose: bool = False,
    head_size: int | None = None,
    build_dir: Path | None = None,
) -> tuple[ModuleType, str | None]:
    """(`rwkv.model` imported for `arch`'s family, a note on the CUDA kernel or None); WePromptError
    if another family is loaded.

    `head_size` (RWKV-7) keeps the CUDA kernel off for models it would compute wrongly;
    `build_dir` (the cache folder) is where the kernel build is kept. `verbose` lets the
    package's import and build output through to the terminal.
    """
    family = family_of(arch)
    current = loaded_family()
    if current is not None:
        if current != family:
            raise WePromptError(
                f"this process already loaded an {FAMILY_LABELS[current]} model; "
                f"an {FAMILY_LABELS[family]} model needs a new process",
                hint="the rwkv package fixes its model family at import: run one family per process",
            )
        if arch == "v7" and kernel_in_use() and head_size not in (None, V7_KERNEL_HEAD_SIZE):
            raise WePromptError(
                f"this process built the rwkv CUDA kernel for RWKV-7 head size {V7_KERNEL_HEAD_SIZE}; "
                f"a model of head size {head_size} needs a new process",
                hint="load it in its own process, or set WEPROMPT_CUDA_KERNEL=0",
            )
        return sys.modules["rwkv.model"], None

    os.environ["RWKV_V7_ON"] = "1" if family == "v7" else "0"
    os.environ["RWKV_JIT_ON"] = "1"
    want_cuda, why = kernel_choice(arch, strategy, head_size, build_dir)
    note = f"rwkv CUDA kernel: {'yes' if want_cuda else 'no'} ({why})"
    if want_cuda:
        from weprompt_cli.hardware.kernel import kernel_env

        os.environ.update(kernel_env(build_dir))  # RWKV_CUDA_ON=1, the build cached, ninja on PATH
    else:
        os.environ["RWKV_CUDA_ON"] = "0"
    try:
        return _import(verbose), note
    except Exception as exc:
        if not want_cuda:
            raise
        # Building the CUDA kernels failed (compiler mismatch...): remember it, run on plain torch.
        from weprompt_cli.hardware.kernel import record_build_failure

        marker = record_build_failure(exc, build_dir)
        warnings.warn(
            f"could not build the rwkv CUDA kernel ({exc}); using plain PyTorch (delete {marker} to retry; "
            "--verbose shows the build log)",
            stacklevel=2,
        )
        sys.modules.pop("rwkv.model", None)
        os.environ["RWKV_CUDA_ON"] = "0"
        return _import(verbose), f"rwkv CUDA kernel: no (the build failed; delete {marker} to retry)"


def kernel_in_use() -> bool:
    """Whether `rwkv.model` was imported with its CUDA kernel (RWKV_CUDA_ON=1) in this process."""
    module = sys.modules.get("rwkv.model")
    return module is not None and os.environ.get("RWKV_CUDA_ON") == "1"


def kernel_choice(
    arch: str, strategy: str, head_size: int | None = None, build_dir: Path | None = None
) -> tuple[bool, str]:
    """(build the kernel?, why) for a model of `arch` and `head_size` run with `strategy`."""
    want, why = _want_kernel(strategy, build_dir)
    if want and arch == "v7" and head_size not in (None, V7_KERNEL_HEAD_SIZE):
        return (
            False,
            f"the package's RWKV-7 kernel is built for head size {V7_KERNEL_HEAD_SIZE}; this model's is {head_size}",
        )
    return want, why


def _want_kernel(strategy: str, build_dir: Path | None = None) -> tuple[bool, str]:
    """(build the kernel?, why): a CUDA strategy on a machine where `cuda_kernel_usable` says yes."""
    if "cuda" not in strategy:
        return False, "not a CUDA strategy"
    if not _torch_cuda_available():
        return False, "CUDA is not available"
    try:
        from weprompt_cli.hardware.inventory import detect_inventory
        from weprompt_cli.hardware.kernel import cuda_kernel_usable

        return cuda_kernel_usable(detect_inventory(), build_dir)
    except Exception as exc:  # noqa: BLE001 - the inventory is advice; fall back to the old test
        ok = cuda_compiler_available()
        return ok, f"inventory failed ({exc}); nvcc and ninja {'found' if ok else 'not found'}"


def _import(verbose: bool) -> ModuleType:
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink, contextlib.nullcontext() if verbose else _quiet_kernel_build():
        import rwkv.model

    return rwkv.model


@contextlib.contextmanager
def _quiet_kernel_build() -> Iterator[None]:
    """Keep the kernel build's compiler and ninja output ("ninja: no work to do.") off the terminal.

    torch runs ninja with the package's `verbose=True`, writing to file descriptor 1 itself,
    which redirecting `sys.stdout` does not catch. `--verbose` shows it.
    """
    if os.environ.get("RWKV_CUDA_ON") != "1":
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _torch_cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())
