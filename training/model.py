"""RWKV-7 ("x070") for training with autograd, in one readable file (nanoGPT style).

Parameter names and shapes are exactly those of the `.pth` files that
`rwkv.model.RWKV` loads with RWKV_V7_ON=1, so export is a dtype cast of `state_dict()`.

The WKV-7 state update per head (S is N x N, rows = value dim, columns = key dim):

    S_t = S_{t-1} (diag(w_t) + a_t b_t^T) + v_t k_t^T        y_t = S_t r_t

with a = -kk and b = kk * a_gate. Training evaluates it in chunks of CHUNK steps: inside a
chunk the unknowns u_t = S_{t-1} a_t solve one unit lower-triangular system, so only one
small matrix product per chunk is sequential instead of one per token. It is the same
recurrence (the parity test holds it to the `rwkv` package's per-token loop within 1e-3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CHUNK = 16  # decay per step is >= exp(-exp(-0.5)) ~ 0.545, so 1/decay^16 ~ 1.6e4 stays well inside fp32
W_SCALE = math.exp(-0.5)  # the package computes w = exp(-0.606531 * sigmoid(w0 + lora))


@dataclass(frozen=True)
class RWKV7Config:
    vocab_size: int = 4096
    n_layer: int = 4
    n_embd: int = 256
    head_size: int = 64
    ffn_mult: int = 4
    d_decay: int = 32  # LoRA ranks of the data-dependent decay, in-context rate, value mix and gate
    d_aaa: int = 32
    d_mv: int = 32
    d_gate: int = 64

    @property
    def n_head(self) -> int:
        return self.n_embd // self.head_size


def wkv7_chunked(
    r: torch.Tensor, logw: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    a: torch.Tensor, b: torch.Tensor, state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the WKV-7 recurrence over T steps; returns outputs (B,T,H,N) and the final state (B,H,N,N).

    Inputs are (B,T,H,N) fp32; logw = log(decay) <= 0; state is (B,H,N,N) with rows = value dim.
    """
    B, T, H, N = r.shape
    L = CHUNK
    pad = (-T) % L
    if pad:  # padded steps have decay 1 and zero k, v, a, b, r: they leave the state unchanged
        r, logw, k, v, a, b = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (r, logw, k, v, a, b))
    nc = (T + pad) // L

    def chunks(t: torch.Tensor) -> torch.Tensor:
        return t.view(B, nc, L, H, N).permute(0, 3, 1, 2, 4)  # (B,H,nc,L,N)

    r, logw, k, v, a, b = (chunks(t) for t in (r, logw, k, v, a, b))
    cum = logw.cumsum(dim=3)  # (B,H,nc,L,N) log of the decay product over steps 1..t of the chunk
    excl = cum - logw  # steps 1..t-1
    last = cum[:, :, :, -1:, :]  # (B,H,nc,1,N) whole chunk
    a_t = a * excl.exp()  # a_t scaled by the decay before step t
    r_t = r * cum.exp()  # r_t scaled by the decay up to step t
    b_h = b * (-cum).exp()  # b_tau, k_tau divided by the decay up to tau
    k_h = k * (-cum).exp()
    b_e = b * (last - cum).exp()  # decay from tau to the chunk end
    k_e = k * (last - cum).exp()

    ones = torch.ones(L, L, dtype=torch.bool, device=r.device)
    strict = torch.tril(ones, diagonal=-1)
    incl = torch.tril(ones)
    m_ab = (a_t @ b_h.transpose(-1, -2)).masked_fill(~strict, 0.0)  # (B,H,nc,L,L)
    m_ak = (a_t @ k_h.transpose(-1, -2)).masked_fill(~strict, 0.0)
    p_rb = (r_t @ b_h.transpose(-1, -2)).masked_fill(~incl, 0.0)
    q_rk = (r_t @ k_h.transpose(-1, -2)).masked_fill(~incl, 0.0)

    # u_t = S0 a~_t + sum_{tau<t} u_tau (b^_tau . a~_t) + v_tau (k^_tau . a~_t)  =>  (I - M_ab) U = A~ S0^T + M_ak V
    eye = torch.eye(L, dtype=r.dtype, device=r.device)
    rhs = torch.cat([a_t, m_ak @ v], dim=-1)  # (B,H,nc,L,2N)
    sol = torch.linalg.solve_triangular(eye - m_ab, rhs, upper=False, unitriangular=True)
    w_a, u_core = sol[..., :N], sol[..., N:]  # (B,H,nc,L,N) each

    decay_end = last.exp().squeeze(3)  # (B,H,nc,N)
    starts, us = [], []
    s = state
    for c in range(nc):  # the only sequential part: one step per chunk
        u = w_a[:, :, c] @ s.transpose(-1, -2) + u_core[:, :, c]  # (B,H,L,N)
        starts.append(s)
        us.append(u)
        s = (s * decay_end[:, :, c].unsqueeze(-2)
             + u.transpose(-1, -2) @ b_e[:, :, c] + v[:, :, c].transpose(-1, -2) @ k_e[:, :, c])
    s0 = torch.stack(starts, dim=2)  # (B,H,nc,N,N)
    u_all = torch.stack(us, dim=2)  # (B,H,nc,L,N)
    y = r_t @ s0.transpose(-1, -2) + p_rb @ u_all + q_rk @ v  # (B,H,nc,L,N)
    y = y.permute(0, 2, 3, 1, 4).reshape(B, nc * L, H, N)[:, :T]
    return y, s


