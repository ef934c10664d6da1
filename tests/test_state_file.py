"""State files (RWKV-PEFT state tuning): read safely, checked against the model, placed the right way round.

The layout comes from RWKV-PEFT (JL-er/RWKV-PEFT): `RWKV_Tmix_x070_State` trains
`time_state = zeros(n_head, head_size, head_size)` per layer (rwkvt/rwkv7/att.py), the
trainer saves only the tensors whose name holds "state" (rwkvt/lightning_train/trainer.py),
and the fla path hands `time_state.transpose(1, 2)` to fla's `chunk_rwkv7` as its initial
state (rwkvt/operator/rwkvop.py, RUN_RWKV7_STATE), whose state is [key, value].
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from checkpoints import build_checkpoint
from helpers import run_python_json

from weprompt_cli.engine import fingerprint
from weprompt_cli.engine.state_file import file_sha256, load_state_file, state_from_wkv
from weprompt_cli.errors import InvalidFileError, NotFoundError, UnsafeError

N_LAYER, N_EMBD, HEAD_SIZE = 2, 64, 32
N_HEAD = N_EMBD // HEAD_SIZE
TOKENS = [5, 17, 42, 99, 7, 3]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_time_state(n_layer: int = N_LAYER, n_head: int = N_HEAD, head_size: int = HEAD_SIZE,
                      seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # Not symmetric, so a transposed load could not pass for a right one.
    return [torch.randn(n_head, head_size, head_size, generator=g) * 0.5 for _ in range(n_layer)]


def peft_file(path: Path, layers: list[torch.Tensor], dtype: torch.dtype = torch.float32) -> Path:
    """A file as RWKV-PEFT saves it: only `blocks.{i}.att.time_state`, torch.save."""
    torch.save({f"blocks.{i}.att.time_state": t.to(dtype) for i, t in enumerate(layers)}, str(path))
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint("v7", tmp_path_factory.mktemp("v7") / "tiny-v7.pth", n_layer=N_LAYER, n_embd=N_EMBD,
                            head_size=HEAD_SIZE)


def rwkv_v7() -> Any:
    """The rwkv package's RWKV class in RWKV-7 mode (the mode is fixed at its import)."""
    if "rwkv.model" not in sys.modules:
        os.environ.update({"RWKV_V7_ON": "1", "RWKV_JIT_ON": "1", "RWKV_CUDA_ON": "0"})
    import rwkv.model

    if os.environ.get("RWKV_V7_ON") != "1":
        pytest.skip("this process loaded another rwkv family")
    return rwkv.model.RWKV


@pytest.fixture(scope="module")
def model(model_path: Path) -> Any:
    return rwkv_v7()(model=str(model_path)[: -len(".pth")], strategy="cpu fp32")


def logits(model: Any, state: list[torch.Tensor] | None) -> torch.Tensor:
    out, _ = model.forward(list(TOKENS), state)
    return out.float()


# ---------------------------------------------------------------------------- loading


def test_loads_exactly_the_trained_numbers_in_the_rwkv7_orientation(tmp_path: Path) -> None:
    layers = random_time_state()
    wkv = load_state_file(peft_file(tmp_path / "persona.pth", layers), n_layer=N_LAYER, n_head=N_HEAD,
                          head_size=HEAD_SIZE)
    assert len(wkv) == N_LAYER
    for got, trained in zip(wkv, layers):
        assert got.dtype == torch.float32 and got.device.type == "cpu" and got.is_contiguous()
        # The package's RWKV-7 state is [value, key], as the trainer's time_state: no transpose.
        assert torch.equal(got, trained)


def test_rwkv5_and_6_state_files_are_transposed_for_the_package(tmp_path: Path) -> None:
    layers = random_time_state()
    wkv = load_state_file(peft_file(tmp_path / "v6.pth", layers), n_layer=N_LAYER, n_head=N_HEAD, head_size=HEAD_SIZE,
                          arch="v6")
    for got, trained in zip(wkv, layers):
        assert torch.equal(got, trained.transpose(1, 2))


