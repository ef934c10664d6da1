"""GGUF builds in the catalog: parsing, the one-line errors, and the `auto` rule that
`models pull`, `--model NAME` and `weprompt doctor` share (pure: made-up machines)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from test_hardware_advice import GPU_24, GPU_BUT_CPU_TORCH, NO_GPU

from weprompt_cli.errors import InvalidFileError, NotFoundError, UsageError
from weprompt_cli.models.catalog import GGUF_QUANTS, load_catalog, normalize_quant, parse_catalog
from weprompt_cli.models.pull import plan_pull
from weprompt_cli.models.resolve import LlamaStatus, auto_format, resolve_model
from weprompt_cli.paths import resolve_home

CAT = load_catalog()
G1 = [m for m in CAT.models if m.name.startswith("g1-")]
LLAMA_OK = LlamaStatus(True, "0.3.36")
LLAMA_MISSING = LlamaStatus(False, "", "the GGUF backend needs llama-cpp-python")


# ---------------------------------------------------------------------------- the entries


def test_every_g1_model_has_a_q8_0_gguf_build_and_nothing_else_does() -> None:
    assert len(G1) == 6
    for m in G1:
        q8 = m.find_gguf("Q8_0")
        assert q8 is not None, m.name
        assert q8.repo.startswith("shoumenchougou/RWKV7-G1d-") and q8.repo.endswith("-GGUF")
        assert q8.filename == f"rwkv7-g1d-{m.name.removeprefix('g1-')}-Q8_0.gguf"
        # Q8_0 is 8.5 bits a weight, a few small tensors stay in float: 1.06-1.15 bytes a parameter.
        assert 1.0 < q8.size_bytes / m.n_params < 1.2, m.name
        assert not q8.size_exact and q8.sha256 is None  # not checked against huggingface.co: estimates
    assert all(not m.gguf for m in CAT.models if not m.name.startswith("g1-"))


@pytest.mark.parametrize("entry", G1, ids=lambda m: m.name)
def test_gguf_builds_are_well_formed(entry: Any) -> None:
    for v in entry.gguf:
        assert v.quant in GGUF_QUANTS and v.file.endswith(".gguf") and v.quant.upper() in v.file
        assert v.local_path(resolve_home()).parent == resolve_home().models
        ratio = v.size_bytes / entry.n_params
        assert (0.6 < ratio < 0.8) if v.quant == "q5_k_m" else (1.0 < ratio < 1.2)


def test_only_the_7_2b_q8_0_name_is_inferred() -> None:
    inferred = [(m.name, v.quant) for m in CAT.models for v in m.gguf if v.inferred]
    assert inferred == [("g1-7.2b", "q8_0")]


def test_every_fact_of_a_gguf_build_names_its_source_in_the_toml() -> None:
    from weprompt_cli.models.catalog import CATALOG_FILE

    text = CATALOG_FILE.read_text(encoding="utf-8")
    blocks = text.split("\n[[model.gguf]]\n")[:-1]
    assert len(blocks) == sum(len(m.gguf) for m in CAT.models)
    for before in blocks:
        last_comment = before.rstrip().splitlines()[-1]
        assert re.match(r"# \[(runner|plan|pattern)\]", last_comment), last_comment


# ---------------------------------------------------------------------------- parsing

_MODEL = {
    "name": "x", "title": "t", "arch": "v7", "repo": "a/b", "file": "x.pth", "params": 100, "n_layer": 1,
    "n_embd": 64, "vocab_size": 1, "ctx_len": 1, "size": 200, "tokenizer": "world", "chat_format": "world",
}
_Q8 = {"quant": "q8_0", "repo": "u/X-GGUF", "file": "x-Q8_0.gguf", "size": 110}


def _doc(*models: dict[str, Any]) -> dict[str, Any]:
    return {"schema": 1, "tokenizer": {"world": {"builtin": True}}, "model": list(models)}


def test_a_gguf_table_parses_into_a_variant() -> None:
    entry = parse_catalog(_doc({**_MODEL, "gguf": [_Q8, {**_Q8, "quant": "q4_0", "file": "sub/x-Q4_0.gguf",
                                                         "inferred": True, "size_exact": True}]})).get("x")
    q8, q4 = entry.gguf
    assert (q8.quant, q8.repo, q8.size_bytes, q8.size_exact, q8.inferred, q8.revision) == (
        "q8_0", "u/X-GGUF", 110, False, False, "main")
    assert q4.inferred and q4.size_exact and q4.filename == "x-Q4_0.gguf"  # saved flat under models/
    assert entry.find_gguf("Q4_0") is q4 and entry.find_gguf("f16") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"quant": "q9_9"}, "quant must be one of"),
        ({"quant": "Q8_0"}, "lower case"),
        ({"file": "x.bin"}, "ending in .gguf"),
        ({"file": "../x.gguf"}, "relative path"),
        ({"repo": "nobody"}, "owner/name"),
        ({"size": "big"}, "'size' must be int"),
        ({"size": 0}, "positive"),
        ({"sha256": "ABC"}, "sha256"),
        ({"inferred": "yes"}, "'inferred' must be true or false"),
        ({"sizee": 1}, "unknown key 'sizee'"),
    ],
)
def test_a_bad_gguf_table_is_one_clear_error(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidFileError, match=re.escape(message)) as info:
        parse_catalog(_doc({**_MODEL, "gguf": [{**_Q8, **change}]}))
    assert "model #1 (x) gguf #1" in info.value.message and "\n" not in info.value.message


def test_gguf_tables_that_do_not_fit_their_model_are_refused() -> None:
    with pytest.raises(InvalidFileError, match="duplicate quant"):
        parse_catalog(_doc({**_MODEL, "gguf": [_Q8, {**_Q8, "file": "other.gguf"}]}))
    with pytest.raises(InvalidFileError, match="arch v6 or v7"):
        parse_catalog(_doc({**_MODEL, "arch": "v4", "gguf": [_Q8]}))
    with pytest.raises(InvalidFileError, match="embedded"):
        parse_catalog(_doc({**_MODEL, "package_file": "demo/x.pth", "gguf": [_Q8]}))
    with pytest.raises(InvalidFileError, match="would be saved over x's file"):
        parse_catalog(_doc({**_MODEL, "gguf": [_Q8]}, {**_MODEL, "name": "y", "file": "y.pth",
                                                        "gguf": [{**_Q8, "file": "elsewhere/x-Q8_0.gguf"}]}))
    with pytest.raises(InvalidFileError, match="'gguf' must be"):
        parse_catalog(_doc({**_MODEL, "gguf": {"quant": "q8_0"}}))


def test_an_unknown_quant_and_a_missing_build_are_one_line_each() -> None:
    with pytest.raises(UsageError, match="unknown GGUF quantization 'q9'") as info:
        normalize_quant("q9")
    assert "q8_0" in (info.value.hint or "")
    assert normalize_quant(" Q8_0 ") == "q8_0"
    g1 = CAT.get("g1-0.1b")
    with pytest.raises(NotFoundError, match=re.escape("g1-0.1b has no GGUF Q4_0 build in the catalog (it has: q8_0)")):
        g1.gguf_variant("q4_0")
    with pytest.raises(NotFoundError, match="world7-0.1b has no GGUF build") as info:
        CAT.get("world7-0.1b").gguf_variant()
    assert "models convert world7-0.1b --to gguf" in (info.value.hint or "")
    with pytest.raises(NotFoundError) as info:
        CAT.get("raven-14b-v12").gguf_variant()
    assert "RWKV-6 and RWKV-7 only" in (info.value.hint or "")


# ---------------------------------------------------------------------------- the auto rule


def test_auto_without_a_usable_gpu_prefers_the_q8_0_gguf_and_says_why() -> None:
    choice = auto_format(NO_GPU, LLAMA_OK, CAT.get("g1-1.5b"))
    assert (choice.format, choice.quant) == ("gguf", "q8_0")
    assert choice.reason == (
        "no usable GPU: Q8_0 GGUF on the CPU through llama.cpp, about 2x the speed of the .pth at a quarter of the memory"
    )
    # NVML sees a GPU that torch cannot use: still no usable GPU.
    choice = auto_format(GPU_BUT_CPU_TORCH, LLAMA_OK, CAT.get("g1-1.5b"))
    assert choice.format == "gguf" and "GPUs found, but torch cannot use CUDA" in choice.reason
    # A CPU-only torch beside a CUDA build of llama.cpp: the GGUF, offloaded by llama.cpp's auto strategy.
    cuda_build = LlamaStatus(True, "0.3.36", None, ("cuda",))
    choice = auto_format(GPU_BUT_CPU_TORCH, cuda_build, CAT.get("g1-1.5b"))
    assert choice.format == "gguf" and choice.reason == (
        "no usable GPU (GPUs found, but torch cannot use CUDA) for the rwkv package: "
        "Q8_0 GGUF on cuda through llama.cpp (this build offloads to it)"
    )


def test_auto_keeps_the_pth_with_a_usable_gpu_without_llama_cpp_or_without_a_q8_0_build() -> None:
    g1 = CAT.get("g1-1.5b")
    gpu = auto_format(GPU_24, LLAMA_OK, g1)
    assert gpu.format == "pth" and gpu.reason.startswith("a usable GPU (RTX 4090)")
    missing = auto_format(NO_GPU, LLAMA_MISSING, g1)
    assert missing.format == "pth" and "llama-cpp-python is not installed" in missing.reason
    assert "bash scripts/setup.sh --gguf" in missing.reason
    broken = auto_format(NO_GPU, LlamaStatus(True, "0.3.36", "its library does not load"), g1)
    assert broken.format == "pth" and "does not load (its library does not load)" in broken.reason
    none = auto_format(NO_GPU, LLAMA_OK, CAT.get("world7-1.5b"))
    assert none.format == "pth" and "no Q8_0 GGUF build" in none.reason


def test_pull_defaults_to_gguf_q8_0_only_on_a_machine_without_a_usable_gpu() -> None:
    g1 = CAT.get("g1-0.4b")
    plan = plan_pull(g1, inventory=NO_GPU, llama=LLAMA_OK)
    assert plan.variant is g1.find_gguf("q8_0") and not plan.explicit
    assert plan.line() == (
        "g1-0.4b: pulling the GGUF Q8_0 (rwkv7-g1d-0.4b-Q8_0.gguf): no usable GPU: Q8_0 GGUF on the CPU through "
        "llama.cpp, about 2x the speed of the .pth at a quarter of the memory; --format pth for the .pth"
    )
    plan = plan_pull(g1, inventory=GPU_24, llama=LLAMA_OK)
    assert plan.variant is None and plan.filename == g1.file
    assert plan.line().endswith("the .pth runs on it through the rwkv package; --format gguf for the GGUF")
    assert plan_pull(g1, inventory=NO_GPU, llama=LLAMA_MISSING).variant is None
    assert plan_pull(CAT.get("world6-1.6b"), inventory=NO_GPU, llama=LLAMA_OK).reason == (
        "world6-1.6b has no GGUF build in the catalog")


def test_pull_options_choose_explicitly() -> None:
    g1 = CAT.get("g1-7.2b")
    assert plan_pull(g1, fmt="pth", inventory=NO_GPU, llama=LLAMA_OK).variant is None
    assert plan_pull(g1, fmt="GGUF", inventory=GPU_24, llama=LLAMA_OK).variant is g1.find_gguf("q8_0")
    plan = plan_pull(g1, quant="Q5_K_M", inventory=GPU_24, llama=LLAMA_MISSING)
    assert plan.variant is g1.find_gguf("q5_k_m") and plan.explicit
    assert "install llama-cpp-python: bash scripts/setup.sh --gguf" in plan.reason
    with pytest.raises(UsageError, match="--quant is for GGUF builds"):
        plan_pull(g1, fmt="pth", quant="q8_0")
    with pytest.raises(UsageError, match="unknown model format 'zip'"):
        plan_pull(g1, fmt="zip")
    with pytest.raises(NotFoundError, match="no GGUF Q4_0 build"):
        plan_pull(g1, quant="q4_0", llama=LLAMA_OK)
    with pytest.raises(UsageError, match="embedded"):
        plan_pull(CAT.get("demo"))


# ---------------------------------------------------------------------------- resolving --model NAME


def _place(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_auto_resolves_to_a_downloaded_q8_0_gguf_without_a_usable_gpu() -> None:
    home = resolve_home()
    g1 = CAT.get("g1-0.1b")
    gguf = _place(g1.find_gguf("q8_0").local_path(home))
    got = resolve_model("g1-0.1b", home=home, strategy="auto", inventory=NO_GPU, llama=LLAMA_OK)
    assert got.path == gguf and got.format == "gguf" and got.variant is g1.find_gguf("q8_0")
    assert got.reason and got.reason.startswith("no usable GPU: Q8_0 GGUF on the CPU")
    pth = _place(g1.local_path(home))
    got = resolve_model("g1-0.1b", home=home, strategy="auto", inventory=NO_GPU, llama=LLAMA_OK)
    assert got.path == gguf  # both on disk: the GGUF wins on this machine
    got = resolve_model("g1-0.1b", home=home, strategy="auto", inventory=GPU_24, llama=LLAMA_OK)
    assert got.path == pth and got.reason.startswith("a usable GPU")
    got = resolve_model("g1-0.1b", home=home, strategy="auto", inventory=NO_GPU, llama=LLAMA_MISSING)
    assert got.path == pth and "llama-cpp-python is not installed" in got.reason
    # An rwkv-package strategy keeps the .pth; a llama.cpp one takes the GGUF; none (convert) is the .pth.
    got = resolve_model("g1-0.1b", home=home, strategy="cpu fp32", inventory=NO_GPU, llama=LLAMA_OK)
    assert got.path == pth and got.reason == "'cpu fp32' is an rwkv-package strategy: the .pth" and got.note is None
    got = resolve_model("g1-0.1b", home=home, strategy="cuda *12", inventory=GPU_24, llama=LLAMA_OK)
    assert got.path == gguf and got.reason == "'cuda *12' is a llama.cpp strategy: the GGUF Q8_0 build"
    assert resolve_model("g1-0.1b", home=home).path == pth


def test_auto_on_this_machine_resolves_to_the_gguf(monkeypatch: pytest.MonkeyPatch) -> None:
    from gguf_models import MISSING

    from weprompt_cli.hardware.inventory import detect_inventory

    if MISSING or detect_inventory().usable_gpus:
        pytest.skip("needs a machine without a usable GPU and with llama-cpp-python")
    g1 = CAT.get("g1-0.1b")
    gguf = _place(g1.find_gguf("q8_0").local_path(resolve_home()))
    _place(g1.local_path(resolve_home()))
    got = resolve_model("g1-0.1b", home=resolve_home(), strategy="auto")  # the real inventory and llama_cpp
    assert got.path == gguf and "no usable GPU" in (got.reason or "")


def test_only_one_format_on_disk_is_used_or_named_in_one_line() -> None:
    home = resolve_home()
    g1 = CAT.get("g1-1.5b")
    # Only the GGUF: auto with a GPU still runs it (it is all there is); an rwkv strategy can't.
    gguf = _place(g1.find_gguf("q8_0").local_path(home))
    got = resolve_model("g1-1.5b", home=home, strategy="auto", inventory=GPU_24, llama=LLAMA_OK)
    assert got.path == gguf and "the only one downloaded" in got.reason
    # A one-device rwkv strategy (config.toml's, say) runs the GGUF on that device, and says so even
    # without --verbose; a split over devices has no GGUF meaning: one line that says what to do.
    got = resolve_model("g1-1.5b", home=home, strategy="cuda fp16", inventory=GPU_24, llama=LLAMA_OK)
    assert got.path == gguf and got.note == (
        "g1-1.5b: 'cuda fp16' asks for the rwkv package's .pth, which is not downloaded: the GGUF Q8_0 build "
        "instead, on the same device (weprompt models pull g1-1.5b --format pth for the .pth)"
    )
    split = "cuda fp16 *10 -> cpu fp32"
    with pytest.raises(NotFoundError, match="is an rwkv-package strategy.*only its GGUF Q8_0") as info:
        resolve_model("g1-1.5b", home=home, strategy=split, inventory=GPU_24, llama=LLAMA_OK)
    assert info.value.hint.startswith("weprompt models pull g1-1.5b --format pth")
    with pytest.raises(UsageError, match="only the GGUF Q8_0 build of g1-1.5b is downloaded") as info:
        resolve_model("g1-1.5b", home=home, strategy="auto", inventory=NO_GPU, llama=LLAMA_MISSING)
    assert "bash scripts/setup.sh --gguf" in info.value.hint
    with pytest.raises(NotFoundError) as info:
        resolve_model("g1-1.5b", home=home)  # convert needs the .pth
    assert info.value.hint == "weprompt models pull g1-1.5b --format pth"
    gguf.unlink()
    # Only the .pth: a llama.cpp strategy says how to get the GGUF.
    _place(g1.local_path(home))
    with pytest.raises(NotFoundError, match="'cpu' is a llama.cpp strategy, and no GGUF build of g1-1.5b") as info:
        resolve_model("g1-1.5b", home=home, strategy="cpu")
    assert "weprompt models pull g1-1.5b --format gguf" in info.value.hint
    got = resolve_model("g1-1.5b", home=home, strategy="auto", inventory=NO_GPU, llama=LLAMA_OK)
    assert got.format == "pth" and "--format gguf' runs ~2x faster" in got.reason
    with pytest.raises(UsageError, match="has no GGUF build in the catalog"):
        resolve_model("world7-0.1b", home=home, strategy="metal")


def test_a_gguf_path_that_does_not_exist_is_a_missing_file_not_a_catalog_guess(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no model file here"):
        resolve_model("model-q8_0.gguf", home=resolve_home())