def wkv7_loop(
    r: torch.Tensor, logw: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    a: torch.Tensor, b: torch.Tensor, state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference per-token loop of the same recurrence (for tests); same signature as wkv7_chunked."""
    T = r.shape[1]
    w = logw.exp()
    ys = []
    s = state
    for t in range(T):
        s = (s * w[:, t].unsqueeze(-2) + (s @ a[:, t].unsqueeze(-1)) @ b[:, t].unsqueeze(-2)
             + v[:, t].unsqueeze(-1) @ k[:, t].unsqueeze(-2))
        ys.append((s @ r[:, t].unsqueeze(-1)).squeeze(-1))
    return torch.stack(ys, dim=1), s


class TimeMix(nn.Module):
    def __init__(self, cfg: RWKV7Config, layer_id: int) -> None:
        super().__init__()
        C, H, N = cfg.n_embd, cfg.n_head, cfg.head_size
        self.layer_id, self.H, self.N = layer_id, H, N
        r0 = layer_id / max(cfg.n_layer - 1, 1)  # 0 -> 1 across layers
        r1 = 1.0 - layer_id / cfg.n_layer  # 1 -> ~0
        ddd = (torch.arange(C, dtype=torch.float32) / C).view(1, 1, C)
        self.x_r = nn.Parameter(1.0 - ddd ** (0.2 * r1))
        self.x_w = nn.Parameter(1.0 - ddd ** (0.9 * r1))
        self.x_k = nn.Parameter(1.0 - ddd ** (0.7 * r1))
        self.x_v = nn.Parameter(1.0 - ddd ** (0.7 * r1))
        self.x_a = nn.Parameter(1.0 - ddd ** (0.9 * r1))
        self.x_g = nn.Parameter(1.0 - ddd ** (0.2 * r1))
        n = torch.arange(C, dtype=torch.float32)
        decay_speed = -7.0 + 5.0 * (n / (C - 1)) ** (0.85 + 1.0 * r0 ** 0.5)
        self.w0 = nn.Parameter((decay_speed + 0.5).view(1, 1, C))
        self.w1 = nn.Parameter(torch.zeros(C, cfg.d_decay))
        self.w2 = nn.Parameter(nn.init.orthogonal_(torch.empty(cfg.d_decay, C), gain=0.1))
        self.a0 = nn.Parameter(torch.zeros(1, 1, C))
        self.a1 = nn.Parameter(torch.zeros(C, cfg.d_aaa))
        self.a2 = nn.Parameter(nn.init.orthogonal_(torch.empty(cfg.d_aaa, C), gain=0.1))
        if layer_id > 0:  # layer 0 has no value residual (the package ignores its v0, v1, v2)
            self.v0 = nn.Parameter(torch.ones(1, 1, C))
            self.v1 = nn.Parameter(torch.zeros(C, cfg.d_mv))
            self.v2 = nn.Parameter(nn.init.orthogonal_(torch.empty(cfg.d_mv, C), gain=0.1))
        self.g1 = nn.Parameter(torch.zeros(C, cfg.d_gate))
        self.g2 = nn.Parameter(nn.init.orthogonal_(torch.empty(cfg.d_gate, C), gain=0.1))
        self.k_k = nn.Parameter(torch.full((1, 1, C), 0.85))
        self.k_a = nn.Parameter(torch.ones(1, 1, C))
        self.r_k = nn.Parameter(torch.full((H, N), -0.04))
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        bound = 0.5 / math.sqrt(C)
        nn.init.uniform_(self.receptance.weight, -bound, bound)
        nn.init.uniform_(self.key.weight, -0.1 * bound, 0.1 * bound)
        nn.init.uniform_(self.value.weight, -bound, bound)
        nn.init.zeros_(self.output.weight)
        self.ln_x = nn.GroupNorm(H, C, eps=64e-5)
        with torch.no_grad():
            self.ln_x.weight.copy_(torch.full((C,), ((1 + layer_id) / cfg.n_layer) ** 0.7))

    def forward(
        self, x: torch.Tensor, v_first: torch.Tensor | None, x_prev: torch.Tensor, state: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B,T,C) -> (out (B,T,C), v_first, last x (B,C), wkv state (B,H,N,N))."""
        B, T, C = x.shape
        H, N = self.H, self.N
        xx = torch.cat([x_prev.unsqueeze(1), x[:, :-1]], dim=1) - x  # (B,T,C) token shift
        xr, xw, xk = x + xx * self.x_r, x + xx * self.x_w, x + xx * self.x_k
        xv, xa, xg = x + xx * self.x_v, x + xx * self.x_a, x + xx * self.x_g

        r = self.receptance(xr)  # (B,T,C)
        logw = -W_SCALE * torch.sigmoid(self.w0 + torch.tanh(xw @ self.w1) @ self.w2)  # (B,T,C) log decay
        k = self.key(xk)
        v = self.value(xv)
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)  # in-context learning rate
        g = torch.sigmoid(xg @ self.g1) @ self.g2

        kk = F.normalize((k * self.k_k).view(B, T, H, N), dim=-1, p=2.0).view(B, T, C)
        k = k * (1 + (a - 1) * self.k_a)
        if self.layer_id == 0:
            v_first = v
        else:
            assert v_first is not None
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, H, N)

        y, state = wkv7_chunked(heads(r), heads(logw), heads(k), heads(v), heads(-kk), heads(kk * a), state)
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        y = y + ((heads(r) * heads(k) * self.r_k).sum(dim=-1, keepdim=True) * heads(v)).view(B, T, C)
        return self.output(y * g), v_first, x[:, -1], state


