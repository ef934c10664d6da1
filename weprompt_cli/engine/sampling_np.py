"""The sampler on numpy arrays, for backends whose logits are numpy (llama.cpp): no torch in the process.

The same rules, in the same order, as `engine/sampling.py` (the PIPELINE's): penalties with
decay (float64 counts, rounded to the logits' dtype), banned ids at -inf, greedy argmax at
temperature 0, else softmax, the top-p cutoff (the best 256 tokens tried first), top-k,
temperature, and one inverse-CDF draw from a seeded generator. Greedy answers are the torch
sampler's exactly; sampled ones follow the same distribution from their own random stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from weprompt_cli.engine.sampling import Sampler
from weprompt_cli.params import SamplingParams

if TYPE_CHECKING:
    from numpy.typing import NDArray

_TOP_P_PREFILTER = 256


def softmax(logits: NDArray[np.floating]) -> NDArray[np.float32]:
    """float32 probabilities of `logits` (-inf gets 0)."""
    x = logits.astype(np.float32, copy=True)
    x -= np.max(x)
    np.exp(x, out=x)
    x /= x.sum(dtype=np.float32)
    return x


def _cutoff_in(ordered: NDArray[np.float32], top_p: float) -> float:
    """The first value of a descending `ordered` whose running sum reaches top_p (the last one if none)."""
    cumulative = np.cumsum(ordered, dtype=np.float32)
    index = min(int(np.searchsorted(cumulative, np.float32(top_p))), ordered.size - 1)
    return float(ordered[index])


def top_p_cutoff(probs: NDArray[np.float32], top_p: float) -> float:
    """The smallest probability nucleus sampling keeps (the best 256 first, the full sort only if needed)."""
    n = probs.size
    if _TOP_P_PREFILTER < n:
        best = np.partition(probs, n - _TOP_P_PREFILTER)[n - _TOP_P_PREFILTER:]
        best = np.sort(best)[::-1]
        if float(best.sum(dtype=np.float32)) >= top_p:
            return _cutoff_in(best, top_p)
    return _cutoff_in(np.sort(probs)[::-1], top_p)


def sampling_weights(logits: NDArray[np.floating], *, temperature: float, top_p: float, top_k: int) -> NDArray[np.float32]:
    """The unnormalized distribution a token is drawn from (temperature > 0): top-p, top-k, then temperature."""
    probs = softmax(logits)
    if top_p < 1:
        probs[probs < top_p_cutoff(probs, top_p)] = 0.0
    if 0 < top_k < probs.size:
        kth = np.partition(probs, probs.size - top_k)[probs.size - top_k]
        probs[probs < kth] = 0.0
    if temperature != 1.0:
        probs = probs ** np.float32(1.0 / temperature)
    return probs


def draw(weights: NDArray[np.float32], rng: np.random.Generator) -> int:
    """One index drawn with probability proportional to `weights` (inverse CDF: one uniform number)."""
    cdf = np.cumsum(weights, dtype=np.float64)
    u = rng.random() * cdf[-1]
    return min(int(np.searchsorted(cdf, u, side="right")), weights.size - 1)


class NumpySampler(Sampler):
    """`engine.sampling.Sampler` for numpy logits: `sample(logits)`, then `observe(token, text)` (inherited:
    the penalty bookkeeping is the same, on numpy arrays)."""

    def __init__(self, params: SamplingParams | None = None) -> None:
        super().__init__(params)
        self._rng: np.random.Generator | None = None

    def _ensure(self, logits: NDArray[np.floating]) -> None:  # type: ignore[override]
        if self._counts is None or self._counts.shape != logits.shape:
            self._counts = np.zeros(logits.shape, dtype=np.float64)  # type: ignore[assignment]
            self._seen, self._ids = [], None
        if self._rng is None:
            self._rng = np.random.default_rng(self.params.seed)

    def _index(self, ids: list[int], like: object) -> NDArray[np.int64]:
        return np.asarray(ids, dtype=np.int64)

    def sample(self, logits: NDArray[np.floating]) -> int:  # type: ignore[override]
        """The next token id (the logits are not changed)."""
        self._ensure(logits)
        p = self.params
        work = logits
        if self._seen and (p.presence_penalty or p.frequency_penalty):
            assert self._ids is not None and self._counts is not None
            work = logits.copy()
            penalty = (p.presence_penalty + self._counts[self._ids] * p.frequency_penalty).astype(work.dtype)
            work[self._ids] -= penalty
        if self.banned:
            inside = [i for i in self.banned if 0 <= i < work.shape[-1]]
            if inside:
                work = work.copy() if work is logits else work
                work[inside] = -np.inf
        if p.temperature == 0:
            return int(np.argmax(work))
        assert self._rng is not None
        return draw(sampling_weights(work, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k), self._rng)
