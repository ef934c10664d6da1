"""The engine on a real (tiny, random) RWKV-7 checkpoint, in this process.

`rwkv.model` fixes its family at import, so this process holds RWKV-7 only; the other
families run in subprocesses (test_engine_families.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from checkpoints import build_checkpoint, tiny_models, tiny_models_dir  # noqa: F401  (fixtures)
from helpers import engine_tokens, multi_turn_state_gap, one_turn, pipeline_tokens

from weprompt_cli.engine import (
    Engine,
    Sampler,
    SamplingParams,
    clone_state,
    load_engine,
    state_from_tensors,
    state_nbytes,
    state_to_tensors,
)
from weprompt_cli.errors import InvalidFileError, WePromptError
from weprompt_cli.chat.formats import chat_format_for

PROMPT = "User: How do I count rows?\n\nAssistant:"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(tiny_models: dict[str, Path]) -> Engine:
    return load_engine(tiny_models["v7"], "cpu fp32")


class Scripted(Sampler):
    """Returns the given token ids in order (the model still runs and is fed each one)."""

    def __init__(self, tokens: list[int]) -> None:
        super().__init__(SamplingParams(max_tokens=len(tokens)))
        self.script = list(tokens)

    def sample(self, logits: Any) -> int:
        return self.script.pop(0)


def fed_from_scratch(engine: Engine, tokens: list[int]) -> list[Any]:
    state = engine.zero_state()
    engine.feed(tokens, state)
    return state


def assert_same_state(a: list[Any], b: list[Any], tol: float = 1e-4) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype
        assert float((x.double() - y.double()).abs().max()) <= tol * max(1.0, float(y.double().abs().max()))


def test_v7_loads_through_rwkv_and_answers_a_turn(engine: Engine) -> None:
    from weprompt_cli.engine.runtime import loaded_family

    assert type(engine.model).__name__ == "RWKV_x070" and loaded_family() == "v7"
    assert engine.info.arch == "v7" and engine.strategy == "cpu fp32" and chat_format_for(engine.info, engine.tokenizer).name == "world"
    turn = one_turn(engine)
    assert turn["tokens"] and turn["reason"] in ("stop", "length")
    assert "".join(turn["pieces"]) == turn["text"]
    assert turn["logits_dtype"] == "torch.float32"


def test_greedy_decoding_matches_the_rwkv_pipeline(engine: Engine) -> None:
    ours = engine_tokens(engine, PROMPT, 20)
    assert ours == pipeline_tokens(engine, PROMPT, 20)
    assert len(set(ours)) > 3  # a real, varied continuation


def test_greedy_decoding_with_penalties_matches_the_rwkv_pipeline(engine: Engine) -> None:
    kw = {"presence": 1.5, "frequency": 1.0, "decay": 0.95}
    ours = engine_tokens(engine, PROMPT, 20, **kw)
    assert ours == pipeline_tokens(engine, PROMPT, 20, **kw)
    assert ours != engine_tokens(engine, PROMPT, 20)


def test_state_after_several_turns_equals_feeding_the_recorded_ids_in_one_go(engine: Engine) -> None:
    gap = multi_turn_state_gap(engine)
    assert gap["max_gap"] <= 1e-4 * max(1.0, gap["scale"]), gap
    assert "length" in gap["reasons"] and gap["same_length"]
    assert gap["moved"] > 0.01  # the live state really advanced


def test_zero_state_is_the_packages_own(engine: Engine) -> None:
    tokens = engine.tokenizer.encode(PROMPT)
    ours = engine.zero_state()
    logits = engine.feed(tokens, ours)
    theirs_logits, theirs = engine.model.forward(tokens, None)
    assert float((logits - theirs_logits.float()).abs().max()) == 0.0
    assert_same_state(ours, theirs, tol=0.0)


def test_streaming_never_splits_a_utf8_character(engine: Engine) -> None:
    tok = engine.tokenizer
    script = tok.encode(" héllo 😀 ok 世界")
    assert len(script) > len(["héllo", "😀", "ok", "世界"])  # characters really span several tokens
    state = fed_from_scratch(engine, tok.encode(PROMPT))
    generation = engine.generate(engine.feed([1], state), state, Scripted(script), stop=("\n\n",))
    pieces = list(generation)
    assert all(p and "\ufffd" not in p for p in pieces)
    assert "".join(pieces) == "héllo 😀 ok 世界" == generation.result.text
    assert generation.result.stop_reason == "length"


def test_an_unfinished_last_character_is_not_shown(engine: Engine) -> None:
    tok = engine.tokenizer
    script = tok.encode(" ok 😀")[:-2]  # stop in the middle of the emoji's bytes
    state = fed_from_scratch(engine, tok.encode(PROMPT))
    generation = engine.generate(engine.feed([1], state), state, Scripted(script))
    assert "".join(generation) == "ok "
    assert generation.result.raw_text == " ok \ufffd" and generation.result.tokens == script


def test_stop_string_across_tokens_is_cut_and_its_token_fed(engine: Engine) -> None:
    tok = engine.tokenizer
    prompt = tok.encode(PROMPT)
    reply = tok.encode(" Use COUNT.\n\nUser: more")
    texts = [tok.decode([t]) for t in reply]
    at = texts.index("\n")
    assert texts[at + 1] == "\n"  # the separator spans two tokens
    state = engine.zero_state()
    logits = engine.feed(prompt, state)
    generation = engine.generate(logits, state, Scripted(reply), stop=("\n\n",))
    pieces = list(generation)
    result = generation.result
    assert all("\n" not in p for p in pieces)
    assert result.text == "Use COUNT." and result.stop_reason == "stop" and result.stop_string == "\n\n"
    assert result.raw_text == " Use COUNT.\n\n"  # the separator's tokens were fed, nothing after them
    assert tok.decode(result.tokens) == result.raw_text
    assert_same_state(state, fed_from_scratch(engine, prompt + result.tokens))


def test_a_user_stop_string_ends_the_reply_and_text_is_held_back_meanwhile(engine: Engine) -> None:
    tok = engine.tokenizer
    reply = tok.encode(" SELECT name FROM t; -- done")
    state = engine.zero_state()
    generation = engine.generate(engine.feed(tok.encode(PROMPT), state), state, Scripted(reply), stop=("\n\n", "FROM"))
    pieces = list(generation)
    assert "".join(pieces) == "SELECT name " and generation.result.stop_string == "FROM"
    assert all("F" not in p for p in pieces)


def test_cancel_between_tokens_keeps_the_state_consistent(engine: Engine) -> None:
    prompt = engine.tokenizer.encode(PROMPT)
    state = engine.zero_state()
    logits = engine.feed(prompt, state)
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 5  # five tokens, then Ctrl-C

    generation = engine.generate(logits, state, Sampler(SamplingParams(seed=3)), stop=(), max_tokens=50, cancel=cancel)
    text = "".join(generation)
    result = generation.result
    assert result.stop_reason == "interrupted" and len(result.tokens) == 5
    assert text == result.text
    assert_same_state(state, fed_from_scratch(engine, prompt + result.tokens))


def test_close_stops_a_generation_between_tokens(engine: Engine) -> None:
    prompt = engine.tokenizer.encode(PROMPT)
    state = engine.zero_state()
    generation = engine.generate(engine.feed(prompt, state), state, Sampler(SamplingParams(seed=4)), stop=(), max_tokens=40)
    next(generation)
    result = generation.close()
    assert result.stop_reason == "interrupted" and 0 < len(result.tokens) < 40
    assert_same_state(state, fed_from_scratch(engine, prompt + result.tokens))


def test_seeded_sampling_is_reproducible(engine: Engine) -> None:
    prompt = engine.tokenizer.encode(PROMPT)
    base = engine.zero_state()
    logits = engine.feed(prompt, base)

    def run(seed: int) -> list[int]:
        state = clone_state(base)
        params = SamplingParams(temperature=1.2, top_p=0.95, seed=seed)
        generation = engine.generate(logits, state, Sampler(params), stop=(), max_tokens=15)
        list(generation)
        return generation.result.tokens

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_feed_reports_progress_and_stops_between_chunks_when_cancelled(engine: Engine) -> None:
    tokens = engine.tokenizer.encode("some text to prefill in chunks " * 3)
    seen: list[tuple[int, int]] = []
    state = engine.zero_state()
    logits = engine.feed(tokens, state, chunk=16, progress=lambda done, total: seen.append((done, total)))
    total = len(tokens)
    assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) == -(-total // 16)
    assert_same_state(state, fed_from_scratch(engine, tokens))
    whole = engine.zero_state()
    assert float((logits - engine.feed(tokens, whole, chunk=1000)).abs().max()) < 1e-4

    chunks = {"n": 0}

    def cancel_after_two() -> bool:
        return chunks["n"] >= 2

    def progress(done: int, total: int) -> None:
        chunks["n"] += 1

    partial = engine.zero_state()
    engine.feed(tokens, partial, chunk=16, progress=progress, cancel=cancel_after_two)
    assert_same_state(partial, fed_from_scratch(engine, tokens[:32]))
    with pytest.raises(ValueError):
        engine.feed([], engine.zero_state())


def test_state_tensors_round_trip_and_convert_dtype(engine: Engine) -> None:
    import torch

    state = fed_from_scratch(engine, engine.tokenizer.encode(PROMPT))
    tensors = state_to_tensors(state)
    assert list(tensors) == [f"s{i:03d}" for i in range(len(state))]
    assert all(t.device.type == "cpu" for t in tensors.values())
    assert state_nbytes(state) == sum(t.numel() * t.element_size() for t in tensors.values())
    back = state_from_tensors({k: v.double() for k, v in tensors.items()}, engine)  # e.g. saved by another dtype
    assert_same_state(back, state, tol=0.0)
    tensors["s000"].zero_()
    assert float(state[0].abs().sum()) > 0  # the export is a copy
    with pytest.raises(InvalidFileError, match="does not fit"):
        state_from_tensors({"s000": torch.zeros(3)}, engine)
    bad = dict(tensors)
    bad["s001"] = torch.zeros(5)
    with pytest.raises(InvalidFileError, match="does not fit"):
        state_from_tensors(bad, engine)


def test_a_second_family_in_this_process_is_a_clear_error(engine: Engine, tiny_models: dict[str, Path]) -> None:
    with pytest.raises(WePromptError, match="this process already loaded an RWKV-7 model"):
        load_engine(tiny_models["v4"], "cpu fp32")


def test_fingerprint_is_hashed_once_and_follows_the_file(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from weprompt_cli.engine import fingerprint as fp

    model = tmp_path / "copy.pth"
    shutil.copyfile(engine.info.path, model)
    hashed: list[Path] = []
    real = fp.file_sha256
    monkeypatch.setattr(fp, "file_sha256", lambda p: hashed.append(p) or real(p))
    cache = tmp_path / "cache"
    first = fp.model_fingerprint(model, cache_dir=cache)
    assert fp.model_fingerprint(model, cache_dir=cache) == first and len(hashed) == 1
    assert (cache / fp.CACHE_FILE).is_file()
    assert first.endswith(f"-{model.stat().st_size}")
    with open(model, "r+b") as f:  # same size, different bytes, new mtime
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    assert fp.model_fingerprint(model, cache_dir=cache) != first and len(hashed) == 2
    assert engine.fingerprint == engine.fingerprint == fp.model_fingerprint(engine.info.path)


def test_world_vocabulary_model_uses_the_world_tokenizer(tiny_models_dir: Path) -> None:
    path = build_checkpoint("v7", tiny_models_dir / "world" / "world.pth", n_embd=64, vocab_size=65536,
                            tokenizer=None, dtype="fp16")
    world = load_engine(path, "cpu fp32")
    assert world.tokenizer.name.startswith("rwkv-world") and chat_format_for(world.info, world.tokenizer).name == "world"
    turn = one_turn(world)
    assert turn["tokens"] and "".join(turn["pieces"]) == turn["text"]


def test_raven_format_for_v4_on_the_20b_vocabulary(tmp_path: Path) -> None:
    import shutil

    from checkpoints import TINY_TOKENIZER

    from weprompt_cli.chat.formats import chat_format_for
    from weprompt_cli.engine.checkpoint import ModelInfo
    from weprompt_cli.engine.tokenizer import resolve_tokenizer

    shutil.copyfile(TINY_TOKENIZER, tmp_path / "20B_tokenizer.json")
    for arch, vocab, expected in [("v4", 50277, "raven"), ("v5.2", 50277, "world"), ("v4", 65536, "world")]:
        info = ModelInfo(tmp_path / "m.pth", arch, 2, 32, vocab, 0, 0, 1, 1)
        assert chat_format_for(info, resolve_tokenizer(info.path, info, tmp_path)).name == expected
