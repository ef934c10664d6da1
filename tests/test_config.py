"""`weprompt config show|set|unset` and `load_config(home=resolve_home())`: validation, defaults, corrupt files."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_main as run

from weprompt_cli.config import KEYS, Config, load_config, set_value
from weprompt_cli.errors import ExitCode, InvalidFileError, UsageError
from weprompt_cli.paths import resolve_home


def test_defaults_without_a_file() -> None:
    cfg = load_config(home=resolve_home())
    assert cfg == Config()
    assert cfg.default_persona == "general" and cfg.strategy == "auto" and cfg.default_model is None
    assert cfg.sampling == {}


def test_set_show_unset_round_trip(weprompt_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in [
        ("temperature", "0.7"),
        ("top_k", "40"),
        ("strategy", "cuda  fp16 *20 -> cpu fp32"),
        ("default_model", "g1-1.5b"),
        ("default_persona", "sql"),
    ]:
        code, out, err = run(["config", "set", key, value], capsys)
        assert code == 0, err
    cfg = load_config(home=resolve_home())
    assert cfg.temperature == 0.7 and cfg.top_k == 40 and isinstance(cfg.top_k, int)
    assert cfg.strategy == "cuda fp16 *20 -> cpu fp32"  # whitespace normalised
    assert cfg.sampling == {"temperature": 0.7, "top_k": 40}
    text = (weprompt_home / "config.toml").read_text()
    assert "schema = 1" in text and "temperature = 0.7" in text
    code, out, err = run(["config", "show"], capsys)
    assert code == 0 and "temperature" in out and "0.7" in out and "g1-1.5b" in out
    code, out, err = run(["config", "unset", "temperature"], capsys)
    assert code == 0 and load_config(home=resolve_home()).temperature is None
    code, out, err = run(["config", "unset", "temperature"], capsys)
    assert code == 0 and "was not set" in out


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("temperature", "11"),
        ("temperature", "hot"),
        ("top_p", "1.5"),
        ("top_k", "2.5"),
        ("max_tokens", "0"),
        ("penalty_decay", "2"),
        ("strategy", "gpu fast"),
        ("strategy", "cuda fp64"),
        ("default_persona", "../x"),
    ],
)
def test_invalid_values_are_one_usage_line(key: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["config", "set", key, value], capsys)
    assert code == ExitCode.USAGE
    assert err.startswith("weprompt: error: invalid value for " + key) and "Traceback" not in err
    assert load_config(home=resolve_home()) == Config()


def test_unknown_key_lists_the_valid_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["config", "set", "temprature", "1"], capsys)
    assert code == ExitCode.USAGE and "unknown config key" in err
    assert all(k in err for k in KEYS)
    with pytest.raises(UsageError):
        set_value("nope", "1", home=resolve_home())


def test_corrupt_file_names_the_file_and_line(weprompt_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = weprompt_home / "config.toml"
    path.write_text('schema = 1\ntemperature = 0.5\nstrategy = "cuda fp16\n')
    with pytest.raises(InvalidFileError) as info:
        load_config(home=resolve_home())
    assert info.value.path == str(path) and "line 3" in info.value.message
    code, out, err = run(["config", "show"], capsys)
    assert code == ExitCode.INVALID and str(path) in err and "line 3" in err and "Traceback" not in err
    # `set` refuses to overwrite a file it could not read.
    code, out, err = run(["config", "set", "top_k", "3"], capsys)
    assert code == ExitCode.INVALID and "cuda fp16\n" in path.read_text()


def test_bad_values_in_the_file_are_invalid_file_errors(weprompt_home: Path) -> None:
    (weprompt_home / "config.toml").write_text('temperature = "warm"\n')
    with pytest.raises(InvalidFileError, match="temperature"):
        load_config(home=resolve_home())
    (weprompt_home / "config.toml").write_text("colour = 1\n")
    with pytest.raises(InvalidFileError, match="unknown config key 'colour'"):
        load_config(home=resolve_home())
    (weprompt_home / "config.toml").write_text("schema = 99\n")
    with pytest.raises(InvalidFileError, match="schema"):
        load_config(home=resolve_home())


def test_writes_are_atomic_and_keep_other_keys(weprompt_home: Path) -> None:
    set_value("top_p", "0.5", home=resolve_home())
    set_value("max_tokens", "200", home=resolve_home())
    assert load_config(home=resolve_home()).top_p == 0.5 and load_config(home=resolve_home()).max_tokens == 200
    assert not [p for p in weprompt_home.iterdir() if p.name.startswith(".tmp-")]