def test_bf16_file_as_the_trainer_writes_it(tmp_path: Path) -> None:
    layers = random_time_state()
    wkv = load_state_file(peft_file(tmp_path / "bf16.pth", layers, torch.bfloat16), n_layer=N_LAYER, n_head=N_HEAD,
                          head_size=HEAD_SIZE)
    assert all(torch.equal(got, t.to(torch.bfloat16).float()) for got, t in zip(wkv, layers))


def test_safetensors_state_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    layers = random_time_state(seed=3)
    path = tmp_path / "persona.safetensors"
    save_file({f"blocks.{i}.att.time_state": t.contiguous() for i, t in enumerate(layers)}, str(path))
    wkv = load_state_file(path, n_layer=N_LAYER, n_head=N_HEAD, head_size=HEAD_SIZE)
    assert all(torch.equal(got, t) for got, t in zip(wkv, layers))


def test_state_from_wkv_is_the_package_layout(model: Any) -> None:
    wkv = random_time_state()
    state = state_from_wkv(wkv, n_embd=N_EMBD, dtype=torch.float32)
    zero = model.generate_zero_state()
    assert [(tuple(t.shape), t.dtype) for t in state] == [(tuple(t.shape), t.dtype) for t in zero]
    assert all(torch.equal(state[3 * i + 1], wkv[i]) for i in range(N_LAYER))


# ---------------------------------------------------------------------------- the model


def test_initial_state_changes_the_logits(model: Any, tmp_path: Path) -> None:
    wkv = load_state_file(peft_file(tmp_path / "p.pth", random_time_state()), n_layer=N_LAYER, n_head=N_HEAD,
                          head_size=HEAD_SIZE)
    tuned = logits(model, state_from_wkv(wkv, n_embd=N_EMBD, dtype=torch.float32))
    plain = logits(model, None)
    assert float((tuned - plain).abs().max()) > 1e-3
    again = logits(model, state_from_wkv(wkv, n_embd=N_EMBD, dtype=torch.float32))
    assert torch.allclose(tuned, again)  # deterministic: the state file, not chance, made the difference


def test_rwkv7_package_ignores_time_state_in_a_checkpoint(model: Any, model_path: Path, tmp_path: Path) -> None:
    """The package's RWKV-7 class always starts from zeros, so WePrompt must place the state itself."""
    weights = torch.load(str(model_path), weights_only=True)
    weights.update({f"blocks.{i}.att.time_state": t for i, t in enumerate(random_time_state())})
    merged = tmp_path / "merged.pth"
    torch.save(weights, str(merged))
    other = rwkv_v7()(model=str(merged)[: -len(".pth")], strategy="cpu fp32")
    assert torch.allclose(logits(other, None), logits(model, None), atol=1e-5)


