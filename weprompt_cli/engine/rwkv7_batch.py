"""The one-token RWKV-7 forward over a batch of states: N conversations advanced by one step.

A conversation's state is fixed-size (per layer: the time-mix's previous x, the wkv
matrix state, the channel-mix's previous x), so N of them stack into one `BatchState`
and one step of the network advances all of them, reading each weight once:

- `BatchState` (engine/batch_state.py) holds `att_x` [L, B, C] and `ffn_x` [L, B, C] in the model dtype and
  `kv` [L, B, H, N, N] in fp32 (the package's dtypes); a slot is one row. Streams join
  (`alloc` + `put`) and leave (`take` + `free`) between steps without moving the others;
  it grows by doubling.
- `BatchForward.step(tokens, states)` advances rows [0, B) by one token each and returns
  float32 logits [B, V]. It reads the loaded package model's `model.z` (projections
  already transposed, `ln0` folded into `emb.weight`): no weight is copied.

The math is the package's `RWKV_x070_TMix_one` / `CMix_one` with a batch dimension, op for
op, except that the wkv update is written as `S * w + (S @ -kk) (kk * a)^T + v k^T`
in place (the package multiplies the state by the rank-one matrix `-kk (kk * a)^T`: the
same values up to rounding, with no temporary of the state's size). On the CPU in fp32 a
batch gives the package's own logits and states within rtol = atol = 1e-5 (about 2e-5 at
most on logits of about 18; tests/test_rwkv7_batch.py).

On CUDA each batch size is padded to a bucket (1, 2, 4, ... up to `max_batch`) and every
bucket's step is captured once as a CUDA graph over the state's own storage (no copy of
the states in or out per step); a failed capture leaves the forward eager, the reason in
`graph_reason`. The wkv update runs as one Triton kernel there when Triton is importable
and the head size is a power of two (one read and one write of the state per step;
checked against the torch math when the forward is built), else in torch ops
(`wkv_reason` says which). The package's own CUDA kernel is not used: it launches on the
default stream, not torch's current one, so a graph capture cannot record it.

In an executor (one thread drives it; slot i is row i of every step):

    fwd = BatchForward(model, max_batch=64)
    states = fwd.new_state(capacity=64)  # sized once: growing moves the storage, and the graphs are recaptured
    # a stream joins between steps: prefill its own package state, then hand it over
    logits, state = model.forward(prompt_ids, state)
    slot = states.alloc(); states.put(slot, state)  # its first token comes from `logits`
    # each step: one token per row below states.rows (free rows: any id), then sample per stream
    logits = fwd.step(tokens, states)  # [states.rows, V] float32, overwritten by the next step
    # a stream leaves: checkpoint states.take(slot), then states.free(slot)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from weprompt_cli.engine.batch_state import BatchState  # re-exported: the forward's state

if TYPE_CHECKING:
    import torch  # noqa: TC004 - at run time `_ops()` binds it, before the block math below first runs

Capture = Callable[["BatchForward", int, "BatchState"], Callable[[], None]]
WKV_IMPLS = ("auto", "torch", "triton")
DEFAULT_MAX_BATCH = 256


def covers(model: Any) -> tuple[bool, str]:
    """(covered, why not): whether `BatchForward` computes this loaded model's math."""
    z = getattr(model, "z", None)
    if not isinstance(z, dict) or "emb.weight" not in z or "blocks.0.att.r_k" not in z:
        return False, "not an RWKV-7 model of the rwkv package"
    if "blocks.0.ffn.s_emb.weight" in z:
        return False, "DeepEmbed RWKV-7 checkpoints are not covered by the batched forward"
    return True, ""


