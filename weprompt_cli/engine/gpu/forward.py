"""A one-token RWKV-7 forward on static buffers, in plain torch, reading the loaded model's weights.

The rwkv package's `forward_one` takes the token as a Python int and returns new state
tensors, so it cannot be replayed as a CUDA graph. `StaticForward` computes the same
math (the package's `RWKV_x070_TMix_one` / `CMix_one`, op for op, in the same order and
dtypes: activations in the model dtype, the wkv state in fp32) on buffers that never
move:

- `token`: a device long tensor [1]; the embedding row is looked up inside, so one
  captured graph serves every token;
- `state`: the 3 * n_layer state tensors, updated in place (`copy_`);
- `logits`: [vocab] in the model dtype.

It reads `model.z` (the package has already transposed the projections, squeezed the
mixes, flattened `r_k` and folded `ln0` into `emb.weight`), so no weight is copied.

`ops="package"` (the engine's default, graph.py `DEFAULT_OPS`) computes each block with the
package's own TorchScript functions (`RWKV_x070_TMix_one`, `RWKV_x070_CMix_one`), copying
their results into the static buffers: on a GPU, TorchScript fuses elementwise chains (fp16
rounded once, not per op), which is faster and closer to the bare package's numbers than
`ops="torch"`, the same math in plain torch ops (bench/gpu.py measures both;
$WEPROMPT_GRAPH_OPS picks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


OPS = ("torch", "package")


def covers(model: Any) -> tuple[bool, str]:
    """(covered, why not): whether `StaticForward` computes this loaded model's math."""
    z = getattr(model, "z", None)
    if not isinstance(z, dict) or "emb.weight" not in z:
        return False, "not an RWKV-7 model of the rwkv package"
    if "blocks.0.ffn.s_emb.weight" in z:
        return False, "DeepEmbed RWKV-7 checkpoints are not covered by the graph"
    if int(getattr(model, "head_size", 0)) != 64:
        return False, f"head size {getattr(model, 'head_size', '?')} (the graph covers 64)"
    return True, ""


@dataclass
class _Layer:
    """One block's tensors, looked up once (no dict or string work per token)."""

    ln1_w: Any
    ln1_b: Any
    ln2_w: Any
    ln2_b: Any
    mix: Any  # [6, C]: x_r, x_w, x_k, x_v, x_a, x_g
    w0: Any
    w1: Any
    w2: Any
    a0: Any
    a1: Any
    a2: Any
    v0: Any
    v1: Any
    v2: Any
    g1: Any
    g2: Any
    k_k: Any
    k_a: Any
    r_k: Any
    R: Any  # [C, C] (already transposed by the package: x @ R)
    K: Any
    V: Any
    O: Any
    lnx_w: Any
    lnx_b: Any
    f_xk: Any
    f_K: Any  # [C, 4C]
    f_V: Any  # [4C, C]
    mixes: tuple[Any, ...] = ()  # the six x_* tensors of model.z themselves (ops="package")


