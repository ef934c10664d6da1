"""Strategy advice for a table of machines x model sizes x families (pure: no hardware needed)."""

from __future__ import annotations

import re

import pytest

from weprompt_cli.hardware.advice import Advice, auto_strategy, choose_strategy, family, memory_needed
from weprompt_cli.hardware.inventory import GIB, GPU, Inventory

NO_GPU = Inventory(ram_total_bytes=32 * GIB, ram_available_bytes=28 * GIB)
NO_GPU_SMALL_RAM = Inventory(ram_total_bytes=8 * GIB, ram_available_bytes=6 * GIB)
GPU_8 = Inventory(
    gpus=(GPU(0, "RTX 3070", 8 * GIB, int(7.6 * GIB)),),
    cuda_available=True,
    torch_cuda_version="12.4",
    ram_total_bytes=32 * GIB,
    ram_available_bytes=28 * GIB,
)
GPU_24 = Inventory(
    gpus=(GPU(0, "RTX 4090", 24 * GIB, int(23.5 * GIB)),),
    cuda_available=True,
    torch_cuda_version="12.4",
    ram_total_bytes=64 * GIB,
    ram_available_bytes=60 * GIB,
)
GPU_2x16 = Inventory(
    gpus=(GPU(0, "V100", 16 * GIB, int(15.5 * GIB)), GPU(1, "V100", 16 * GIB, int(15.5 * GIB))),
    cuda_available=True,
    torch_cuda_version="12.4",
    ram_total_bytes=64 * GIB,
    ram_available_bytes=60 * GIB,
)
# NVML sees a GPU but torch is a CPU build: the GPU can't be used.
GPU_BUT_CPU_TORCH = Inventory(
    gpus=GPU_24.gpus, cuda_available=False, ram_total_bytes=32 * GIB, ram_available_bytes=28 * GIB
)

# (params, n_layer, n_embd, vocab)
SIZES = {
    "0.1b": (191_000_000, 12, 768, 65536),
    "1.5b": (1_530_000_000, 24, 2048, 65536),
    "7b": (7_200_000_000, 32, 4096, 65536),
    "14b": (14_200_000_000, 40, 5120, 50277),
}
STRATEGY = re.compile(r"^(?:(?:^| -> )(?:cuda(?::\d)?|cpu) (?:fp16|fp32|bf16)(?:i8)?(?: \*\d+)?)+$")

# machine, size, arch -> expected strategy (regex), fits
TABLE = [
    (NO_GPU, "0.1b", "v7", r"cpu fp32", True),
    (NO_GPU, "1.5b", "v4", r"cpu fp32", True),
    (NO_GPU, "7b", "v6", r"cpu fp32i8", True),  # fp32 (29 GiB) doesn't fit 28 GiB; int8 does
    (NO_GPU, "7b", "v7", r"cpu fp32", False),  # v7: no int8, no bf16 on this CPU
    (NO_GPU_SMALL_RAM, "14b", "v4", r"cpu fp32", False),
    (GPU_8, "0.1b", "v7", r"cuda fp16", True),
    (GPU_8, "1.5b", "v6", r"cuda fp16", True),
    (GPU_8, "7b", "v4", r"cuda fp16i8 \*\d+ -> cpu fp32", True),  # int8 needs 7.9 GiB > 7.6 free
    (GPU_8, "7b", "v7", r"cuda fp16", False),
    (GPU_8, "14b", "v4", r"cuda fp16i8 \*\d+ -> cpu fp32(i8)?", True),
    (GPU_24, "7b", "v7", r"cuda fp16", True),
    (GPU_24, "7b", "v6", r"cuda fp16", True),
    (GPU_24, "14b", "v4", r"cuda fp16i8", True),
    (GPU_24, "14b", "v7", r"cpu fp32", True),  # too big for 24 GB in fp16, no split: CPU (slow)
    (GPU_2x16, "1.5b", "v7", r"cuda:0 fp16", True),
    (GPU_2x16, "14b", "v4", r"cuda:0 fp16 \*\d+ -> cuda:1 fp16", True),
    (GPU_2x16, "14b", "v6", r"cuda:0 fp16 \*\d+ -> cuda:1 fp16", True),
    (GPU_2x16, "14b", "v7", r"cpu fp32", True),
    (GPU_BUT_CPU_TORCH, "1.5b", "v7", r"cpu fp32", True),
]