def test_rwkv7_orientation_matches_the_trainers_recurrence() -> None:
    """One head, a few steps of the RWKV-7 wkv recurrence written both ways, from the same time_state.

    Trainer side (RWKV-PEFT with fla): S0 = time_state^T is [key, value];
    S = S * w[:, None] + (S^T a)-row times b + k v^T; out = S^T r (fla's dplr recurrence).
    Package side (rwkv.model RWKV_x070_TMix_one): s = state [value, key];
    s = s * w[None, :] + s @ (a b^T) + v k^T; out = s @ r.
    """
    g = torch.Generator().manual_seed(7)
    n, steps = 16, 5
    time_state = torch.randn(1, n, n, generator=g, dtype=torch.float64)
    r, k, v = (torch.randn(steps, n, generator=g, dtype=torch.float64) for _ in range(3))
    w = torch.rand(steps, n, generator=g, dtype=torch.float64) * 0.5 + 0.45
    kk = torch.nn.functional.normalize(torch.randn(steps, n, generator=g, dtype=torch.float64), dim=-1)
    iclr = torch.rand(steps, n, generator=g, dtype=torch.float64)
    a, b = -kk, kk * iclr

    def trainer() -> list[torch.Tensor]:
        s = time_state[0].T.clone()  # [key, value]
        outs = []
        for t in range(steps):
            sa = (s * a[t][:, None]).sum(0)  # [value]
            s = s * w[t][:, None] + b[t][:, None] * sa[None, :] + k[t][:, None] * v[t][None, :]
            outs.append(r[t] @ s)
        return outs

    def package(state: torch.Tensor) -> list[torch.Tensor]:
        s = state.clone()  # [value, key]
        outs = []
        for t in range(steps):
            s = s * w[t][None, :] + s @ (a[t][:, None] @ b[t][None, :]) + v[t][:, None] @ k[t][None, :]
            outs.append(s @ r[t])
        return outs

    loaded = time_state[0]  # what load_state_file returns for RWKV-7: the file as it is
    assert all(torch.allclose(x, y) for x, y in zip(trainer(), package(loaded)))
    # The transpose that the chat demo (written for RWKV-6 state files) applies gives other outputs.
    assert not torch.allclose(trainer()[0], package(loaded.T)[0])


def test_rwkv6_state_file_equals_the_package_own_time_state_support(tmp_path: Path) -> None:
    """RWKV-5/6 in the package read `time_state` from a checkpoint: a state file placed by
    WePrompt must give the same logits (in a subprocess: another rwkv family)."""
    result = run_python_json(
        f"""
        import json, os, torch
        os.environ.update(RWKV_V7_ON="0", RWKV_JIT_ON="1", RWKV_CUDA_ON="0")
        from pathlib import Path
        from checkpoints import build_checkpoint
        from weprompt_cli.engine.state_file import load_state_file, state_from_wkv
        base = Path({str(tmp_path)!r})
        path = build_checkpoint("v6", base / "tiny-v6.pth", n_layer={N_LAYER}, n_embd={N_EMBD}, head_size={HEAD_SIZE})
        g = torch.Generator().manual_seed(1)
        layers = [torch.randn({N_HEAD}, {HEAD_SIZE}, {HEAD_SIZE}, generator=g) * 0.5 for _ in range({N_LAYER})]
        states = {{f"blocks.{{i}}.att.time_state": t for i, t in enumerate(layers)}}
        torch.save(states, str(base / "state.pth"))
        weights = torch.load(str(path), weights_only=True)
        weights.update(states)
        torch.save(weights, str(base / "merged.pth"))
        from rwkv.model import RWKV
        plain = RWKV(model=str(base / "tiny-v6"), strategy="cpu fp32")
        merged = RWKV(model=str(base / "merged"), strategy="cpu fp32")
        wkv = load_state_file(base / "state.pth", n_layer={N_LAYER}, n_head={N_HEAD}, head_size={HEAD_SIZE}, arch="v6")
        ours, _ = plain.forward({TOKENS}, state_from_wkv(wkv, n_embd={N_EMBD}, dtype=torch.float32))
        theirs, _ = merged.forward({TOKENS}, None)
        zero, _ = plain.forward({TOKENS}, None)
        print(json.dumps({{"same": float((ours - theirs).abs().max()), "zero": float((ours - zero).abs().max())}}))
        """,
        timeout=300,
    )
    assert result["same"] < 1e-5
    assert result["zero"] > 1e-3


# ---------------------------------------------------------------------------- refusals


def test_wrong_model_is_one_line_naming_file_and_both_shapes(tmp_path: Path) -> None:
    path = peft_file(tmp_path / "big.pth", random_time_state(n_layer=12, n_head=12, head_size=64))
    with pytest.raises(InvalidFileError) as info:
        load_state_file(path, n_layer=4, n_head=4, head_size=32)
    err = info.value
    assert err.message == "state file has 12 layers x 12 heads x 64, the model 4 layers x 4 heads x 32"
    assert err.path == str(path)
    assert err.one_line() == f"{err.message} ({path})" and "\n" not in err.one_line()
    assert err.hint and "base model" in err.hint