class StaticForward:
    """`step()` runs one token: reads `token`, updates `state` in place, writes `logits`."""

    def __init__(self, model: Any, ops: str = "torch") -> None:
        import torch

        ok, why = covers(model)
        if not ok:
            raise ValueError(why)
        if ops not in OPS:
            raise ValueError(f"ops must be one of {', '.join(OPS)}, not {ops!r}")
        self.ops = ops
        self._tmix_pkg: Any = None
        self._cmix_pkg: Any = None
        if ops == "package":
            import rwkv.model as package

            self._tmix_pkg, self._cmix_pkg = package.RWKV_x070_TMix_one, package.RWKV_x070_CMix_one
        z = model.z
        self.n_layer = int(model.n_layer)
        self.n_head = int(model.n_head)
        self.head_size = int(model.head_size)
        self.n_embd = int(model.n_embd)
        self.emb = z["emb.weight"]  # [V, C], ln0 folded in
        self.device, self.dtype = self.emb.device, self.emb.dtype
        self.vocab_size = int(self.emb.shape[0])
        self.ln_out_w, self.ln_out_b = z["ln_out.weight"], z["ln_out.bias"]
        self.head = z["head.weight"]  # [C, V]
        self.layers: list[_Layer] = []
        for i in range(self.n_layer):
            b, a, f = f"blocks.{i}.", f"blocks.{i}.att.", f"blocks.{i}.ffn."
            mix = torch.stack([z[a + f"x_{m}"] for m in "rwkvag"])  # [6, C]
            self.layers.append(
                _Layer(
                    z[b + "ln1.weight"],
                    z[b + "ln1.bias"],
                    z[b + "ln2.weight"],
                    z[b + "ln2.bias"],
                    mix,
                    z[a + "w0"],
                    z[a + "w1"],
                    z[a + "w2"],
                    z[a + "a0"],
                    z[a + "a1"],
                    z[a + "a2"],
                    z[a + "v0"],
                    z[a + "v1"],
                    z[a + "v2"],
                    z[a + "g1"],
                    z[a + "g2"],
                    z[a + "k_k"],
                    z[a + "k_a"],
                    z[a + "r_k"],
                    z[a + "receptance.weight"],
                    z[a + "key.weight"],
                    z[a + "value.weight"],
                    z[a + "output.weight"],
                    z[a + "ln_x.weight"],
                    z[a + "ln_x.bias"],
                    z[f + "x_k"],
                    z[f + "key.weight"],
                    z[f + "value.weight"],
                    tuple(z[a + f"x_{m}"] for m in "rwkvag"),
                )
            )
        c, h, n = self.n_embd, self.n_head, self.head_size
        self.token = torch.zeros(1, dtype=torch.long, device=self.device)  # [1]
        self.state: list[torch.Tensor] = []
        for _ in range(self.n_layer):  # the package's layout: att x_prev, wkv state (fp32), ffn x_prev
            self.state += [
                torch.zeros(c, dtype=self.dtype, device=self.device),
                torch.zeros((h, n, n), dtype=torch.float, device=self.device),
                torch.zeros(c, dtype=self.dtype, device=self.device),
            ]
        self.logits = torch.zeros(self.vocab_size, dtype=self.dtype, device=self.device)  # [V]

    # ------------------------------------------------------------------ state
    def load_state(self, state: list[torch.Tensor]) -> None:
        """Copy a caller's state into the static one (switching session = this copy)."""
        if len(state) != len(self.state):
            raise ValueError(f"a state of {len(state)} tensors, the model needs {len(self.state)}")
        for static, t in zip(self.state, state):
            static.copy_(t)

    def store_state(self, state: list[torch.Tensor]) -> None:
        """Copy the static state into a caller's tensors (in place)."""
        for static, t in zip(self.state, state):
            t.copy_(static)

    # ------------------------------------------------------------------ math
    def step(self) -> None:
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            c = self.n_embd
            x = self.emb.index_select(0, self.token).view(c)  # [C]
            v_first = x  # replaced by layer 0's v
            for i, layer in enumerate(self.layers):
                att_x, kv, ffn_x = self.state[3 * i], self.state[3 * i + 1], self.state[3 * i + 2]
                xx = F.layer_norm(x, (c,), weight=layer.ln1_w, bias=layer.ln1_b)
                if self._tmix_pkg is not None:
                    out, v_first = self._time_mix_package(i, layer, xx, att_x, kv, v_first)
                else:
                    out, v_first = self._time_mix(i, layer, xx, att_x, kv, v_first)
                x = x + out
                xx = F.layer_norm(x, (c,), weight=layer.ln2_w, bias=layer.ln2_b)
                if self._cmix_pkg is not None:
                    out, new_x = self._cmix_pkg(xx, ffn_x, layer.f_xk, layer.f_K, layer.f_V)
                    ffn_x.copy_(new_x)
                    x = x + out
                else:
                    x = x + self._channel_mix(layer, xx, ffn_x)
            x = F.layer_norm(x, (c,), weight=self.ln_out_w, bias=self.ln_out_b)
            self.logits.copy_(x @ self.head)  # [V]

    def _time_mix(
        self, i: int, L: _Layer, x: torch.Tensor, x_prev: torch.Tensor, kv: torch.Tensor, v_first: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch
        import torch.nn.functional as F

        h, n = self.n_head, self.head_size
        xx = x_prev - x  # [C]
        x_prev.copy_(x)  # the next token's x_prev (read above first)
        mixed = x + xx * L.mix  # [6, C]: the same x + xx * x_m per row
        xr, xw, xk, xv, xa, xg = mixed.unbind(0)

        r = xr @ L.R  # [C]
        w = torch.tanh(xw @ L.w1) @ L.w2  # [C]
        k = xk @ L.K
        v = xv @ L.V
        a = torch.sigmoid(L.a0 + (xa @ L.a1) @ L.a2)
        g = torch.sigmoid(xg @ L.g1) @ L.g2

        kk = F.normalize((k * L.k_k).view(h, n), dim=-1, p=2.0).view(h * n)
        k = k * (1 + (a - 1) * L.k_a)
        if i == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(L.v0 + (xv @ L.v1) @ L.v2)
        w = torch.exp(-0.606531 * torch.sigmoid((L.w0 + w).float()))  # [C] fp32; 0.606531 = exp(-0.5)

        vk = v.view(h, n, 1) @ k.view(h, 1, n)  # [H, N, N]
        ab = (-kk).view(h, n, 1) @ (kk * a).view(h, 1, n)  # [H, N, N]
        new = kv * w.view(h, 1, n) + kv @ ab.float() + vk.float()  # [H, N, N] fp32
        kv.copy_(new)
        y = new.to(dtype=x.dtype) @ r.view(h, n, 1)  # [H, N, 1]

        y = F.group_norm(y.view(1, h * n), num_groups=h, weight=L.lnx_w, bias=L.lnx_b, eps=64e-5).view(h * n)
        y = y + ((r * k * L.r_k).view(h, n).sum(dim=-1, keepdim=True) * v.view(h, n)).view(h * n)
        return (y * g) @ L.O, v_first

    def _time_mix_package(
        self, i: int, L: _Layer, x: torch.Tensor, x_prev: torch.Tensor, kv: torch.Tensor, v_first: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, new_x, new_kv, v_first = self._tmix_pkg(
            i, self.n_head, self.head_size, x, x_prev, v_first, kv, *L.mixes,
            L.w0, L.w1, L.w2, L.a0, L.a1, L.a2, L.v0, L.v1, L.v2, L.g1, L.g2, L.k_k, L.k_a, L.r_k,
            L.R, L.K, L.V, L.O, L.lnx_w, L.lnx_b,
        )  # fmt: skip
        x_prev.copy_(new_x)
        kv.copy_(new_kv)
        return out, v_first

    @staticmethod
    def _channel_mix(L: _Layer, x: torch.Tensor, x_prev: torch.Tensor) -> torch.Tensor:
        import torch

        xx = x_prev - x
        x_prev.copy_(x)
        k = x + xx * L.f_xk
        k = torch.relu(k @ L.f_K) ** 2  # [4C]
        return k @ L.f_V  # [C]

    def weight_bytes(self) -> int:
        """Bytes of weights one token reads (every matrix and vector once; one embedding row)."""
        seen: set[int] = set()
        total = self.emb[0].numel() * self.emb.element_size()
        tensors = [self.ln_out_w, self.ln_out_b, self.head]
        for layer in self.layers:
            tensors += [getattr(layer, name) for name in layer.__dataclass_fields__ if name != "mixes"]
        for t in tensors:
            if t.data_ptr() not in seen and t.numel():
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
        return total
