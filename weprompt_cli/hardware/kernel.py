"""Whether the rwkv package's CUDA kernel (`RWKV_CUDA_ON=1`) can be built here, and where.

The kernel is compiled by torch.utils.cpp_extension on first use (nvcc + ninja + a C++
compiler), which takes a minute; the build is cached under
`<cache>/torch_extensions` (TORCH_EXTENSIONS_DIR; the caller passes the cache folder, the
CLI its home's `cache/`; without one, torch's own default folder). A failed build is remembered in a
marker file so the next start goes straight to the plain path with one warning instead
of failing the same way again; deleting the marker (or `weprompt doctor` showing the
reason) is how to retry.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from weprompt_cli.hardware.inventory import Inventory

FAILED_MARKER = ".weprompt-kernel-build-failed"
ENV_SWITCH = "WEPROMPT_CUDA_KERNEL"  # "0" turns the kernel off


def extensions_dir(cache_dir: Path | None) -> Path:
    """Where torch caches the compiled kernel: `<cache_dir>/torch_extensions`, else torch's default."""
    if cache_dir is not None:
        return Path(cache_dir) / "torch_extensions"
    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions")


def nvcc_version(nvcc: str) -> str | None:
    """`12.4` from `nvcc --version`, or None when it does not run."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


def cuda_kernel_usable(
    inventory: Inventory, cache_dir: Path | None = None, *, nvcc_release: str | None = None
) -> tuple[bool, str]:
    """(usable, why): whether to set RWKV_CUDA_ON=1 for this machine.

    `nvcc_release` skips running `nvcc --version` (tests pass it).
    """
    if os.environ.get(ENV_SWITCH, "").strip() == "0":
        return False, f"turned off by {ENV_SWITCH}=0"
    if not inventory.usable_gpus:
        return False, "no GPU that torch can use"
    if inventory.torch_cuda_version is None:
        return False, "torch is a CPU-only build"
    if inventory.nvcc is None:
        return False, f"nvcc not found (install the CUDA toolkit {inventory.torch_cuda_version} or set CUDA_HOME)"
    if inventory.ninja is None:
        return False, "ninja not found (pip install ninja)"
    release = nvcc_release or nvcc_version(inventory.nvcc)
    if release is None:
        return False, f"{inventory.nvcc} does not run"
    if release.split(".")[0] != inventory.torch_cuda_version.split(".")[0]:
        return False, f"nvcc is CUDA {release} but torch was built for CUDA {inventory.torch_cuda_version}"
    marker = extensions_dir(cache_dir) / FAILED_MARKER
    if marker.is_file():
        first = (marker.read_text(errors="replace").strip().splitlines() or ["?"])[0]
        return False, f"the last kernel build failed ({first}); delete {marker} to try again"
    return True, f"nvcc {release} and ninja found; the build is cached in {extensions_dir(cache_dir)}"


def kernel_env(cache_dir: Path | None = None) -> dict[str, str]:
    """The environment for a process that uses the kernel (set before importing rwkv.model)."""
    path = extensions_dir(cache_dir)
    env = {"RWKV_CUDA_ON": "1", "TORCH_EXTENSIONS_DIR": str(path)}
    ninja_dir = None
    from weprompt_cli.hardware.inventory import find_tool

    ninja = find_tool("ninja")
    if ninja is not None:
        ninja_dir = str(Path(ninja).parent)
    if ninja_dir and ninja_dir not in os.environ.get("PATH", "").split(os.pathsep):
        # torch looks for ninja on PATH; pip's ninja sits in this Python's bin folder.
        env["PATH"] = ninja_dir + os.pathsep + os.environ.get("PATH", "")
    return env


def record_build_failure(error: BaseException | str, cache_dir: Path | None = None) -> Path:
    """Remember a failed build so later starts skip it (with one warning) instead of failing again."""
    from weprompt_cli.atomic import atomic_write_text

    marker = extensions_dir(cache_dir) / FAILED_MARKER
    text = str(error).strip().splitlines()[-1:] if str(error).strip() else [type(error).__name__]
    try:
        atomic_write_text(marker, (text[0] if text else "build failed")[:300] + "\n")
    except Exception:  # noqa: BLE001 - a marker we can't write only costs a retry next time
        pass
    return marker
