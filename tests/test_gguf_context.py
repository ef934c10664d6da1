"""LlamaContext: ids in, logits out, per-sequence states through llama.cpp's sequence-state API."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from checkpoints import build_checkpoint, tiny_model, tiny_models_dir  # noqa: F401  (fixture)
from gguf_models import copy_model, needs_llama_cpp, write_header_only_gguf, write_tiny_llama_gguf

from weprompt_cli.errors import HardwareError, InvalidFileError, NotFoundError, WePromptError

pytestmark = needs_llama_cpp

PROMPT = [5, 17, 300, 42, 7, 99, 120, 3, 250, 11]
MORE = [64, 65, 66, 1, 2, 399]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path) -> Path:  # noqa: F811
    """The tiny RWKV-7 (2 x 128, head size 64, 400 tokens) as an F32 GGUF."""
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    pth = copy_model(tiny_model("v7", tiny_models_dir), tmp_path_factory.mktemp("gguf-context"))
    return convert_to_gguf(pth, quant="f32").output


def open_ctx(path: Path, **kwargs: Any) -> Any:
    from weprompt_cli.engine.llama_context import LlamaContext

    return LlamaContext.open(path, n_threads=kwargs.pop("n_threads", 1), **kwargs)


# ---------------------------------------------------------------------------- metadata and evaluation


def test_metadata_describes_the_model(model: Path) -> None:
    with open_ctx(model) as ctx:
        meta = ctx.metadata
        assert (meta.architecture, meta.n_layer, meta.n_embd, meta.head_size, meta.n_head) == ("rwkv7", 2, 128, 64, 2)
        assert (meta.vocab_size, meta.file_type, meta.name) == (400, "F32", model.name.removesuffix("-f32.gguf"))
        assert meta.size > 0 and meta.n_params > 0 and meta.file_size == model.stat().st_size
        assert ctx.meta("rwkv7.attention.decay_lora_rank") == "16"
        assert ctx.meta("no.such.key") is None
        ctx.eval(PROMPT)
        blob = ctx.get_state()
    # 2 layers x (2 token-shift rows of 128 + a 64 x 128 WKV matrix) x 4 bytes, plus a small header.
    assert meta.state_size == 2 * (2 * 128 + 64 * 128) * 4
    assert 0 < len(blob) - meta.state_size < 256


def test_eval_returns_float32_logits_and_counts_tokens(model: Path) -> None:
    with open_ctx(model) as ctx:
        logits = ctx.eval(PROMPT)
        assert logits.dtype == np.float32 and logits.shape == (400,) and np.isfinite(logits).all()
        ctx.eval(MORE)
        assert ctx.tokens_evaluated == len(PROMPT) + len(MORE)
        assert ctx.position() == len(PROMPT) + len(MORE)


def test_long_inputs_are_fed_in_n_batch_chunks(model: Path) -> None:
    tokens = np.random.default_rng(1).integers(0, 400, 45).tolist()
    with open_ctx(model) as whole:
        expected = whole.eval(tokens)
        assert whole.decode_calls == 1
    with open_ctx(model, n_batch=8) as chunked:
        got = chunked.eval(tokens)
        assert chunked.decode_calls == 6 and chunked.tokens_evaluated == 45
    assert np.abs(got - expected).max() < 1e-5


def test_nothing_reaches_the_terminal(model: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from weprompt_cli.engine.llama_context import log_tail

    with open_ctx(model) as ctx:
        ctx.eval(PROMPT)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert log_tail(3), "llama.cpp's log lines are kept for error messages"


# ---------------------------------------------------------------------------- states


def test_a_saved_state_brings_back_identical_logits(model: Path) -> None:
    with open_ctx(model) as ctx:
        ctx.eval(PROMPT)
        saved = ctx.get_state()
        first = ctx.eval(MORE)
        ctx.eval([8, 9, 10])  # the state moves on
        ctx.set_state(0, saved)
        assert ctx.position() == len(PROMPT)
        again = ctx.eval(MORE)
    assert np.array_equal(first, again)


def test_a_state_moves_to_a_fresh_context(model: Path) -> None:
    with open_ctx(model) as ctx:
        ctx.eval(PROMPT)
        saved = ctx.get_state()
        expected = ctx.eval(MORE)
    with open_ctx(model, n_seq_max=3) as fresh:
        fresh.set_state(2, saved)  # into another sequence id, of a context shaped differently
        assert fresh.position(2) == len(PROMPT) and fresh.position(0) == 0
        assert np.array_equal(fresh.eval(MORE, 2), expected)


def test_clear_starts_a_sequence_over(model: Path) -> None:
    with open_ctx(model, n_seq_max=2) as ctx:
        fresh = ctx.get_state(1)  # a sequence that has seen nothing
        first = ctx.eval(PROMPT)
        ctx.eval(MORE)
        ctx.clear()
        assert ctx.position() == 0
        assert np.array_equal(ctx.eval(PROMPT), first)
        ctx.set_state(0, fresh)  # restoring an empty state clears too
        assert ctx.position() == 0
        assert np.array_equal(ctx.eval(PROMPT), first)


def test_two_sequences_in_one_batch_equal_each_alone(model: Path) -> None:
    a, b = PROMPT, MORE + [4, 5]
    with open_ctx(model) as alone:
        expect_a = alone.eval(a)
        alone.clear()
        expect_b = alone.eval(b)
        alone.clear()
        after_a = [alone.eval(a), alone.eval([7])][1]
    with open_ctx(model, n_seq_max=2) as ctx:
        got_a, got_b = ctx.eval_batch([(0, a), (1, b)])
        assert ctx.decode_calls == 1 and ctx.tokens_evaluated == len(a) + len(b)
        assert (ctx.position(0), ctx.position(1)) == (len(a), len(b))
        step_a, step_b = ctx.eval_batch([(0, [7]), (1, [7])])  # one decode step for both
    assert np.abs(got_a - expect_a).max() < 1e-5 and np.abs(got_b - expect_b).max() < 1e-5
    assert np.abs(step_a - after_a).max() < 1e-5
    assert not np.allclose(step_a, step_b)


def test_a_batch_larger_than_n_batch_is_split(model: Path) -> None:
    a = np.random.default_rng(2).integers(0, 400, 13).tolist()
    b = np.random.default_rng(3).integers(0, 400, 5).tolist()
    with open_ctx(model, n_seq_max=2) as whole:
        expected = whole.eval_batch([(1, a), (0, b)])
    with open_ctx(model, n_seq_max=2, n_batch=4) as split:
        got = split.eval_batch([(1, a), (0, b)])
        assert split.decode_calls == 5 and (split.position(1), split.position(0)) == (13, 5)
    for g, e in zip(got, expected):
        assert np.abs(g - e).max() < 1e-5


def test_bad_arguments_are_value_errors(model: Path) -> None:
    with open_ctx(model, n_seq_max=2) as ctx:
        for call in (
            lambda: ctx.eval([1], seq_id=2),
            lambda: ctx.eval([400]),
            lambda: ctx.eval([-1]),
            lambda: ctx.eval([]),
            lambda: ctx.eval_batch([(0, [1]), (0, [2])]),
            lambda: ctx.get_state(5),
        ):
            with pytest.raises(ValueError):
                call()
        assert ctx.tokens_evaluated == 0


def test_a_state_of_another_model_is_refused(model: Path, tmp_path: Path) -> None:
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    narrow = convert_to_gguf(build_checkpoint("v7", tmp_path / "narrow.pth", n_layer=2, n_embd=64), quant="f32")
    with open_ctx(narrow.output) as other:
        other.eval([1, 2, 3])
        foreign = other.get_state()
    with open_ctx(model) as ctx:
        ctx.eval(PROMPT)
        for blob in (foreign, b"\x01\x00\x00\x00garbage", b""):
            with pytest.raises(InvalidFileError, match="state"):
                ctx.set_state(0, blob)


def test_a_closed_context_refuses_use(model: Path) -> None:
    ctx = open_ctx(model)
    ctx.close()
    ctx.close()
    for call in (lambda: ctx.eval([1]), ctx.position, ctx.clear, ctx.get_state, lambda: ctx.set_state(0, b"x")):
        with pytest.raises(RuntimeError, match="closed"):
            call()


# ---------------------------------------------------------------------------- bad files


def test_a_truncated_gguf_is_an_invalid_file(model: Path, tmp_path: Path) -> None:
    data = model.read_bytes()
    for cut in (4, 100, 5000, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(InvalidFileError, match="llama.cpp cannot load this GGUF: .*(read|bounds|corrupt)") as caught:
            open_ctx(bad)
        assert caught.value.path == str(bad)


def test_a_gguf_of_another_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidFileError, match="unknown model architecture: 'mamba9'"):
        open_ctx(write_header_only_gguf(tmp_path / "odd.gguf", "mamba9"))
    with pytest.raises(InvalidFileError, match="holds a llama model, not RWKV"):
        open_ctx(write_tiny_llama_gguf(tmp_path / "llama.gguf"))


def test_files_that_are_not_gguf_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.gguf").write_text("hello")
    with pytest.raises(InvalidFileError, match="not a GGUF file"):
        open_ctx(tmp_path / "notes.gguf")
    with pytest.raises(NotFoundError):
        open_ctx(tmp_path / "absent.gguf")
    with pytest.raises(InvalidFileError, match="folder"):
        open_ctx(tmp_path)


# ---------------------------------------------------------------------------- the first-forward probe


def test_probe_passes_and_is_cached(model: Path, tmp_path: Path) -> None:
    from weprompt_cli.engine.llama_probe import PROBE_CACHE_FILE, probe_forward

    first = probe_forward(model, cache_dir=tmp_path)
    assert not first.cached and first.seconds > 0
    assert probe_forward(model, cache_dir=tmp_path).cached
    cache = json.loads((tmp_path / PROBE_CACHE_FILE).read_text())
    assert cache["schema"] == 1 and len(cache["passed"]) == 1 and str(model.resolve()) in cache["passed"][0]
    assert not probe_forward(model).cached  # no cache folder, no cache


@pytest.mark.parametrize("sig", ["SIGILL", "SIGSEGV"])
def test_a_probe_child_killed_by_a_signal_is_a_hardware_error(model: Path, sig: str) -> None:
    from weprompt_cli.engine.llama_probe import run_probe

    suicide = f"import os, signal; os.kill(os.getpid(), signal.{sig})"
    with pytest.raises(HardwareError, match=f"crashed with {sig}") as caught:
        run_probe([sys.executable, "-c", suicide], model)
    assert "GGML_NATIVE=OFF" in (caught.value.hint or "") and "AMX" in (caught.value.hint or "")
    assert caught.value.path == str(model)


def test_the_probe_classifies_exits(model: Path) -> None:
    from weprompt_cli.engine.llama_probe import classify_probe_exit

    assert classify_probe_exit(0, 'noise\n{"ok": true, "n_vocab": 400}\n', "", model)["n_vocab"] == 400
    with pytest.raises(HardwareError, match="SIGBUS"):
        classify_probe_exit(-signal.SIGBUS, "", "", model)
    report = {"error": "InvalidFileError", "message": "broken", "hint": "fix it", "path": None}
    with pytest.raises(InvalidFileError, match="broken"):
        classify_probe_exit(3, json.dumps(report), "", model)
    with pytest.raises(WePromptError, match="failed: Traceback line"):
        classify_probe_exit(1, "", "Traceback line\n", model)


def test_a_probe_relays_the_childs_error_and_caches_nothing(model: Path, tmp_path: Path) -> None:
    from weprompt_cli.engine.llama_probe import PROBE_CACHE_FILE, probe_forward

    bad = tmp_path / "half.gguf"
    bad.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with pytest.raises(InvalidFileError, match="cannot load this GGUF"):
        probe_forward(bad, cache_dir=tmp_path)
    assert not (tmp_path / PROBE_CACHE_FILE).exists()
