"""RWKV `.pth` -> GGUF: llama.cpp loads what we write, and computes what the rwkv package computes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from checkpoints import build_checkpoint, tiny_model, tiny_models_dir  # noqa: F401  (fixture)
from gguf_models import (
    copy_model,
    llama_greedy,
    llama_tokenize,
    needs_llama_cpp,
    package_greedy,
    package_logits,
)
from helpers import run_python_json

from weprompt_cli.errors import InvalidFileError, NotFoundError, UsageError, WePromptError

pytestmark = [needs_llama_cpp, pytest.mark.usefixtures("one_torch_thread")]

QUANTS = ("f32", "f16", "q8_0", "q5_1", "q4_0")
TEXT = "User: How do I select every row of a table?\n\nAssistant: SELECT * FROM t; -- naïve café 😀  ok\n"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path) -> Path:  # noqa: F811
    """A copy of the tiny RWKV-7 (2 layers x 128, head size 64, the tiny BPE beside it) in its own folder."""
    return copy_model(tiny_model("v7", tiny_models_dir), tmp_path_factory.mktemp("gguf-convert"))


@pytest.fixture(scope="module")
def converted(work: Path) -> dict[str, Any]:
    """Every quantization of the tiny model, written to the default output names."""
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    return {quant: convert_to_gguf(work, quant=quant) for quant in QUANTS}


@pytest.fixture(scope="module")
def teacher(work: Path) -> tuple[list[int], list[Any]]:
    """64 random token ids and the rwkv package's logits after each (cpu fp32)."""
    tokens = np.random.default_rng(7).integers(0, 400, 64).tolist()
    return tokens, package_logits(work, tokens)


def open_ctx(path: Path, **kwargs: Any) -> Any:
    from weprompt_cli.engine.llama_context import LlamaContext

    return LlamaContext.open(path, n_threads=kwargs.pop("n_threads", 1), **kwargs)


def per_token_logits(path: Path, tokens: list[int]) -> list[Any]:
    with open_ctx(path) as ctx:
        return [ctx.eval([t]) for t in tokens]


# ---------------------------------------------------------------------------- conversions


def test_every_quantization_converts_to_a_file_llama_cpp_loads(converted: dict[str, Any], work: Path) -> None:
    names = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0", "q5_1": "Q5_1", "q4_0": "Q4_0"}
    sizes = []
    for quant, result in converted.items():
        assert result.output == work.with_name(f"{work.stem}-{quant}.gguf").resolve()
        assert (result.arch, result.quant, result.n_layer, result.n_embd, result.head_size) == ("v7", quant, 2, 128, 64)
        with open_ctx(result.output) as ctx:
            meta = ctx.metadata
            assert (meta.architecture, meta.n_layer, meta.n_embd, meta.head_size, meta.n_head) == ("rwkv7", 2, 128, 64, 2)
            assert meta.vocab_size == result.vocab_size == 400
            assert meta.file_type == names[quant]
            assert meta.file_size == result.file_size == result.output.stat().st_size
        sizes.append(result.file_size)
    assert sizes == sorted(sizes, reverse=True), f"f32 > f16 > q8_0 > q5_1 > q4_0, got {sizes}"
    assert not list(work.parent.glob(".tmp-*")), "no temporary file is left behind"


def test_f32_logits_match_the_rwkv_package_over_64_tokens(converted: dict[str, Any], teacher: Any) -> None:
    tokens, reference = teacher
    got = per_token_logits(converted["f32"].output, tokens)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(got, reference))
    assert worst < 1e-3, worst
    with open_ctx(converted["f32"].output) as ctx:
        last = ctx.eval(tokens)  # the same 64 tokens as one prompt batch
    assert float(np.abs(last - reference[-1]).max()) < 1e-3


def test_f32_greedy_continuation_equals_the_package(converted: dict[str, Any], work: Path) -> None:
    prompt = [5, 17, 300, 42, 7, 99, 120]
    with open_ctx(converted["f32"].output) as ctx:
        ours = llama_greedy(ctx, prompt, 32)
    assert ours == package_greedy(work, prompt, 32)


