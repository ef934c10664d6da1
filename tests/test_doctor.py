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


# ---------------------------------------------------------------- a home WePrompt cannot write to
def _home_report(capsys: pytest.CaptureFixture[str]) -> tuple[str, dict]:  # type: ignore[type-arg]
    code, out, err = run(["doctor"], capsys)
    assert code == 0, err
    code, raw, err = run(["doctor", "--json"], capsys)
    assert code == 0, err
    return out, json.loads(raw)


def _home_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("home", "  hint"))]


def test_doctor_flags_a_home_that_is_a_file(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    home = tmp_path / "weprompt-home"
    home.write_text("not a folder\n")
    monkeypatch.setenv("WEPROMPT_HOME", str(home))
    out, report = _home_report(capsys)
    lines = _home_lines(out)
    assert lines[0].startswith(f"home          {home}")
    assert lines[1] == "home PROBLEM  the home is a file, not a folder: WePrompt cannot keep sessions there"
    assert lines[2].startswith("  hint") and "WEPROMPT_HOME" in lines[2] and "writable folder" in lines[2]
    assert report["home"]["usable"] is False and "is a file" in report["home"]["problem"]
    assert "WEPROMPT_HOME" in report["home"]["hint"]
    assert report["problems"][0] == f"{report['home']['problem']} ({home})"
    assert home.read_text() == "not a folder\n"  # doctor only looks


def test_doctor_flags_a_home_below_a_file(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("x")
    monkeypatch.setenv("WEPROMPT_HOME", str(blocker / "weprompt"))
    out, report = _home_report(capsys)
    assert report["home"]["usable"] is False
    assert report["home"]["problem"] == f"the home cannot be created: {blocker} is a file, not a folder"
    assert "home PROBLEM" in out


def test_doctor_flags_a_sessions_folder_that_is_a_file(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    (tmp_path / "sessions").write_text("x")
    monkeypatch.setenv("WEPROMPT_HOME", str(tmp_path))
    _, report = _home_report(capsys)
    assert report["home"]["usable"] is False and "sessions cannot be saved" in report["home"]["problem"]


def test_doctor_is_quiet_about_a_writable_home_even_one_not_made_yet(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    for home in (tmp_path, tmp_path / "not" / "yet"):
        monkeypatch.setenv("WEPROMPT_HOME", str(home))
        out, report = _home_report(capsys)
        assert report["home"]["usable"] is True and report["home"]["problem"] is None
        assert "PROBLEM" not in out and len(_home_lines(out)) == 1
    assert not (tmp_path / "not").exists()  # doctor creates nothing
    assert list(tmp_path.iterdir()) == []  # and leaves no probe file behind


def test_doctor_flags_a_read_only_home(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    """A read-only home: chmod for a normal user; as root (whom chmod does not stop), a real read-only mount.

    Root writes through a folder's mode bits, so the root case bind-mounts the home
    read-only in a private mount namespace (`unshare -m`) and runs doctor in there.
    Where that is not allowed either, the test skips: nothing here could make a
    folder read-only for this user.
    """
    import os
    import shutil
    import subprocess
    from pathlib import Path

    home = tmp_path / "ro-home"
    home.mkdir()
    if os.geteuid() != 0:
        home.chmod(0o555)
        try:
            monkeypatch.setenv("WEPROMPT_HOME", str(home))
            out, report = _home_report(capsys)
        finally:
            home.chmod(0o755)
    else:
        if shutil.which("unshare") is None:
            pytest.skip("running as root (chmod does not stop root) and no 'unshare' for a read-only mount")
        script = (
            'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" || exit 97\n'
            'touch "$1/probe" 2>/dev/null && exit 98\n'  # the mount must really refuse root
            'exec "$2" -m weprompt_cli doctor --json'
        )
        root = Path(__file__).resolve().parent.parent
        env = dict(os.environ, WEPROMPT_HOME=str(home), PYTHONPATH=str(root))
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, "sh", str(home), sys.executable],
            capture_output=True, text=True, env=env, check=False, timeout=120,
        )
        if result.returncode == 97 or "unshare failed" in result.stderr or "Operation not permitted" in result.stderr:
            pytest.skip(f"running as root (chmod does not stop root) and no private read-only mount here: {result.stderr}")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        out = ""
    assert report["home"]["usable"] is False, report["home"]
    assert "not writable" in report["home"]["problem"], report["home"]
    assert "WEPROMPT_HOME" in report["home"]["hint"]
    if out:
        assert "home PROBLEM  the home is not writable" in out
    assert not (home / "probe").exists()
