"""G1 prompt text, character for character against what BlinkDL publishes.

Sources (read from the repositories; the expected strings below are the published ones,
with `xxx` filled in):
- T: BlinkDL/RWKV-LM, RWKV-v7/RWKV7-G1x-templates.txt (commit b9563fc, 2026-07-18):
  the cleaning function (lines 5-6), "token id=0 means end_of_doc" (line 8), the basic
  templates (lines 12-16), think mode (lines 20-22), think length (lines 26-28).
- D: BlinkDL/ChatRWKV, API_DEMO_CHAT.py: the GEN_* decoding settings and their values
  with a state file (top of the file), `out[0] -= 1e10` (token 0 banned), the stop on
  "\\n\\n", and the fed turn `"User: " + msg + "\\n\\nAssistant:"`.
"""

from __future__ import annotations

import re

import pytest

from weprompt_cli.chat.thinking import (
    END_OF_DOC,
    G1_DECODING,
    G1_DECODING_WITH_STATE,
    SEPARATOR,
    ThinkMode,
    fold_status,
    g1_assistant_text,
    g1_clean,
    g1_system,
    g1_turn_prompt,
    split_think_suffix,
)


def published_clean(txt: str) -> str:
    # T, lines 5-6, as published.
    return re.sub(r"\n{2,}", "\n", txt.replace("\r\n", "\n")).strip()


@pytest.mark.parametrize(
    "text",
    ["a\n\nb", "a\r\n\r\nb", "  a\n\n\n\nb\n  ", "a\n \nb", "a\n\n \n\nb", "\n\nx\n", "one\ntwo", "", "  \n\n  ", "a\r\nb\rc"],
)
def test_clean_is_the_published_function(text: str) -> None:
    assert g1_clean(text) == published_clean(text)


def test_clean_keeps_single_newlines_and_folds_runs() -> None:
    assert g1_clean("  Line one\r\n\r\n\r\nLine two\nLine three \n\n") == "Line one\nLine two\nLine three"


def test_basic_templates() -> None:
    # T: "User: xxx\n\nAssistant:"
    assert g1_turn_prompt("xxx", "on", needs_boundary=False).startswith("User: xxx\n\nAssistant:")
    # T: "System: xxx\n\nUser: xxx\n\nAssistant:"
    assert g1_system("xxx") + "User: xxx\n\nAssistant:" == "System: xxx\n\nUser: xxx\n\nAssistant:"
    # T: "User: xxx\n\nAssistant: xxx\n\nUser: xxx\n\nAssistant:" (the earlier answer written back)
    history = "User: xxx\n\nAssistant:" + g1_assistant_text("xxx")
    assert history + "User: xxx\n\nAssistant:" == "User: xxx\n\nAssistant: xxx\n\nUser: xxx\n\nAssistant:"
    # D: the fed turn is "User: " + msg + "\n\nAssistant:"
    assert SEPARATOR == "\n\n"


def test_system_text_is_cleaned_and_empty_system_writes_nothing() -> None:
    assert g1_system("Be brief.\n\n\nUse SQL.") == "System: Be brief.\nUse SQL.\n\n"
    assert g1_system("  \n\n ") == ""


def test_think_on_opens_a_thought() -> None:
    # T: "Assistant: <think"
    assert g1_turn_prompt("xxx", ThinkMode.ON, needs_boundary=False) == "User: xxx\n\nAssistant: <think"


def test_think_off_feeds_an_empty_thought() -> None:
    # T: "Assistant: <think></think" (fake thinking, nice results and fast)
    assert g1_turn_prompt("xxx", ThinkMode.OFF, needs_boundary=False) == "User: xxx\n\nAssistant: <think></think"


