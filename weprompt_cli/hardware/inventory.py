"""What this machine has: GPUs (pynvml, then torch), CUDA, CPU bf16, RAM, compilers.

`detect_inventory()` never raises for missing or broken pieces: a missing pynvml, an
NVML error (no driver, driver/library mismatch), a CPU-only torch or a failing CUDA
init each become a line in `Inventory.problems`, so `weprompt doctor` can say what is
wrong instead of crashing. pynvml and torch are imported inside the functions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

GIB = 1024**3


@dataclass(frozen=True)
class GPU:
    """One GPU as NVML (or torch) reports it."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int
    driver: str | None = None


@dataclass(frozen=True)
class Inventory:
    """The hardware facts that strategy advice and `weprompt doctor` need."""

    gpus: tuple[GPU, ...] = ()
    cuda_available: bool = False  # torch can run CUDA here (CUDA build + driver + device)
    torch_version: str | None = None
    torch_cuda_version: str | None = None  # the CUDA version torch was built with (None: CPU build)
    cpu_bf16: bool = False  # the CPU has native bf16 (avx512_bf16 / amx_bf16 / arm bf16)
    cpu_count: int = 1
    ram_total_bytes: int = 0
    ram_available_bytes: int = 0
    nvcc: str | None = None  # path of nvcc, if found
    ninja: str | None = None  # path of ninja, if found
    driver: str | None = None  # NVIDIA driver version (NVML)
    gpu_source: str = "none"  # "pynvml", "torch" or "none"
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def usable_gpus(self) -> tuple[GPU, ...]:
        """GPUs that torch can actually use (none with a CPU-only torch or a broken driver)."""
        return self.gpus if self.cuda_available else ()


def _nvml_gpus(problems: list[str]) -> tuple[list[GPU], str | None]:
    """GPUs from NVML; every failure mode becomes a problem line and an empty list."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except Exception as exc:  # ImportError, or a broken install raising anything
        problems.append(f"pynvml is not available ({type(exc).__name__}: {exc}); install nvidia-ml-py")
        return [], None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / anything
        problems.append(f"NVML could not start: {exc or type(exc).__name__} (no NVIDIA driver?)")
        return [], None
    gpus: list[GPU] = []
    driver: str | None = None
    try:
        try:
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
        except Exception as exc:
            problems.append(f"NVML could not read the driver version: {exc}")
        count = int(pynvml.nvmlDeviceGetCount())
        for i in range(count):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = _text(pynvml.nvmlDeviceGetName(handle))
                mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
                gpus.append(GPU(i, name, int(mem.total), int(mem.free), driver))
            except Exception as exc:
                problems.append(f"NVML could not read GPU {i}: {exc}")
    except Exception as exc:
        problems.append(f"NVML failed: {exc or type(exc).__name__}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return gpus, driver


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _torch_facts(problems: list[str]) -> tuple[str | None, str | None, bool]:
    """(torch version, torch's CUDA version, CUDA usable) without ever raising."""
    try:
        import torch
    except Exception as exc:
        problems.append(f"torch cannot be imported: {exc}")
        return None, None, False
    cuda_version = getattr(torch.version, "cuda", None)
    try:
        available = bool(torch.cuda.is_available())
    except Exception as exc:
        problems.append(f"torch.cuda failed: {exc}")
        available = False
    if cuda_version is None:
        problems.append("this torch is a CPU-only build: GPUs cannot be used (install a CUDA build of torch)")
    return str(torch.__version__), cuda_version, available


def _torch_gpus(problems: list[str]) -> list[GPU]:
    """GPUs from torch when NVML gave none (creates a CUDA context: only as a fallback)."""
    import torch

    gpus = []
    for i in range(torch.cuda.device_count()):
        try:
            free, total = torch.cuda.mem_get_info(i)
            gpus.append(GPU(i, torch.cuda.get_device_name(i), int(total), int(free), None))
        except Exception as exc:
            problems.append(f"torch could not read GPU {i}: {exc}")
    return gpus


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (else bf16 on CPU is about 12x slower than fp32)."""
    try:
        if sys.platform.startswith("linux"):
            text = Path("/proc/cpuinfo").read_text(errors="replace")
            for line in text.splitlines():
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
            return False
        if sys.platform == "darwin":
            out = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], check=False, capture_output=True, text=True, timeout=5
            )
            return out.stdout.strip() == "1"
    except (OSError, subprocess.SubprocessError):
        pass
    return False


def ram_bytes() -> tuple[int, int]:
    """(total, available) system memory in bytes; (0, 0) when unknown."""
    try:
        info = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                info[key] = int(parts[0]) * 1024
        total = info.get("MemTotal", 0)
        return total, info.get("MemAvailable", info.get("MemFree", total))
    except (OSError, ValueError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
        avail = os.sysconf("SC_AVPHYS_PAGES") * page if "SC_AVPHYS_PAGES" in os.sysconf_names else total
        return int(total), int(avail)
    except (ValueError, OSError, AttributeError):
        return 0, 0


def find_tool(name: str) -> str | None:
    """A build tool on PATH, in this Python's bin folder (pip's ninja), or under CUDA_HOME."""
    found = shutil.which(name)
    if found:
        return found
    candidates = [Path(sys.executable).parent / name]
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            candidates.append(Path(os.environ[env]) / "bin" / name)
    candidates.append(Path("/usr/local/cuda/bin") / name)
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def detect_inventory(*, use_torch: bool = True) -> Inventory:
    """This machine's inventory; never raises (problems are listed instead).

    `use_torch=False` skips importing torch (fast, but then `cuda_available` is False).
    """
    problems: list[str] = []
    gpus, driver = _nvml_gpus(problems)
    source = "pynvml" if gpus else "none"
    torch_version = torch_cuda = None
    cuda_ok = False
    if use_torch:
        torch_version, torch_cuda, cuda_ok = _torch_facts(problems)
        if cuda_ok and not gpus:
            gpus = _torch_gpus(problems)
            source = "torch" if gpus else "none"
        if gpus and torch_cuda is not None and not cuda_ok:
            problems.append("NVML sees GPUs but torch cannot use CUDA (driver too old for this torch?)")
    total, avail = ram_bytes()
    return Inventory(
        gpus=tuple(gpus),
        cuda_available=cuda_ok,
        torch_version=torch_version,
        torch_cuda_version=torch_cuda,
        cpu_bf16=cpu_has_bf16(),
        cpu_count=os.cpu_count() or 1,
        ram_total_bytes=total,
        ram_available_bytes=avail,
        nvcc=find_tool("nvcc"),
        ninja=find_tool("ninja"),
        driver=driver,
        gpu_source=source,
        problems=tuple(problems),
    )