def buckets_for(max_batch: int) -> tuple[int, ...]:
    """The batch sizes a step is padded to: powers of two below `max_batch`, then `max_batch`."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, not {max_batch}")
    sizes, n = [], 1
    while n < max_batch:
        sizes.append(n)
        n *= 2
    return (*sizes, max_batch)


# ---------------------------------------------------------------------------- the block math
# Module-level functions compiled with TorchScript by `_ops()` (which binds `torch` here
# first: it is imported lazily). Unannotated arguments are tensors.


def _tmix_in(layer_id: int, H: int, N: int, x, x_prev, v_first, x_r, x_w, x_k, x_v, x_a, x_g,
             w0, w1, w2, a0, a1, a2, v0, v1, v2, g1, g2, k_k, k_a, R_, K_, V_):  # fmt: skip
    """The time-mix up to the wkv update: r, w (fp32 decay), k, v, kk, a, g and the layer-0 v."""
    B = x.shape[0]
    xx = x_prev - x  # [B, C]
    xr, xw, xk, xv, xa, xg = x + xx * x_r, x + xx * x_w, x + xx * x_k, x + xx * x_v, x + xx * x_a, x + xx * x_g
    r = xr @ R_  # [B, C]
    w = torch.tanh(xw @ w1) @ w2  # [B, C]
    k = xk @ K_  # [B, C]
    v = xv @ V_  # [B, C]
    a = torch.sigmoid(a0 + (xa @ a1) @ a2)  # [B, C]
    g = torch.sigmoid(xg @ g1) @ g2  # [B, C]
    kk = torch.nn.functional.normalize((k * k_k).view(B, H, N), dim=-1, p=2.0).view(B, H * N)  # [B, C]
    k = k * (1 + (a - 1) * k_a)
    if layer_id == 0:
        v_first = v
    else:
        v = v + (v_first - v) * torch.sigmoid(v0 + (xv @ v1) @ v2)
    w = torch.exp(-0.606531 * torch.sigmoid((w0 + w).float()))  # [B, C] fp32; 0.606531 = exp(-0.5)
    return r, w, k, v, kk, a, g, v_first


def _wkv_torch(H: int, N: int, state, r, w, k, v, kk, a):
    """The wkv update in torch ops: `state` [B, H, N, N] fp32 updated in place; y [B, C] in r's dtype."""
    B = r.shape[0]
    # In place and without matrix products: no temporary of the state's size but the two
    # products-and-sums, and exact fp32 on a GPU too (a matmul there may run in TF32).
    sa = (state * (-kk).float().view(B, H, 1, N)).sum(-1, keepdim=True)  # [B, H, N, 1]: state @ -kk
    state.mul_(w.view(B, H, 1, N))  # [B, H, N, N] fp32
    state.addcmul_(sa, (kk * a).float().view(B, H, 1, N))  # + (state @ -kk) (kk * a)^T: the package's state @ ab
    state.addcmul_(v.float().view(B, H, N, 1), k.float().view(B, H, 1, N))  # + v k^T
    y = (state * r.float().view(B, H, 1, N)).sum(-1)  # [B, H, N]
    return y.view(B, H * N).to(r.dtype)  # [B, C]


def _tmix_out(H: int, N: int, y, r, k, v, g, r_k, O_, ln_w, ln_b):
    """The time-mix after the wkv update: group norm, the r*k bonus, the gate, the output projection."""
    B = y.shape[0]
    y = torch.nn.functional.group_norm(y, num_groups=H, weight=ln_w, bias=ln_b, eps=64e-5)  # [B, C]
    y = y + ((r * k * r_k).view(B, H, N).sum(dim=-1, keepdim=True) * v.view(B, H, N)).view(B, H * N)
    return (y * g) @ O_  # [B, C]


def _cmix(x, x_prev, x_k, K_, V_):
    xx = x_prev - x  # [B, C]
    k = x + xx * x_k
    k = torch.relu(k @ K_) ** 2  # [B, 4C]
    return k @ V_  # [B, C]


_OPS: tuple[Any, ...] | None = None


def _ops() -> tuple[Any, ...]:
    """(tmix_in, wkv_torch, tmix_out, cmix) as TorchScript functions, compiled once per process."""
    global _OPS, torch
    if _OPS is None:
        import warnings

        import torch  # binds the module-level name the functions above read

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.10+ marks TorchScript deprecated
            _OPS = tuple(torch.jit.script(f) for f in (_tmix_in, _wkv_torch, _tmix_out, _cmix))
    return _OPS


