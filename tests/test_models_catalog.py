"""The catalog loads, every entry is well-formed, and `--model` names/paths resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from weprompt_cli.errors import InvalidFileError, NotFoundError
from weprompt_cli.models import resolve as resolve_mod
from weprompt_cli.models.catalog import load_catalog, parse_catalog
from weprompt_cli.models.resolve import resolve_model
from weprompt_cli.paths import resolve_home

CAT = load_catalog()


def test_catalog_has_the_required_families() -> None:
    names = set(CAT.names())
    assert {"g1-0.1b", "g1-0.4b", "g1-1.5b", "g1-2.9b", "g1-7.2b", "g1-13.3b"} <= names
    assert {"raven-14b-v12", "demo"} <= names
    assert any(m.repo == "BlinkDL/rwkv-7-world" for m in CAT.models)
    assert any(m.repo == "BlinkDL/rwkv-6-world" for m in CAT.models)
    assert len(names) == len(CAT.models)


@pytest.mark.parametrize("entry", CAT.models, ids=lambda m: m.name)
def test_every_entry_is_well_formed(entry) -> None:  # type: ignore[no-untyped-def]
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", entry.name)
    assert entry.arch in ("v4", "v5", "v6", "v7")
    assert entry.n_layer > 0 and entry.n_embd % 64 == 0 and entry.vocab_size > 0
    assert entry.size_bytes > 0 and entry.n_params > 0
    # bf16/fp16 checkpoints: about 2 bytes a parameter; the embedded demo is fp32 (4 bytes).
    low, high = (3.6, 4.4) if entry.embedded else (1.6, 2.4)
    assert low < entry.size_bytes / entry.n_params < high
    mem = entry.memory
    assert mem["fp16"] < mem["fp32"]
    assert ("fp16i8" in mem) is (entry.arch != "v7")
    if entry.embedded:
        assert entry.repo is None and entry.package_file
    else:
        assert entry.repo and entry.repo.startswith("BlinkDL/") and entry.file and entry.file.endswith(".pth")
    if entry.vocab_size == 50277:
        assert entry.tokenizer.name == "neox20b" and entry.chat_format == "raven"
    if entry.vocab_size == 65536:
        # G1 models have their own format (the name says so, as BlinkDL names the files); the rest are World.
        assert entry.tokenizer.builtin and entry.chat_format == ("g1" if entry.name.startswith("g1-") else "world")


def test_g1_file_names_follow_the_hub() -> None:
    assert CAT.get("g1-0.1b").file == "rwkv7-g1d-0.1b-20260129-ctx8192.pth"
    assert CAT.get("raven-14b-v12").tokenizer.file == "20B_tokenizer.json"


def test_bad_catalog_documents_are_rejected() -> None:
    with pytest.raises(InvalidFileError, match="schema"):
        parse_catalog({"schema": 2})
    good = {
        "name": "x",
        "title": "t",
        "arch": "v7",
        "repo": "a/b",
        "file": "f.pth",
        "params": 1,
        "n_layer": 1,
        "n_embd": 64,
        "vocab_size": 1,
        "ctx_len": 1,
        "size": 2,
        "tokenizer": "world",
        "chat_format": "world",
    }
    doc = {"schema": 1, "tokenizer": {"world": {"builtin": True}}, "model": [good]}
    assert parse_catalog(doc).get("x").n_params == 1
    with pytest.raises(InvalidFileError, match="arch"):
        parse_catalog({**doc, "model": [{**good, "arch": "v9"}]})
    with pytest.raises(InvalidFileError, match="params"):
        parse_catalog({**doc, "model": [{**good, "params": "many"}]})
    with pytest.raises(InvalidFileError, match="duplicate"):
        parse_catalog({**doc, "model": [good, good]})
    with pytest.raises(InvalidFileError, match="tokenizer"):
        parse_catalog({**doc, "model": [{**good, "tokenizer": "nope"}]})


def test_resolve_a_path(tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"x")
    assert resolve_model(str(ckpt), home=resolve_home()).path == ckpt.resolve()
    assert resolve_model(str(tmp_path / "m"), home=resolve_home()).path == ckpt.resolve()  # rwkv-style name without .pth
    with pytest.raises(NotFoundError, match="no model file"):
        resolve_model(str(tmp_path / "missing.pth"), home=resolve_home())
    with pytest.raises(InvalidFileError, match="folder"):
        resolve_model(str(tmp_path), home=resolve_home())


def test_resolve_a_catalog_name_needs_a_download() -> None:
    with pytest.raises(NotFoundError) as info:
        resolve_model("g1-1.5b", home=resolve_home(), strategy="auto")
    assert info.value.hint == "weprompt models pull g1-1.5b"
    # Without a strategy (models convert) it is the .pth, which a plain pull may not fetch
    # (it takes the Q8_0 GGUF on a machine without a usable GPU): the hint says --format pth.
    with pytest.raises(NotFoundError) as info:
        resolve_model("g1-1.5b", home=resolve_home())
    assert info.value.hint == "weprompt models pull g1-1.5b --format pth"
    with pytest.raises(NotFoundError) as info:
        resolve_model("world7-1.5b", home=resolve_home())
    assert info.value.hint == "weprompt models pull world7-1.5b"  # no GGUF build: a plain pull is the .pth
    entry = CAT.get("g1-1.5b")
    path = entry.local_path(resolve_home())
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    got = resolve_model("g1-1.5b", home=resolve_home())
    assert got.path == path and got.entry == entry and not got.is_demo
    assert got.format == "pth" and got.variant is None


def test_resolve_unknown_name_suggests() -> None:
    with pytest.raises(NotFoundError, match="no catalog model or file") as info:
        resolve_model("g1-1.5", home=resolve_home())
    assert "g1-1.5b" in (info.value.hint or "")


def test_resolve_none_uses_config_then_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from weprompt_cli.config import Config

    ckpt = tmp_path / "mine.pth"
    ckpt.write_bytes(b"x")
    assert resolve_model(None, config=Config(default_model=str(ckpt)), home=resolve_home()).path == ckpt.resolve()
    demo = tmp_path / "demo.pth"
    demo.write_bytes(b"x")
    monkeypatch.setattr(resolve_mod, "demo_model_dir", lambda: tmp_path)
    monkeypatch.setattr(resolve_mod, "DEMO_FILE_NAME", "demo.pth")
    monkeypatch.setitem(__import__("sys").modules, "weprompt_cli.demo", None)  # no DEMO_MODEL_PATH
    got = resolve_model(None, config=Config(), home=resolve_home())
    assert got.is_demo and got.path == demo
    assert resolve_model("demo", home=resolve_home()).is_demo


def test_resolve_demo_missing_is_a_clear_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from weprompt_cli.config import Config

    monkeypatch.setattr(resolve_mod, "demo_model_dir", lambda: tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "weprompt_cli.demo", None)
    with pytest.raises(NotFoundError, match="demo model is not in this install") as info:
        resolve_model(None, config=Config(), home=resolve_home())
    assert "models pull" in (info.value.hint or "")


def test_the_demo_entry_is_exactly_the_shipped_model(capsys: pytest.CaptureFixture[str]) -> None:
    # `weprompt models list` showed the demo as 4 x 256, 5.8M parameters and 12 MB; the
    # shipped file is 4 x 128, 1.58M parameters and 6.4 MB. Measure the file itself.
    import json

    from helpers import run_main

    from weprompt_cli.demo import DEMO_MODEL_PATH
    from weprompt_cli.engine.checkpoint import inspect_checkpoint

    entry = CAT.get("demo")
    assert entry.local_path(resolve_home()) == DEMO_MODEL_PATH
    info = inspect_checkpoint(DEMO_MODEL_PATH)
    size = DEMO_MODEL_PATH.stat().st_size
    assert (entry.arch, entry.n_layer, entry.n_embd, entry.vocab_size) == (
        info.arch, info.n_layer, info.n_embd, info.vocab_size
    )
    assert entry.n_params == info.n_params and entry.size_bytes == size and entry.size_exact
    assert f"{info.n_layer} x {info.n_embd}" in entry.title

    code, out, err = run_main(["models", "list", "--json"], capsys)
    assert code == 0, err
    shown = next(row for row in json.loads(out) if row["name"] == "demo")
    assert (shown["params"], shown["size_bytes"], shown["size_exact"]) == (info.n_params, size, True)
    assert f"{info.n_layer} x {info.n_embd}" in shown["title"] and shown["downloaded"]
