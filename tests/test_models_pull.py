"""`weprompt models pull/rm` against a local fake hub (tests/hubserver.py): no internet.

The .pth tests say `--format pth`: a plain `pull g1-0.1b` fetches its Q8_0 GGUF on a
machine without a usable GPU and with llama-cpp-python; the GGUF tests at the end serve a
real GGUF file (a tiny RWKV-7 with the World vocabulary, converted to Q8_0 by
`convert_to_gguf`) under the catalog's GGUF name.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from gguf_models import MISSING, needs_llama_cpp
from helpers import run_main as run
from hubserver import FakeHub, closed_port_endpoint

from weprompt_cli.errors import ExitCode
from weprompt_cli.models.catalog import load_catalog
from weprompt_cli.paths import resolve_home

G1 = load_catalog().get("g1-0.1b")
G1_Q8 = G1.gguf_variant("q8_0")
RAVEN = load_catalog().get("raven-14b-v12")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.stop()


def _error_lines(err: str) -> list[str]:
    """stderr lines that are ours (huggingface_hub may log a retry warning first)."""
    return [ln for ln in err.splitlines() if ln.startswith("weprompt: error:")]


def test_pull_downloads_a_catalog_model_and_verifies_it(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    data = os.urandom(300_000)
    hub.add(G1.repo, G1.file, data)
    code, out, err = run(["models", "pull", "g1-0.1b", "--format", "pth"], capsys)
    assert code == 0, err
    path = resolve_home().models / G1.file
    assert path.read_bytes() == data
    assert not list((path.parent / ".partial").glob("*.part"))
    assert G1.is_downloaded(resolve_home())
    # A second pull sees it is there and fetches nothing.
    gets = sum(r.method == "GET" and "resolve" in r.path for r in hub.requests)
    code, out, _ = run(["models", "pull", "g1-0.1b", "--format", "pth"], capsys)
    assert code == 0 and "already downloaded" in out
    assert sum(r.method == "GET" and "resolve" in r.path for r in hub.requests) == gets


def test_pull_raven_also_fetches_the_neox_tokenizer(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    hub.add(RAVEN.repo, RAVEN.file, os.urandom(50_000))
    tok = b'{"version": "1.0", "model": {"type": "BPE"}}'
    hub.add(RAVEN.tokenizer.repo, RAVEN.tokenizer.file, tok, repo_type="space", lfs=False)
    code, out, err = run(["models", "pull", "raven-14b-v12"], capsys)
    assert code == 0, err
    home = resolve_home()
    assert RAVEN.local_path(home).is_file()  # the '%' in the file name survives the URL round trip
    assert RAVEN.tokenizer_path(home).read_bytes() == tok
    assert RAVEN.tokenizer_path(home).name.endswith(".tokenizer.json")


def test_pull_resumes_when_the_connection_drops_mid_file(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    # huggingface_hub reads 10 MiB chunks: drop after 12 MB so a whole chunk is on disk.
    data = os.urandom(24_000_000)
    f = hub.add(G1.repo, G1.file, data, drop_after=12_000_000, drop_times=1)
    code, out, err = run(["models", "pull", "g1-0.1b", "--format", "pth"], capsys)
    assert code == 0, err
    assert (resolve_home().models / G1.file).read_bytes() == data
    gets = [r for r in hub.requests if r.method == "GET" and "resolve" in r.path]
    assert f.gets == 2
    assert gets[0].range is None and gets[1].range is not None and gets[1].range.startswith("bytes=")
    assert int(gets[1].range[len("bytes=") :].rstrip("-")) > 0


def test_pull_resumes_a_partial_file_left_by_an_earlier_run(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    data = os.urandom(2_000_000)
    hub.add(G1.repo, G1.file, data)
    sha = hashlib.sha256(data).hexdigest()
    partial = resolve_home().models / ".partial" / f"{G1.file}.{sha[:16]}.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:700_000])  # what a Ctrl-C'd pull left behind
    code, out, err = run(["models", "pull", "g1-0.1b", "--format", "pth"], capsys)
    assert code == 0, err
    assert (resolve_home().models / G1.file).read_bytes() == data
    gets = [r for r in hub.requests if r.method == "GET" and "resolve" in r.path]
    assert [g.range for g in gets] == ["bytes=700000-"]
    assert not partial.exists()


def test_pull_with_a_hash_mismatch_fails_clearly_and_removes_the_file(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add(G1.repo, G1.file, os.urandom(100_000), announced_sha256="ab" * 32)
    code, out, err = run(["models", "pull", "g1-0.1b", "--format", "pth"], capsys)
    assert code == ExitCode.INVALID
    lines = _error_lines(err)
    assert len(lines) == 1 and "sha256" in lines[0] and "removed" in lines[0]
    assert "Traceback" not in err
    models = resolve_home().models
    assert not (models / G1.file).exists()
    assert not list((models / ".partial").glob("*"))


def test_pull_with_a_size_mismatch_fails_clearly_and_removes_the_file(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    data = os.urandom(100_000)
    # The hub announces more bytes than it serves (a truncated upload / broken CDN).
    hub.add(G1.repo, G1.file, data, announced_size=150_000, announced_sha256=hashlib.sha256(data).hexdigest())
    code, out, err = run(["models", "pull", "g1-0.1b", "--format", "pth"], capsys)
    assert code == ExitCode.INVALID, err
    lines = _error_lines(err)
    assert len(lines) == 1 and "size" in lines[0] and "removed" in lines[0]
    models = resolve_home().models
    assert not (models / G1.file).exists()
    assert not list((models / ".partial").glob("*"))


def test_pull_checks_an_exact_catalog_size_before_downloading(hub: FakeHub) -> None:
    from weprompt_cli.errors import InvalidFileError
    from weprompt_cli.models.pull import download_file

    hub.add("BlinkDL/x", "m.pth", b"x" * 1000)
    with pytest.raises(InvalidFileError, match="catalog expects 999"):
        download_file("BlinkDL/x", "m.pth", resolve_home().models / "m.pth", expected_size=999)
    assert not [r for r in hub.requests if r.method == "GET" and "resolve" in r.path]


def test_pull_from_an_unreachable_hub_is_one_line_and_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    code, out, err = run(["models", "pull", "g1-0.1b", "--format", "pth"], capsys)
    assert code == ExitCode.NETWORK
    lines = _error_lines(err)
    assert len(lines) == 1 and "cannot reach the Hugging Face hub" in lines[0]
    assert "Traceback" not in err
    assert not (resolve_home().models / G1.file).exists()


def test_pull_offline_mode_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(["models", "pull", "g1-0.1b", "--format", "pth"], capsys)
    assert code == ExitCode.NETWORK and "HF_HUB_OFFLINE" in err and "Traceback" not in err


def test_pull_of_a_file_missing_on_the_hub_is_not_found(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["models", "pull", "g1-0.1b", "--format", "pth"], capsys)
    assert code == ExitCode.NOT_FOUND and len(_error_lines(err)) == 1


def test_pull_unknown_name_suggests_close_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["models", "pull", "g1-0.1"], capsys)
    assert code == ExitCode.NOT_FOUND and "g1-0.1b" in err


def test_rm_deletes_model_tokenizer_and_partials(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    hub.add(G1.repo, G1.file, os.urandom(1000))
    assert run(["models", "pull", "g1-0.1b", "--format", "pth"], capsys)[0] == 0
    stray = resolve_home().models / ".partial" / f"{G1.file}.deadbeef.part"
    stray.write_bytes(b"x")
    code, out, err = run(["models", "rm", "g1-0.1b"], capsys)
    assert code == 0 and G1.file in out
    assert not (resolve_home().models / G1.file).exists() and not stray.exists()
    code, out, err = run(["models", "rm", "g1-0.1b"], capsys)
    assert code == ExitCode.NOT_FOUND


def test_models_list_shows_every_entry_and_downloads(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    hub.add(G1.repo, G1.file, os.urandom(1000))
    assert run(["models", "pull", "g1-0.1b", "--format", "pth"], capsys)[0] == 0
    code, out, err = run(["models", "list", "--json"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == set(load_catalog().names())
    assert rows["g1-0.1b"]["downloaded"] is True and rows["g1-1.5b"]["downloaded"] is False
    code, out, err = run(["models", "list"], capsys)
    assert code == 0 and "raven-14b-v12" in out.replace("\n", "") or "raven" in out


# ---------------------------------------------------------------- GGUF builds


@pytest.fixture(scope="session")
def tiny_world_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real Q8_0 GGUF: a 1 x 64 RWKV-7 with the 65536-token World vocabulary (what G1 GGUFs carry)."""
    if MISSING:
        pytest.skip(MISSING)
    from checkpoints import build_checkpoint

    from weprompt_cli.models.gguf_convert import convert_to_gguf

    folder = tmp_path_factory.mktemp("tiny-world-gguf")
    pth = build_checkpoint("v7", folder / "tiny-world.pth", n_layer=1, n_embd=64, vocab_size=65536, tokenizer=None)
    return convert_to_gguf(pth, folder / "tiny-world-Q8_0.gguf", quant="q8_0").output.read_bytes()


