"""Shared pieces of the GGUF tests: the skip without llama-cpp-python, reference logits, odd GGUF files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest


def _llama_cpp_missing() -> str | None:
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"llama-cpp-python (and gguf) not importable here: {exc}"
    return None


MISSING = _llama_cpp_missing()
needs_llama_cpp = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def copy_model(pth: Path, folder: Path) -> Path:
    """Copy a checkpoint and its tokenizer sidecar into `folder` (conversions write beside their input)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / pth.name
    shutil.copyfile(pth, target)
    sidecar = pth.with_name(pth.name.removesuffix(".pth") + ".tokenizer.json")
    if sidecar.exists():
        shutil.copyfile(sidecar, folder / sidecar.name)
    return target


# ---------------------------------------------------------------------------- the rwkv package as reference

_PACKAGE_MODELS: dict[Path, Any] = {}


def package_model(pth: Path) -> Any:
    """The rwkv package's RWKV-7 model for `pth` on `cpu fp32` (one per path and process)."""
    from weprompt_cli.engine.runtime import import_rwkv_model

    if pth not in _PACKAGE_MODELS:
        module, _ = import_rwkv_model("v7", "cpu fp32")
        _PACKAGE_MODELS[pth] = module.RWKV(str(pth)[: -len(".pth")], "cpu fp32")
    return _PACKAGE_MODELS[pth]


def package_logits(pth: Path, tokens: list[int]) -> list[Any]:
    """The package's float32 logits after each token, fed one at a time (teacher forcing)."""
    model = package_model(pth)
    state = None
    out = []
    for token in tokens:
        logits, state = model.forward([token], state)
        out.append(logits.float().numpy())
    return out


def package_greedy(pth: Path, prompt: list[int], count: int) -> list[int]:
    """`count` tokens the package picks greedily after `prompt`."""
    model = package_model(pth)
    logits, state = model.forward(list(prompt), None)
    picked = []
    for _ in range(count):
        token = int(logits.float().argmax())
        picked.append(token)
        logits, state = model.forward([token], state)
    return picked


def llama_greedy(ctx: Any, prompt: list[int], count: int, seq_id: int = 0) -> list[int]:
    """`count` tokens a LlamaContext picks greedily after `prompt`."""
    logits = ctx.eval(prompt, seq_id)
    picked = []
    for _ in range(count):
        token = int(logits.argmax())
        picked.append(token)
        logits = ctx.eval([token], seq_id)
    return picked


def llama_tokenize(gguf_path: Path, text: str) -> list[int]:
    """How llama.cpp's own tokenizer (the GGUF's vocabulary, loaded alone) splits `text`."""
    from weprompt_cli.engine.llama_context import import_llama_cpp

    lib = import_llama_cpp()
    params = lib.llama_model_default_params()
    params.vocab_only = True
    model = lib.llama_model_load_from_file(str(gguf_path).encode(), params)
    assert model, f"llama.cpp could not load the vocabulary of {gguf_path}"
    try:
        data = text.encode("utf-8")
        out = (lib.llama_token * (len(data) + 8))()
        n = lib.llama_tokenize(lib.llama_model_get_vocab(model), data, len(data), out, len(out), False, False)
        assert n >= 0
        return list(out[:n])
    finally:
        lib.llama_model_free(model)


# ---------------------------------------------------------------------------- GGUF files of other kinds


def write_header_only_gguf(path: Path, arch: str) -> Path:
    """A well-formed GGUF with an architecture name and nothing else."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_llama_gguf(path: Path) -> Path:
    """A complete, loadable 1-layer Llama GGUF (not RWKV): 32 wide, 8 tokens, no real vocabulary."""
    import gguf
    import numpy as np

    c, ff, vocab = 32, 64, 8
    rng = np.random.default_rng(0)

    def mat(rows: int, cols: int) -> Any:
        return (rng.standard_normal((rows, cols)) * 0.1).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(c)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(0)
    writer.add_tokenizer_model("none")
    writer.add_vocab_size(vocab)
    writer.add_tensor("token_embd.weight", mat(vocab, c))
    writer.add_tensor("output_norm.weight", np.ones(c, np.float32))
    writer.add_tensor("output.weight", mat(vocab, c))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(c, np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"blk.0.{name}.weight", mat(c, c))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(c, np.float32))
    writer.add_tensor("blk.0.ffn_gate.weight", mat(ff, c))
    writer.add_tensor("blk.0.ffn_up.weight", mat(ff, c))
    writer.add_tensor("blk.0.ffn_down.weight", mat(c, ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
