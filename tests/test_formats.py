"""Chat formats: folding user text and rendering persona prefixes and turns (docs/architecture.md)."""

from __future__ import annotations

import pytest

from weprompt_cli.chat.formats import RAVEN, WORLD, fold, get_format


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("hello", "hello"),
        ("  padded  ", "padded"),
        ("a\nb", "a\nb"),
        ("a\n\nb", "a\nb"),
        ("a\n\n\n\nb", "a\nb"),
        ("a\r\n\r\nb", "a\nb"),
        ("a\n   \n\t\nb", "a\nb"),
        ("a\r\nb\r\n", "a\nb"),
        ("\n\nlead and trail\n\n\n", "lead and trail"),
        ("code:\n    indented\n\n    more", "code:\n    indented\n    more"),
        ("", ""),
        (" \n \n ", ""),
    ],
)
def test_fold_collapses_blank_line_runs_and_strips(raw: str, folded: str) -> None:
    assert fold(raw) == folded
    assert WORLD.fold(raw) == folded
    assert "\n\n" not in fold(raw)


def test_world_persona_prefix_has_system_then_examples() -> None:
    prefix = WORLD.persona_prefix("You are an SQL expert.\n\nBe brief.", [("What is a join?", "It combines\n\nrows.")])
    assert prefix == (
        "System: You are an SQL expert.\nBe brief.\n\n"
        "User: What is a join?\n\n"
        "Assistant: It combines\nrows.\n\n"
    )


def test_world_persona_prefix_without_system_text() -> None:
    assert WORLD.persona_prefix("", []) == ""
    assert WORLD.persona_prefix("  ", [("q", "a")]) == "User: q\n\nAssistant: a\n\n"


def test_raven_persona_prefix_uses_a_plain_paragraph_and_bob_alice() -> None:
    prefix = RAVEN.persona_prefix("The following is a chat.", [("Hi", "Hello!")])
    assert prefix == "The following is a chat.\n\nBob: Hi\n\nAlice: Hello!\n\n"


def test_turn_prompt_folds_user_text_and_ends_with_the_assistant_label() -> None:
    assert WORLD.turn_prompt("line one\n\n\nline two ", needs_boundary=False) == (
        "User: line one\nline two\n\nAssistant:"
    )
    assert RAVEN.turn_prompt("hi", needs_boundary=False) == "Bob: hi\n\nAlice:"


def test_turn_prompt_adds_a_boundary_after_an_unfinished_reply() -> None:
    assert WORLD.turn_prompt("next", needs_boundary=True) == "\n\nUser: next\n\nAssistant:"
    assert RAVEN.turn_prompt("next", needs_boundary=True) == "\n\nBob: next\n\nAlice:"


def test_display_cuts_the_separator_and_the_leading_space() -> None:
    assert WORLD.display(" The answer.\n\n") == "The answer."
    assert WORLD.display(" The answer.\n\nUser: more") == "The answer."
    assert WORLD.display(" cut by length") == "cut by length"
    assert WORLD.display("no space") == "no space"
    assert WORLD.display(" a\nb\n\n") == "a\nb"


def test_formats_share_the_separator_and_labels() -> None:
    assert WORLD.separator == RAVEN.separator == "\n\n"
    assert WORLD.stop == ("\n\n",)
    assert (WORLD.user_label, WORLD.assistant_label) == ("User", "Assistant")
    assert (RAVEN.user_label, RAVEN.assistant_label) == ("Bob", "Alice")
    assert get_format("world") is WORLD and get_format("raven") is RAVEN
