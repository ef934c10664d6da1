"""Where the batched executor keeps the streams' states: slots of a backend's batch.

`RwkvSlots` holds RWKV-7 states in a `rwkv7_batch.BatchState` and steps them with one
`BatchForward.step`; `LlamaSlots` gives each stream a llama.cpp sequence and steps them
with one `eval_batch`. `prefill_rows` feeds several prompts in one batched sequence
forward (the CPU's prefill path). Used by the scheduler (batch_scheduler.py) only.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    import torch


LLAMA_MAX_SEQ = 256  # llama.cpp's limit on sequences per context

class RwkvSlots:
    """RWKV-7 on the rwkv package: `BatchForward` over a `BatchState`; prefill with the package's forward."""

    views = True  # step logits are rows of a buffer the next step overwrites

    def __init__(self, engine: Any, max_batch: int) -> None:
        from weprompt_cli.engine.rwkv7_batch import BatchForward

        self.engine = engine
        self.fwd = BatchForward(engine.model, max_batch=max_batch)
        self.states = self.fwd.new_state(capacity=max_batch)  # sized once: graphs are captured over it
        self.capacity = max_batch
        self.lock = threading.Lock()  # unused by callers: rwkv states are plain tensors they own
        if self.fwd.graphs:
            self.fwd.capture(self.states)

    def describe(self) -> str:
        return f"rwkv7_batch.BatchForward ({self.fwd.graph_reason}; wkv: {self.fwd.wkv_reason})"

    def free_slots(self) -> int:
        return self.capacity - len(self.states)

    def prefill(self, items: list[tuple[list[int], Any]]) -> list[torch.Tensor]:
        """Feed each item's ids (all of one length) into its own state; the logits after each item's last id.

        On the CPU they go through one batched sequence forward (`prefill_rows`: 2-3x faster per
        token than the package's CPU sequence forward even for one prompt, more for several); on a
        GPU each goes through the package's own path (its CUDA kernel, or the graph for short ones).
        """
        if self.fwd.device.type == "cpu":
            logits = prefill_rows(self.fwd, [ids for ids, _ in items], [state for _, state in items])
            self.engine.counters.fed += sum(len(ids) for ids, _ in items)
            return list(logits)
        out = []
        for ids, state in items:
            logits = self.engine.feed(ids, state, chunk=len(ids))  # the inner engine counts them
            out.append(logits.clone())  # the GPU path may return a buffer it reuses
        return out

    def join(self, state: Any) -> int:
        slot = self.states.alloc()
        self.states.put(slot, state)
        return slot

    def leave(self, slot: int, state: Any) -> None:
        state[:] = self.states.take(slot)  # in place: the caller holds this list
        self.states.free(slot)

    def compact(self) -> dict[int, int]:
        return self.states.compact()

    def step(self, tokens: dict[int, int]) -> dict[int, torch.Tensor]:
        states = self.states
        ids = [0] * states.rows
        for slot, token in tokens.items():
            ids[slot] = token
        idle = [(slot, states.take(slot)) for slot in states.slots if slot not in tokens]  # kept as they are
        logits = self.fwd.step(ids, states)  # [rows, V]
        for slot, kept in idle:
            states.put(slot, kept)
        return {slot: logits[slot] for slot in tokens}


