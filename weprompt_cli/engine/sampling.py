"""Sampling: penalties with decay (as the rwkv PIPELINE does) and the draw.

The math is plain functions on torch tensors, so they run wherever the logits live
(CPU or GPU). `Sampler` holds the per-reply state: the penalty counts and the seeded
random generator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from weprompt_cli.params import SamplingParams

if TYPE_CHECKING:
    import torch

# The PIPELINE gives no frequency weight to a token whose text is a space, tab or digits
# (it tests `text in " \t0123456789"`, so "", "12" and "0123" count as such too).
_LIGHT_TOKENS = " \t0123456789"
_TOP_P_PREFILTER = 256  # top-p looks at this many best tokens first, then sorts all


def apply_penalties(
    logits: torch.Tensor, ids: torch.Tensor, counts: torch.Tensor, presence: float, frequency: float
) -> torch.Tensor:
    """Logits minus `presence + count * frequency` at every id seen so far (in place).

    `counts` is float64 and the penalty is rounded to the logits' dtype before the
    subtraction: the same arithmetic as the PIPELINE's `out[n] -= presence + occ[n] * frequency`.
    """
    penalty = (presence + counts[ids] * frequency).to(logits.dtype)  # [seen]
    logits[ids] -= penalty
    return logits


def ban_ids(logits: torch.Tensor, ids: tuple[int, ...]) -> torch.Tensor:
    """A copy of `logits` with `ids` at -inf (ids beyond the vocabulary are ignored)."""
    out = logits.clone()
    inside = [i for i in ids if 0 <= i < out.shape[-1]]
    if inside:
        out[inside] = float("-inf")
    return out


def _cutoff_in(ordered: torch.Tensor, top_p: float) -> torch.Tensor:
    """The first value of a descending `ordered` whose running sum reaches top_p (the last one if none)."""
    import torch

    cumulative = torch.cumsum(ordered, dim=0)
    target = torch.tensor([top_p], dtype=cumulative.dtype, device=cumulative.device)
    index = torch.searchsorted(cumulative, target).clamp(max=ordered.numel() - 1)
    return ordered[index][0]


def top_p_cutoff(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The smallest probability nucleus sampling keeps (a 0-dim tensor), as the PIPELINE computes it.

    Sorting the whole vocabulary is the slow part, so the best 256 tokens are tried
    first: when they already hold `top_p` of the mass, the cutoff is among them and their
    running sums are the full sort's. On a CPU, numpy's sort is about 10x faster than
    torch.sort (which also sorts indices), so the full sort goes through it there.
    """
    import torch

    n = probs.numel()
    if _TOP_P_PREFILTER < n:
        best = torch.topk(probs, _TOP_P_PREFILTER).values  # [k], descending
        if bool(best.sum() >= top_p):
            return _cutoff_in(best, top_p)
    if probs.device.type == "cpu":
        import numpy as np

        ordered = torch.from_numpy(np.ascontiguousarray(np.sort(probs.detach().numpy())[::-1]))
    else:
        ordered = torch.sort(probs, descending=True).values
    return _cutoff_in(ordered, top_p)


