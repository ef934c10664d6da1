"""The training network (training/model.py) against the `rwkv` package on the exported file.

`rwkv.model` fixes its model family at import, so everything that imports it runs in a child
process and reports back as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `training/` is a top-level folder of the checkout, not part of the package
    sys.path.insert(0, str(ROOT))

from training.model import RWKV7, RWKV7Config, wkv7_chunked, wkv7_loop

CHILD = r"""
import json, os, sys
os.environ.update(RWKV_V7_ON="1", RWKV_JIT_ON="1", RWKV_CUDA_ON="0")
import contextlib, torch
torch.manual_seed(0)
from training.model import RWKV7, RWKV7Config
from training.export import export

cfg = RWKV7Config(vocab_size=320, n_layer=3, n_embd=64, head_size=16, d_decay=8, d_aaa=8, d_mv=8, d_gate=16)
model = RWKV7(cfg)
with torch.no_grad():  # a random init in every parameter (the training init zeroes some projections)
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.2)
path = export(model, os.path.join(sys.argv[1], "tiny.pth"))
with contextlib.redirect_stdout(sys.stderr):
    from rwkv.model import RWKV
    pkg = RWKV(str(path)[:-4], "cpu fp32")

ids = torch.randint(0, cfg.vocab_size, (1, 300))
prompt, rest = ids[:, :200], ids[:, 200:]
with torch.no_grad():
    ours, _ = model(ids)
    _, ours_state = model(prompt)
    ours_cont, _ = model(rest, ours_state)
theirs, state = pkg.forward(ids[0].tolist(), None, full_output=True)
_, pkg_state = pkg.forward(prompt[0].tolist(), None)
pkg_state = [t.clone() for t in pkg_state]
state_diff = max(float((a[0] - b.float()).abs().max()) for a, b in zip(ours_state, pkg_state))
cont, _ = pkg.forward(rest[0].tolist(), pkg_state, full_output=True)
# one token at a time from the package's own state (its forward_one path)
step_state = [t.clone() for t in pkg_state]
one = []
for t in rest[0].tolist()[:20]:
    out, step_state = pkg.forward([t], step_state)
    one.append(out.float())
one_diff = float((torch.stack(one) - ours_cont[0, :20]).abs().max())
print(json.dumps({
    "logits_diff": float((theirs.float() - ours[0]).abs().max()),
    "logit_scale": float(ours.abs().max()),
    "state_diff": state_diff,
    "cont_diff": float((cont.float() - ours_cont[0]).abs().max()),
    "one_diff": one_diff,
    "n_state": len(pkg_state),
}))
"""


def test_chunked_wkv_equals_token_loop() -> None:
    torch.manual_seed(1)
    B, T, H, N = 2, 45, 3, 16  # T not a multiple of the chunk: the padded tail must not touch the state
    r, k, v = (torch.randn(B, T, H, N) for _ in range(3))
    logw = -0.606531 * torch.rand(B, T, H, N)
    kk = torch.nn.functional.normalize(torch.randn(B, T, H, N), dim=-1)
    a = torch.rand(B, T, H, N)
    s0 = torch.randn(B, H, N, N)
    y1, s1 = wkv7_chunked(r, logw, k, v, -kk, kk * a, s0)
    y2, s2 = wkv7_loop(r, logw, k, v, -kk, kk * a, s0)
    assert (y1 - y2).abs().max() < 1e-4
    assert (s1 - s2).abs().max() < 1e-4


def test_chunked_wkv_gradients_equal_token_loop() -> None:
    torch.manual_seed(2)
    B, T, H, N = 1, 20, 2, 8
    base = [torch.randn(B, T, H, N, dtype=torch.float64) for _ in range(3)]
    logw = (-0.606531 * torch.rand(B, T, H, N, dtype=torch.float64)).requires_grad_()
    kk = torch.nn.functional.normalize(torch.randn(B, T, H, N, dtype=torch.float64), dim=-1)
    a = torch.rand(B, T, H, N, dtype=torch.float64)
    grads = []
    for fn in (wkv7_chunked, wkv7_loop):
        r, k, v = (t.clone().requires_grad_() for t in base)
        y, s = fn(r, logw, k, v, -kk, kk * a, torch.zeros(B, H, N, N, dtype=torch.float64))
        (y.square().sum() + s.sum()).backward()
        grads.append([t.grad.clone() for t in (r, k, v, logw)])
        logw.grad = None
    for g1, g2 in zip(*grads):
        assert torch.allclose(g1, g2, atol=1e-8)


def test_exported_checkpoint_has_the_v7_layout(tmp_path: Path) -> None:
    from training.export import export

    cfg = RWKV7Config(vocab_size=100, n_layer=2, n_embd=32, head_size=16, d_decay=8, d_aaa=8, d_mv=8, d_gate=8)
    path = export(RWKV7(cfg), tmp_path / "m.pth")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert sd["blocks.0.att.r_k"].shape == (2, 16)  # the package reads n_head, head_size from it
    assert sd["emb.weight"].shape == (100, 32) and sd["head.weight"].shape == (100, 32)
    assert "blocks.0.ln0.weight" in sd and "blocks.1.ln0.weight" not in sd
    assert "blocks.1.att.v0" in sd and "blocks.0.att.v0" not in sd  # layer 0 has no value residual
    assert {"blocks.1.att.x_r", "blocks.1.att.k_k", "blocks.1.att.ln_x.weight", "blocks.1.ffn.x_k"} <= set(sd)
    assert all(t.dtype == torch.float32 for t in sd.values())


def test_training_forward_matches_rwkv_package_logits_and_state(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["logit_scale"] > 1.0  # a real signal, not all zeros
    assert got["logits_diff"] < 1e-3, got
    assert got["state_diff"] < 1e-3, got
    assert got["cont_diff"] < 1e-3, got
    assert got["one_diff"] < 1e-3, got
    assert got["n_state"] == 9