@pytest.mark.parametrize(
    ("quant", "max_rel_rms", "min_corr", "min_top1"),
    [("f16", 0.005, 0.9999, 0.98), ("q8_0", 0.04, 0.999, 0.85), ("q5_1", 0.15, 0.99, 0.7), ("q4_0", 0.3, 0.97, 0.55)],
)
def test_lower_precisions_stay_close_to_the_package(
    converted: dict[str, Any], teacher: Any, quant: str, max_rel_rms: float, min_corr: float, min_top1: float
) -> None:
    """Measured here (logit std 3.0), error RMS / std: f16 0.0005, q8_0 0.014, q5_1 0.07, q4_0 0.14;
    greedy top-1 agreement 1.0, 0.94, 0.83-0.89, 0.70-0.77."""
    tokens, reference = teacher
    got = np.concatenate(per_token_logits(converted[quant].output, tokens))
    ref = np.concatenate(reference)
    rel_rms = float(np.sqrt(np.mean((got - ref) ** 2)) / ref.std())
    corr = float(np.corrcoef(got, ref)[0, 1])
    top1 = float(np.mean(got.reshape(64, -1).argmax(1) == ref.reshape(64, -1).argmax(1)))
    assert rel_rms < max_rel_rms and corr > min_corr and top1 >= min_top1, (rel_rms, corr, top1)


def test_quantized_file_keeps_small_tensors_in_float(converted: dict[str, Any]) -> None:
    import gguf

    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(converted["q4_0"].output)).tensors}
    assert types["blk.1.channel_mix_key.weight"] == "Q4_0"
    assert types["blk.1.time_mix_key.weight"] == "Q4_0"
    assert types["blk.1.time_mix_w1.weight"] == "F32"  # the decay LoRA stays f32, as in llama.cpp's converter
    assert types["blk.1.time_mix_lerp_fused.weight"] == "F32"
    assert types["blk.1.time_mix_a1.weight"] == "F16"  # llama.cpp never quantizes the LoRAs
    assert types["blk.1.attn_norm.weight"] == "F32"
    f16 = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(converted["f16"].output)).tensors}
    assert f16["blk.1.time_mix_receptance.weight"] == "F16" and f16["blk.0.time_mix_w2.weight"] == "F32"


def test_sidecar_tokenizer_is_copied_beside_the_output(converted: dict[str, Any], work: Path) -> None:
    result = converted["q8_0"]
    assert result.tokenizer_file == result.output.with_name(f"{work.stem}-q8_0.tokenizer.json")
    assert result.tokenizer_file.read_bytes() == work.with_name(f"{work.stem}.tokenizer.json").read_bytes()
    assert result.tokenizer == f"bpe ({work.stem}.tokenizer.json)"


def test_bpe_vocabulary_tokenizes_like_weprompt(converted: dict[str, Any], work: Path) -> None:
    from weprompt_cli.engine.tokenizer import JsonTokenizer

    ours = JsonTokenizer(work.with_name(f"{work.stem}.tokenizer.json")).encode(TEXT)
    assert llama_tokenize(converted["q4_0"].output, TEXT) == ours


def test_world_vocabulary_model_converts_and_tokenizes_like_weprompt(tmp_path: Path) -> None:
    from weprompt_cli.engine.tokenizer import world_tokenizer
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    pth = build_checkpoint("v7", tmp_path / "world.pth", n_layer=1, n_embd=64, vocab_size=65536, tokenizer=None)
    result = convert_to_gguf(pth, quant="f16")
    assert result.tokenizer == "rwkv-world" and result.tokenizer_file is None
    with open_ctx(result.output) as ctx:
        assert ctx.metadata.vocab_size == 65536
        assert ctx.eval([1, 2, 3]).shape == (65536,)
    assert llama_tokenize(result.output, TEXT) == world_tokenizer().encode(TEXT)


def test_model_without_a_known_vocabulary_gets_a_placeholder_of_its_size(tmp_path: Path) -> None:
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    pth = build_checkpoint("v7", tmp_path / "plain.pth", n_layer=1, n_embd=64, vocab_size=300, tokenizer=None)
    for quant in ("f32", "q8_0"):
        result = convert_to_gguf(pth, quant=quant)
        assert result.tokenizer == "placeholder"
        with open_ctx(result.output) as ctx:
            assert ctx.metadata.vocab_size == 300
            assert np.isfinite(ctx.eval([1, 299])).all()


