"""Sampling settings: the one list of settings, their rules, and `SamplingParams`.

A bottom-layer module (no torch, no other WePrompt layer): the engine samples with
`SamplingParams`, and persona files, `config.toml`, command-line flags, `/set` and the
HTTP API validate their values with the same `check_setting`, so a value is refused
with the same words wherever it was written. The settings in effect for a turn are
computed in one place: `weprompt_cli.chat.params.effective_params`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from weprompt_cli.errors import UsageError

MAX_TOKENS_LIMIT = 1_000_000  # no reply is longer; a larger value is a typo


@dataclass(frozen=True)
class Rule:
    """What one setting accepts: a number or a whole number within [low, high]."""

    whole: bool
    low: float
    high: float | None = None

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        low = int(self.low) if self.whole else f"{self.low:g}"
        if self.high is None:
            return f"{kind}, {low} or more"
        high = int(self.high) if self.whole else f"{self.high:g}"
        return f"{kind} from {low} to {high}"


RULES: dict[str, Rule] = {
    "temperature": Rule(False, 0.0, 10.0),
    "top_p": Rule(False, 0.0, 1.0),
    "top_k": Rule(True, 0, 1_000_000),
    "presence_penalty": Rule(False, -2.0, 10.0),
    "frequency_penalty": Rule(False, -2.0, 10.0),
    "penalty_decay": Rule(False, 0.0, 1.0),
    "max_tokens": Rule(True, 1, MAX_TOKENS_LIMIT),
    "seed": Rule(True, 0, 2**63 - 1),
}

# What a persona, the config or a session may set: every setting but the per-request seed.
OVERRIDABLE_KEYS: tuple[str, ...] = tuple(k for k in RULES if k != "seed")
# What `/set` and the command-line flags may change (the seed too).
SETTABLE_KEYS: tuple[str, ...] = tuple(RULES)


def check_setting(key: str, value: Any) -> Any:
    """`value` as setting `key` stores it (int or float); ValueError saying what is wrong otherwise.

    Booleans, strings and non-finite numbers are refused: a setting is a number.
    """
    rule = RULES.get(key)
    if rule is None:
        raise ValueError(f"unknown setting {key!r} (known: {', '.join(RULES)})")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be {rule.describe()}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number ({rule.describe()})")
    if rule.whole:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"must be {rule.describe()}")
            value = int(value)
    else:
        value = float(value)
    if value < rule.low or (rule.high is not None and value > rule.high):
        raise ValueError(f"must be {rule.describe()}")
    return value


def parse_setting(key: str, text: str) -> Any:
    """A setting typed as text (a flag, `/set`, `config set`) checked; ValueError with the reason."""
    rule = RULES.get(key)
    if rule is None:
        raise ValueError(f"unknown setting {key!r} (known: {', '.join(RULES)})")
    text = text.strip()
    try:
        value: Any = int(text) if rule.whole else float(text)
    except ValueError:
        raise ValueError(f"must be {rule.describe()}, not {text!r}") from None
    return check_setting(key, value)


def setting_label(key: str) -> str:
    """How a setting is named to users: `top-p` style, as the flags spell it."""
    return key.replace("_", "-")


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens; every field is checked by `check_setting` (UsageError when invalid)."""

    temperature: float = 1.0
    top_p: float = 0.85
    top_k: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_decay: float = 0.996
    max_tokens: int = 500
    seed: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "seed" and value is None:
                continue
            try:
                checked = check_setting(f.name, value)
            except ValueError as exc:
                raise UsageError(f"invalid {setting_label(f.name)} {value!r}: {exc}") from None
            object.__setattr__(self, f.name, checked)

    def with_overrides(self, **overrides: Any) -> SamplingParams:
        """A copy with the given fields changed (None values are skipped); UsageError on unknown names."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UsageError(f"unknown sampling setting(s): {', '.join(unknown)}", hint=f"known: {', '.join(sorted(known))}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