@pytest.mark.parametrize(("n_layer", "n_head", "head_size"), [(3, N_HEAD, HEAD_SIZE), (N_LAYER, 4, 16),
                                                              (N_LAYER, N_HEAD, 16)])
def test_each_mismatch_is_refused(tmp_path: Path, n_layer: int, n_head: int, head_size: int) -> None:
    path = peft_file(tmp_path / "s.pth", random_time_state())
    with pytest.raises(InvalidFileError, match=f"state file has {N_LAYER} layers x {N_HEAD} heads x {HEAD_SIZE}, "
                                               f"the model {n_layer} layers x {n_head} heads x {head_size}"):
        load_state_file(path, n_layer=n_layer, n_head=n_head, head_size=head_size)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_torch_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"blocks.0.att.time_state": torch.zeros(2, 2, 2), "x": _Payload(marker)}, str(path))
    with pytest.raises(UnsafeError, match="refusing to load this state file: its pickle would run code"):
        load_state_file(path, n_layer=1, n_head=2, head_size=2)
    assert not marker.exists()


def test_malicious_plain_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"blocks.0.att.time_state": _Payload(marker)}, protocol=4))
    with pytest.raises(UnsafeError, match=r"would run code \((os|posix)\.system\)"):
        load_state_file(path, n_layer=1, n_head=2, head_size=2)
    assert not marker.exists()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="state file not found"):
        load_state_file(tmp_path / "nope.pth", n_layer=1, n_head=1, head_size=1)


def test_a_model_checkpoint_without_time_state_is_not_a_state_file(model_path: Path) -> None:
    with pytest.raises(InvalidFileError, match=r"no blocks\.N\.att\.time_state tensors"):
        load_state_file(model_path, n_layer=N_LAYER, n_head=N_HEAD, head_size=HEAD_SIZE)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"blocks.1.att.time_state": torch.zeros(2, 4, 4)}, r"lacks layer\(s\) 0"),
        ({"blocks.0.att.time_state": torch.zeros(2, 4, 4, dtype=torch.int64)}, "int64, not floating point"),
        ({"blocks.0.att.time_state": torch.full((2, 4, 4), float("nan"))}, "NaN or infinite"),
        ({"blocks.0.att.time_state": torch.zeros(2, 4, 3)}, r"shape \[2, 4, 3\]"),
        ([torch.zeros(2, 4, 4)], "it holds a list"),
    ],
)
def test_broken_state_files(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "broken.pth"
    torch.save(content, str(path))
    with pytest.raises(InvalidFileError, match=message):
        load_state_file(path, n_layer=1, n_head=2, head_size=4)


def test_garbage_and_truncated_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a state file at all" * 10)
    with pytest.raises(InvalidFileError, match="not a state file"):
        load_state_file(garbage, n_layer=1, n_head=2, head_size=4)
    good = peft_file(tmp_path / "good.pth", random_time_state())
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InvalidFileError, match="not a state file"):
        load_state_file(cut, n_layer=N_LAYER, n_head=N_HEAD, head_size=HEAD_SIZE)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(len(b'{"a": 1}').to_bytes(8, "little") + b'{"a": 1}')
    with pytest.raises(InvalidFileError, match="unreadable safetensors"):
        load_state_file(broken, n_layer=1, n_head=2, head_size=4)


def test_rwkv4_has_no_state_files(tmp_path: Path) -> None:
    path = peft_file(tmp_path / "s.pth", random_time_state())
    with pytest.raises(InvalidFileError, match="RWKV-5, 6 or 7"):
        load_state_file(path, n_layer=N_LAYER, n_head=N_HEAD, head_size=HEAD_SIZE, arch="v4")


def test_file_sha256_is_the_fingerprint_helper(tmp_path: Path) -> None:
    path = peft_file(tmp_path / "s.pth", random_time_state())
    assert file_sha256 is fingerprint.file_sha256
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
