"""Streaming text and sampling, without a model: UTF-8 assembly, stop strings, sampling math."""

from __future__ import annotations

import pytest

from weprompt_cli.engine.sampling import Sampler, SamplingParams, top_p_cutoff
from weprompt_cli.engine.stream import StopScanner, TokenText
from weprompt_cli.engine.tokenizer import Tokenizer
from weprompt_cli.errors import UsageError


class ByteTokenizer(Tokenizer):
    """Token id = one byte: every multibyte character is split across tokens."""

    name = "bytes"
    has_bytes = True

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids: list[int]) -> bytes:
        return bytes(ids)

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


class TextOnlyTokenizer(ByteTokenizer):
    """The same, but without byte access (the fallback path)."""

    has_bytes = False


@pytest.mark.parametrize("tokenizer", [ByteTokenizer(), TextOnlyTokenizer()])
def test_token_text_never_splits_a_utf8_character(tokenizer: Tokenizer) -> None:
    text = "é ü 世界 😀 ok"
    assembler = TokenText(tokenizer)
    pieces = [assembler.push(t) for t in tokenizer.encode(text)] + [assembler.finish()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text
    assert pieces[:2] == ["", "é"]  # the first byte of é is held back


def test_token_text_finish_reports_an_incomplete_character() -> None:
    assembler = TokenText(ByteTokenizer())
    assert assembler.push(0xF0) == "" and assembler.push(0x9F) == ""
    assert assembler.finish() == "\ufffd"


def feed(scanner: StopScanner, chunks: list[str]) -> list[str]:
    return [scanner.push(c) for c in chunks]


def test_stop_string_split_across_pushes_is_never_shown() -> None:
    scanner = StopScanner(("\n\n",))
    out = feed(scanner, [" Hi", "\n", "\n", "User"])
    assert out == [" Hi", "", "", ""]
    assert scanner.matched == "\n\n" and scanner.shown == " Hi"


def test_held_text_is_released_when_the_stop_does_not_complete() -> None:
    scanner = StopScanner(("\n\n", "END"))
    assert feed(scanner, [" ab\n", "cd", "E", "N", "x", "EN", "D"]) == [" ab", "\ncd", "", "", "ENx", "", ""]
    assert scanner.matched == "END" and scanner.shown == " ab\ncdENx"


def test_earliest_stop_wins_and_flush_releases_held_text() -> None:
    scanner = StopScanner(("Z", "XY"))
    assert scanner.push("aXYZ") == "a"
    assert scanner.matched == "XY" and scanner.shown == "a"
    scanner = StopScanner(("\n\n",))
    assert scanner.push("tail\n") == "tail"
    assert scanner.flush() == "\n"


def test_sampling_params_validate_and_override() -> None:
    params = SamplingParams()
    assert (params.temperature, params.top_p, params.top_k, params.max_tokens) == (1.0, 0.85, 0, 500)
    changed = params.with_overrides(temperature=0.5, seed=3, top_p=None)
    assert changed.temperature == 0.5 and changed.seed == 3 and changed.top_p == 0.85
    for bad in (
        {"temperature": -1},
        {"top_p": 1.5},
        {"top_k": -1},
        {"max_tokens": 0},
        {"penalty_decay": 2},
        {"seed": -5},
        {"temperature": float("nan")},
        {"top_k": 1.5},
    ):
        with pytest.raises(UsageError):
            params.with_overrides(**bad)
    with pytest.raises(UsageError, match="unknown sampling"):
        params.with_overrides(temprature=1)


def test_top_p_cutoff_matches_a_full_sort() -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    for spread in (0.1, 1.0, 5.0):
        probs = torch.softmax(torch.randn(5000, generator=g) * spread, dim=0)
        for top_p in (0.1, 0.5, 0.85, 0.99):
            ordered = torch.sort(probs, descending=True).values
            cumulative = torch.cumsum(ordered, 0)
            expected = ordered[int((cumulative >= top_p).nonzero()[0])]
            assert top_p_cutoff(probs, top_p) == expected


def test_seeded_sampler_is_reproducible() -> None:
    import torch

    logits = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    params = SamplingParams(temperature=1.0, top_p=0.9, seed=42)
    draws = [[Sampler(params).sample(logits) for _ in range(1)] for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    s1, s2 = Sampler(params), Sampler(params)
    assert [s1.sample(logits) for _ in range(20)] == [s2.sample(logits) for _ in range(20)]


def test_greedy_and_top_k_one_pick_the_argmax() -> None:
    import torch

    logits = torch.randn(300, generator=torch.Generator().manual_seed(2))
    best = int(torch.argmax(logits))
    assert Sampler(SamplingParams(temperature=0)).sample(logits) == best
    assert Sampler(SamplingParams(temperature=1.0, top_p=1.0, top_k=1, seed=0)).sample(logits) == best


def pipeline_penalised(logits_rows: list, presence: float, frequency: float, decay: float, texts: dict) -> list[int]:
    """The rwkv PIPELINE's penalty bookkeeping, written out as it does it, with greedy picks."""
    import torch

    occurrence: dict[int, float] = {}
    picked = []
    for row in logits_rows:
        out = row.clone()
        for n in occurrence:
            out[n] -= presence + occurrence[n] * frequency
        token = int(torch.argmax(out))
        picked.append(token)
        for n in occurrence:
            occurrence[n] *= decay
        weight = 0 if texts[token] in " \t0123456789" else 1
        occurrence[token] = occurrence.get(token, 0) + weight
    return picked


def test_penalties_match_the_pipeline_bookkeeping() -> None:
    import torch

    g = torch.Generator().manual_seed(3)
    vocab = 12
    texts = {i: ("7" if i == 3 else " " if i == 5 else f"w{i}") for i in range(vocab)}
    # Flat-ish logits so the penalties decide what comes next.
    rows = [torch.randn(vocab, generator=g) * 0.2 for _ in range(40)]
    expected = pipeline_penalised(rows, 0.3, 0.25, 0.9, texts)
    sampler = Sampler(SamplingParams(temperature=0, presence_penalty=0.3, frequency_penalty=0.25, penalty_decay=0.9))
    got = []
    for row in rows:
        token = sampler.sample(row)
        sampler.observe(token, texts[token])
        got.append(token)
    assert got == expected
    assert len(set(got)) > 5  # the penalties really moved the picks around


def test_draws_follow_the_distribution_and_respect_top_p() -> None:
    import torch

    from weprompt_cli.engine.sampling import draw

    g = torch.Generator().manual_seed(9)
    weights = torch.tensor([0.5, 0.3, 0.2, 0.0])
    counts = torch.bincount(torch.tensor([draw(weights, g) for _ in range(6000)]), minlength=4)
    assert counts[3] == 0
    assert torch.allclose(counts.float() / 6000, weights, atol=0.03)
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1]))
    sampler = Sampler(SamplingParams(temperature=1.0, top_p=0.7, seed=2))
    assert {sampler.sample(logits) for _ in range(300)} == {0, 1}
    hot = Sampler(SamplingParams(temperature=5.0, top_p=1.0, seed=2))
    assert {hot.sample(logits) for _ in range(300)} == {0, 1, 2}
