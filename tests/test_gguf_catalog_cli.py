"""GGUF catalog builds through the CLI as a user meets them: pull one from the (local) hub,
chat with it by name, `weprompt doctor` on the GGUF backend, and lazy llama_cpp imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gguf_models import MISSING, needs_llama_cpp
from helpers import run_main as run
from hubserver import FakeHub
from test_models_pull import G1, G1_Q8, _error_lines, hub, tiny_world_gguf  # noqa: F401  (fixtures)

from weprompt_cli.errors import ExitCode
from weprompt_cli.paths import resolve_home

ROOT = Path(__file__).resolve().parent.parent


def _no_usable_gpu() -> bool:
    from weprompt_cli.hardware.inventory import detect_inventory

    return not detect_inventory().usable_gpus


@needs_llama_cpp
def test_a_pulled_gguf_build_chats_by_name_and_verbose_says_why(
    hub: FakeHub, tiny_world_gguf: bytes, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    if not _no_usable_gpu():
        pytest.skip("auto keeps the .pth on a machine with a usable GPU")
    hub.add(G1_Q8.repo, G1_Q8.file, tiny_world_gguf)
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
    assert code == 0, err
    code, out, err = run(
        ["chat", "--model", "g1-0.1b", "-m", "hello", "--max-tokens", "3", "-t", "0", "--verbose"], capsys
    )
    assert code == 0, err
    said = " ".join(err.split())  # the status lines wrap at the (test) terminal's width
    assert (
        "model: rwkv7-g1d-0.1b-Q8_0.gguf: no usable GPU: Q8_0 GGUF on the CPU through llama.cpp, "
        "about 2x the speed of the .pth at a quarter of the memory backend llama.cpp"
    ) in said, err
    assert "· Q8_0 · rwkv7-g1d-0.1b-Q8_0.gguf · CPU" in said, err
    # An rwkv-package strategy asks for the .pth, which is not here: the GGUF on that device, said
    # even without --verbose; a split over devices can't mean a GGUF: one line that says what to do.
    code, out, err = run(["chat", "--model", "g1-0.1b", "-m", "hello", "--max-tokens", "2", "--strategy", "cpu fp32"],
                         capsys)
    assert code == 0, err
    assert "'cpu fp32' asks for the rwkv package's .pth, which is not downloaded: the GGUF Q8_0 build" in (
        " ".join(err.split()))
    code, out, err = run(["chat", "--model", "g1-0.1b", "-m", "hello", "--strategy", "cpu fp32 *1 -> cpu bf16"],
                         capsys)
    assert code == ExitCode.NOT_FOUND, err
    assert len(_error_lines(err)) == 1 and "only its GGUF Q8_0 is downloaded" in err
    assert "weprompt models pull g1-0.1b --format pth" in err and "Traceback" not in err


def test_doctor_json_reports_the_gguf_backend_and_what_auto_picks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["doctor", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    g = report["gguf"]
    assert set(g) >= {"installed", "version", "usable", "problem", "install", "system_info", "cpu_features",
                      "gpu_backends", "wkv7_simd_step", "head_sizes", "g1_head_size_ok", "auto"}
    assert g["install"] == "bash scripts/setup.sh --gguf"
    models = {m["name"]: m for m in report["models"]}
    assert models["raven-14b-v12"]["format"] == "pth"  # no GGUF build: the rwkv package's advice
    assert models["g1-0.1b"]["file"] in (G1.file, G1_Q8.file)
    if MISSING:
        assert g["usable"] is False and models["g1-0.1b"]["format"] == "pth"
        return
    from weprompt_cli.engine.llama_context import llama_cpp_version

    assert g["installed"] and g["usable"] and g["version"] == llama_cpp_version()
    assert g["system_info"] and all(isinstance(f, str) and f for f in g["cpu_features"])
    assert isinstance(g["gpu_backends"], list) and isinstance(g["wkv7_simd_step"], int)
    assert g["g1_head_size_ok"] is (64 % g["wkv7_simd_step"] == 0)
    if _no_usable_gpu():
        assert g["auto"] == {
            "format": "gguf",
            "quant": "q8_0",
            "reason": "no usable GPU: Q8_0 GGUF on the CPU through llama.cpp, "
            "about 2x the speed of the .pth at a quarter of the memory",
        }
        g1 = models["g1-0.1b"]
        assert (g1["format"], g1["quant"], g1["file"]) == ("gguf", "q8_0", "rwkv7-g1d-0.1b-Q8_0.gguf")
        assert g1["strategy"] == (g["gpu_backends"] or ["cpu"])[0] and g1["fits"]
        assert g1["format_reason"] == g["auto"]["reason"] and g1["downloaded"] == []
        assert models["world7-0.1b"]["format"] == "pth" and "no Q8_0 GGUF build" in models["world7-0.1b"]["format_reason"]


def test_doctor_text_has_a_gguf_section(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["doctor"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    gguf = [i for i, line in enumerate(lines) if line.startswith("GGUF  ")]
    assert len(gguf) == 1
    section = lines[gguf[0]: gguf[0] + 6]
    assert any(line.startswith("  auto        ") for line in section), section
    if not MISSING:
        assert section[0].startswith("GGUF          llama-cpp-python ")
        assert [line.split()[0] for line in section[1:5]] == ["CPU", "GPU", "RWKV-7", "auto"]
        assert "head sizes" in section[3] or "any head size" in section[3]


def test_doctor_without_a_loadable_llama_cpp_says_how_to_install_it_and_keeps_the_pth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` raises ImportError
    code, out, err = run(["doctor"], capsys)
    assert code == 0, err
    assert "bash scripts/setup.sh --gguf" in out and "Traceback" not in out + err
    code, out, err = run(["doctor", "--json"], capsys)
    report = json.loads(out)
    assert report["gguf"]["usable"] is False and report["gguf"]["cpu_features"] == []
    assert report["gguf"]["auto"]["format"] == "pth"
    assert "bash scripts/setup.sh --gguf" in report["gguf"]["auto"]["reason"]
    assert {m["format"] for m in report["models"]} == {"pth"}


def test_a_machine_without_llama_cpp_pulls_the_pth_by_default(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    hub.add(G1.repo, G1.file, os.urandom(10_000))
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
    assert code == 0, err
    assert (resolve_home().models / G1.file).is_file() and not G1_Q8.local_path(resolve_home()).exists()
    choice = [line for line in err.splitlines() if line.startswith("g1-0.1b: pulling the .pth")]
    assert len(choice) == 1 and choice[0].endswith("; --format gguf for the GGUF")
    if _no_usable_gpu():
        assert "llama-cpp-python" in choice[0] and "bash scripts/setup.sh --gguf" in choice[0]


def test_help_and_listing_sessions_never_import_llama_cpp(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from weprompt_cli.cli import main\n"
        "for argv in (['--help'], ['models', '--help'], ['models', 'pull', '--help'], ['doctor', '--help'],\n"
        "             ['list-sessions']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, (argv, e.code)\n"
        "print('LOADED=' + ','.join(m for m in ('llama_cpp', 'gguf', 'torch') if m in sys.modules))\n"
    )
    env = dict(os.environ, WEPROMPT_HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1] == "LOADED="
