"""`weprompt doctor` works, and says so, without a GPU, a driver or a working pynvml."""

from __future__ import annotations

import json
import sys

import pytest
from helpers import run_main as run
from test_hardware_inventory import fake_pynvml


def test_doctor_with_pynvml_missing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    code, out, err = run(["doctor"], capsys)
    assert code == 0, err
    assert "pynvml is not available" in out
    assert "none found" in out or "GPU 0" in out
    for word in ("python", "torch", "rwkv", "CUDA kernel", "home", "g1-0.1b", "raven-14b-v12"):
        assert word in out
    assert "WEPROMPT_HOME" in out  # how the home was chosen


def test_doctor_with_pynvml_raising(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error="NVML Shared Library Not Found"))
    code, out, err = run(["doctor"], capsys)
    assert code == 0, err
    assert "NVML Shared Library Not Found" in out and "no NVIDIA driver" in out
    assert "Traceback" not in out + err


def test_doctor_with_gpus_nvml_sees_but_torch_cannot_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=1))
    code, out, err = run(["doctor", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["gpus"][0]["name"] == "NVIDIA Test 0" and report["driver"] == "550.54.15"
    if not report["cuda_available"]:  # this machine's torch is a CPU build: every model runs on the CPU
        assert all(m["strategy"].startswith("cpu") for m in report["models"])
        assert report["cuda_kernel"]["usable"] is False
    assert {m["name"] for m in report["models"]} >= {"demo", "g1-13.3b", "raven-14b-v12"}
    assert report["home"]["source"] == "WEPROMPT_HOME"


def test_doctor_in_a_fresh_process_with_pynvml_broken(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    from pathlib import Path

    code = """
import sys, types
m = types.ModuleType("pynvml")
def boom(): raise RuntimeError("nvml exploded")
m.nvmlInit = boom
sys.modules["pynvml"] = m
from weprompt_cli.cli import main
main(["doctor"])
"""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, WEPROMPT_HOME=str(tmp_path), PYTHONPATH=str(root))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert "nvml exploded" in result.stdout and "Traceback" not in result.stderr