def test_think_length_goes_after_the_user_text() -> None:
    # T: "User: xxx (think a bit)\n\nAssistant: <think"
    assert g1_turn_prompt("xxx", "bit", needs_boundary=False) == "User: xxx (think a bit)\n\nAssistant: <think"
    # T: "User: xxx (think a lot)\n\nAssistant: <think"
    assert g1_turn_prompt("xxx", "lot", needs_boundary=False) == "User: xxx (think a lot)\n\nAssistant: <think"


def test_whole_conversation_with_system_and_think() -> None:
    # T: "System: xxx\n\nUser: xxx\n\nAssistant: xxx\n\nUser: xxx\n\nAssistant:" with T's think opening
    text = g1_system("xxx") + g1_turn_prompt("xxx", "off", needs_boundary=False)
    assert text == "System: xxx\n\nUser: xxx\n\nAssistant: <think></think"
    text = g1_system("xxx") + "User: xxx\n\nAssistant:" + g1_assistant_text("xxx")
    text += g1_turn_prompt("xxx", "lot", needs_boundary=False)
    assert text == "System: xxx\n\nUser: xxx\n\nAssistant: xxx\n\nUser: xxx (think a lot)\n\nAssistant: <think"


def test_user_text_is_cleaned_before_the_suffix() -> None:
    prompt = g1_turn_prompt("  first line\r\n\r\n\r\nsecond line \n\n", "bit", needs_boundary=False)
    assert prompt == "User: first line\nsecond line (think a bit)\n\nAssistant: <think"
    assert SEPARATOR not in prompt.split("\n\nAssistant:")[0]


def test_boundary_after_a_cut_reply() -> None:
    assert g1_turn_prompt("xxx", "on", needs_boundary=True) == "\n\nUser: xxx\n\nAssistant: <think"


def test_unknown_mode_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown think mode 'medium' \(one of: off, on, bit, lot\)"):
        g1_turn_prompt("xxx", "medium", needs_boundary=False)


@pytest.mark.parametrize(
    ("typed", "text", "mode"),
    [
        ("What is 7*8? (think a bit)", "What is 7*8?", ThinkMode.BIT),
        ("What is 7*8? (think a lot)  ", "What is 7*8?", ThinkMode.LOT),
        ("What is 7*8? (think)", "What is 7*8?", ThinkMode.ON),
        ("What is 7*8?", "What is 7*8?", None),
        ("(think) is a word", "(think) is a word", None),
    ],
)
def test_typed_think_suffix_is_recognised(typed: str, text: str, mode: ThinkMode | None) -> None:
    assert split_think_suffix(typed) == (text, mode)


def test_published_decoding_defaults() -> None:
    # D: GEN_TEMP = 1.0, GEN_TOP_P = 0.3, GEN_alpha_presence = 0.5, GEN_alpha_frequency = 0.5,
    #    GEN_penalty_decay = 0.996; with a state: GEN_TOP_P = 0.2, presence = frequency = 0.3.
    assert G1_DECODING == {"temperature": 1.0, "top_p": 0.3, "presence_penalty": 0.5, "frequency_penalty": 0.5,
                           "penalty_decay": 0.996}
    assert G1_DECODING_WITH_STATE == {"temperature": 1.0, "top_p": 0.2, "presence_penalty": 0.3,
                                      "frequency_penalty": 0.3, "penalty_decay": 0.996}
    # T line 8: token id=0 means end_of_doc; D bans it: out[0] -= 1e10
    assert END_OF_DOC == 0


def test_decoding_defaults_fit_sampling_params() -> None:
    try:
        from weprompt_cli.params import SamplingParams  # where the core refactor puts it
    except ImportError:
        from weprompt_cli.engine.sampling import SamplingParams  # type: ignore[no-redef]

    assert SamplingParams().with_overrides(**G1_DECODING).top_p == 0.3
    assert SamplingParams().with_overrides(**G1_DECODING_WITH_STATE).presence_penalty == 0.3


def test_fold_status_line() -> None:
    assert fold_status(312) == "thought for 312 tokens · /show-thoughts"
    assert fold_status(1) == "thought for 1 token · /show-thoughts"
