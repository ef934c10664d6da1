"""`weprompt models pull/rm` against a local fake hub (tests/hubserver.py): no internet."""

from __future__ import annotations

import hashlib
import os

import pytest
from helpers import run_main as run
from hubserver import FakeHub, closed_port_endpoint

from weprompt_cli.errors import ExitCode
from weprompt_cli.models.catalog import load_catalog
from weprompt_cli.paths import resolve_home

G1 = load_catalog().get("g1-0.1b")
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
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
    assert code == 0, err
    path = resolve_home().models / G1.file
    assert path.read_bytes() == data
    assert not list((path.parent / ".partial").glob("*.part"))
    assert G1.is_downloaded(resolve_home())
    # A second pull sees it is there and fetches nothing.
    gets = sum(r.method == "GET" and "resolve" in r.path for r in hub.requests)
    code, out, _ = run(["models", "pull", "g1-0.1b"], capsys)
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
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
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
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
    assert code == 0, err
    assert (resolve_home().models / G1.file).read_bytes() == data
    gets = [r for r in hub.requests if r.method == "GET" and "resolve" in r.path]
    assert [g.range for g in gets] == ["bytes=700000-"]
    assert not partial.exists()


def test_pull_with_a_hash_mismatch_fails_clearly_and_removes_the_file(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add(G1.repo, G1.file, os.urandom(100_000), announced_sha256="ab" * 32)
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
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
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
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
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
    assert code == ExitCode.NETWORK
    lines = _error_lines(err)
    assert len(lines) == 1 and "cannot reach the Hugging Face hub" in lines[0]
    assert "Traceback" not in err
    assert not (resolve_home().models / G1.file).exists()


def test_pull_offline_mode_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
    assert code == ExitCode.NETWORK and "HF_HUB_OFFLINE" in err and "Traceback" not in err


def test_pull_of_a_file_missing_on_the_hub_is_not_found(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["models", "pull", "g1-0.1b"], capsys)
    assert code == ExitCode.NOT_FOUND and len(_error_lines(err)) == 1


def test_pull_unknown_name_suggests_close_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["models", "pull", "g1-0.1"], capsys)
    assert code == ExitCode.NOT_FOUND and "g1-0.1b" in err


def test_rm_deletes_model_tokenizer_and_partials(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    hub.add(G1.repo, G1.file, os.urandom(1000))
    assert run(["models", "pull", "g1-0.1b"], capsys)[0] == 0
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
    assert run(["models", "pull", "g1-0.1b"], capsys)[0] == 0
    code, out, err = run(["models", "list", "--json"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == set(load_catalog().names())
    assert rows["g1-0.1b"]["downloaded"] is True and rows["g1-1.5b"]["downloaded"] is False
    code, out, err = run(["models", "list"], capsys)
    assert code == 0 and "raven-14b-v12" in out.replace("\n", "") or "raven" in out
