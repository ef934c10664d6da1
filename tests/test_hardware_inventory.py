"""GPU inventory with pynvml missing, raising, or reporting GPUs; the CUDA kernel decision."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from weprompt_cli.hardware.inventory import GIB, GPU, Inventory, detect_inventory
from weprompt_cli.hardware.kernel import (
    FAILED_MARKER,
    cuda_kernel_usable,
    extensions_dir,
    kernel_env,
    record_build_failure,
)


class _NVMLError(Exception):
    pass


def fake_pynvml(*, init_error: str | None = None, gpus: int = 0, name_error: bool = False) -> types.ModuleType:
    mod = types.ModuleType("pynvml")
    mod.NVMLError = _NVMLError  # type: ignore[attr-defined]

    def nvmlInit() -> None:
        if init_error:
            raise _NVMLError(init_error)

    mod.nvmlInit = nvmlInit  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    mod.nvmlSystemGetDriverVersion = lambda: b"550.54.15"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: gpus  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]

    def name(handle: int) -> str:
        if name_error:
            raise _NVMLError("GPU is lost")
        return f"NVIDIA Test {handle}"

    mod.nvmlDeviceGetName = name  # type: ignore[attr-defined]
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=16 * GIB, free=15 * GIB)  # type: ignore[attr-defined]
    return mod


def test_pynvml_missing_is_a_problem_line_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    inv = detect_inventory(use_torch=False)
    assert inv.gpus == () and inv.gpu_source == "none"
    assert any("pynvml is not available" in p for p in inv.problems)


def test_nvml_init_error_means_no_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error="Driver Not Loaded"))
    inv = detect_inventory(use_torch=False)
    assert inv.gpus == ()
    assert any("Driver Not Loaded" in p for p in inv.problems)


def test_a_gpu_that_fails_to_answer_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=2, name_error=True))
    inv = detect_inventory(use_torch=False)
    assert inv.gpus == () and sum("could not read GPU" in p for p in inv.problems) == 2


def test_nvml_gpus_are_listed_with_memory_and_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=2))
    inv = detect_inventory(use_torch=False)
    assert [g.name for g in inv.gpus] == ["NVIDIA Test 0", "NVIDIA Test 1"]
    assert inv.gpus[0].total_bytes == 16 * GIB and inv.gpus[0].free_bytes == 15 * GIB
    assert inv.driver == "550.54.15" and inv.gpu_source == "pynvml"
    assert inv.usable_gpus == ()  # torch was not asked: not usable


def test_this_machine_inventory_never_raises() -> None:
    inv = detect_inventory()
    assert inv.ram_total_bytes > 0 and inv.cpu_count >= 1 and inv.torch_version


GOOD = Inventory(
    gpus=(GPU(0, "H100", 80 * GIB, 79 * GIB),),
    cuda_available=True,
    torch_cuda_version="12.4",
    nvcc="/usr/local/cuda/bin/nvcc",
    ninja="/usr/bin/ninja",
)


@pytest.mark.parametrize(
    ("inv", "release", "ok", "why"),
    [
        (GOOD, "12.4", True, "cached in"),
        (GOOD, "12.8", True, "cached in"),
        (GOOD, "11.8", False, "torch was built for CUDA 12.4"),
        (Inventory(), "12.4", False, "no GPU"),
        (Inventory(gpus=GOOD.gpus, cuda_available=False), "12.4", False, "no GPU"),
        (Inventory(gpus=GOOD.gpus, cuda_available=True, ninja="/n", torch_cuda_version="12.4"), "12.4", False, "nvcc"),
        (Inventory(gpus=GOOD.gpus, cuda_available=True, nvcc="/n", torch_cuda_version="12.4"), "12.4", False, "ninja"),
    ],
)
def test_cuda_kernel_decision(inv: Inventory, release: str, ok: bool, why: str) -> None:
    usable, reason = cuda_kernel_usable(inv, nvcc_release=release)
    assert usable is ok and why in reason


def test_a_failed_build_is_remembered_and_turns_the_kernel_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cuda_kernel_usable(GOOD, tmp_path, nvcc_release="12.4")[0]
    marker = record_build_failure(RuntimeError("Error building extension 'wkv7s'"), tmp_path)
    assert marker.name == FAILED_MARKER
    usable, reason = cuda_kernel_usable(GOOD, tmp_path, nvcc_release="12.4")
    assert not usable and "wkv7s" in reason and str(marker) in reason
    marker.unlink()
    monkeypatch.setenv("WEPROMPT_CUDA_KERNEL", "0")
    assert cuda_kernel_usable(GOOD, tmp_path, nvcc_release="12.4") == (False, "turned off by WEPROMPT_CUDA_KERNEL=0")


def test_kernel_env_caches_the_build_under_the_cache_folder(tmp_path: Path) -> None:
    env = kernel_env(tmp_path / "cache")
    assert env["RWKV_CUDA_ON"] == "1"
    assert Path(env["TORCH_EXTENSIONS_DIR"]) == extensions_dir(tmp_path / "cache") == tmp_path / "cache" / "torch_extensions"


def test_rwkv7_kernel_stays_off_for_a_head_size_it_was_not_built_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from weprompt_cli.engine import runtime

    monkeypatch.setattr(runtime, "_want_kernel", lambda strategy, build_dir=None: (True, "nvcc and ninja found"))
    assert runtime.kernel_choice("v7", "cuda fp16", 64) == (True, "nvcc and ninja found")
    usable, why = runtime.kernel_choice("v7", "cuda fp16", 32)  # the demo model's head size
    assert not usable and "head size 64" in why and "32" in why
    assert runtime.kernel_choice("v6", "cuda fp16", 32)[0]  # v5/v6 kernels are built per model


def test_a_second_rwkv7_model_of_another_head_size_needs_a_new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from weprompt_cli.engine import runtime
    from weprompt_cli.errors import WePromptError

    monkeypatch.setattr(runtime, "loaded_family", lambda: "v7")
    monkeypatch.setattr(runtime, "kernel_in_use", lambda: True)
    monkeypatch.setitem(sys.modules, "rwkv.model", types.ModuleType("rwkv.model"))
    with pytest.raises(WePromptError, match="head size 32 needs a new process"):
        runtime.import_rwkv_model("v7", "cuda fp16", head_size=32)
    assert runtime.import_rwkv_model("v7", "cuda fp16", head_size=64)[0] is sys.modules["rwkv.model"]


def test_kernel_build_output_stays_off_the_terminal(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from weprompt_cli.engine import runtime

    monkeypatch.setenv("RWKV_CUDA_ON", "1")
    with runtime._quiet_kernel_build():  # torch runs ninja writing straight to file descriptor 1
        subprocess.run(["echo", "ninja: no work to do."], check=True)
    print("answer")
    assert capfd.readouterr().out == "answer\n"
    monkeypatch.setenv("RWKV_CUDA_ON", "0")
    with runtime._quiet_kernel_build():
        subprocess.run(["echo", "cpu build output"], check=True)
    assert "cpu build output" in capfd.readouterr().out


def test_cuda_loads_warm_up_the_prefill_shapes_and_cpu_loads_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from weprompt_cli.engine import rwkv_engine as engine_module

    class Recorder:
        def __init__(self, strategy: str) -> None:
            self.strategy, self.fed = strategy, []

        def zero_state(self) -> list[object]:
            return []

        def forward(self, tokens: list[int], state: list[object]) -> None:
            self.fed.append(len(tokens))

    import torch

    strategies: list[object] = []
    monkeypatch.setattr(torch.jit, "set_fusion_strategy", strategies.append)  # process-wide: record, don't set
    cpu, cuda, off = Recorder("cpu fp32"), Recorder("cuda fp16"), Recorder("cuda fp16")
    engine_module._warm_up_prefill(cpu)  # type: ignore[arg-type]
    engine_module._warm_up_prefill(cuda)  # type: ignore[arg-type]
    monkeypatch.setenv("WEPROMPT_PREFILL_WARMUP", "0")
    engine_module._warm_up_prefill(off)  # type: ignore[arg-type]
    assert cpu.fed == [] and off.fed == []
    assert len(set(cuda.fed)) == len(cuda.fed) >= 3  # distinct short lengths
    assert strategies == [[("DYNAMIC", 20)]]  # one shape-generic version, compiled during the warm-up