def test_progress_reports_every_tensor_then_the_end(work: Path, tmp_path: Path) -> None:
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    calls: list[tuple[int, int]] = []
    convert_to_gguf(work, tmp_path / "p.gguf", quant="q8_0", progress=lambda d, t: calls.append((d, t)))
    total = calls[-1][1]
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and total > 2 * 20


def test_a_failed_conversion_keeps_the_previous_output(work: Path, tmp_path: Path) -> None:
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    out = tmp_path / "keep.gguf"
    out.write_bytes(b"a good file")

    def stop(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_to_gguf(work, out, quant="f16", progress=stop)
    assert out.read_bytes() == b"a good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.gguf"]


# ---------------------------------------------------------------------------- the demo model (head size 32)


@pytest.fixture(scope="module")
def demo_gguf(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from weprompt_cli.models.gguf_convert import convert_to_gguf
    from weprompt_cli.models.resolve import demo_model_path

    return convert_to_gguf(demo_model_path(), tmp_path_factory.mktemp("demo") / "demo-f32.gguf", quant="f32")


def test_demo_model_converts_with_head_size_32_and_its_own_bpe(demo_gguf: Any) -> None:
    import gguf

    from weprompt_cli.engine.tokenizer import JsonTokenizer

    reader = gguf.GGUFReader(str(demo_gguf.output))
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("tokenizer.ggml.t")}
    assert fields["general.architecture"] == "rwkv7" and fields["rwkv7.wkv.head_size"] == 32
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    from weprompt_cli.engine.checkpoint import inspect_checkpoint
    from weprompt_cli.models.resolve import demo_model_path

    pth = inspect_checkpoint(demo_model_path())
    assert (demo_gguf.n_layer, demo_gguf.n_embd, demo_gguf.vocab_size) == (pth.n_layer, pth.n_embd, pth.vocab_size)
    assert demo_gguf.tokenizer_file == demo_gguf.output.with_name("demo-f32.tokenizer.json")
    assert llama_tokenize(demo_gguf.output, TEXT) == JsonTokenizer(demo_gguf.tokenizer_file).encode(TEXT)


def _build_runs_head_size(head_size: int) -> bool:
    from weprompt_cli.engine.llama_context import wkv7_simd_step

    return head_size % wkv7_simd_step() == 0


def test_demo_model_gguf_greedy_tokens_equal_the_package(demo_gguf: Any) -> None:
    from weprompt_cli.engine.llama_context import wkv7_simd_step
    from weprompt_cli.engine.tokenizer import JsonTokenizer

    if not _build_runs_head_size(32):
        pytest.skip(f"this llama.cpp build's CPU WKV-7 kernel walks heads in strides of {wkv7_simd_step()} floats "
                    "and computes head size 32 wrongly (an AVX-512 build); "
                    "test_a_build_that_cannot_run_head_size_32_refuses_it covers it")
    prompt = JsonTokenizer(demo_gguf.tokenizer_file).encode("User: How many customers are there?\n\nAssistant:")
    with open_ctx(demo_gguf.output) as ctx:
        ours = llama_greedy(ctx, prompt, 32)
    assert ours == package_greedy(demo_gguf.source, prompt, 32)


def test_a_build_that_cannot_run_head_size_32_refuses_it(demo_gguf: Any) -> None:
    from weprompt_cli.errors import HardwareError

    if _build_runs_head_size(32):
        pytest.skip("this llama.cpp build runs head size 32 (its SIMD stride divides 32)")
    with pytest.raises(HardwareError, match="head size 32") as caught:
        open_ctx(demo_gguf.output)
    assert "GGML_AVX512=OFF" in (caught.value.hint or "")


# ---------------------------------------------------------------------------- RWKV-6


