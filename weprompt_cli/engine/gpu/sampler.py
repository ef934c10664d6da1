"""Sampling on the logits' device: one small device-to-host copy of the token id per token.

The same rules as `Sampler` (penalties with decay, top-p, top-k, temperature, a seeded
draw), built from the tensor functions of `engine/sampling.py`, with the two host round
trips of the plain sampler removed: the top-p cutoff comes from one sort on the device
(no `bool()` test of a prefilter), and the drawn index stays a device tensor. Penalty
counts live in a dense [V] float64 vector with a `seen` mask: decaying every count is
the plain sampler's decay of the seen ones (the others are 0), and the penalty at an id
is the same float64 sum rounded to the logits' dtype.

On a CPU the same seed gives the same tokens as `Sampler` (one `torch.rand` per draw).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weprompt_cli.engine.sampling import ban_ids, draw_tensor, sampling_weights, top_p_cutoff_on_device
from weprompt_cli.params import SamplingParams

if TYPE_CHECKING:
    import torch

_LIGHT_TOKENS = " \t0123456789"  # the PIPELINE's rule (see sampling.py)


class DeviceSampler:
    """`sample(logits) -> long tensor [1]` on the logits' device; `observe(token, text)` after it is accepted."""

    def __init__(
        self, params: SamplingParams, device: torch.device | str, vocab_size: int, banned: tuple[int, ...] = ()
    ) -> None:
        import torch

        self.params = params
        self.banned = banned
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()
        self._penalize = bool(params.presence_penalty or params.frequency_penalty)
        self._any_seen = False
        self.counts: torch.Tensor | None = None
        self.seen: torch.Tensor | None = None
        if self._penalize:
            self.counts = torch.zeros(vocab_size, dtype=torch.float64, device=self.device)  # [V]
            self.seen = torch.zeros(vocab_size, dtype=torch.bool, device=self.device)  # [V]
            self._weight = (
                torch.ones(1, dtype=torch.float64, device=self.device),
                torch.zeros(1, dtype=torch.float64, device=self.device),
            )

    def penalized(self, logits: torch.Tensor) -> torch.Tensor:
        """float32 logits with the presence/frequency penalties of the tokens seen so far (a new tensor)."""
        import torch

        out = logits.float()
        if self.banned:
            out = ban_ids(out, self.banned)
        if not (self._penalize and self._any_seen):
            return out
        assert self.counts is not None and self.seen is not None
        p = self.params
        penalty = (p.presence_penalty + self.counts * p.frequency_penalty).to(out.dtype)  # [V]
        return out - torch.where(self.seen, penalty, torch.zeros((), dtype=out.dtype, device=out.device))

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """The next token id as a long tensor [1] on the device (the logits are not changed)."""
        import torch

        p = self.params
        logits = self.penalized(logits)
        if p.temperature == 0:
            return torch.argmax(logits).view(1)
        weights = sampling_weights(
            logits, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k, cutoff=top_p_cutoff_on_device
        )
        return draw_tensor(weights, self.generator)

    def observe(self, token: torch.Tensor, text: str) -> None:
        """Count an accepted token (`token` the device tensor [1]): decay, then +1 (0 for a space or digits)."""
        if not self._penalize:
            return
        assert self.counts is not None and self.seen is not None
        self.counts.mul_(self.params.penalty_decay)
        self.counts.index_add_(0, token, self._weight[1 if text in _LIGHT_TOKENS else 0])
        self.seen.index_fill_(0, token, True)
        self._any_seen = True