class ChannelMix(nn.Module):
    def __init__(self, cfg: RWKV7Config, layer_id: int) -> None:
        super().__init__()
        C = cfg.n_embd
        ddd = (torch.arange(C, dtype=torch.float32) / C).view(1, 1, C)
        self.x_k = nn.Parameter(1.0 - ddd ** (1.0 - layer_id / cfg.n_layer) ** 4)
        self.key = nn.Linear(C, C * cfg.ffn_mult, bias=False)
        self.value = nn.Linear(C * cfg.ffn_mult, C, bias=False)
        bound = 0.5 / math.sqrt(C)
        nn.init.uniform_(self.key.weight, -bound, bound)
        nn.init.zeros_(self.value.weight)

    def forward(self, x: torch.Tensor, x_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,T,C) -> (out (B,T,C), last x (B,C))."""
        xx = torch.cat([x_prev.unsqueeze(1), x[:, :-1]], dim=1) - x
        k = torch.relu(self.key(x + xx * self.x_k)) ** 2  # (B,T,4C)
        return self.value(k), x[:, -1]


class Block(nn.Module):
    def __init__(self, cfg: RWKV7Config, layer_id: int) -> None:
        super().__init__()
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(cfg.n_embd)
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.att = TimeMix(cfg, layer_id)
        self.ffn = ChannelMix(cfg, layer_id)


class RWKV7(nn.Module):
    """The network. `forward(idx)` gives logits (B,T,V); pass `state` to continue and get the new one."""

    def __init__(self, cfg: RWKV7Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        nn.init.uniform_(self.emb.weight, -1e-4, 1e-4)
        self.blocks = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)])
        self.ln_out = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        scale = 0.5 * math.sqrt(cfg.vocab_size / cfg.n_embd) if cfg.vocab_size > cfg.n_embd else 0.5
        nn.init.orthogonal_(self.head.weight, gain=scale)

    def zero_state(self, batch: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """The package's state layout per layer: [att x_prev (B,C), wkv (B,H,N,N), ffn x_prev (B,C)]."""
        c = self.cfg
        state: list[torch.Tensor] = []
        for _ in range(c.n_layer):
            state += [torch.zeros(batch, c.n_embd, device=device),
                      torch.zeros(batch, c.n_head, c.head_size, c.head_size, device=device),
                      torch.zeros(batch, c.n_embd, device=device)]
        return state

    def forward(
        self, idx: torch.Tensor, state: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """idx (B,T) token ids -> (logits (B,T,V), state after the last token)."""
        x, new_state = self.features(idx, state)
        return self.head(x), new_state  # (B,T,V)

    def features(
        self, idx: torch.Tensor, state: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """idx (B,T) -> (the normalised last hidden states (B,T,C) that the head reads, state after the last token).

        Training applies the head to the positions it takes the loss on only: the vocabulary-sized
        product is the largest single cost of a small model."""
        B, _ = idx.shape
        if state is None:
            state = self.zero_state(B, idx.device)
        new_state: list[torch.Tensor] = []
        x = self.emb(idx)  # (B,T,C)
        v_first: torch.Tensor | None = None
        for i, blk in enumerate(self.blocks):
            assert isinstance(blk, Block)
            if i == 0:
                x = blk.ln0(x)
            h, v_first, att_prev, wkv = blk.att(blk.ln1(x), v_first, state[3 * i], state[3 * i + 1])
            x = x + h
            h, ffn_prev = blk.ffn(blk.ln2(x), state[3 * i + 2])
            x = x + h
            new_state += [att_prev, wkv, ffn_prev]
        return self.ln_out(x), new_state  # (B,T,C)

    def num_params(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())