def test_rwkv6_checkpoint_converts_and_matches_the_package(tmp_path: Path) -> None:
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    pth = build_checkpoint("v6", tmp_path / "six.pth")
    tokens = np.random.default_rng(3).integers(0, 400, 24).tolist()
    ref_file = tmp_path / "ref.npy"
    # The rwkv package runs RWKV-6 only when imported without RWKV_V7_ON: a process of its own.
    run_python_json(f"""
        import json, os
        os.environ.update(RWKV_V7_ON="0", RWKV_JIT_ON="1", RWKV_CUDA_ON="0")
        import numpy as np, torch
        torch.set_num_threads(1)
        from rwkv.model import RWKV
        model = RWKV({str(pth)[:-4]!r}, "cpu fp32", verbose=False)
        state, out = None, []
        for t in {tokens!r}:
            logits, state = model.forward([t], state)
            out.append(logits.float().numpy())
        np.save({str(ref_file)!r}, np.stack(out))
        print(json.dumps({{"ok": True}}))
    """)
    reference = np.load(ref_file)
    result = convert_to_gguf(pth, quant="f32")
    assert result.arch == "v6"
    with open_ctx(result.output) as ctx:
        assert ctx.metadata.architecture == "rwkv6"
        got = np.stack([ctx.eval([t]) for t in tokens])
    assert float(np.abs(got - reference).max()) < 1e-3


# ---------------------------------------------------------------------------- bad inputs


def test_unknown_quantization_is_a_usage_error(work: Path) -> None:
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    with pytest.raises(UsageError, match="unknown GGUF quantization 'q3_k'.*f32, f16, q8_0, q5_1, q4_0"):
        convert_to_gguf(work, quant="q3_k")


def test_output_in_a_missing_folder_is_refused(work: Path, tmp_path: Path) -> None:
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    with pytest.raises(NotFoundError, match="output folder does not exist") as caught:
        convert_to_gguf(work, tmp_path / "nowhere" / "x.gguf")
    assert caught.value.path == str(tmp_path / "nowhere")


def test_converter_refuses_to_overwrite_its_input(work: Path) -> None:
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    before = work.read_bytes()
    for out in (work, work.parent / ".." / work.parent.name / work.name):
        with pytest.raises(UsageError, match="overwrite the input"):
            convert_to_gguf(work, out, quant="f32")
    assert work.read_bytes() == before


def test_checkpoints_that_are_not_rwkv7_or_rwkv6_are_refused(tmp_path: Path) -> None:
    import torch

    from weprompt_cli.models.gguf_convert import convert_to_gguf

    five = build_checkpoint("v5.2", tmp_path / "five.pth")
    with pytest.raises(UsageError, match="supports RWKV-7 and RWKV-6 checkpoints; this is RWKV-5.2"):
        convert_to_gguf(five)
    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, str(other))
    with pytest.raises(InvalidFileError, match="not an RWKV checkpoint"):
        convert_to_gguf(other)
    with pytest.raises(NotFoundError, match="model file not found"):
        convert_to_gguf(tmp_path / "absent.pth")


def test_a_checkpoint_with_unknown_tensors_is_refused(work: Path, tmp_path: Path) -> None:
    import torch

    from weprompt_cli.models.gguf_convert import convert_to_gguf

    state = torch.load(str(work), weights_only=True)
    state["blocks.0.ffn.s_emb.weight"] = torch.zeros(400, 32)  # a DeepEmbed variant llama.cpp does not run
    odd = tmp_path / "odd.pth"
    torch.save(state, str(odd))
    with pytest.raises(UsageError, match=r"tensors the GGUF converter does not know \(blocks.0.ffn.s_emb.weight\)"):
        convert_to_gguf(odd)
    assert not list(tmp_path.glob("*.gguf"))


def test_converting_a_gguf_file_is_refused(converted: dict[str, Any]) -> None:
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    with pytest.raises(UsageError, match="already a GGUF"):
        convert_to_gguf(converted["f16"].output)


def test_quantizing_without_llama_cpp_says_how_to_install_it(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` now fails
    with pytest.raises(UsageError, match="needs llama-cpp-python") as caught:
        convert_to_gguf(work, quant="q8_0")
    assert caught.value.hint == "bash scripts/setup.sh --gguf  (or pip install 'weprompt[gguf]')"


def test_errors_are_one_line_weprompt_errors(work: Path, tmp_path: Path) -> None:
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    for call in (lambda: convert_to_gguf(work, quant="nope"), lambda: convert_to_gguf(work, tmp_path / "a" / "b")):
        with pytest.raises(WePromptError) as caught:
            call()
        assert "\n" not in caught.value.one_line()
        json.dumps(caught.value.one_line())