@pytest.mark.parametrize(("inv", "size", "arch", "expected", "fits"), TABLE)
def test_strategy_table(inv: Inventory, size: str, arch: str, expected: str, fits: bool) -> None:
    n_params, n_layer, n_embd, vocab = SIZES[size]
    advice = choose_strategy(inv, arch=arch, n_params=n_params, n_layer=n_layer, n_embd=n_embd, vocab_size=vocab)
    assert re.fullmatch(expected, advice.strategy), advice
    assert advice.fits is fits, advice
    assert STRATEGY.match(advice.strategy)
    assert advice.reason


@pytest.mark.parametrize("inv", [NO_GPU, GPU_8, GPU_24, GPU_2x16])
@pytest.mark.parametrize("size", list(SIZES))
def test_v7_never_gets_int8_or_a_split(inv: Inventory, size: str) -> None:
    n_params, n_layer, n_embd, vocab = SIZES[size]
    advice = choose_strategy(inv, arch="v7", n_params=n_params, n_layer=n_layer, n_embd=n_embd, vocab_size=vocab)
    assert "i8" not in advice.strategy and "->" not in advice.strategy and "*" not in advice.strategy


@pytest.mark.parametrize("inv", [NO_GPU, GPU_8, GPU_24, GPU_2x16])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("arch", ["v4", "v5.2", "v6", "v7"])
def test_cpu_without_bf16_never_gets_bf16(inv: Inventory, size: str, arch: str) -> None:
    n_params, n_layer, n_embd, vocab = SIZES[size]
    advice = choose_strategy(inv, arch=arch, n_params=n_params, n_layer=n_layer, n_embd=n_embd, vocab_size=vocab)
    assert "cpu bf16" not in advice.strategy


def test_bf16_cpu_is_used_for_v7_only_when_fp32_does_not_fit() -> None:
    inv = Inventory(cpu_bf16=True, ram_total_bytes=24 * GIB, ram_available_bytes=20 * GIB)
    n_params, n_layer, n_embd, vocab = SIZES["7b"]
    advice = choose_strategy(inv, arch="v7", n_params=n_params, n_layer=n_layer, n_embd=n_embd, vocab_size=vocab)
    assert advice.strategy == "cpu bf16" and advice.fits
    small = choose_strategy(inv, arch="v7", n_params=10**8, n_layer=12)
    assert small.strategy == "cpu fp32"


def test_v7_that_does_not_fit_says_what_would() -> None:
    n_params, n_layer, n_embd, vocab = SIZES["7b"]
    advice = choose_strategy(GPU_8, arch="v7", n_params=n_params, n_layer=n_layer, n_embd=n_embd, vocab_size=vocab)
    assert not advice.fits
    assert "RWKV-7" in advice.reason and "can't split" in advice.reason
    assert "GiB free or a smaller model" in advice.reason


def test_layer_split_uses_all_layers_and_fits_each_gpu() -> None:
    n_params, n_layer, n_embd, vocab = SIZES["14b"]
    advice = choose_strategy(GPU_2x16, arch="v4", n_params=n_params, n_layer=n_layer, n_embd=n_embd, vocab_size=vocab)
    first = int(re.search(r"\*(\d+)", advice.strategy).group(1))
    assert 0 < first < n_layer
    per_layer = (n_params - 2 * n_embd * vocab) / n_layer * 2
    assert first * per_layer < GPU_2x16.gpus[0].free_bytes


def test_family_parsing() -> None:
    assert [family(a) for a in ("v4", "v5.2", "v6", "v7", "x070", "rwkv7", 7, 5.2)] == [4, 5, 6, 7, 7, 7, 7, 5]
    with pytest.raises(ValueError):
        family("v8")


def test_memory_needed_grows_with_dtype_width() -> None:
    n = 10**9
    assert memory_needed(n, "fp16i8") < memory_needed(n, "fp16") < memory_needed(n, "fp32")


def test_auto_strategy_on_this_machine_returns_a_strategy_or_a_hardware_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from weprompt_cli.errors import HardwareError
    from weprompt_cli.hardware import inventory

    monkeypatch.setattr(inventory, "detect_inventory", lambda **_: NO_GPU)
    info = SimpleNamespace(arch="v7", n_params=191_000_000, n_layer=12, n_embd=768, vocab_size=65536, file_size=1)
    assert auto_strategy(info) == "cpu fp32"
    huge = SimpleNamespace(arch="v7", n_params=0, n_layer=61, file_size=200 * GIB)  # n_params from file size
    with pytest.raises(HardwareError, match="does not fit"):
        auto_strategy(huge)
    assert isinstance(choose_strategy(NO_GPU, arch="v4", n_params=10**6, n_layer=2), Advice)
