"""`--model NAME|PATH` to a model file: catalog names (.pth or a GGUF build), paths, the config default, the demo.

Which file a catalog name means depends on the strategy (`resolve_model(..., strategy=)`):

- an rwkv-package strategy (`cpu fp32`, `cuda fp16`...): the .pth (when only a GGUF build is on
  disk, a one-device strategy runs it on that device, with a note; a split is an error);
- a llama.cpp strategy (`cpu`, `cuda`, `metal *20`...): a downloaded GGUF build, Q8_0 first;
- `auto`: a downloaded Q8_0 GGUF when this machine has no usable GPU and llama-cpp-python
  loads (llama.cpp runs RWKV-7 Q8_0 on a CPU about 2x faster than the rwkv package's fp32,
  in a quarter of the memory), else the .pth; whichever of the two is the only one on disk;
- no strategy (`models convert`): the .pth.

`auto_format` is that rule as a pure function of an `Inventory` and a `LlamaStatus`, so
`models pull` (which format to fetch), `models list` and `weprompt doctor` say the same.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from weprompt_cli.errors import InvalidFileError, NotFoundError, UsageError, WePromptError
from weprompt_cli.models.catalog import DEFAULT_QUANT, CatalogModel, GgufVariant, load_catalog
from weprompt_cli.paths import Home, demo_model_dir

if TYPE_CHECKING:
    from weprompt_cli.config import Config
    from weprompt_cli.hardware.inventory import Inventory

DEMO_FILE_NAME = "weprompt-demo-rwkv7.pth"
INSTALL_GGUF = "bash scripts/setup.sh --gguf"
GGUF_GAIN = "about 2x the speed of the .pth at a quarter of the memory"


@dataclass(frozen=True)
class ResolvedModel:
    """The model file to load, what it is, and why it was picked."""

    path: Path
    is_demo: bool  # the chat says so once
    entry: CatalogModel | None = None  # the catalog entry, when named by one
    tokenizer_path: Path | None = None  # a tokenizer file pull fetched beside it, if any
    variant: GgufVariant | None = None  # the catalog's GGUF build, when that is what was picked
    reason: str | None = None  # one short line for --verbose: why this file
    note: str | None = None  # a line to show even without --verbose: the file is not what the strategy asked for

    @property
    def format(self) -> str:
        """"gguf" or "pth" (by the file's suffix)."""
        return "gguf" if self.path.suffix.lower() == ".gguf" else "pth"

    def __fspath__(self) -> str:
        return str(self.path)


# ---------------------------------------------------------------------------- llama.cpp and the auto rule


@dataclass(frozen=True)
class LlamaStatus:
    """Whether the GGUF backend can run here: llama-cpp-python (and gguf) import and load."""

    installed: bool
    version: str  # "" when not installed
    problem: str | None = None  # why it cannot be used; None when it can
    gpu_backends: tuple[str, ...] = ()  # what this build offloads to ("cuda", "metal", "vulkan"); () = CPU only

    @property
    def usable(self) -> bool:
        return self.problem is None


def llama_cpp_status() -> LlamaStatus:
    """Try the GGUF backend's imports now (llama_cpp loads its shared library: about 0.2 s)."""
    from weprompt_cli.engine.llama_context import import_gguf_reader, import_llama_cpp, llama_cpp_version
    from weprompt_cli.engine.llama_engine import gpu_backends

    version = llama_cpp_version()
    try:
        import_llama_cpp()
        import_gguf_reader()
        backends = tuple(gpu_backends())
    except WePromptError as exc:
        return LlamaStatus(bool(version), version, exc.message)
    except Exception as exc:  # noqa: BLE001 - a broken install must not take the caller down
        return LlamaStatus(bool(version), version, f"{type(exc).__name__}: {exc}")
    return LlamaStatus(True, version, None, backends)


@dataclass(frozen=True)
class AutoFormat:
    """What `auto` runs a catalog model as on this machine (and what `pull` fetches), and why."""

    format: str  # "gguf" or "pth"
    quant: str | None  # the GGUF build's quantization when format is "gguf"
    reason: str


def no_gpu_reason(inventory: Inventory) -> str | None:
    """Why this machine has no usable GPU (None when it has one)."""
    if inventory.usable_gpus:
        return None
    if inventory.gpus:
        return "no usable GPU (GPUs found, but torch cannot use CUDA)"
    return "no usable GPU"


def auto_format(inventory: Inventory, llama: LlamaStatus, entry: CatalogModel | None = None) -> AutoFormat:
    """GGUF Q8_0 when there is no usable GPU, llama-cpp-python loads and `entry` (if given)
    has a Q8_0 build; otherwise the .pth. The reason is one line for messages and doctor."""
    no_gpu = no_gpu_reason(inventory)
    if no_gpu is None:
        best = max(inventory.usable_gpus, key=lambda g: g.free_bytes)
        return AutoFormat("pth", None, f"a usable GPU ({best.name}): the .pth runs on it through the rwkv package")
    if entry is not None and entry.find_gguf(DEFAULT_QUANT) is None:
        return AutoFormat("pth", None, f"{no_gpu}, but {entry.name} has no Q8_0 GGUF build: the .pth on the CPU")
    if not llama.usable:
        why = "llama-cpp-python is not installed" if not llama.installed else f"llama-cpp-python does not load ({llama.problem})"
        return AutoFormat("pth", None, f"{no_gpu}, but {why} ({INSTALL_GGUF}): the .pth on the CPU through the rwkv package")
    if llama.gpu_backends:  # torch can't use the GPU, this llama.cpp build can (its auto strategy offloads)
        where = f"on {llama.gpu_backends[0]} through llama.cpp (this build offloads to it)"
        return AutoFormat("gguf", DEFAULT_QUANT, f"{no_gpu} for the rwkv package: Q8_0 GGUF {where}")
    return AutoFormat("gguf", DEFAULT_QUANT, f"{no_gpu}: Q8_0 GGUF on the CPU through llama.cpp, {GGUF_GAIN}")


# llama.cpp's strategy grammar as a user writes it (engine/llama_engine.py parses it): a device
# and an optional layer count, no dtype, so it never overlaps the rwkv package's `DEVICE DTYPE`.
_GGUF_STRATEGY = re.compile(r"^(cpu|cuda|metal|vulkan)(?: \*\d+)?$")
# An rwkv strategy of one device, which the GGUF backend also takes as that device (llama_engine.py).
_ONE_DEVICE_RWKV = re.compile(r"^(cpu|cuda)(?::\d+)? (?:fp16|fp32|bf16)(?:i8)?(?: \*\d+)?$")


def gguf_fit(variant: GgufVariant, inventory: Inventory) -> tuple[bool, str]:
    """Whether a GGUF build fits this machine's free RAM on the CPU, and a short why."""
    from weprompt_cli.hardware.advice import CPU_OVERHEAD, SLACK, gib

    need = int(variant.size_bytes * SLACK) + CPU_OVERHEAD  # llama.cpp maps the file: weights as stored
    avail = inventory.ram_available_bytes
    if avail <= 0:
        return True, f"{variant.label} needs ~{gib(need)} RAM"
    if need <= avail:
        return True, f"{variant.label} needs ~{gib(need)} of {gib(avail)} free RAM"
    return False, f"{variant.label} needs ~{gib(need)} RAM, {gib(avail)} free: pick a smaller model"


def strategy_kind(strategy: str | None) -> str | None:
    """"auto", "gguf" (a llama.cpp strategy: cpu, cuda [*N], metal, vulkan), "rwkv" (anything else), or None."""
    if strategy is None:
        return None
    text = " ".join(strategy.split()).lower()
    if text in ("", "auto"):
        return "auto"
    return "gguf" if _GGUF_STRATEGY.match(text) else "rwkv"  # nonsense: the rwkv loader says so in one line


# ---------------------------------------------------------------------------- resolving


def demo_model_path() -> Path:
    """The embedded demo checkpoint (NotFoundError when this install lacks it)."""
    try:
        from weprompt_cli.demo import DEMO_MODEL_PATH  # type: ignore[attr-defined]

        path = Path(DEMO_MODEL_PATH)
    except (ImportError, AttributeError):
        path = demo_model_dir() / DEMO_FILE_NAME
    if not path.is_file():
        raise NotFoundError(
            "no model configured and the embedded demo model is not in this install",
            path=path,
            hint="weprompt models pull g1-0.1b, then --model g1-0.1b (or: weprompt config set default_model g1-0.1b)",
        )
    return path


def _demo(home: Home) -> ResolvedModel:
    entry = load_catalog().find("demo")
    return ResolvedModel(demo_model_path(), True, entry, reason="no model configured: the embedded demo model")


def _pth(entry: CatalogModel, home: Home, reason: str | None, *, pull: str = "") -> ResolvedModel:
    """The .pth of `entry`; NotFoundError naming the pull that fetches it (`pull`: extra options)."""
    path = entry.local_path(home)
    hint = f"weprompt models pull {entry.name}{pull}"
    if not path.is_file():
        raise NotFoundError(f"model {entry.name!r} is not downloaded", path=path, hint=hint)
    tok = entry.tokenizer_path(home)
    if tok is not None and not tok.is_file():
        raise NotFoundError(f"the tokenizer of {entry.name!r} is missing", path=tok, hint=hint)
    return ResolvedModel(path, False, entry, tok, None, reason)


def _gguf(entry: CatalogModel, variant: GgufVariant, home: Home, reason: str) -> ResolvedModel:
    return ResolvedModel(
        variant.local_path(home), False, entry, entry.gguf_tokenizer_path(variant, home), variant, reason
    )


def _catalog_model(
    entry: CatalogModel,
    home: Home,
    strategy: str | None,
    inventory: Inventory | None,
    llama: LlamaStatus | None,
) -> ResolvedModel:
    kind = strategy_kind(strategy)
    pth_only = " --format pth" if entry.gguf else ""  # a plain pull may fetch the GGUF build instead
    if kind is None or entry.embedded:
        return _pth(entry, home, None, pull=pth_only)
    name = entry.name
    has_pth = entry.is_downloaded(home)
    ggufs = entry.downloaded_gguf(home)
    if kind == "rwkv":
        if not has_pth and ggufs and _ONE_DEVICE_RWKV.match(" ".join((strategy or "").split()).lower()):
            # e.g. `strategy = "cpu fp32"` in config.toml after a plain pull fetched the GGUF: run that on
            # the same device (the file carries its own weight format), and say so.
            why = (f"{strategy!r} asks for the rwkv package's .pth, which is not downloaded: the "
                   f"{ggufs[0].label} build instead, on the same device")
            hint = f"weprompt models pull {name} --format pth for the .pth"
            return replace(_gguf(entry, ggufs[0], home, why), note=f"{name}: {why} ({hint})")
        if not has_pth and ggufs:
            raise NotFoundError(
                f"{strategy!r} is an rwkv-package strategy, which runs the .pth of {name}, and only its "
                f"{ggufs[0].label} is downloaded",
                hint=f"weprompt models pull {name} --format pth, or a llama.cpp strategy for the GGUF: --strategy cpu",
            )
        return _pth(entry, home, f"{strategy!r} is an rwkv-package strategy: the .pth", pull=pth_only)
    if kind == "gguf":
        if ggufs:
            return _gguf(entry, ggufs[0], home, f"{strategy!r} is a llama.cpp strategy: the {ggufs[0].label} build")
        if not entry.gguf:
            raise UsageError(
                f"{strategy!r} is a llama.cpp strategy for GGUF files, and {name} has no GGUF build in the catalog",
                hint="an rwkv-package strategy for the .pth, e.g. --strategy 'cpu fp32' or 'cuda fp16'",
            )
        raise NotFoundError(
            f"{strategy!r} is a llama.cpp strategy, and no GGUF build of {name} is downloaded",
            hint=f"weprompt models pull {name} --format gguf (or --strategy 'cpu fp32' for the .pth)",
        )
    # auto
    q8 = entry.find_gguf(DEFAULT_QUANT)
    if q8 is not None and q8 in ggufs:
        if inventory is None:
            from weprompt_cli.hardware.inventory import detect_inventory

            inventory = detect_inventory()
        llama = llama or llama_cpp_status()
        choice = auto_format(inventory, llama, entry)
        if choice.format == "gguf":
            return _gguf(entry, q8, home, choice.reason)
        if has_pth:
            return _pth(entry, home, choice.reason)
    if has_pth:
        reason = "auto: the .pth"
        if ggufs:
            reason += f" (the downloaded {ggufs[0].label} is used with a llama.cpp strategy such as --strategy cpu)"
        elif q8 is not None:
            reason += f" (on a machine without a usable GPU, 'weprompt models pull {name} --format gguf' runs ~2x faster)"
        return _pth(entry, home, reason)
    if ggufs:
        llama = llama or llama_cpp_status()
        if not llama.usable:
            raise UsageError(
                f"only the {ggufs[0].label} build of {name} is downloaded, and llama-cpp-python "
                + ("is not installed" if not llama.installed else f"does not load ({llama.problem})"),
                hint=f"{INSTALL_GGUF}, or weprompt models pull {name} --format pth",
            )
        return _gguf(entry, ggufs[0], home, f"auto: the {ggufs[0].label} build, the only one downloaded")
    return _pth(entry, home, None)  # NotFoundError: not downloaded, with the pull hint


def resolve_model(
    arg: str | None,
    *,
    config: Config | None = None,
    home: Home,
    strategy: str | None = None,
    inventory: Inventory | None = None,
    llama: LlamaStatus | None = None,
) -> ResolvedModel:
    """The model file for `--model` (a catalog name or a path), else config's default, else the demo.

    `strategy` picks between a catalog model's .pth and its GGUF builds (see the module
    docstring); None means the .pth. `inventory` and `llama` default to this machine's
    and are only looked at when a Q8_0 GGUF of the model is on disk.
    """
    if arg is None or not str(arg).strip():
        if config is None:
            from weprompt_cli.config import load_config

            config = load_config(home)
        arg = config.default_model
        if arg is None:
            return _demo(home)
    arg = str(arg).strip()
    if arg == "demo":
        return _demo(home)
    catalog = load_catalog()
    entry = catalog.find(arg)
    if entry is not None:
        return _catalog_model(entry, home, strategy, inventory, llama)
    path = Path(arg).expanduser()
    if path.is_dir():
        raise InvalidFileError("--model is a folder, not a checkpoint file", path=path)
    if not path.is_file() and path.suffix != ".pth" and path.with_name(path.name + ".pth").is_file():
        path = path.with_name(path.name + ".pth")  # the rwkv package's habit of naming models without .pth
    if not path.is_file():
        looks_like_path = "/" in arg or "\\" in arg or arg.endswith((".pth", ".gguf")) or arg.startswith(("~", "."))
        if looks_like_path:
            raise NotFoundError("no model file here", path=path, hint="check the path, or see 'weprompt models list'")
        close = difflib.get_close_matches(arg, catalog.names(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see 'weprompt models list' for catalog names"
        raise NotFoundError(f"no catalog model or file called {arg!r}", hint=hint)
    path = path.resolve()
    tok = path.with_name(path.stem + ".tokenizer.json")
    return ResolvedModel(path, False, None, tok if tok.is_file() else None)