def top_p_cutoff_on_device(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """`top_p_cutoff` with no host round trip: one full sort on the device (fast on a GPU)."""
    import torch

    return _cutoff_in(torch.sort(probs, descending=True).values, top_p)


def draw(weights: torch.Tensor, generator: torch.Generator | None) -> int:
    """One index drawn with probability proportional to `weights` (non-negative, any scale).

    Inverse-CDF sampling: one uniform number against the running sum, which is several
    times cheaper than torch.multinomial over a large vocabulary on a CPU.
    """
    return int(draw_tensor(weights, generator)[0])


def draw_tensor(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """`draw` without leaving the device: the index as a long tensor of shape [1] (no host sync)."""
    import torch

    cdf = torch.cumsum(weights, dim=0)  # [V]
    u = torch.rand(1, generator=generator, device=weights.device, dtype=cdf.dtype) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp(max=weights.numel() - 1)  # [1]


def sample_probs(
    logits: torch.Tensor, *, temperature: float, top_p: float, top_k: int, generator: torch.Generator | None
) -> int:
    """One token id: greedy when temperature is 0, else top-p, top-k, temperature, then a draw.

    The order (cutoffs on the untempered distribution, temperature after) is the PIPELINE's.
    """
    import torch

    if temperature == 0:
        return int(torch.argmax(logits))
    return draw(sampling_weights(logits, temperature=temperature, top_p=top_p, top_k=top_k), generator)


def sampling_weights(
    logits: torch.Tensor, *, temperature: float, top_p: float, top_k: int, cutoff: Any = None
) -> torch.Tensor:
    """The unnormalized distribution a token is drawn from (temperature > 0): top-p, top-k, then temperature.

    `cutoff(probs, top_p)` finds the nucleus cutoff (default `top_p_cutoff`; the GPU
    sampler passes one that never waits for the device).
    """
    import torch

    probs = torch.softmax(logits.float(), dim=-1)  # [V]
    if top_p < 1:
        probs = probs.masked_fill(probs < (cutoff or top_p_cutoff)(probs, top_p), 0.0)
    if 0 < top_k < probs.numel():
        kth = torch.topk(probs, top_k).values[-1]
        probs = probs.masked_fill(probs < kth, 0.0)
    if temperature != 1.0:
        probs = probs ** (1.0 / temperature)
    return probs


# ---------------------------------------------------------------------------- sampler


class Sampler:
    """Picks the next token from logits; remembers what it picked for the penalties.

    Call `sample(logits)` then `observe(token, text)` once the token is accepted.
    """

    def __init__(self, params: SamplingParams | None = None) -> None:
        self.params = params or SamplingParams()
        self._seen: list[int] = []  # ids observed, in first-seen order
        self._ids: torch.Tensor | None = None  # the same as a tensor on the logits' device
        self._counts: torch.Tensor | None = None  # [V] float64, decayed counts
        self._generator: torch.Generator | None = None
        self.banned: tuple[int, ...] = ()  # ids never sampled (a chat format's end of document)

    def ban(self, ids: tuple[int, ...] | list[int]) -> None:
        """Never sample these ids (their logits become -inf)."""
        self.banned = tuple(sorted(set(self.banned) | {int(i) for i in ids}))

    def reset(self) -> None:
        """Forget the penalty counts (a new reply); the random generator keeps running."""
        self._seen, self._ids, self._counts = [], None, None

    def _ensure(self, logits: torch.Tensor) -> None:
        import torch

        if self._counts is None or self._counts.shape != logits.shape or self._counts.device != logits.device:
            self._counts = torch.zeros(logits.shape, dtype=torch.float64, device=logits.device)
            self._seen, self._ids = [], None
        if self._generator is None or self._generator.device != logits.device:
            self._generator = torch.Generator(device=logits.device)
            if self.params.seed is not None:
                self._generator.manual_seed(self.params.seed)
            else:
                self._generator.seed()

    def sample(self, logits: torch.Tensor) -> int:
        """The next token id (the logits are not changed)."""
        self._ensure(logits)
        p = self.params
        if self._seen and (p.presence_penalty or p.frequency_penalty):
            assert self._ids is not None and self._counts is not None
            logits = apply_penalties(logits.clone(), self._ids, self._counts, p.presence_penalty, p.frequency_penalty)
        if self.banned:
            logits = ban_ids(logits, self.banned)
        return sample_probs(logits, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k, generator=self._generator)

    def observe(self, token: int, text: str) -> None:
        """Count an accepted token: older counts decay, then this one adds 1 (0 for a space or digits)."""
        counts = self._counts
        if counts is None:
            return
        if self._ids is not None:
            counts[self._ids] *= self.params.penalty_decay
        if token not in self._seen:
            self._seen.append(token)
            self._ids = self._index(self._seen, counts)
        counts[token] += 0.0 if text in _LIGHT_TOKENS else 1.0

    def _index(self, ids: list[int], like: Any) -> Any:
        """`ids` as an index into arrays like `like` (a long tensor on its device)."""
        import torch

        return torch.tensor(ids, dtype=torch.long, device=like.device)
