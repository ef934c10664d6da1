"""`weprompt models convert`: v4-v6 through the rwkv package's converter, RWKV-7 refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from checkpoints import tiny_model
from helpers import run_main as run
from helpers import run_python_json

from weprompt_cli.errors import ExitCode
from weprompt_cli.models.convert import default_output

ROOT = Path(__file__).resolve().parent.parent


def test_convert_refuses_rwkv7_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v7 = tiny_model("v7", tmp_path)
    code, out, err = run(["models", "convert", str(v7), "--strategy", "cpu fp32"], capsys)
    assert code == ExitCode.USAGE
    lines = [ln for ln in err.splitlines() if ln.startswith("weprompt: error:")]
    assert len(lines) == 1 and "RWKV-7" in lines[0] and "already loads fast" in lines[0]
    assert "Traceback" not in err
    assert not default_output(v7, "cpu fp32").exists()


@pytest.mark.parametrize(("arch", "strategy"), [("v4", "cpu fp32"), ("v5.2", "cpu fp32i8")])
def test_convert_a_tiny_checkpoint_and_load_it(
    arch: str, strategy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tiny_model(arch, tmp_path, dtype="bf16")
    out_path = tmp_path / f"converted-{arch}.pth"
    code, out, err = run(["models", "convert", str(src), "-s", strategy, "-o", str(out_path)], capsys)
    assert code == 0, err
    assert out.strip() == str(out_path) and out_path.is_file()
    assert not list(tmp_path.glob(".tmp-*"))
    # The converted file loads (weights only) with exactly its strategy, and gives the same logits.
    result = run_python_json(
        f"""
        import os, json, torch
        os.environ["RWKV_V7_ON"] = "0"; os.environ["RWKV_JIT_ON"] = "0"; os.environ["RWKV_CUDA_ON"] = "0"
        w = torch.load({str(out_path)!r}, map_location="cpu", weights_only=True)
        from rwkv.model import RWKV
        raw = RWKV({str(src)!r}, {strategy!r}, verbose=False)
        conv = RWKV({str(out_path)!r}, {strategy!r}, verbose=False)
        a, _ = raw.forward([1, 2, 3], None)
        b, _ = conv.forward([1, 2, 3], None)
        print(json.dumps({{"strategy": w["_strategy"], "diff": float((a.float() - b.float()).abs().max())}}))
        """
    )
    assert result["strategy"] == strategy and result["diff"] < 1e-4


def test_convert_refuses_an_already_converted_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tiny_model("v4", tmp_path)
    assert run(["models", "convert", str(src), "-s", "cpu fp32", "-o", str(tmp_path / "c.pth")], capsys)[0] == 0
    code, out, err = run(["models", "convert", str(tmp_path / "c.pth"), "-s", "cpu fp32"], capsys)
    assert code == ExitCode.USAGE and "already converted" in err


def test_convert_rejects_a_malformed_strategy_and_a_missing_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["models", "convert", str(tmp_path / "x.pth"), "-s", "gpu please"], capsys)
    assert code == ExitCode.USAGE and "strategy" in err
    code, out, err = run(["models", "convert", str(tmp_path / "x.pth"), "-s", "cpu fp32"], capsys)
    assert code == ExitCode.NOT_FOUND and "Traceback" not in err


def test_default_output_name() -> None:
    assert default_output(Path("/m/raven.pth"), "cuda fp16 *20 -> cpu fp32").name == "raven-cuda-fp16-x20-cpu-fp32.pth"
