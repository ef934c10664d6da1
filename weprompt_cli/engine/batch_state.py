"""`BatchState`: N RWKV-7 conversation states stacked into one set of tensors, one row (slot) per
stream, so one forward step (`engine/rwkv7_batch.py`) advances them all.

Per layer a state is the time-mix's previous x, the wkv matrix state and the channel-mix's
previous x: `att_x` [L, B, C] and `ffn_x` [L, B, C] in the model dtype, `kv` [L, B, H, N, N]
in fp32 (the package's dtypes). Streams join (`alloc` + `put`) and leave (`take` + `free`)
between steps without moving the others; the storage grows by doubling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class BatchState:
    """Stacked RWKV-7 states, one slot (row) per stream; grows by doubling up to `max_capacity`."""

    def __init__(
        self,
        n_layer: int,
        n_embd: int,
        n_head: int,
        head_size: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
        capacity: int = 1,
        max_capacity: int | None = None,
    ) -> None:
        import torch

        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        if max_capacity is not None and capacity > max_capacity:
            raise ValueError(f"capacity {capacity} is over max_capacity {max_capacity}")
        self.n_layer, self.n_embd, self.n_head, self.head_size = n_layer, n_embd, n_head, head_size
        self.dtype, self.device = dtype, torch.device(device)
        self.max_capacity = max_capacity
        self.att_x, self.kv, self.ffn_x = self._zeros(capacity)
        self._used = [False] * capacity

    def _zeros(self, capacity: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        L, C, H, N = self.n_layer, self.n_embd, self.n_head, self.head_size
        att_x = torch.zeros((L, capacity, C), dtype=self.dtype, device=self.device)  # [L, B, C]
        kv = torch.zeros((L, capacity, H, N, N), dtype=torch.float, device=self.device)  # [L, B, H, N, N] fp32
        ffn_x = torch.zeros((L, capacity, C), dtype=self.dtype, device=self.device)  # [L, B, C]
        return att_x, kv, ffn_x

    # ------------------------------------------------------------------ slots
    @property
    def capacity(self) -> int:
        """Rows allocated on the device (used or not)."""
        return len(self._used)

    @property
    def rows(self) -> int:
        """1 + the highest used slot (0 when empty): the smallest batch a step may run."""
        return max((i + 1 for i, used in enumerate(self._used) if used), default=0)

    @property
    def slots(self) -> list[int]:
        """The used slots, in order."""
        return [i for i, used in enumerate(self._used) if used]

    def __len__(self) -> int:
        return sum(self._used)

    def alloc(self) -> int:
        """A free slot (the lowest), holding a zero state; grows the storage when full."""
        free = next((i for i, used in enumerate(self._used) if not used), None)
        if free is None:
            free = self.capacity
            self.reserve(free + 1)
        self._used[free] = True
        self.zero(free)
        return free

    def free(self, slot: int) -> None:
        """Release `slot` (its row is zeroed: a padded step then computes on a clean state)."""
        self._check(slot)
        self._used[slot] = False
        self.zero(slot)

    def reserve(self, n: int) -> None:
        """Make room for at least `n` slots (doubling; capped at max_capacity). Moves the storage."""
        if n <= self.capacity:
            return
        if self.max_capacity is not None and n > self.max_capacity:
            raise ValueError(f"a batch of {n} streams is over this state's max_capacity {self.max_capacity}")
        capacity = self.capacity
        while capacity < n:
            capacity *= 2
        if self.max_capacity is not None:
            capacity = min(capacity, self.max_capacity)
        old = (self.att_x, self.kv, self.ffn_x)
        new = self._zeros(capacity)
        for dst, src in zip(new, old):
            dst[:, : src.shape[1]].copy_(src)
        self.att_x, self.kv, self.ffn_x = new
        self._used += [False] * (capacity - len(self._used))

    def compact(self) -> dict[int, int]:
        """Move the highest used slots into the lowest free ones; {old slot: new slot} of those moved."""
        moved: dict[int, int] = {}
        while True:
            used = self.slots
            free = [i for i, u in enumerate(self._used) if not u]
            if not used or not free or free[0] > used[-1]:
                return moved
            src, dst = used[-1], free[0]
            for t in (self.att_x, self.kv, self.ffn_x):
                t[:, dst].copy_(t[:, src])
            self._used[dst], self._used[src] = True, False
            self.zero(src)
            moved[src] = dst  # dst was the lowest free slot: it never moves again

    def zero(self, slot: int) -> None:
        """Reset `slot` to the zero state (the start of a document)."""
        for t in (self.att_x, self.kv, self.ffn_x):
            t[:, slot].zero_()

    # ------------------------------------------------------------------ per-stream states
    def take(self, slot: int) -> list[torch.Tensor]:
        """A copy of `slot`'s state in the package's layout: per layer [att_x (C), kv (H, N, N) fp32, ffn_x (C)]."""
        self._check(slot)
        state: list[torch.Tensor] = []
        for i in range(self.n_layer):
            state += [self.att_x[i, slot].clone(), self.kv[i, slot].clone(), self.ffn_x[i, slot].clone()]
        return state

    def put(self, slot: int, state: Sequence[torch.Tensor]) -> None:
        """Copy a package-layout state (any device; converted to the batch's dtypes) into `slot`."""
        self._check(slot)
        if len(state) != 3 * self.n_layer:
            raise ValueError(f"a state of {len(state)} tensors; this model's has {3 * self.n_layer}")
        for i in range(self.n_layer):
            for t, dst in zip(state[3 * i : 3 * i + 3], (self.att_x, self.kv, self.ffn_x)):
                if tuple(t.shape) != tuple(dst.shape[2:]):
                    raise ValueError(f"layer {i}: a state tensor of shape {tuple(t.shape)}, not {tuple(dst.shape[2:])}")
                dst[i, slot].copy_(t)

    def _check(self, slot: int) -> None:
        if not 0 <= slot < self.capacity or not self._used[slot]:
            raise ValueError(f"slot {slot} is not allocated")

    def storage_key(self) -> tuple[int, ...]:
        """Identifies the storage a captured graph reads and writes (changes when the state grows)."""
        return (id(self), self.capacity, self.att_x.data_ptr(), self.kv.data_ptr(), self.ffn_x.data_ptr())
