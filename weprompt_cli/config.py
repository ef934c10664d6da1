"""User settings in `<home>/config.toml`: default model, strategy, persona, database and sampling.

The file holds only what the user set (plus `schema`); everything else takes the
defaults below. Every value is validated on load and on `set`, so a typo is caught
where it is made, not deep inside a chat.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

from weprompt_cli.errors import InvalidFileError, UsageError
from weprompt_cli.params import OVERRIDABLE_KEYS, check_setting, parse_setting
from weprompt_cli.paths import Home

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_SCHEMA = 1
SAMPLING_KEYS = OVERRIDABLE_KEYS
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
# The rwkv package's strategy grammar: `dev dtype [*N[+]]` joined by `->`.
_STRATEGY = re.compile(
    r"^\s*(?:cuda(?::\d+)?|cpu|mps|dml)\s+(?:fp16|fp32|bf16)(?:i8|i4|i3)?(?:\s+\*\d+\+?)?\s*"
    r"(?:->\s*(?:cuda(?::\d+)?|cpu|mps|dml)\s+(?:fp16|fp32|bf16)(?:i8|i4|i3)?(?:\s+\*\d+\+?)?\s*)*$"
)


@dataclass(frozen=True)
class Config:
    """Settings with their defaults; `load_config()` fills in what the file sets."""

    default_model: str | None = None  # catalog name or path; None: the embedded demo model
    strategy: str = "auto"
    default_persona: str = "general"
    db: str | None = None  # the database to connect (SQLite path, URL without password, or "demo"); None: none
    think: str | None = None  # G1 models: off, on, bit or lot; None: off (fast answers)
    # Sampling: None means the engine's own default (weprompt_cli.engine.SamplingParams).
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # 0: off
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    penalty_decay: float | None = None
    max_tokens: int | None = None

    @property
    def sampling(self) -> dict[str, Any]:
        """The sampling settings the user set (for `SamplingParams.with_overrides`)."""
        return {k: getattr(self, k) for k in SAMPLING_KEYS if getattr(self, k) is not None}


def _setting(key: str) -> Callable[[Any], Any]:
    """The validator of a sampling setting: the same rules as persona files, flags and /set."""

    def check(value: Any) -> Any:
        return check_setting(key, value)

    return check


def _strategy(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    value = " ".join(value.split())
    if value != "auto" and not _STRATEGY.match(value):
        raise ValueError("must be 'auto' or an rwkv strategy such as 'cuda fp16' or 'cuda fp16 *20 -> cpu fp32'")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError("must be a name of letters, digits, '.', '_' or '-'")
    return value


# `scheme://user:secret@host`, or a password in the query: config.toml must not carry a database password.
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@?#]*:[^/@?#]*@|[?&](password|passwd|sslpassword)=",
                           re.IGNORECASE)


def _db(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an SQLite file, a database URL or demo")
    if _URL_PASSWORD.search(value):
        # `weprompt config list` prints every value: the password goes in $WEPROMPT_DB_PASSWORD.
        raise ValueError("must not hold a password: leave it out of the URL and set $WEPROMPT_DB_PASSWORD")
    return value.strip()


def _model(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a catalog name or a path")
    return value.strip()


def _think(value: Any) -> str:
    if not isinstance(value, str) or value not in ("off", "on", "bit", "lot"):
        raise ValueError("must be off, on, bit or lot")
    return value


VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "default_model": _model,
    "strategy": _strategy,
    "default_persona": _name,
    "db": _db,
    "think": _think,
    **{key: _setting(key) for key in SAMPLING_KEYS},
}
KEYS: tuple[str, ...] = tuple(f.name for f in fields(Config))
assert set(KEYS) == set(VALIDATORS)


def _shown(key: str, value: Any) -> str:
    """A rejected value as an error message quotes it; a database URL is not repeated (it may hold a password)."""
    return "the given URL" if key == "db" else repr(value)


def _check_key(key: str) -> None:
    if key not in VALIDATORS:
        raise UsageError(f"unknown config key {key!r}", hint=f"valid keys: {', '.join(KEYS)}")


def parse_value(key: str, text: str) -> Any:
    """`text` from the command line as the type `key` takes; UsageError when invalid."""
    _check_key(key)
    if key in SAMPLING_KEYS:
        try:
            return parse_setting(key, text)
        except ValueError as exc:
            raise UsageError(f"invalid value for {key}: {text!r} {exc}") from None
    raw: Any = text
    target = {f.name: f.type for f in fields(Config)}[key]
    if "int" in str(target) and "str" not in str(target):
        try:
            raw = int(text)
        except ValueError:
            raw = text
    elif "float" in str(target):
        try:
            raw = float(text)
        except ValueError:
            raw = text
    try:
        return VALIDATORS[key](raw)
    except ValueError as exc:
        raise UsageError(f"invalid value for {key}: {_shown(key, text)} {exc}") from None


def _read(path: Path) -> dict[str, Any]:
    """The file's table ({} when absent); InvalidFileError naming the line when corrupt."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidFileError(f"cannot read the config file: {exc}", path=path) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidFileError(
            f"the config file is not valid TOML: {exc}",
            path=path,
            hint=f"fix or delete {path}",
        ) from None


def load_config(home: Home) -> Config:
    """Settings from `<home>/config.toml` over the defaults; InvalidFileError if the file is bad."""
    path = home.config_file
    data = _read(path)
    schema = data.pop("schema", CONFIG_SCHEMA)
    if schema != CONFIG_SCHEMA:
        raise InvalidFileError(f"unsupported config schema {schema!r} (this WePrompt knows {CONFIG_SCHEMA})", path=path)
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in VALIDATORS:
            raise InvalidFileError(
                f"unknown config key {key!r}",
                path=path,
                hint=f"weprompt config unset {key}  (valid: {', '.join(KEYS)})",
            )
        try:
            values[key] = VALIDATORS[key](raw)
        except ValueError as exc:
            raise InvalidFileError(
                f"bad value for {key}: {_shown(key, raw)} {exc}", path=path, hint=f"weprompt config unset {key}"
            )
    return replace(Config(), **values)


def _write(path: Path, data: dict[str, Any]) -> None:
    import tomli_w

    from weprompt_cli.atomic import atomic_write_text

    body = {"schema": CONFIG_SCHEMA, **{k: data[k] for k in KEYS if k in data}}
    atomic_write_text(path, "# WePrompt settings; change with `weprompt config set KEY VALUE`.\n" + tomli_w.dumps(body))


def set_value(key: str, text: str, home: Home) -> Any:
    """Validate and store one setting; returns the stored value."""
    value = parse_value(key, text)
    load_config(home)  # refuse to rewrite a file we could not read
    data = _read(home.config_file)
    data.pop("schema", None)
    data[key] = value
    _write(home.config_file, data)
    return value


def unset_value(key: str, home: Home) -> bool:
    """Remove a setting (back to its default); False when it was not set."""
    data = _read(home.config_file)
    data.pop("schema", None)
    if key not in data:
        _check_key(key)
        return False
    del data[key]
    _write(home.config_file, {k: v for k, v in data.items() if k in VALIDATORS})
    return True


def config_items(home: Home) -> list[tuple[str, Any, bool]]:
    """(key, value, set in the file?) for every key, in a stable order."""
    config = load_config(home)
    stored = _read(home.config_file)
    return [(k, getattr(config, k), k in stored) for k in KEYS]
