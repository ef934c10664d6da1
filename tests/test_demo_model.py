"""The shipped demo model: package data, persona files, corpus, scoring, and held-out answers."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `training/` is a top-level folder of the checkout, not part of the package
    sys.path.insert(0, str(ROOT))

from training import conds, corpus, projects, sqlgen, sqlkinds, values
from training.corpus import PERSONAS, SMALL_TALK, SMALL_TALK_ANSWERS, documents, persona_prefix
from training.smalltalk import fold
from training.sqleval import FIXED_HELDOUT, NATURAL_HELDOUT, execution_match, extract_sql, result_of
from weprompt_cli.demo import DEMO_MODEL_PATH, DEMO_TOKENIZER_PATH, demo_available


def test_demo_model_is_shipped_as_small_package_data() -> None:
    assert demo_available()
    assert DEMO_TOKENIZER_PATH == DEMO_MODEL_PATH.with_name(DEMO_MODEL_PATH.stem + ".tokenizer.json")
    size = DEMO_MODEL_PATH.stat().st_size + DEMO_TOKENIZER_PATH.stat().st_size
    assert size <= 25 * 1024 * 1024


@pytest.mark.parametrize("name", PERSONAS)
def test_corpus_prefix_is_what_weprompt_chat_feeds(name: str, tmp_path: Path) -> None:
    from weprompt_cli.chat.formats import WORLD
    from weprompt_cli.chat.persona_state import persona_prompt
    from weprompt_cli.personas.loader import load_persona_file

    data = tomllib.loads((ROOT / "personas" / f"{name}.toml").read_text())
    assert data["schema_version"] == 1 and data["name"] == name
    assert 2 <= len(data["examples"]) <= 3
    persona = load_persona_file(ROOT / "personas" / f"{name}.toml")
    prefix = persona_prefix(name)
    assert prefix == persona_prompt(WORLD, persona)  # `weprompt chat --persona NAME --model demo`
    assert "{schema}" not in prefix and prefix.startswith("System: ")
    assert prefix.endswith(f"Assistant: {data['examples'][-1]['assistant'].strip()}\n\n")
    assert prefix.count("\n\n") == 1 + 2 * len(data["examples"])  # no blank line inside any text
    if name == "sql":
        # the demo database fills {schema} with the persona's own text, the words the model learned
        from weprompt_cli.chat.sql_advisor import SqlAdvisor

        with SqlAdvisor.open("demo", cache_dir=tmp_path) as advisor:
            assert persona_prompt(WORLD, advisor.persona(persona)) == prefix  # `--db demo`
        assert "customers(id, name, email, city, created_at), orders(id, customer_id, total, status" in prefix


def test_corpus_is_deterministic_and_in_chat_format() -> None:
    a, b = documents(50, seed=3), documents(50, seed=3)
    assert a == b
    for doc in a:
        assert doc[0].text in {persona_prefix(p) for p in PERSONAS}
        for prompt, reply in zip(doc[1::2], doc[2::2]):
            assert prompt.text.startswith("User: ") and prompt.text.endswith("\n\nAssistant:")
            assert reply.is_reply and reply.text.startswith(" ") and reply.text.endswith("\n\n")
            assert "\n\n" not in reply.text[:-2] and "\n\n" not in prompt.text[:-len("\n\nAssistant:")]


def _frame_sets(*modules: ModuleType) -> dict[str, dict[str, list[str]]]:
    """Every {train, heldout} frame table of the generator modules, by name."""
    out = {}
    for mod in modules:
        for name, value in vars(mod).items():
            if isinstance(value, dict) and set(value) == {"train", "heldout"}:
                out[f"{mod.__name__}.{name}"] = value
    return out


def test_heldout_phrasings_never_appear_in_training_frames() -> None:
    frame_sets = _frame_sets(sqlgen, sqlkinds, projects, corpus)
    assert len(frame_sets) >= 40 and "training.sqlkinds.LOOKUP_FRAMES" in frame_sets
    frame_sets.update({f"JOINS[{i}]": f for i, (f, _) in enumerate(sqlgen.JOINS)})
    frame_sets.update({f"DML[{i}]": f for i, (_, f, _, _, _) in enumerate(sqlgen.DML)})
    frame_sets.update({f"CONCEPTS[{i}]": f for i, (f, _) in enumerate(sqlgen.CONCEPTS)})
    frame_sets.update({f"GENERAL[{i}]": f for i, (f, _) in enumerate(corpus.GENERAL)})
    frame_sets.update({f"SMALL_TALK.{k}": f for k, f in SMALL_TALK.items()})
    for name, frames in frame_sets.items():
        assert frames["heldout"], name
        assert not set(frames["train"]) & set(frames["heldout"]), name
    train_questions = {s.text for doc in documents(400, seed=11) for s in doc[1::2]}
    for q, _ in FIXED_HELDOUT:
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


# ---------------------------------------------------------------------------- the corpus: copying, composition, small talk
def _train_items(n: int, seed: int = 21) -> list[sqlgen.SqlItem]:
    rng = random.Random(seed)
    return [sqlgen.sql_item(rng, "train") for _ in range(n)]


def _said(question: str, literal: str) -> bool:
    """`literal` of the SQL is in the question: as written, or (a number) in words, '70k' or '70,000'."""
    q = question.lower()
    if literal.lower() in q:
        return True
    if literal.isdigit():
        n = int(literal)
        forms = {values.number_words(n), f"{n:,}", f"{n // 1000}k"}
        return any(re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", q) for f in forms)
    return False


def test_training_values_are_copied_from_the_question() -> None:
    checked = 0
    for item in _train_items(3000):
        if item.kind in ("concept", "explain", "index") or not item.sql:
            continue
        sql = item.sql
        for lit in re.findall(r"'([^']*)'", sql):
            if re.fullmatch(r"\d{4}-\d\d-\d\d", lit):
                assert lit in item.question or lit[:4] in item.question, (item.question, sql)
                continue
            if item.kind == "update" and lit in sqlkinds.STATUS_VERBS:  # "Cancel order 12." -> status = 'cancelled'
                continue
            assert _said(item.question, lit.strip("%").removeprefix("@").removeprefix(" ")), (item.question, sql)
            checked += 1
        body = re.sub(r"'[^']*'", "", sql)
        for num in re.findall(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])", body):
            if num in ("1", "0") and ("LIMIT 1" in sql or "stock = 0" in sql):
                continue
            assert _said(item.question, num), (item.question, sql)
            checked += 1
    assert checked > 3000


def test_training_values_come_from_no_fixed_list() -> None:
    cities, names = [], []
    for item in _train_items(4000, seed=3):
        cities += re.findall(r"city = '([^']*)'", item.sql)
        names += re.findall(r"name = '([^']*)'", item.sql)
    made_up = [c for c in cities if c not in sqlgen.CITIES]
    assert len(set(made_up)) > 0.3 * len(cities) > 30
    people = {f"{f} {last}" for f in sqlgen.FIRST for last in sqlgen.LAST}
    assert sum(n not in people for n in names) > 0.5 * len(names) > 50


def test_numbers_are_written_as_digits_and_as_words() -> None:
    worded = [it for it in _train_items(3000, seed=5) if re.search(
        r"\b(two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|thirty|fifty|hundred|thousand)\b", it.question)]
    assert len(worded) > 100
    assert values.number_words(70000) == "seventy thousand" and values.number_words(255) == "two hundred and fifty-five"
    rng = random.Random(1)
    assert values.speak_numbers(rng, "Delete order 12 from 2024-01-05 for 255.50.", 1.0) == \
        "Delete order twelve from 2024-01-05 for 255.50."


def test_conditions_compose_in_every_family() -> None:
    items = _train_items(6000, seed=9)
    by_kind: dict[str, list[str]] = {}
    for it in items:
        by_kind.setdefault(it.kind, []).append(it.sql)
    for kind, share in {"filter": 0.2, "count": 0.2, "aggregate": 0.2, "join": 0.05, "update": 0.03, "delete": 0.1}.items():
        sqls = by_kind[kind]
        assert sum(" AND " in s for s in sqls) > share * len(sqls), kind
    assert sum(" WHERE " in s for s in by_kind["group"]) > 0.2 * len(by_kind["group"])
    for kind in ("filter", "count", "join"):
        assert any(" OR " in s for s in by_kind[kind]), kind
    assert any(re.search(r"\(\w+(\.\w+)? = '[^']*' OR ", s) for s in by_kind["filter"])  # (a OR b) AND c
    assert any("WHERE" in s and "GROUP BY" in s and "HAVING" in s for s in by_kind["group"])
    assert any("GROUP BY" in s and "ORDER BY" in s and "LIMIT 1" in s for s in by_kind["group"])
    assert any("JOIN" in s and "WHERE" in s and "ORDER BY" in s and "LIMIT" in s for s in by_kind["join"])
    assert any("JOIN" in s and "WHERE" in s and "HAVING" in s for s in by_kind["join"])
    for it in items:  # an OR next to another condition is always in parentheses
        where = re.sub(r"BETWEEN \S+ AND \S+", "BETWEEN", it.sql.split(" WHERE ", 1)[-1])
        if " OR " in where and " AND " in where:
            assert "(" in where, it.sql


def test_compound_conditions_keep_or_inside_parentheses() -> None:
    rng = random.Random(2)
    for _ in range(500):
        c = conds.compound(rng, rng.choice(list(conds.TABLE_CONDS)), "train")
        grouped = c.grouped()
        assert result_of(f"SELECT * FROM products WHERE 1 = 0 AND {grouped}")[0] in ("rows", "error")
        if " OR " in c.sql and not c.sql.startswith("("):
            assert grouped == f"({c.sql})"


def test_every_persona_has_small_talk_with_its_own_answers_and_held_out_frames() -> None:
    for persona in PERSONAS:
        assert set(SMALL_TALK_ANSWERS[persona]) == set(SMALL_TALK)
        for answers in SMALL_TALK_ANSWERS[persona].values():
            for a in answers:
                assert "```" not in a and "SELECT" not in a
    assert all("SQL" in a for k in ("greet", "abilities", "identity") for a in SMALL_TALK_ANSWERS["sql"][k])
    assert all("project" in a.lower() for k in ("greet", "abilities", "identity") for a in SMALL_TALK_ANSWERS["project"][k])
    docs = documents(3000, seed=4)
    talk = {fold(q) for frames in SMALL_TALK.values() for q in frames["train"]}
    sql_turns = [(p.text, a.text) for d in docs if d[0].text == persona_prefix("sql") for p, a in zip(d[1::2], d[2::2])]
    small = [(p, a) for p, a in sql_turns if fold(p.removeprefix("User: ").removesuffix("\n\nAssistant:")) in talk]
    assert 0.06 < len(small) / len(sql_turns) < 0.12
    assert all("```" not in a for _, a in small)
    heldout = {q for frames in SMALL_TALK.values() for q in frames["heldout"]}
    assert "Hi, what can you do?" in heldout  # the example stays a blind test
    assert not any(p.removeprefix("User: ").removesuffix("\n\nAssistant:") in heldout for p, _ in sql_turns)


def test_project_plans_name_the_language_and_keep_their_shape() -> None:
    rng = random.Random(6)
    for _ in range(400):
        q, a = projects.project_qa(rng, rng.choice(["train", "heldout"]))
        lines = a.split("\n")
        assert [ln.split(":")[0] for ln in lines] == ["Folders", "Steps", "Tools"], a
        lang = a.split("Tools: ", 1)[1].split(",")[0]
        if any(w in q for w in projects.LANG_WORDS[lang] if len(w) > 2 or w == "Go"):
            continue
        assert not any(w in q.split() for ws in projects.LANG_WORDS.values() for w in ws if w != "go"), (q, a)


def test_generator_draws_again_a_question_of_the_hand_written_set() -> None:
    assert corpus.is_blind("Which category has the most products?")
    assert corpus.is_blind("OK, which category has the most products? Thanks!")
    assert not corpus.is_blind("Which category has the most items?")