# ---------------------------------------------------------------------------- the Triton wkv kernel

_TRITON: Any = None


def _triton_kernel() -> Any:
    """The Triton wkv kernel (one program per stream and head), built on first use."""
    global _TRITON
    if _TRITON is None:
        import triton
        import triton.language as tl

        @triton.jit
        def wkv7_one(S, R, W, K, V, A, Bk, Y, N: tl.constexpr):  # type: ignore[no-untyped-def]
            pid = tl.program_id(0)  # stream * H + head: [B, H, N, N] and [B, C] are contiguous
            i = tl.arange(0, N)  # value (row) index
            j = tl.arange(0, N)  # key (column) index
            s_ptrs = S + pid * N * N + i[:, None] * N + j[None, :]
            s = tl.load(s_ptrs)  # [N, N] fp32
            vec = pid * N + j
            w = tl.load(W + vec).to(tl.float32)
            k = tl.load(K + vec).to(tl.float32)
            a = tl.load(A + vec).to(tl.float32)  # -kk
            b = tl.load(Bk + vec).to(tl.float32)  # kk * a
            r = tl.load(R + vec).to(tl.float32)
            v = tl.load(V + pid * N + i).to(tl.float32)
            sa = tl.sum(s * a[None, :], axis=1)  # [N]
            s = s * w[None, :] + sa[:, None] * b[None, :] + v[:, None] * k[None, :]
            y = tl.sum(s * r[None, :], axis=1)  # [N]
            tl.store(s_ptrs, s)
            tl.store(Y + pid * N + i, y.to(Y.dtype.element_ty))

        _TRITON = wkv7_one
    return _TRITON


