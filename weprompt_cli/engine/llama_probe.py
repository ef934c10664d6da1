"""A GGUF model's first forward, run in a child process: a build that crashes on it is an error, not a dead chat.

llama.cpp built with CPU features this machine lacks (or with kernels that are broken for
a quantization) dies with SIGILL or SIGSEGV inside the first matrix product. The probe
runs that forward in a child; a signal becomes a `HardwareError` naming it and saying how
to rebuild. A pass is cached per llama-cpp-python version, CPU and file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weprompt_cli.engine.llama_context import (
    REBUILD_HINT,
    LlamaContext,
    _check_gguf_file,
    import_llama_cpp,
    llama_cpp_version,
)
from weprompt_cli.errors import HardwareError, InvalidFileError, WePromptError

# ---------------------------------------------------------------------------- first-forward probe

PROBE_CACHE_FILE = "gguf-probe.json"
_PROBE_SCHEMA = 1
_PROBE_CHILD = (
    "import sys; from weprompt_cli.engine.llama_probe import _probe_main; "
    "sys.exit(_probe_main(sys.argv[1], int(sys.argv[2])))"
)


@dataclass(frozen=True)
class ProbeResult:
    """A first forward that passed: from the cache, or run now in a child process."""

    path: Path
    cached: bool
    seconds: float


def probe_forward(
    path: str | Path, *, cache_dir: Path | None = None, n_threads: int = 1, timeout: float = 300.0
) -> ProbeResult:
    """Run the model's first forward in a child process; HardwareError if the build crashes on it.

    A pass is cached in `cache_dir/gguf-probe.json`, keyed by the llama-cpp-python
    version, this CPU, and the file's path, size and mtime; no cache without `cache_dir`.
    """
    path = Path(path).expanduser()
    _check_gguf_file(path)
    import_llama_cpp()  # a missing package is a UsageError here, not a child's traceback
    key = _probe_key(path)
    cache = Path(cache_dir) / PROBE_CACHE_FILE if cache_dir is not None else None
    if cache is not None and key in _read_probe_cache(cache):
        return ProbeResult(path, True, 0.0)
    started = time.monotonic()
    cmd = [sys.executable, "-c", _PROBE_CHILD, str(path), str(n_threads)]
    run_probe(cmd, path, timeout=timeout)
    seconds = time.monotonic() - started
    if cache is not None:
        _write_probe_cache(cache, key)
    return ProbeResult(path, False, seconds)


def run_probe(cmd: list[str], path: Path, *, timeout: float = 300.0) -> dict[str, Any]:
    """Run a probe child; its JSON report, or the WePromptError its exit means (a signal: HardwareError)."""
    import weprompt_cli

    env = dict(os.environ)
    package_root = str(Path(weprompt_cli.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env,
                              preexec_fn=_no_core_dumps if os.name == "posix" else None)
    except subprocess.TimeoutExpired:
        raise WePromptError(f"the first forward of this model took over {timeout:.0f}s and was stopped",
                            path=path) from None
    return classify_probe_exit(proc.returncode, proc.stdout, proc.stderr, path)


def classify_probe_exit(returncode: int, stdout: str, stderr: str, path: Path) -> dict[str, Any]:
    """The probe child's report, or raise what its exit means: a signal is a HardwareError."""
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        what = {"SIGILL": "illegal instruction: the build uses CPU instructions this machine lacks",
                "SIGSEGV": "segmentation fault", "SIGBUS": "bus error", "SIGFPE": "arithmetic fault",
                "SIGABRT": "aborted"}.get(name, "killed")
        raise HardwareError(
            f"llama.cpp crashed with {name} ({what}) on this model's first forward",
            path=path,
            hint=REBUILD_HINT + "; or try another quantization of the model (f16 or q8_0)",
        )
    lines = [line for line in stdout.splitlines() if line.strip()]
    report: dict[str, Any] = {}
    if lines:
        try:
            report = json.loads(lines[-1])
        except ValueError:
            report = {}
    if returncode == 0 and report.get("ok"):
        return report
    if "error" in report:
        from weprompt_cli import errors

        kind = getattr(errors, str(report.get("error")), WePromptError)
        if not (isinstance(kind, type) and issubclass(kind, WePromptError)):
            kind = WePromptError
        raise kind(str(report.get("message")), hint=report.get("hint"), path=report.get("path") or path)
    tail = [line for line in stderr.strip().splitlines() if line.strip()]
    why = tail[-1] if tail else f"exit code {returncode}"
    raise WePromptError(f"the first forward of this model failed: {why}", path=path)


def _no_core_dumps() -> None:
    """In the probe child: a crash should not leave a core file behind."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _probe_main(path: str, n_threads: int) -> int:
    """The probe child: a prompt batch and a one-token step; prints a JSON report as its last line."""
    import numpy as np

    try:
        with LlamaContext.open(path, n_threads=n_threads, n_batch=64) as ctx:
            n = ctx.n_vocab
            prompt = [i % n for i in range(1, 17)]  # a 16-token batch: the matrix-matrix kernels
            first = ctx.eval(prompt)
            step = ctx.eval([prompt[-1]])  # one token: the matrix-vector kernels
            if not (np.isfinite(first).all() and np.isfinite(step).all()):
                raise InvalidFileError("the model's first forward gave NaN or infinite logits", path=path)
            report: dict[str, Any] = {"ok": True, "n_vocab": n, "file_type": ctx.metadata.file_type}
    except WePromptError as exc:
        report = {"error": type(exc).__name__, "message": exc.message, "hint": exc.hint, "path": exc.path}
        print(json.dumps(report), flush=True)
        return 3
    print(json.dumps(report), flush=True)
    return 0


def _cpu_signature() -> str:
    """This CPU's identity for the probe cache: a shared home may be used from other machines."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features", "model name")):
                    flags += line
                if line.strip() == "":
                    break  # the first processor's block is enough
    except OSError:
        pass
    text = flags or f"{platform.machine()} {platform.processor()}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _probe_key(path: Path) -> str:
    st = path.stat()
    return f"{llama_cpp_version()}|{_cpu_signature()}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _read_probe_cache(cache: Path) -> list[str]:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # no cache yet, or a damaged one: probing again is always safe
    if not isinstance(data, dict) or data.get("schema") != _PROBE_SCHEMA or not isinstance(data.get("passed"), list):
        return []
    return [str(k) for k in data["passed"]]


def _write_probe_cache(cache: Path, key: str) -> None:
    from weprompt_cli.atomic import atomic_write_json

    keys = [k for k in _read_probe_cache(cache) if k != key] + [key]
    try:
        atomic_write_json(cache, {"schema": _PROBE_SCHEMA, "passed": keys[-200:]})  # the newest 200 files
    except WePromptError:
        pass  # a cache that cannot be written only costs a probe next time
