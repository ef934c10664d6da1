"""Checkpoint inspection, strategy validation and load errors: each a clear WePromptError."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from checkpoints import FAMILIES, tiny_model, tiny_models, tiny_models_dir  # noqa: F401  (fixtures)
from helpers import run_python_json

from weprompt_cli.engine.checkpoint import ModelInfo, inspect_checkpoint
from weprompt_cli.engine.strategy import PerformanceWarning, parse_strategy, resolve_strategy
from weprompt_cli.errors import (
    ExitCode,
    HardwareError,
    InvalidFileError,
    NotFoundError,
    UnsafeError,
    UsageError,
    WePromptError,
)


@pytest.mark.parametrize("arch", FAMILIES)
def test_inspect_detects_each_family_and_its_shape(tiny_models: dict[str, Path], arch: str) -> None:
    info = inspect_checkpoint(tiny_models[arch])
    assert info.arch == arch
    assert (info.n_layer, info.n_embd, info.vocab_size) == (2, 128, 400)
    if arch == "v4":
        assert (info.n_head, info.head_size) == (0, 0)
    else:
        assert (info.n_head, info.head_size) == (2, 64)
    assert info.n_params > 500_000 and info.file_size == tiny_models[arch].stat().st_size
    assert info.converted_strategy is None


def test_inspect_accepts_a_path_without_pth(tiny_models: dict[str, Path]) -> None:
    path = tiny_models["v7"]
    assert inspect_checkpoint(str(path)[: -len(".pth")]).arch == "v7"


def test_missing_model_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="model file not found") as err:
        inspect_checkpoint(tmp_path / "nope.pth")
    assert err.value.code == ExitCode.NOT_FOUND and err.value.path.endswith("nope.pth")


@pytest.mark.parametrize(
    "content",
    [b"hello, I am a text file\n", b"", bytes(range(256)) * 4, b"\x80\x02garbage"],
    ids=["text", "empty", "binary", "bad-pickle"],
)
def test_a_file_that_is_not_a_checkpoint_is_invalid(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(InvalidFileError, match="not an RWKV checkpoint"):
        inspect_checkpoint(path)


def test_a_folder_or_a_tensor_file_without_rwkv_keys_is_invalid(tmp_path: Path) -> None:
    import torch

    with pytest.raises(InvalidFileError, match="not an RWKV checkpoint"):
        inspect_checkpoint(tmp_path)
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(InvalidFileError, match="not an RWKV checkpoint"):
        inspect_checkpoint(tmp_path / "other.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(InvalidFileError):
        inspect_checkpoint(tmp_path / "list.pth")


class _Payload:
    """Unpickling this would create a marker file: the load must refuse before that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path: Path, legacy: bool) -> None:
    import torch

    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    payload = {"emb.weight": torch.zeros(2, 2), "blocks.0.x": _Payload(marker)}
    if legacy:
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    assert not marker.exists()
    with pytest.raises(UnsafeError, match="would run code") as err:
        inspect_checkpoint(path)
    assert err.value.code == ExitCode.UNSAFE
    assert not marker.exists()


def _info(arch: str = "v7", **kw: object) -> ModelInfo:
    fields = dict(
        path=Path("/m.pth"), arch=arch, n_layer=2, n_embd=128, vocab_size=400, n_head=2, head_size=64,
        n_params=10**6, file_size=4 * 10**6,
    )
    fields.update(kw)
    return ModelInfo(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "gpu fp32", "cpu fp8", "cpu", "cuda fp16 *x", "cpu fp32 ->", "fp32 cpu"])
def test_an_invalid_strategy_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError, match="invalid strategy") as err:
        resolve_strategy(bad or " ", _info("v4"))
    assert "cpu fp32" in (err.value.hint or "")


def test_valid_strategies_are_parsed_and_normalised() -> None:
    segments = parse_strategy("cuda  fp16i8 *10+ ->cpu fp32")
    assert [(s.device, s.dtype, s.quant, s.layers, s.stream) for s in segments] == [
        ("cuda", "fp16", "i8", 10, True),
        ("cpu", "fp32", None, None, False),
    ]
    assert resolve_strategy("cpu   fp32", _info("v4")) == "cpu fp32"