def _no_usable_gpu() -> bool:
    from weprompt_cli.hardware.inventory import detect_inventory

    return not detect_inventory().usable_gpus


def _gets(hub: FakeHub) -> list[str]:
    return [r.path for r in hub.requests if r.method == "GET" and "resolve" in r.path]


@needs_llama_cpp
def test_pull_default_fetches_the_q8_0_gguf_here_and_says_why_in_one_line(
    hub: FakeHub, tiny_world_gguf: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    if not _no_usable_gpu():
        pytest.skip("this machine has a usable GPU: the default is the .pth (tests/test_gguf_catalog.py covers both)")
    hub.add(G1_Q8.repo, G1_Q8.file, tiny_world_gguf)
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
    assert code == 0, err
    path = resolve_home().models / "rwkv7-g1d-0.1b-Q8_0.gguf"
    assert path.read_bytes() == tiny_world_gguf and out.strip() == f"g1-0.1b: {path}"
    choice = [line for line in err.splitlines() if line.startswith("g1-0.1b: pulling")]
    assert choice == [
        (
            "g1-0.1b: pulling the GGUF Q8_0 (rwkv7-g1d-0.1b-Q8_0.gguf): no usable GPU: Q8_0 GGUF on the CPU through "
            "llama.cpp, about 2x the speed of the .pth at a quarter of the memory; --format pth for the .pth"
        )
    ]
    assert _gets(hub) == ["/shoumenchougou/RWKV7-G1d-0.1B-GGUF/resolve/main/rwkv7-g1d-0.1b-Q8_0.gguf"]
    assert not (resolve_home().models / G1.file).exists()  # the .pth was not fetched
    # The same build again, by name: nothing fetched.
    code, out, err = run(["models", "pull", "g1-0.1b", "--quant", "Q8_0"], capsys)
    assert code == 0 and "already downloaded" in out and len(_gets(hub)) == 1


@needs_llama_cpp
def test_pull_format_gguf_resumes_and_verifies_like_the_pth(
    hub: FakeHub, tiny_world_gguf: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    f = hub.add(G1_Q8.repo, G1_Q8.file, tiny_world_gguf, drop_after=4_000_000, drop_times=1)
    code, out, err = run(["models", "pull", "g1-0.1b", "--format", "gguf"], capsys)
    assert code == 0, err
    assert G1_Q8.local_path(resolve_home()).read_bytes() == tiny_world_gguf and f.gets == 2
    assert "g1-0.1b: pulling the GGUF Q8_0 (rwkv7-g1d-0.1b-Q8_0.gguf): asked for with --format gguf" in err


def test_pull_of_a_gguf_with_a_bad_hash_is_refused_and_removed(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    hub.add(G1_Q8.repo, G1_Q8.file, os.urandom(50_000), announced_sha256="cd" * 32)
    code, out, err = run(["models", "pull", "g1-0.1b", "--quant", "q8_0"], capsys)
    assert code == ExitCode.INVALID and len(_error_lines(err)) == 1 and "sha256" in err
    assert not G1_Q8.local_path(resolve_home()).exists()


def test_pull_of_a_variant_the_model_lacks_or_an_unknown_quant_is_one_line(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["--quant", "q4_0"], ExitCode.NOT_FOUND, "g1-0.1b has no GGUF Q4_0 build in the catalog (it has: q8_0)"),
        (["--quant", "q9"], ExitCode.USAGE, "unknown GGUF quantization 'q9'"),
        (["--format", "pth", "--quant", "q8_0"], ExitCode.USAGE, "--quant is for GGUF builds"),
        (["--format", "onnx"], ExitCode.USAGE, "unknown model format 'onnx'"),
    ]
    for extra, want_code, text in cases:
        code, out, err = run(["models", "pull", "g1-0.1b", *extra], capsys)
        lines = _error_lines(err)
        assert code == want_code and len(lines) == 1 and text in lines[0], (extra, err)
        assert "Traceback" not in err
    code, out, err = run(["models", "pull", "world7-0.1b", "--format", "gguf"], capsys)
    assert code == ExitCode.NOT_FOUND and "world7-0.1b has no GGUF build in the catalog" in _error_lines(err)[0]
    assert "models convert world7-0.1b --to gguf" in err
    assert not _gets(hub)


def test_pull_of_an_inferred_gguf_name_the_hub_lacks_says_where_to_look(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["models", "pull", "g1-7.2b", "--quant", "q8_0"], capsys)
    assert code == ExitCode.NOT_FOUND and len(_error_lines(err)) == 1
    assert "https://huggingface.co/shoumenchougou/RWKV7-G1d-7.2B-GGUF/tree/main" in err
    assert "or pull --quant q5_k_m or --format pth" in err


def test_pull_default_against_an_unreachable_hub_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
    assert code == ExitCode.NETWORK and len(_error_lines(err)) == 1 and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("g1-0.1b: pulling the ")]) == 1