def prefill_rows(fwd: Any, ids: list[list[int]], states: list[list[torch.Tensor]]) -> torch.Tensor:
    """Feed `ids[b]` (B rows of T tokens each) into the package-layout state `states[b]`; logits [B, V].

    The package's sequence forward with a batch dimension: every projection runs once over
    the B*T rows, the wkv recurrence steps through T on the [B, H, N, N] states, and only each
    row's last token gets logits. Uses `fwd`'s weights and block functions (`BatchForward`).
    """
    import torch
    import torch.nn.functional as F

    B, T = len(ids), len(ids[0])
    if any(len(row) != T for row in ids):
        raise ValueError("prefill_rows takes rows of one length")
    C, H, N = fwd.n_embd, fwd.n_head, fwd.head_size
    with torch.no_grad():
        index = torch.tensor(ids, dtype=torch.long, device=fwd.device)  # [B, T]
        x = fwd.emb.index_select(0, index.view(-1)).view(B, T, C)  # [B, T, C]
        v_first = x.reshape(B * T, C)  # replaced by layer 0's v
        for i, layer in enumerate(fwd.layers):
            att_prev = torch.stack([s[3 * i] for s in states])  # [B, C]
            kv = torch.stack([s[3 * i + 1] for s in states]).float()  # [B, H, N, N] fp32, a copy
            ffn_prev = torch.stack([s[3 * i + 2] for s in states])  # [B, C]
            xx = F.layer_norm(x, (C,), weight=layer.ln1[0], bias=layer.ln1[1])  # [B, T, C]
            shifted = torch.cat((att_prev.unsqueeze(1), xx[:, :-1]), dim=1)  # [B, T, C]: each token's previous x
            r, w, k, v, kk, a, g, v_first = fwd._tmix_in(
                i, H, N, xx.reshape(B * T, C), shifted.reshape(B * T, C), v_first, *layer.att_in
            )  # each [B*T, C]
            by_time = [t.view(B, T, C).transpose(0, 1).contiguous() for t in (r, w, k, v, kk, a)]  # [T, B, C]
            y = torch.stack([fwd._wkv_torch(H, N, kv, *(t[j] for t in by_time)) for j in range(T)], dim=1)  # [B, T, C]
            x = x + fwd._tmix_out(H, N, y.reshape(B * T, C), r, k, v, g, *layer.att_out).view(B, T, C)
            xx2 = F.layer_norm(x, (C,), weight=layer.ln2[0], bias=layer.ln2[1])  # [B, T, C]
            shifted = torch.cat((ffn_prev.unsqueeze(1), xx2[:, :-1]), dim=1)
            x = x + fwd._cmix(xx2.reshape(B * T, C), shifted.reshape(B * T, C), *layer.ffn).view(B, T, C)
            for b, s in enumerate(states):
                s[3 * i] = xx[b, -1].clone()
                s[3 * i + 1] = kv[b].clone()
                s[3 * i + 2] = xx2[b, -1].clone()
        last = F.layer_norm(x[:, -1], (C,), weight=fwd.ln_out[0], bias=fwd.ln_out[1])  # [B, C]
        return (last @ fwd.head).float()  # [B, V]


class LlamaSlots:
    """llama.cpp: one context of many sequences; a step is one `eval_batch` of one token per stream.

    Sequence 0 stays the inner engine's own; sequence 1 is for prefill; slot i is sequence 2 + i.
    """

    views = False
    FIRST = 2

    def __init__(self, engine: Any, max_batch: int) -> None:
        from weprompt_cli.engine.llama_context import LlamaContext

        if max_batch + self.FIRST > LLAMA_MAX_SEQ:
            raise ValueError(f"llama.cpp runs at most {LLAMA_MAX_SEQ - self.FIRST} streams at once, not {max_batch}")
        self.engine = engine
        old = engine.context
        context = LlamaContext.open(
            engine.info.path, n_threads=old.n_threads, n_threads_batch=old.n_threads_batch,
            n_gpu_layers=engine.gguf_strategy.n_gpu_layers, n_seq_max=max_batch + self.FIRST, n_batch=old.n_batch,
        )  # fmt: skip
        live = engine._live  # its newest numbers are in the old context: keep them
        if live is not None and live.dirty:
            live.blob, live.dirty = old.get_state(0), False
        engine._live = None
        engine.context = context
        old.close()
        self.capacity = max_batch
        self._free = list(range(max_batch))
        self.lock = threading.Lock()  # the context is not thread-safe: state methods take it too

    def describe(self) -> str:
        return f"llama.cpp eval_batch of up to {self.capacity} sequences"

    def free_slots(self) -> int:
        return len(self._free)

    def _load(self, seq: int, state: Any) -> None:
        blob = self.engine.clone_state(state).blob  # synced from sequence 0 if it lives there
        if blob:
            self.engine.context.set_state(seq, blob)
        else:
            self.engine.context.clear(seq)

    def _store(self, state: Any, seq: int) -> None:
        state.blob, state.dirty = self.engine.context.get_state(seq), False
        if self.engine._live is state:
            self.engine._live = None  # sequence 0 holds older numbers now

    def prefill(self, items: list[tuple[list[int], Any]]) -> list[Any]:
        out = []  # numpy logits, as the llama.cpp engine's own
        for ids, state in items:
            with self.lock:
                self._load(1, state)
                logits = self.engine.context.eval(ids, 1)
                self._store(state, 1)
            self.engine.counters.fed += len(ids)
            out.append(logits)
        return out

    def join(self, state: Any) -> int:
        slot = self._free.pop(0)
        with self.lock:
            self._load(self.FIRST + slot, state)
        return slot

    def leave(self, slot: int, state: Any) -> None:
        with self.lock:
            self._store(state, self.FIRST + slot)
            self.engine.context.clear(self.FIRST + slot)
        self._free.append(slot)
        self._free.sort()

    def compact(self) -> dict[int, int]:
        return {}  # a batch names its sequences: holes cost nothing

    def step(self, tokens: dict[int, int]) -> dict[int, Any]:
        slots = list(tokens)
        with self.lock:
            out = self.engine.context.eval_batch([(self.FIRST + s, [tokens[s]]) for s in slots])
        return dict(zip(slots, out))


