"""The shipped demo model: package data, persona files, corpus, scoring, and held-out answers."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `training/` is a top-level folder of the checkout, not part of the package
    sys.path.insert(0, str(ROOT))

from training import sqlgen
from training.corpus import OFF_TOPIC, PERSONAS, documents, persona_prefix
from training.sqleval import FIXED_HELDOUT, NATURAL_HELDOUT, execution_match, extract_sql, result_of
from weprompt_cli.demo import DEMO_MODEL_PATH, DEMO_TOKENIZER_PATH, demo_available


def test_demo_model_is_shipped_as_small_package_data() -> None:
    assert demo_available()
    assert DEMO_TOKENIZER_PATH == DEMO_MODEL_PATH.with_name(DEMO_MODEL_PATH.stem + ".tokenizer.json")
    size = DEMO_MODEL_PATH.stat().st_size + DEMO_TOKENIZER_PATH.stat().st_size
    assert size <= 25 * 1024 * 1024


@pytest.mark.parametrize("name", PERSONAS)
def test_builtin_persona_files_feed_the_corpus(name: str) -> None:
    data = tomllib.loads((ROOT / "personas" / f"{name}.toml").read_text())
    assert data["schema_version"] == 1 and data["name"] == name
    assert 2 <= len(data["examples"]) <= 3
    prefix = persona_prefix(name)
    assert prefix.startswith(f"System: {data['system'].strip()}\n\n")
    assert prefix.endswith(f"Assistant: {data['examples'][-1]['assistant'].strip()}\n\n")
    assert prefix.count("\n\n") == 1 + 2 * len(data["examples"])  # no blank line inside any text


def test_corpus_is_deterministic_and_in_chat_format() -> None:
    a, b = documents(50, seed=3), documents(50, seed=3)
    assert a == b
    for doc in a:
        assert doc[0].text in {persona_prefix(p) for p in PERSONAS}
        for prompt, reply in zip(doc[1::2], doc[2::2]):
            assert prompt.text.startswith("User: ") and prompt.text.endswith("\n\nAssistant:")
            assert reply.is_reply and reply.text.startswith(" ") and reply.text.endswith("\n\n")
            assert "\n\n" not in reply.text[:-2] and "\n\n" not in prompt.text[:-len("\n\nAssistant:")]


def test_heldout_phrasings_never_appear_in_training_frames() -> None:
    frame_sets = [sqlgen.FILTER_FRAMES, sqlgen.AGG_FRAMES, sqlgen.COUNT_FRAMES, sqlgen.GROUP_FRAMES,
                  sqlgen.HAVING_FRAMES, sqlgen.TOP_FRAMES, sqlgen.TOP_ONE_FRAMES, sqlgen.INDEX_FRAMES, sqlgen.EXPLAIN_FRAMES, OFF_TOPIC,
                  sqlgen.ROWS_FRAMES, sqlgen.WHICH_FRAMES, sqlgen.AGG_BARE_FRAMES, sqlgen.COUNT_VERB_FRAMES]
    frame_sets += [f for f, _ in sqlgen.JOINS] + [f for _, f, _, _, _ in sqlgen.DML] + [f for f, _ in sqlgen.CONCEPTS]
    for frames in frame_sets:
        assert not set(frames["train"]) & set(frames["heldout"])
    train_questions = {s.text for doc in documents(400, seed=11) for s in doc[1::2]}
    for q, _ in FIXED_HELDOUT + NATURAL_HELDOUT:
        assert f"User: {q}\n\nAssistant:" not in train_questions


def test_training_frames_are_composed_but_heldout_questions_stay_plain() -> None:
    frames = sqlgen._frames(["Show", "List"], ["{x}.", "all {x}."], ["Which {x}?"], ["List all {x}.", "Return {x}."])
    assert frames == {"train": ["List {x}.", "Show all {x}.", "Show {x}.", "Which {x}?"],
                      "heldout": ["List all {x}.", "Return {x}."]}
    rng = random.Random(4)
    train = [sqlgen.sql_item(rng, "train").question for _ in range(600)]
    heldout = [sqlgen.sql_item(rng, "heldout").question for _ in range(600)]
    chatty = tuple(sqlgen.LEAD_INS), tuple(sqlgen.SIGN_OFFS)
    assert any(q.startswith(chatty[0]) for q in train) and any(q.endswith(chatty[1]) for q in train)
    assert not any(q.startswith(chatty[0]) or q.endswith(chatty[1]) for q in heldout)


def test_generated_reference_sql_runs_on_the_demo_database() -> None:
    rng = random.Random(0)
    for _ in range(300):
        item = sqlgen.sql_item(rng, rng.choice(["train", "heldout"]))
        if item.sql:
            assert result_of(item.sql)[0] != "error", item.sql
    for _, ref in FIXED_HELDOUT + NATURAL_HELDOUT:
        kind, rows = result_of(ref)
        assert kind in ("rows", "tables") and rows, ref  # every fixed question has a non-empty answer


def test_execution_match_compares_results_not_text() -> None:
    ref = "SELECT name FROM customers WHERE city = 'Paris';"
    assert execution_match("select name from customers where city='Paris'", ref)
    assert not execution_match("SELECT name FROM customers WHERE city = 'Rome';", ref)
    assert not execution_match("SELECT nme FROM customers;", ref)
    assert not execution_match(None, ref)
    assert execution_match("DELETE FROM orders WHERE 'cancelled' = status", "DELETE FROM orders WHERE status = 'cancelled';")
    answer = " ```sql\nSELECT COUNT(*) FROM orders;\n```\nCOUNT(*) counts the rows."
    assert extract_sql(answer) == "SELECT COUNT(*) FROM orders;"


@pytest.mark.slow
def test_shipped_model_answers_heldout_sql_and_ends_its_turns() -> None:
    from training.evaluate import evaluate

    rep = evaluate(DEMO_MODEL_PATH, n_generated=0, n_other=4, max_tokens=160)
    assert rep.fixed_match >= 8, rep.failures
    assert rep.turn_end / rep.turn_total >= 0.95, rep
    assert rep.gen_tokens > 0