def _wkv_triton(H: int, N: int, state: torch.Tensor, r: torch.Tensor, w: torch.Tensor, k: torch.Tensor,
                v: torch.Tensor, kk: torch.Tensor, a: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """`_wkv_torch`'s result with one kernel: the state read once and written once."""
    import torch

    B = r.shape[0]
    r, w, k, v = r.contiguous(), w.contiguous(), k.contiguous(), v.contiguous()  # [B, C] each
    y = torch.empty_like(r)  # [B, C]
    _triton_kernel()[(B * H,)](state, r, w, k, v, (-kk).contiguous(), (kk * a).contiguous(), y, N=N, num_warps=4)
    return y


# ---------------------------------------------------------------------------- the forward


@dataclass
class _Layer:
    """One block's tensors, looked up once (no dict or string work per step)."""

    ln1: tuple[Any, Any]
    ln2: tuple[Any, Any]
    att_in: tuple[Any, ...]  # _tmix_in's weights: x_r..x_g, w0..w2, a0..a2, v0..v2, g1, g2, k_k, k_a, R, K, V
    att_out: tuple[Any, ...]  # _tmix_out's: r_k, O, ln_x weight, ln_x bias
    ffn: tuple[Any, Any, Any]  # x_k, K [C, 4C], V [4C, C]


def cuda_capture(fwd: BatchForward, bucket: int, states: BatchState) -> Callable[[], None]:
    """Capture `fwd`'s step of `bucket` rows over `states`' storage as a CUDA graph; its replay.

    Warm-up (TorchScript profiling, cuBLAS and Triton set-up) runs on a scratch state of the
    same shape, so the live rows never move; the capture itself executes nothing.
    """
    import torch

    scratch = fwd.new_state(capacity=bucket)
    with torch.cuda.device(fwd.device), torch.no_grad():
        torch.cuda.synchronize()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(fwd.warmup):
                fwd._forward(bucket, scratch)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        del scratch
        if fwd._pool is None:
            fwd._pool = torch.cuda.graph_pool_handle()  # one pool: the buckets' steps never run at once
        graph = torch.cuda.CUDAGraph()
        try:  # thread_local: another thread's CUDA calls (a server's) do not break this capture
            capturing = torch.cuda.graph(graph, pool=fwd._pool, capture_error_mode="thread_local")
        except TypeError:  # torch before 2.1
            capturing = torch.cuda.graph(graph, pool=fwd._pool)
        with capturing:
            fwd._forward(bucket, states)
        torch.cuda.synchronize()
    return graph.replay


def eager_capture(fwd: BatchForward, bucket: int, states: BatchState) -> Callable[[], None]:
    """No graph: the padded step run eagerly (the CPU tests' stand-in for `cuda_capture`)."""
    return lambda: fwd._forward(bucket, states)


class BatchForward:
    """`step(tokens, states)`: one token for each of B streams in one forward; float32 logits [B, V]."""

    def __init__(
        self,
        model: Any,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        graphs: bool | None = None,
        capture: Capture = cuda_capture,
        wkv: str = "auto",
        warmup: int = 3,
    ) -> None:
        """`graphs`: pad to buckets and capture (None: on CUDA); `wkv`: "auto", "torch" or "triton"."""
        ok, why = covers(model)
        if not ok:
            raise ValueError(why)
        if wkv not in WKV_IMPLS:
            raise ValueError(f"wkv must be one of {', '.join(WKV_IMPLS)}, not {wkv!r}")
        import torch

        z = model.z
        self.n_layer = int(model.n_layer)
        self.n_head = int(model.n_head)
        self.head_size = int(model.head_size)
        self.n_embd = int(model.n_embd)
        self.emb = z["emb.weight"]  # [V, C], ln0 folded in
        self.device, self.dtype = self.emb.device, self.emb.dtype
        self.vocab_size = int(self.emb.shape[0])
        self.ln_out = (z["ln_out.weight"], z["ln_out.bias"])
        self.head = z["head.weight"]  # [C, V]
        self.layers = [self._layer(z, i) for i in range(self.n_layer)]
        self.max_batch = int(max_batch)
        self.buckets = buckets_for(self.max_batch)
        self.warmup = warmup
        self._tmix_in, self._wkv_torch, self._tmix_out, self._cmix = _ops()
        self._tokens = torch.zeros(self.max_batch, dtype=torch.long, device=self.device)  # [max_batch]
        self._logits = torch.zeros((self.max_batch, self.vocab_size), dtype=torch.float, device=self.device)  # [B, V]

        self.wkv, self.wkv_reason = self._choose_wkv(wkv)
        cuda = self.device.type == "cuda"
        self.graphs = cuda if graphs is None else bool(graphs)
        if not self.graphs:
            self.graph_reason = "eager (not on CUDA)" if graphs is None else "eager (graphs turned off)"
        elif capture is cuda_capture:
            self.graph_reason = "CUDA graph per batch bucket"
        else:
            self.graph_reason = f"padded to batch buckets, run by {getattr(capture, '__name__', 'a stand-in')}"
        self._capture = capture
        self._pool: Any = None
        self._runners: dict[int, Callable[[], None]] = {}
        self._runners_key: tuple[int, ...] | None = None

    @staticmethod
    def _layer(z: dict[str, Any], i: int) -> _Layer:
        b, a, f = f"blocks.{i}.", f"blocks.{i}.att.", f"blocks.{i}.ffn."
        names = [f"x_{m}" for m in "rwkvag"] + ["w0", "w1", "w2", "a0", "a1", "a2", "v0", "v1", "v2"]
        names += ["g1", "g2", "k_k", "k_a", "receptance.weight", "key.weight", "value.weight"]
        return _Layer(
            ln1=(z[b + "ln1.weight"], z[b + "ln1.bias"]),
            ln2=(z[b + "ln2.weight"], z[b + "ln2.bias"]),
            att_in=tuple(z[a + n] for n in names),
            att_out=(z[a + "r_k"], z[a + "output.weight"], z[a + "ln_x.weight"], z[a + "ln_x.bias"]),
            ffn=(z[f + "x_k"], z[f + "key.weight"], z[f + "value.weight"]),
        )

    # ------------------------------------------------------------------ choices
    def _choose_wkv(self, want: str) -> tuple[str, str]:
        """("torch" | "triton", why) for the wkv update on this device."""
        if want == "torch":
            return "torch", "torch ops (asked for)"
        n = self.head_size
        if self.device.type != "cuda" and want == "auto":
            return "torch", "torch ops (not on CUDA)"
        if n & (n - 1):
            if want == "triton":
                raise ValueError(f"the Triton wkv kernel needs a power-of-two head size, not {n}")
            return "torch", f"torch ops (head size {n} is not a power of two)"
        try:
            self._check_triton()
        except Exception as exc:  # a kernel that cannot run costs speed, never the answer
            if want == "triton":
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            return "torch", f"torch ops (Triton kernel unavailable: {type(exc).__name__}: {first})"
        return "triton", "Triton kernel (checked against the torch math)"

    def _check_triton(self) -> None:
        """Run the Triton kernel on random inputs of this model's shape; raise unless it matches torch."""
        import torch

        H, N, B = self.n_head, self.head_size, 3
        g = torch.Generator(device="cpu").manual_seed(0)

        def rand(*shape: int, dtype: Any = self.dtype) -> torch.Tensor:
            return torch.randn(*shape, generator=g).to(device=self.device, dtype=dtype)

        state = rand(B, H, N, N, dtype=torch.float)
        r, k, v, a = (rand(B, H * N) for _ in range(4))
        kk = torch.nn.functional.normalize(rand(B, H, N), dim=-1).view(B, H * N)
        a = torch.sigmoid(a)
        w = torch.exp(-0.606531 * torch.sigmoid(rand(B, H * N, dtype=torch.float)))
        ref_state = state.clone()
        with torch.no_grad():
            ref_y = self._wkv_torch(H, N, ref_state, r, w, k, v, kk, a)
            y = _wkv_triton(H, N, state, r, w, k, v, kk, a)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        # The torch math may run its two small matrix products in TF32 (the package turns it on).
        state_err = float((state - ref_state).abs().max() / ref_state.abs().max().clamp_min(1e-6))
        y_err = float((y.float() - ref_y.float()).abs().max() / ref_y.float().abs().max().clamp_min(1e-6))
        if not state_err < 1e-2 or not y_err < 2e-2:
            raise RuntimeError(f"Triton wkv kernel differs from torch (state {state_err:.2e}, y {y_err:.2e})")

    def bucket_for(self, n: int) -> int:
        """The bucket a step of `n` rows is padded to (graphs) or `n` itself (eager)."""
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"a batch of {n} rows; this forward takes 1 to {self.max_batch}")
        if not self.graphs:
            return n
        return next(b for b in self.buckets if b >= n)

    def new_state(self, capacity: int = 1) -> BatchState:
        """An empty `BatchState` for this model (capacity grows by doubling up to max_batch)."""
        return BatchState(
            self.n_layer, self.n_embd, self.n_head, self.head_size,
            dtype=self.dtype, device=self.device, capacity=capacity, max_capacity=self.max_batch,
        )  # fmt: skip

    # ------------------------------------------------------------------ the step
    def step(self, tokens: torch.Tensor | Sequence[int], states: BatchState) -> torch.Tensor:
        """Feed `tokens[i]` to slot i for i < B (B >= states.rows); float32 logits [B, V].

        The logits are a view of a buffer the next step overwrites: sample (or clone) first.
        Free slots below B compute on whatever token they get; their logits mean nothing.
        """
        import torch

        ids = torch.as_tensor(tokens, dtype=torch.long)
        n = int(ids.shape[0]) if ids.dim() == 1 else -1
        if n < 1:
            raise ValueError("tokens must be a non-empty 1-D tensor of ids")
        self._check_state(states)
        if n < states.rows:
            raise ValueError(f"{n} tokens, but slot {states.rows - 1} is in use: a step must cover every used slot")
        if n > states.capacity:
            raise ValueError(f"{n} tokens for a state of {states.capacity} slots")
        bucket = self.bucket_for(n)
        with torch.no_grad():
            self._tokens[:n].copy_(ids)
            if bucket > n:
                self._tokens[n:bucket].zero_()  # padding rows: free slots, any token
            fits = states.max_capacity is None or bucket <= states.max_capacity
            if bucket > states.capacity and fits:
                states.reserve(bucket)
            runner = self._runner(bucket, states) if self.graphs and fits else None
            if runner is not None:
                runner()
            else:
                self._forward(n, states)
        return self._logits[:n]

    def capture(self, states: BatchState, buckets: Sequence[int] | None = None) -> None:
        """Capture the graphs of `buckets` (default: every bucket `states` can hold) now, not at first use."""
        for bucket in buckets or [b for b in self.buckets if b <= states.capacity]:
            if self.graphs:
                self._runner(bucket, states)

    def _runner(self, bucket: int, states: BatchState) -> Callable[[], None] | None:
        """The captured step of `bucket` rows over `states` (captured now if new); None when capture failed."""
        key = states.storage_key()
        if key != self._runners_key:
            self._runners, self._runners_key = {}, key  # graphs of other (or outgrown) storage go
        runner = self._runners.get(bucket)
        if runner is None:
            try:
                runner = self._capture(self, bucket, states)
            except Exception as exc:  # noqa: BLE001 - a failed capture costs speed, never the answer
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                self.graphs = False
                self.graph_reason = f"eager (graph capture failed at batch {bucket}: {type(exc).__name__}: {first})"
                self._runners, self._runners_key = {}, None
                return None
            self._runners[bucket] = runner
        return runner

    def _check_state(self, states: BatchState) -> None:
        got = (states.n_layer, states.n_embd, states.n_head, states.head_size, states.dtype, states.device)
        want = (self.n_layer, self.n_embd, self.n_head, self.head_size, self.dtype, self.device)
        if got != want:
            raise ValueError(f"a BatchState of {got} for a model of {want}")

    def _forward(self, b: int, states: BatchState) -> None:
        """Rows [0, b): read `_tokens[:b]`, update the states in place, write `_logits[:b]`."""
        import torch
        import torch.nn.functional as F

        C, H, N = self.n_embd, self.n_head, self.head_size
        with torch.no_grad():
            x = self.emb.index_select(0, self._tokens[:b])  # [b, C]
            v_first = x  # replaced by layer 0's v
            for i, layer in enumerate(self.layers):
                att_x, kv, ffn_x = states.att_x[i, :b], states.kv[i, :b], states.ffn_x[i, :b]  # [b, C], [b, H, N, N]
                xx = F.layer_norm(x, (C,), weight=layer.ln1[0], bias=layer.ln1[1])  # [b, C]
                r, w, k, v, kk, a, g, v_first = self._tmix_in(i, H, N, xx, att_x, v_first, *layer.att_in)
                att_x.copy_(xx)
                if self.wkv == "triton":
                    y = _wkv_triton(H, N, kv, r, w, k, v, kk, a)  # [b, C]
                else:
                    y = self._wkv_torch(H, N, kv, r, w, k, v, kk, a)
                x = x + self._tmix_out(H, N, y, r, k, v, g, *layer.att_out)
                xx = F.layer_norm(x, (C,), weight=layer.ln2[0], bias=layer.ln2[1])
                x = x + self._cmix(xx, ffn_x, *layer.ffn)
                ffn_x.copy_(xx)
            x = F.layer_norm(x, (C,), weight=self.ln_out[0], bias=self.ln_out[1])
            self._logits[:b].copy_(x @ self.head)  # [b, V] fp32

    def weight_bytes(self) -> int:
        """Bytes of weights one step reads (every matrix and vector once; embedding rows not counted)."""
        seen: set[int] = set()
        total = 0
        tensors = [*self.ln_out, self.head]
        for layer in self.layers:
            tensors += [*layer.ln1, *layer.ln2, *layer.att_in, *layer.att_out, *layer.ffn]
        for t in tensors:
            if t.numel() and t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
        return total
