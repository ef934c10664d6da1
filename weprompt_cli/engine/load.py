"""Loading a model file into the backend that runs it: `.gguf` -> llama.cpp, anything else -> the rwkv package."""

from __future__ import annotations

from pathlib import Path

from weprompt_cli.engine.base import Engine


def load_engine(
    path: str | Path,
    strategy: str | None = "auto",
    *,
    models_dir: Path | None = None,
    cache_dir: Path | None = None,
    graph: bool = True,
    verbose: bool = False,
) -> Engine:
    """The model at `path`, loaded by its backend with `strategy` ("auto" asks the hardware).

    `models_dir` is searched for shared tokenizer files; `cache_dir` keeps the fingerprint
    cache and compiled kernels (the CLI passes its home's folders; nothing here looks for
    a home). `graph=False` keeps RWKV-7 on CUDA off the CUDA-graph path (`--no-graph`).
    Raises WePromptError subclasses: NotFoundError, InvalidFileError, UnsafeError,
    UsageError (strategy), HardwareError.
    """
    if Path(path).suffix.lower() == ".gguf":
        from weprompt_cli.engine.llama_engine import load_llama_engine

        return load_llama_engine(path, strategy, models_dir=models_dir, cache_dir=cache_dir)
    from weprompt_cli.engine.rwkv_engine import load_rwkv_engine

    return load_rwkv_engine(
        path, strategy, models_dir=models_dir, cache_dir=cache_dir, graph=graph, verbose=verbose
    )