def test_rm_removes_gguf_builds_too_and_can_pick_one_format(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    models = resolve_home().models
    models.mkdir(parents=True, exist_ok=True)
    pth, gguf = models / G1.file, G1_Q8.local_path(resolve_home())
    for path in (pth, gguf, models / ".partial" / f"{gguf.name}.0123.part"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    code, out, err = run(["models", "rm", "g1-0.1b", "--format", "gguf"], capsys)
    assert code == 0 and not gguf.exists() and pth.exists() and gguf.name in out
    assert not list((models / ".partial").glob("*"))
    code, out, err = run(["models", "rm", "g1-0.1b", "--quant", "q8_0"], capsys)
    assert code == ExitCode.NOT_FOUND and "model 'g1-0.1b' (Q8_0) is not downloaded" in _error_lines(err)[0]
    gguf.write_bytes(b"x")
    code, out, err = run(["models", "rm", "g1-0.1b"], capsys)
    assert code == 0 and not gguf.exists() and not pth.exists()
    code, out, err = run(["models", "rm", "g1-0.1b", "--quant", "q5_1"], capsys)
    assert code == ExitCode.NOT_FOUND and "no GGUF Q5_1 build" in err


@needs_llama_cpp
def test_models_list_json_shows_gguf_builds_and_what_auto_picks(
    hub: FakeHub, tiny_world_gguf: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    hub.add(G1_Q8.repo, G1_Q8.file, tiny_world_gguf)
    assert run(["models", "pull", "g1-0.1b", "--format", "gguf"], capsys)[0] == 0
    code, out, err = run(["models", "list", "--json"], capsys)
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    g1 = rows["g1-0.1b"]
    assert g1["downloaded"] is True and g1["pth_downloaded"] is False
    assert g1["gguf"] == [
        {
            "quant": "q8_0",
            "repo": "shoumenchougou/RWKV7-G1d-0.1B-GGUF",
            "file": "rwkv7-g1d-0.1b-Q8_0.gguf",
            "size_bytes": G1_Q8.size_bytes,
            "size_exact": False,
            "inferred": False,
            "downloaded": True,
            "path": str(G1_Q8.local_path(resolve_home())),
        }
    ]
    assert rows["g1-7.2b"]["gguf"][0]["inferred"] is True and rows["g1-7.2b"]["gguf"][1]["quant"] == "q5_k_m"
    assert rows["raven-14b-v12"]["gguf"] == [] and rows["raven-14b-v12"]["auto"]["format"] == "pth"
    if _no_usable_gpu():
        assert g1["auto"]["format"] == "gguf" and g1["auto"]["quant"] == "q8_0" and g1["auto"]["fits"]
        assert g1["auto"]["reason"].startswith("no usable GPU: Q8_0 GGUF on the CPU")
        assert "GGUF Q8_0 needs ~" in g1["auto"]["fit_reason"]
    code, out, err = run(["models", "list"], capsys)
    assert code == 0 and "~212 MB" in out  # the Q8_0 build's size, in its own column
