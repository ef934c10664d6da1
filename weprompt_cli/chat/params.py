"""The sampling settings in effect for a turn: one function, used by the CLI, the REPL and the server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from weprompt_cli.params import SETTABLE_KEYS, SamplingParams

if TYPE_CHECKING:
    from weprompt_cli.chat.formats import ChatFormat
    from weprompt_cli.config import Config
    from weprompt_cli.personas import Persona


def effective_params(
    config: Config | None,
    persona: Persona | None,
    stored: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None,
    *,
    family: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    max_tokens_cap: int | None = None,
) -> SamplingParams:
    """Settings by increasing priority: WePrompt's defaults (then the caller's `defaults`,
    e.g. the server's reply length), the model family's, the config,
    the persona, the session's saved settings, then this run's flags or request fields.

    Unknown keys in `stored` (a session written by another version) are ignored; None
    values mean "not set". `max_tokens_cap` (the server's limit) clamps the result.
    """
    merged: dict[str, Any] = {}
    for level in (defaults, family, config.sampling if config is not None else None, persona.sampling if persona else None,
                  stored, overrides):
        if level:
            merged.update({k: v for k, v in level.items() if k in SETTABLE_KEYS and v is not None})
    if max_tokens_cap is not None and int(merged.get("max_tokens", SamplingParams.max_tokens)) > max_tokens_cap:
        merged["max_tokens"] = max_tokens_cap
    return SamplingParams().with_overrides(**merged)


def family_defaults(fmt: ChatFormat, *, state_file: bool = False) -> dict[str, Any]:
    """The decoding a model family is published with (the lowest level of `effective_params`).

    RWKV-7 G1: BlinkDL's chat demo (temperature 1.0, top_p 0.3, penalties 0.5, decay 0.996;
    with a state file top_p 0.2 and penalties 0.3). Other families: WePrompt's defaults.
    """
    if fmt.name == "g1":
        from weprompt_cli.chat.thinking import G1_DECODING, G1_DECODING_WITH_STATE

        return dict(G1_DECODING_WITH_STATE if state_file else G1_DECODING)
    return {}