@pytest.mark.parametrize("strategy", ["cpu fp32i8", "cuda fp16i8", "cpu fp16i8"])
def test_v7_refuses_quantisation(strategy: str) -> None:
    with pytest.raises(UsageError, match="RWKV-7 models run only in fp16, bf16 or fp32"):
        resolve_strategy(strategy, _info("v7"))


@pytest.mark.parametrize("strategy", ["cuda fp16 *10 -> cpu fp32", "cpu fp32 *1 -> cpu fp32", "cpu fp32 *2"])
def test_v7_refuses_a_multi_device_or_layer_split_strategy(strategy: str) -> None:
    with pytest.raises(UsageError, match="one device"):
        resolve_strategy(strategy, _info("v7"))


def test_i4_and_i3_are_refused_for_every_family() -> None:
    with pytest.raises(UsageError, match="only i8"):
        resolve_strategy("cpu fp32i4", _info("v4"))


def test_a_layer_split_is_accepted_for_v4_to_v6() -> None:
    assert resolve_strategy("cpu fp32 *1 -> cpu fp32", _info("v6")) == "cpu fp32 *1 -> cpu fp32"


def test_cuda_without_a_gpu_is_a_hardware_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for strategy in ("cuda fp16", "cuda:1 fp16"):
        with pytest.raises(HardwareError, match="needs CUDA") as err:
            resolve_strategy(strategy, _info("v7"))
        assert err.value.code == ExitCode.HARDWARE


def test_bf16_on_the_cpu_is_allowed_with_a_warning() -> None:
    with pytest.warns(PerformanceWarning, match="slower"):
        assert resolve_strategy("cpu bf16", _info("v7")) == "cpu bf16"


def test_auto_never_picks_bf16_on_a_cpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_strategy("auto", _info("v7")) == "cpu fp32"
        assert resolve_strategy(None, _info("v4")) == "cpu fp32"


def test_auto_without_the_hardware_advisor_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from weprompt_cli.engine import strategy as strategy_module

    monkeypatch.setitem(sys.modules, "weprompt_cli.hardware.advice", None)  # makes the import fail
    assert strategy_module._auto_strategy(_info("v7")) in ("cpu fp32", "cuda fp16")


def test_a_converted_checkpoint_needs_its_own_strategy() -> None:
    info = _info("v4", converted_strategy="cpu fp32i8")
    assert resolve_strategy("auto", info) == "cpu fp32i8"
    with pytest.raises(UsageError, match="converted"):
        resolve_strategy("cpu fp32", info)


def test_missing_20b_tokenizer_is_not_found_with_a_pull_hint(tmp_path: Path) -> None:
    from checkpoints import build_checkpoint

    from weprompt_cli.engine import load_engine

    path = build_checkpoint("v4", tmp_path / "raven.pth", n_embd=32, vocab_size=50277, tokenizer=None, dtype="fp16")
    with pytest.raises(NotFoundError, match="20B tokenizer") as err:
        load_engine(path, "cpu fp32", models_dir=tmp_path / "models")
    assert "weprompt models pull raven-14b-v12" in (err.value.hint or "")


