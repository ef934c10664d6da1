"""The numpy sampler (llama.cpp engines) against the torch sampler: the same rules, the same picks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weprompt_cli.engine import sampling
from weprompt_cli.engine.sampling_np import NumpySampler, sampling_weights, top_p_cutoff
from weprompt_cli.params import SamplingParams


def logits_of(seed: int, vocab: int = 4096, scale: float = 4.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(vocab) * scale).astype(np.float32)


@pytest.mark.parametrize("scale", [0.5, 4.0, 12.0])  # flat (the full sort) to peaked (the best 256 suffice)
@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.99])
def test_top_p_cutoff_is_the_torch_samplers(scale: float, top_p: float) -> None:
    logits = logits_of(1, scale=scale)
    probs = torch.softmax(torch.from_numpy(logits), dim=-1)
    want = float(sampling.top_p_cutoff(probs, top_p))
    assert top_p_cutoff(probs.numpy(), top_p) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize(("temperature", "top_p", "top_k"), [(1.0, 1.0, 0), (0.7, 0.5, 0), (1.3, 0.9, 40), (1.0, 0.3, 5)])
def test_sampling_weights_are_the_torch_samplers(temperature: float, top_p: float, top_k: int) -> None:
    logits = logits_of(2)
    want = sampling.sampling_weights(torch.from_numpy(logits), temperature=temperature, top_p=top_p, top_k=top_k)
    got = sampling_weights(logits, temperature=temperature, top_p=top_p, top_k=top_k)
    assert np.array_equal(got > 0, want.numpy() > 0)  # the same tokens kept
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-9)


def test_greedy_with_penalties_decay_and_bans_picks_what_the_torch_sampler_picks() -> None:
    params = SamplingParams(temperature=0, presence_penalty=0.4, frequency_penalty=0.6, penalty_decay=0.99)
    ours, theirs = NumpySampler(params), sampling.Sampler(params)
    for s in (ours, theirs):
        s.ban((0, 7))
    rng = np.random.default_rng(3)
    base = logits_of(4, vocab=512, scale=1.0)
    picked = []
    for step in range(60):
        logits = base + rng.standard_normal(512).astype(np.float32) * 0.05
        a, b = ours.sample(logits), theirs.sample(torch.from_numpy(logits))
        assert a == b, step
        text = " " if step % 7 == 0 else "x"
        ours.observe(a, text)
        theirs.observe(b, text)
        picked.append(a)
    assert 0 not in picked and 7 not in picked and len(set(picked)) > 10  # the penalties move it on


def test_a_seed_repeats_its_draws_and_the_draws_follow_the_distribution() -> None:
    params = SamplingParams(temperature=1.0, top_p=1.0, seed=11)
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    first = [NumpySampler(params).sample(logits) for _ in range(3)]
    sampler_a, sampler_b = NumpySampler(params), NumpySampler(params)
    seq_a = [sampler_a.sample(logits) for _ in range(200)]
    assert seq_a == [sampler_b.sample(logits) for _ in range(200)] and len(set(first)) == 1
    draws = NumpySampler(params)
    counts = np.bincount([draws.sample(logits) for _ in range(20000)], minlength=4) / 20000
    np.testing.assert_allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.015)


def test_a_batch_of_numpy_rows_is_sampled_as_the_same_rows_in_torch() -> None:
    """The batched scheduler's step over llama.cpp's numpy logits: greedy rows share one argmax (each with its own
    banned ids), sampled rows use their own seeded sampler; the picks are the torch path's."""
    from weprompt_cli.engine.batch_scheduler import Stream, sample_streams

    def batch(framework: str) -> list[Stream]:
        streams = []
        for n, params in enumerate([SamplingParams(temperature=0), SamplingParams(temperature=0),
                                    SamplingParams(temperature=0, presence_penalty=0.5),
                                    SamplingParams(temperature=1.0, top_p=0.9, seed=11)]):
            sampler = NumpySampler(params) if framework == "numpy" else sampling.Sampler(params)
            logits = logits_of(10 + n)
            if n == 1:
                sampler.ban((int(logits.argmax()),))  # its best token is banned: the second best wins
            streams.append(Stream(None, logits if framework == "numpy" else torch.from_numpy(logits), sampler))
        return streams

    picks = sample_streams(batch("numpy"))
    assert picks == sample_streams(batch("torch"))
    assert picks[0] == int(logits_of(10).argmax())
    second = logits_of(11)
    second[second.argmax()] = -np.inf
    assert picks[1] == int(second.argmax())
