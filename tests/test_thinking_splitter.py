"""ThoughtSplitter: a streamed G1 reply split into reasoning and answer, wherever the pieces break."""

from __future__ import annotations

import pytest

from weprompt_cli.chat.thinking import (
    ANSWER,
    REASONING,
    Piece,
    ThinkMode,
    ThoughtSplitter,
    g1_turn_prompt,
)

THINK = g1_turn_prompt("What is the capital of France?", ThinkMode.ON, needs_boundary=False)  # ends with "<think"
FAST = g1_turn_prompt("What is the capital of France?", ThinkMode.OFF, needs_boundary=False)  # ends with "<think></think"
PLAIN = "User: What is the capital of France?\n\nAssistant:"

# What a G1 model writes after an opened "<think": the `>` that completes the tag, the
# thought between newlines, the closing tag, a newline, the answer, the separator.
THOUGHT_REPLY = ">\nThe user asks for a capital.\nFrance: Paris.\n</think>\nThe capital of France is Paris.\n\n"


def run(prompt: str, pieces: list[str]) -> tuple[ThoughtSplitter, list[Piece]]:
    splitter = ThoughtSplitter(prompt=prompt)
    events: list[Piece] = []
    for piece in pieces:
        events += splitter.feed(piece, tokens=1)
    events += splitter.finish()
    return splitter, events


def joined(events: list[Piece], kind: str) -> str:
    return "".join(e.text for e in events if e.kind == kind)


def assert_consistent(splitter: ThoughtSplitter, events: list[Piece]) -> None:
    """The events tell the same story as the totals, reasoning first."""
    assert joined(events, REASONING) == splitter.reasoning
    assert joined(events, ANSWER) == splitter.answer
    kinds = [e.kind for e in events]
    assert kinds == sorted(kinds, key=lambda k: k != REASONING)  # no reasoning after the answer began
    assert all(e.text for e in events)


def test_thought_then_answer() -> None:
    splitter, events = run(THINK, [THOUGHT_REPLY])
    assert splitter.reasoning == "The user asks for a capital.\nFrance: Paris."
    assert splitter.answer == "The capital of France is Paris."
    assert splitter.opened and splitter.closed and splitter.stopped
    assert events == [Piece(REASONING, splitter.reasoning), Piece(ANSWER, splitter.answer)]


@pytest.mark.parametrize("cut", range(1, len(THOUGHT_REPLY)))
def test_every_split_point_gives_the_same_result(cut: int) -> None:
    splitter, events = run(THINK, [THOUGHT_REPLY[:cut], THOUGHT_REPLY[cut:]])
    assert splitter.reasoning == "The user asks for a capital.\nFrance: Paris."
    assert splitter.answer == "The capital of France is Paris."
    assert_consistent(splitter, events)


@pytest.mark.parametrize("first", range(1, 30))
def test_split_into_three_around_the_closing_tag(first: int) -> None:
    start = THOUGHT_REPLY.index("</think>") - 10
    a, b = start + first // 6, start + 10 + first % 6
    splitter, events = run(THINK, [THOUGHT_REPLY[:a], THOUGHT_REPLY[a:b], THOUGHT_REPLY[b:]])
    assert (splitter.reasoning, splitter.answer) == ("The user asks for a capital.\nFrance: Paris.",
                                                     "The capital of France is Paris.")
    assert_consistent(splitter, events)


def test_one_character_at_a_time() -> None:
    splitter, events = run(THINK, list(THOUGHT_REPLY))
    assert (splitter.reasoning, splitter.answer) == ("The user asks for a capital.\nFrance: Paris.",
                                                     "The capital of France is Paris.")
    assert_consistent(splitter, events)


def test_closing_tag_split_as_in_a_stream() -> None:
    splitter = ThoughtSplitter(prompt=THINK)
    assert splitter.feed(">\nThinking hard") == [Piece(REASONING, "Thinking hard")]
    assert splitter.feed("\n</thi") == []  # could still be the tag: held back
    assert splitter.feed("nk>") == []
    assert splitter.closed and not splitter.thinking
    assert splitter.feed("\nParis.") == [Piece(ANSWER, "Paris.")]
    assert splitter.finish() == []


def test_text_that_only_looks_like_the_tag_is_reasoning() -> None:
    splitter, _ = run(THINK, [">\nA </thin", "g> is not a tag</think>\nok"])
    assert splitter.reasoning == "A </thing> is not a tag"
    assert splitter.answer == "ok"


def test_no_think_block_after_a_plain_prompt() -> None:
    splitter, events = run(PLAIN, [" The capital", " is Paris.", "\n", "\n"])
    assert splitter.reasoning == ""
    assert splitter.answer == "The capital is Paris."
    assert not splitter.opened and splitter.stopped
    assert events == [Piece(ANSWER, "The capital"), Piece(ANSWER, " is Paris.")]


def test_a_plain_prompt_reply_may_open_its_own_thought() -> None:
    splitter, _ = run(PLAIN, [" <th", "ink>\nhmm\n</think>\nParis.\n\n"])
    assert (splitter.reasoning, splitter.answer) == ("hmm", "Paris.")
    assert splitter.opened and splitter.closed


