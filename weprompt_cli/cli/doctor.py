"""`weprompt doctor`: what this machine can run, and why not when it can't."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from weprompt_cli.cli.app import app

if TYPE_CHECKING:
    from weprompt_cli.models.resolve import LlamaStatus


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _decode_path() -> str | None:
    """The decode path an RWKV-7 model gets with `--strategy auto` here: "graph|plain (why)"."""
    try:
        from weprompt_cli.engine.gpu.graph import auto_decode_path

        return auto_decode_path()
    except Exception:  # noqa: BLE001 - doctor reports; it never fails on an optional probe
        return None


def _head_sizes(step: int) -> str:
    """The RWKV-7 head sizes a build with WKV-7 SIMD stride `step` computes correctly."""
    if step <= 1:
        return "any head size"
    text = f"head sizes that are multiples of {step}"
    if step == 64:
        text += " (an AVX-512 build)"
    return text + ("; G1 models (head size 64) are fine" if 64 % step == 0 else "; G1 models (head size 64) are NOT")


def gguf_report(llama: LlamaStatus) -> dict[str, Any]:
    """The GGUF backend here: llama-cpp-python, its build's CPU features and GPU backends, the
    RWKV-7 head sizes it computes correctly (never raises; imports llama_cpp only when installed)."""
    from weprompt_cli.models.resolve import INSTALL_GGUF

    report: dict[str, Any] = {
        "installed": llama.installed,
        "version": llama.version or None,
        "usable": llama.usable,
        "problem": llama.problem,
        "install": INSTALL_GGUF,
        "system_info": None,
        "cpu_features": [],
        "gpu_backends": [],
        "wkv7_simd_step": None,
        "head_sizes": None,
        "g1_head_size_ok": None,
    }
    if not llama.usable:
        return report
    try:
        from weprompt_cli.engine.llama_context import import_llama_cpp, wkv7_simd_step

        lib = import_llama_cpp()
        info = lib.llama_print_system_info().decode("utf-8", errors="replace").strip()
        step = wkv7_simd_step(lib)
        report.update(
            system_info=info,
            # "CPU : SSE3 = 1 | AVX2 = 1 | ... | LLAMAFILE = 1 |": the flags the build has on
            cpu_features=[
                name.strip()
                for part in info.replace("CPU :", "|").split("|")
                for name, _, value in [part.partition("=")]
                if value.strip() == "1" and name.strip()
            ],
            gpu_backends=list(llama.gpu_backends),
            wkv7_simd_step=step,
            head_sizes=_head_sizes(step),
            g1_head_size_ok=64 % step == 0 if step > 1 else True,
        )
    except Exception as exc:  # noqa: BLE001 - doctor reports; it never fails on an optional probe
        report["problem"] = f"{type(exc).__name__}: {exc}"
    return report


def home_problem(root: Path) -> str | None:
    """Why WePrompt cannot keep its files in `root` (a file, read-only, not creatable), or None.

    `os.access` answers for permissions and read-only mounts; a temporary file is then
    really created and removed, because only a write tells the whole truth (ACLs,
    a full or broken filesystem, root on a read-only mount).
    """
    if root.exists() and not root.is_dir():
        return "the home is a file, not a folder: WePrompt cannot keep sessions there"
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the home is created on first use: its nearest existing parent must allow that
    if not existing.is_dir():
        return f"the home cannot be created: {existing} is a file, not a folder"
    where = "the home" if existing == root else f"the home does not exist yet and its parent {existing}"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{where} is not writable (read-only)"
    try:
        fd, probe = tempfile.mkstemp(prefix=".weprompt-doctor-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"{where} is not writable ({exc.strerror or exc})"
    sessions = root / "sessions"
    if sessions.exists() and not (sessions.is_dir() and os.access(sessions, os.W_OK | os.X_OK)):
        return f"{sessions} is not a writable folder: sessions cannot be saved"
    return None


def _home_hint(source: str) -> str:
    if source == "WEPROMPT_HOME":
        return "point WEPROMPT_HOME at a writable folder (export WEPROMPT_HOME=~/weprompt)"
    return "set WEPROMPT_HOME to a writable folder (export WEPROMPT_HOME=~/weprompt)"


def doctor_report() -> dict[str, Any]:
    """Everything `weprompt doctor` prints, as data (never raises for missing pieces)."""
    from weprompt_cli.context import Context
    from weprompt_cli.hardware.advice import choose_strategy
    from weprompt_cli.hardware.inventory import GIB, detect_inventory
    from weprompt_cli.hardware.kernel import cuda_kernel_usable
    from weprompt_cli.models.catalog import load_catalog
    from weprompt_cli.models.resolve import auto_format, gguf_fit, llama_cpp_status

    home = Context.create().home
    inv = detect_inventory()
    llama = llama_cpp_status()
    gguf = gguf_report(llama)
    machine = auto_format(inv, llama)
    gguf["auto"] = {"format": machine.format, "quant": machine.quant, "reason": machine.reason}
    gguf_device = (gguf["gpu_backends"] or ["cpu"])[0]
    kernel_ok, kernel_why = cuda_kernel_usable(inv, home.cache)
    problem = home_problem(home.root)
    problems = list(inv.problems)
    if problem:
        problems.insert(0, f"{problem} ({home.root})")
    models = []
    for m in load_catalog().models:
        a = choose_strategy(
            inv, arch=m.arch, n_params=m.n_params, n_layer=m.n_layer, n_embd=m.n_embd, vocab_size=m.vocab_size
        )
        row: dict[str, Any] = {
            "name": m.name, "fits": a.fits, "strategy": a.strategy, "where": a.where, "reason": a.reason,
            "format": "pth", "quant": None, "file": m.file or m.package_file,
            "downloaded": ([] if not (m.local_path(home).is_file()) else ["pth"])
            + [v.quant for v in m.gguf if m.gguf_is_downloaded(v, home)],
        }
        choice = auto_format(inv, llama, m) if not m.embedded else None
        row["format_reason"] = choice.reason if choice else "embedded in WePrompt"
        if choice is not None and choice.format == "gguf":
            v = m.find_gguf(choice.quant or "")
            assert v is not None
            fits, why = gguf_fit(v, inv)
            row.update(format="gguf", quant=v.quant, file=v.filename, strategy=gguf_device, where=gguf_device,
                       fits=fits, reason=why)
        models.append(row)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": inv.torch_version,
        "torch_cuda": inv.torch_cuda_version,
        "rwkv": _version("rwkv"),
        "huggingface_hub": _version("huggingface_hub"),
        "pynvml": _version("nvidia-ml-py"),
        "cuda_available": inv.cuda_available,
        "driver": inv.driver,
        "gpu_source": inv.gpu_source,
        "gpus": [
            {
                "index": g.index,
                "name": g.name,
                "total_gib": round(g.total_bytes / GIB, 2),
                "free_gib": round(g.free_bytes / GIB, 2),
                "driver": g.driver,
            }
            for g in inv.gpus
        ],
        "cpu_count": inv.cpu_count,
        "cpu_bf16": inv.cpu_bf16,
        "ram_total_gib": round(inv.ram_total_bytes / GIB, 2),
        "ram_available_gib": round(inv.ram_available_bytes / GIB, 2),
        "nvcc": inv.nvcc,
        "ninja": inv.ninja,
        "cuda_kernel": {"usable": kernel_ok, "reason": kernel_why},
        "decode_path": _decode_path(),
        "gguf": gguf,
        "home": {
            "root": str(home.root),
            "source": home.source,
            "config": str(home.config_file),
            "usable": problem is None,
            "problem": problem,
            "hint": _home_hint(home.source) if problem else None,
        },
        "problems": problems,
        "models": models,
    }


_HOME_SOURCES = {
    "WEPROMPT_HOME": "from $WEPROMPT_HOME",
    "checkout": "this project checkout (no $WEPROMPT_HOME)",
    "platform": "the platform's user data folder (no $WEPROMPT_HOME)",
}


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check Python, torch, rwkv, CUDA and GPUs, and which catalog models fit here."""
    r = doctor_report()
    if as_json:
        typer.echo(json.dumps(r, indent=2))
        return
    out = typer.echo
    out(f"python        {r['python']} ({r['platform']})")
    out(
        f"torch         {r['torch'] or 'not importable'}"
        + (f" (CUDA {r['torch_cuda']})" if r["torch_cuda"] else " (CPU build)")
    )
    out(f"rwkv          {r['rwkv'] or 'not installed'}")
    out(f"CUDA          {'available' if r['cuda_available'] else 'not available'}")
    out(f"driver        {r['driver'] or 'no NVIDIA driver found'}")
    if r["gpus"]:
        for g in r["gpus"]:
            out(f"GPU {g['index']}         {g['name']}: {g['free_gib']:.1f} of {g['total_gib']:.1f} GiB free")
    else:
        out("GPUs          none found (CPU only)")
    out(f"CPU           {r['cpu_count']} cores, bf16 {'yes' if r['cpu_bf16'] else 'no (auto never picks bf16 here)'}")
    out(f"RAM           {r['ram_available_gib']:.1f} of {r['ram_total_gib']:.1f} GiB available")
    out(f"nvcc / ninja  {r['nvcc'] or 'no nvcc'} / {r['ninja'] or 'no ninja'}")
    k = r["cuda_kernel"]
    out(f"CUDA kernel   {'yes' if k['usable'] else 'no'}: {k['reason']}")
    if r["decode_path"]:
        out(f"decode path   {r['decode_path']}")
    h = r["home"]
    out(f"home          {h['root']} ({_HOME_SOURCES.get(h['source'], h['source'])})")
    if h["problem"]:
        out(f"home PROBLEM  {h['problem']}")
        out(f"  hint        {h['hint']}")
    for p in r["problems"]:
        if not (h["problem"] and p.startswith(h["problem"])):  # said just above
            out(f"note          {p}")
    _print_gguf(r["gguf"])
    out("")
    out("models (what --strategy auto picks here, and what 'models pull' fetches):")
    width = max(len(m["name"]) for m in r["models"])
    for m in r["models"]:
        mark = "fits" if m["fits"] else "NO  "
        if not m["fits"]:
            detail = m["reason"]
        elif m["format"] == "gguf":
            detail = f"GGUF {m['quant'].upper()} ({m['file']}) on {m['strategy']} through llama.cpp"
        else:
            detail = m["strategy"]
        out(f"  {m['name'].ljust(width)}  {mark}  {detail}")
    sys.stdout.flush()


def _print_gguf(g: dict[str, Any]) -> None:
    out = typer.echo
    if not g["installed"]:
        out(f"GGUF          llama-cpp-python not installed (.gguf models need it): {g['install']}")
    elif not g["usable"]:
        out(f"GGUF          llama-cpp-python {g['version'] or '?'} does not load: {g['problem']}")
        out(f"  hint        {g['install']}")
    else:
        out(f"GGUF          llama-cpp-python {g['version']} (the llama.cpp backend for .gguf models)")
        out(f"  CPU         {' '.join(g['cpu_features']) or 'no SIMD flags reported'}")
        backends = ", ".join(g["gpu_backends"]) or "none (this build runs on the CPU only)"
        out(f"  GPU         {backends}")
        out(f"  RWKV-7      {g['head_sizes']}")
    out(f"  auto        {g['auto']['reason']}")