def test_load_engine_reports_each_error_as_a_weprompt_error(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    from weprompt_cli.engine import load_engine

    (tmp_path / "junk.pth").write_text("junk")
    cases = [
        (tmp_path / "missing.pth", "cpu fp32", NotFoundError),
        (tmp_path / "junk.pth", "cpu fp32", InvalidFileError),
        (tiny_models["v7"], "cpu fp32 *1 -> cpu fp32", UsageError),
        (tiny_models["v7"], "cpu fp16i8", UsageError),
        (tiny_models["v7"], "bogus", UsageError),
    ]
    for path, strategy, kind in cases:
        with pytest.raises(kind) as err:
            load_engine(path, strategy)
        assert isinstance(err.value, WePromptError) and err.value.message


def test_importing_the_engine_package_does_not_import_torch() -> None:
    out = run_python_json(
        """
        import json, sys
        import weprompt_cli.engine, weprompt_cli.chat
        from weprompt_cli.engine import SamplingParams, load_engine, inspect_checkpoint
        print(json.dumps(["torch" in sys.modules, "rwkv" in sys.modules]))
        """
    )
    assert out == [False, False]


def test_a_legacy_non_zip_checkpoint_is_read_without_mmap(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    import torch

    weights = torch.load(tiny_models["v6"], map_location="cpu", weights_only=True)
    legacy = tmp_path / "legacy.pth"
    torch.save(weights, legacy, _use_new_zipfile_serialization=False)
    info = inspect_checkpoint(legacy)
    assert info.arch == "v6" and info.n_params == inspect_checkpoint(tiny_models["v6"]).n_params


# ------------------------------------------------------------- what a user sees on stderr (issue 15)


def _weprompt_chat(model: Path) -> subprocess.CompletedProcess[str]:
    """`weprompt chat --model MODEL -m hi` in a new process, as a user runs it (real stderr, warnings on)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run(
        [sys.executable, "-m", "weprompt_cli", "chat", "--model", str(model), "-m", "hi"],
        input="", capture_output=True, text=True, timeout=180, check=False, env={**env, "PYTHONUNBUFFERED": "1"},
    )


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_plain_pickle_model_gets_only_the_one_line_refusal(tmp_path: Path, protocol: int) -> None:
    # Protocols above 2 made torch print a UserWarning and a source line before the refusal.
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"emb.weight": _Touch(marker), "blocks.0.x": 1}, protocol=protocol))
    result = _weprompt_chat(path)
    assert result.returncode == ExitCode.UNSAFE, result.stderr
    assert result.stderr.splitlines()[0].startswith("weprompt: error: refusing to load this file"), result.stderr
    assert [line for line in result.stderr.splitlines() if not line.startswith("  hint:")] == [
        result.stderr.splitlines()[0]
    ], result.stderr
    assert "Warning" not in result.stderr and result.stdout == ""
    assert not marker.exists()


def _legacy_copy(source: Path, target: Path) -> Path:
    import torch

    torch.save(torch.load(source, map_location="cpu", weights_only=True), target, _use_new_zipfile_serialization=False)
    return target


@pytest.mark.parametrize("kind", ["zip", "legacy"])
@pytest.mark.parametrize("keep", [0.5, 0.02, 0.98])
def test_a_truncated_checkpoint_says_it_is_truncated_or_corrupt(
    tmp_path: Path, tiny_models: dict[str, Path], kind: str, keep: float
) -> None:
    from weprompt_cli.demo import DEMO_MODEL_PATH

    source = DEMO_MODEL_PATH if kind == "zip" else _legacy_copy(tiny_models["v7"], tmp_path / "legacy.pth")
    data = source.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: int(len(data) * keep)])
    result = _weprompt_chat(cut)
    assert result.returncode == ExitCode.INVALID, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("weprompt: error:") and "truncated or corrupt" in lines[0], result.stderr
    assert "RuntimeError" not in result.stderr and "Traceback" not in result.stderr
    assert str(cut) in lines[0] and any(line.startswith("  hint:") for line in lines[1:])


def test_a_checkpoint_with_a_damaged_archive_says_it_is_truncated_or_corrupt(tmp_path: Path) -> None:
    from weprompt_cli.demo import DEMO_MODEL_PATH

    data = bytearray(DEMO_MODEL_PATH.read_bytes())
    start = data.find(b"data.pkl") + len(b"data.pkl")
    data[start + 40 : start + 80] = b"\xff" * 40  # scribble over the start of the pickle
    path = tmp_path / "damaged.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidFileError, match="truncated or corrupt"):
        inspect_checkpoint(path)


def test_a_plain_pickle_of_code_torch_cannot_read_is_refused_as_unsafe(tmp_path: Path) -> None:
    # Not a torch.save file: torch stops at the missing magic number, before any global is checked.
    import collections

    path = tmp_path / "counter.pth"
    path.write_bytes(pickle.dumps({"emb.weight": collections.Counter("ab")}, protocol=2))
    with pytest.raises(UnsafeError, match="would run code .*collections.Counter"):
        inspect_checkpoint(path)
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({"emb.weight": [1.0, 2.0]}, protocol=2))
    with pytest.raises(InvalidFileError, match="not an RWKV checkpoint .a plain pickle"):
        inspect_checkpoint(plain)