def test_a_reply_starting_like_a_tag_but_not_one_is_answer() -> None:
    splitter, _ = run(PLAIN, [" <thi", "s> is HTML"])
    assert splitter.answer == "<this> is HTML" and splitter.reasoning == ""


def test_fast_mode_reply_is_all_answer() -> None:
    # After "<think></think" the model completes the tag with ">" and answers.
    splitter, events = run(FAST, [">", "\nParis", ".\n\n"])
    assert splitter.reasoning == "" and splitter.answer == "Paris."
    assert splitter.closed and splitter.thought_tokens == 0
    assert events == [Piece(ANSWER, "Paris"), Piece(ANSWER, ".")]


def test_empty_thought() -> None:
    splitter, _ = run(THINK, [">\n</think>\nParis.\n\n"])
    assert (splitter.reasoning, splitter.answer) == ("", "Paris.")
    splitter, _ = run(THINK, ["></think> Paris."])
    assert (splitter.reasoning, splitter.answer) == ("", "Paris.")


def test_unclosed_thought_at_a_length_stop_is_all_reasoning() -> None:
    splitter, events = run(THINK, [">\nStep one.\n", "Step two, and", " then </thi"])
    assert splitter.reasoning == "Step one.\nStep two, and then </thi"
    assert splitter.answer == ""
    assert splitter.opened and not splitter.closed and not splitter.stopped
    assert_consistent(splitter, events)


def test_interrupted_before_anything() -> None:
    splitter, events = run(THINK, [])
    assert (splitter.reasoning, splitter.answer, events) == ("", "", [])


def test_whitespace_between_tags_and_text_is_dropped_inside_kept() -> None:
    reply = ">  \n  First.\n\tSecond.  \n </think>\n  Line one.\nLine two.  \n\n"
    splitter, _ = run(THINK, [reply])
    assert splitter.reasoning == "First.\n\tSecond."
    assert splitter.answer == "Line one.\nLine two."


def test_reading_stops_at_the_separator() -> None:
    splitter, _ = run(THINK, [">\nthink</think>\nanswer\n\nUser: more", " text"])
    assert splitter.answer == "answer" and splitter.stopped
    # A separator inside the thought ends the turn too (generation stops there): all reasoning.
    splitter, _ = run(THINK, [">\nthought\n", "\nrest</think>ok"])
    assert (splitter.reasoning, splitter.answer, splitter.stopped) == ("thought", "", True)


def test_separator_split_across_pieces_in_the_answer() -> None:
    splitter, events = run(FAST, ["> Paris.\n", "\nUser:"])
    assert splitter.answer == "Paris." and splitter.stopped
    assert events == [Piece(ANSWER, "Paris.")]


def test_thought_tokens_count_up_to_the_closing_tag() -> None:
    splitter = ThoughtSplitter(prompt=THINK)
    assert splitter.thinking  # the prompt opened the thought: show the reply dim from its first token
    for piece in [">\n", "Let", " me", " think", "\n</", "think>", "\n", "Paris", "."]:
        splitter.feed(piece, tokens=1)
    splitter.finish()
    assert splitter.thought_tokens == 6  # ">\n" ... "think>": the token that closes the tag counts
    assert splitter.answer == "Paris."


def test_thought_tokens_of_a_thought_the_reply_opened() -> None:
    splitter = ThoughtSplitter(prompt=PLAIN)
    assert not splitter.thinking
    for piece in [" <", "think", ">", "hm", "</think>", " ok"]:
        splitter.feed(piece, tokens=1)
    assert splitter.thought_tokens == 5
    splitter = ThoughtSplitter(prompt=PLAIN)
    for piece in [" <", "b", ">", "bold"]:
        splitter.feed(piece, tokens=1)
    assert splitter.thought_tokens == 0


def test_thinking_flag_follows_the_reply() -> None:
    splitter = ThoughtSplitter(prompt=THINK)
    splitter.feed(">\nhm")
    assert splitter.thinking
    splitter.feed("</think>")
    assert not splitter.thinking


def test_feed_after_finish_is_ignored() -> None:
    splitter, _ = run(FAST, ["> a"])
    assert splitter.feed(" more") == [] and splitter.answer == "a"


@pytest.mark.parametrize(
    ("prompt", "reply"),
    [
        (THINK, THOUGHT_REPLY),
        (THINK, ">\n<think> inside?\n</thin\n</think>\n</think> stays in the answer.\n\n"),
        (THINK, ">\nstill thinking when the limit came  \n"),
        (FAST, ">\n\nnothing"),
        (FAST, "> A\nB  \n\n"),
        (PLAIN, " <think>\nx\n</think>\n y \n\n"),
        (PLAIN, "   plain answer <think> later is text\n\nrest"),
        (PLAIN, " <think"),
    ],
)
def test_random_splits_agree_with_the_whole(prompt: str, reply: str) -> None:
    import random

    whole, _ = run(prompt, [reply])
    rng = random.Random(reply)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(reply)), k=min(len(reply) - 1, rng.randint(1, 6))))
        pieces = [reply[a:b] for a, b in zip([0, *cuts], [*cuts, len(reply)])]
        splitter, events = run(prompt, pieces)
        assert (splitter.reasoning, splitter.answer, splitter.closed) == (whole.reasoning, whole.answer, whole.closed)
        assert_consistent(splitter, events)
