"""ChatSession on a real (tiny, random) RWKV-7 model: turns, checkpoints, resume, undo, retry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from checkpoints import tiny_model

from weprompt_cli.paths import resolve_home
from weprompt_cli.chat.formats import WORLD, chat_format_for

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from weprompt_cli.engine import load_engine

    path = tiny_model("v7", tmp_path_factory.getbasetemp() / "tiny-models")
    return load_engine(path, "cpu fp32")


@pytest.fixture
def store(weprompt_home: Path) -> Any:
    from weprompt_cli.paths import resolve_home
    from weprompt_cli.store import SessionStore

    return SessionStore(resolve_home())


@pytest.fixture
def persona() -> Any:
    from weprompt_cli.personas import find_persona

    return find_persona("sql", home=resolve_home())


def greedy(max_tokens: int = 12) -> Any:
    from weprompt_cli.engine import SamplingParams

    return SamplingParams(temperature=0.0, top_p=1.0, presence_penalty=0.0, frequency_penalty=0.0, max_tokens=max_tokens)


def assert_same_state(a: list[Any], b: list[Any], tol: float = 1e-4) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.allclose(x.float(), y.float(), atol=tol, rtol=0), float((x.float() - y.float()).abs().max())


def feed_all(engine: Any, ids: list[int]) -> list[Any]:
    state = engine.zero_state()
    engine.feed(ids, state)
    return state


def test_state_after_turns_equals_feeding_the_recorded_tokens_in_one_go(engine, store, persona) -> None:
    from weprompt_cli.chat.persona_state import persona_prompt
    from weprompt_cli.chat.session import ChatSession

    with ChatSession.start(engine, store, persona, greedy()) as chat:
        for text in ["list all customers", "now only those in Paris", "thanks"]:
            chat.send(text).text()
        ids = engine.tokenizer.encode(persona_prompt(chat_format_for(engine.info, engine.tokenizer), persona))
        for turn in chat.turns:
            ids += turn.prompt_tokens + turn.reply_tokens
        assert_same_state(chat.state, feed_all(engine, ids))


def test_resume_restores_the_checkpoint_and_answers_like_an_uninterrupted_session(engine, store, persona) -> None:
    from weprompt_cli.chat.session import ChatSession

    messages = ["how many orders are there", "and the average total", "group them by status"]
    with ChatSession.start(engine, store, persona, greedy(), name="straight") as chat:
        answers = [chat.send(m).text() for m in messages]
        final_state = [t.clone() for t in chat.state]

    with ChatSession.start(engine, store, persona, greedy(), name="resumed") as chat:
        first = [chat.send(m).text() for m in messages[:2]]
    opened = store.open("resumed")
    fed: list[int] = []
    original_feed = engine.feed

    def counting_feed(tokens: list[int], state: Any, **kw: Any) -> Any:
        fed.extend(tokens)
        return original_feed(tokens, state, **kw)

    engine.feed = counting_feed  # a spy on the real model, to prove resume replays nothing
    try:
        chat = ChatSession.resume(engine, store, opened, persona, greedy())
        assert fed == [], "resuming must not re-read the history through the model"
        third = chat.send(messages[2]).text()
    finally:
        engine.feed = original_feed
    with chat:
        assert first + [third] == answers
        assert_same_state(chat.state, final_state)
        assert [t.index for t in chat.turns] == [1, 2, 3]


def test_a_cached_persona_starts_without_feeding_its_prompt(engine, store, persona) -> None:
    from weprompt_cli.chat.persona_state import persona_prompt, persona_state

    cache = store.home.cache
    state1, n1, cached1 = persona_state(engine, chat_format_for(engine.info, engine.tokenizer), persona, cache)
    fed: list[int] = []
    original_feed = engine.feed
    engine.feed = lambda tokens, state, **kw: (fed.extend(tokens), original_feed(tokens, state, **kw))[1]
    try:
        state2, n2, cached2 = persona_state(engine, chat_format_for(engine.info, engine.tokenizer), persona, cache)
    finally:
        engine.feed = original_feed
    assert (cached1, cached2) == (False, True)
    assert fed == []
    assert n1 == n2 == len(engine.tokenizer.encode(persona_prompt(chat_format_for(engine.info, engine.tokenizer), persona)))
    fresh = feed_all(engine, engine.tokenizer.encode(persona_prompt(chat_format_for(engine.info, engine.tokenizer), persona)))
    assert_same_state(state2, fresh)


def test_editing_the_persona_changes_the_cached_state(engine, store, persona) -> None:
    import dataclasses

    from weprompt_cli.chat.persona_state import cache_path

    edited = dataclasses.replace(persona, system=persona.system + " Be brief.")
    assert cache_path(store.home.cache, engine, WORLD, edited) != cache_path(store.home.cache, engine, WORLD, persona)


def test_retry_answers_again_from_the_state_before_the_last_turn(engine, store, persona) -> None:
    from weprompt_cli.chat.session import ChatSession

    with ChatSession.start(engine, store, persona, greedy()) as chat:
        chat.send("show products under 10 dollars").text()
        before = [t.clone() for t in chat.state]
        answer = chat.send("sort them by price").text()
        after = [t.clone() for t in chat.state]
        again = chat.retry().text()
        assert again == answer  # greedy: same state, same answer
        assert_same_state(chat.state, after)
        assert len(chat.turns) == 2
        dropped = chat.undo()
        assert dropped is not None and dropped.user == "sort them by price"
        assert_same_state(chat.state, before)
        assert len(chat.turns) == 1 and len(chat.opened.turns()) == 1


def test_undo_then_resume_continues_from_the_kept_turns(engine, store, persona) -> None:
    from weprompt_cli.chat.session import ChatSession

    with ChatSession.start(engine, store, persona, greedy(), name="undo") as chat:
        chat.send("one").text()
        state_after_one = [t.clone() for t in chat.state]
        chat.send("two").text()
        chat.undo()
    opened = store.open("undo")
    with ChatSession.resume(engine, store, opened, persona, greedy()) as chat:
        assert [t.user for t in chat.turns] == ["one"]
        assert_same_state(chat.state, state_after_one)


def test_an_interrupted_turn_is_kept_and_the_next_turn_marks_the_boundary(engine, store, persona) -> None:
    from weprompt_cli.chat.persona_state import persona_prompt
    from weprompt_cli.chat.session import ChatSession

    with ChatSession.start(engine, store, persona, greedy(max_tokens=50)) as chat:
        pieces = 0

        def cancel() -> bool:
            return pieces >= 3

        reply = chat.send("write a long report", cancel=cancel)
        for _ in reply:
            pieces += 1
        assert reply.turn is not None and reply.turn.stop_reason == "interrupted"
        assert 0 < len(reply.turn.reply_tokens) < 50
        chat.send("continue").text()
        assert chat.turns[1].prompt_text.startswith("\n\n")
        ids = engine.tokenizer.encode(persona_prompt(chat_format_for(engine.info, engine.tokenizer), persona))
        for turn in chat.turns:
            ids += turn.prompt_tokens + turn.reply_tokens
        assert_same_state(chat.state, feed_all(engine, ids))


def test_cancel_during_prefill_records_nothing_and_keeps_the_state(engine, store, persona) -> None:
    from weprompt_cli.chat.session import ChatSession

    with ChatSession.start(engine, store, persona, greedy()) as chat:
        chat.send("hello").text()
        before = [t.clone() for t in chat.state]
        reply = chat.send("a long message " * 200, cancel=lambda: True)
        assert list(reply) == []
        assert reply.turn is None
        assert len(chat.turns) == 1
        assert_same_state(chat.state, before)


@pytest.mark.parametrize("damage", ["truncate", "delete_states_dir", "garbage"])
def test_resume_rebuilds_a_damaged_checkpoint_with_a_warning(engine, store, persona, damage: str) -> None:
    import shutil

    from weprompt_cli.chat.session import ChatSession

    with ChatSession.start(engine, store, persona, greedy(), name="hurt") as chat:
        for m in ["first", "second"]:
            chat.send(m).text()
        expected = [t.clone() for t in chat.state]
        states = chat.opened.states_dir
    last = states / "000002.safetensors"
    if damage == "truncate":
        last.write_bytes(last.read_bytes()[:100])
    elif damage == "garbage":
        last.write_bytes(b"not a safetensors file at all")
    else:
        shutil.rmtree(states)
    warnings: list[str] = []
    with ChatSession.resume(engine, store, store.open("hurt"), persona, greedy(), notify=warnings.append) as chat:
        assert_same_state(chat.state, expected)
        assert len(warnings) == 1 and "replaying" in warnings[0]
    # The rebuilt checkpoint is good again: a second resume is silent.
    warnings.clear()
    with ChatSession.resume(engine, store, store.open("hurt"), persona, greedy(), notify=warnings.append):
        assert warnings == []


def test_resume_with_another_model_is_refused_unless_rebuilt(engine, store, persona, tmp_path: Path) -> None:
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.engine import load_engine
    from weprompt_cli.errors import WePromptError

    with ChatSession.start(engine, store, persona, greedy(), name="moved") as chat:
        chat.send("hi").text()
    other = load_engine(tiny_model("v7", tmp_path, seed=7), "cpu fp32")
    with pytest.raises(WePromptError, match="another model"):
        ChatSession.resume(other, store, store.open("moved"), persona, greedy())
    warnings: list[str] = []
    with ChatSession.resume(other, store, store.open("moved"), persona, greedy(), rebuild=True,
                            notify=warnings.append) as chat:
        assert chat.opened.meta.model.fingerprint == other.fingerprint
        assert len(chat.turns) == 1
        assert warnings and "--rebuild" in warnings[0]
