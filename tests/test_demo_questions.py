"""The hand-written question set of the demo model (`tests/data/demo_questions.json`) and its rules.

The 120 questions (sql 80, project 20, general 20, plus 10 small-talk turns to the sql persona)
were written in everyday phrasing before the corpus generator was extended, by hand, from no
frame or vocabulary list of the generator. They are a blind test: the generator is never tuned
on one of their misses (misses are reported by kind only), and no training document holds one.

Scoring: a sql question matches when the answer's SQL gives the result of any of its references
on the seeded demo database (the alternatives differ in column choice only). The other personas'
questions are scored by `check_reply` below: the rules are written here, in the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `training/` is a top-level folder of the checkout, not part of the package
    sys.path.insert(0, str(ROOT))

QUESTIONS_PATH = ROOT / "tests" / "data" / "demo_questions.json"

# The bar the shipped demo model must clear on this set (issue 21).
MUST = {"sql": 68, "project": 18, "general": 18, "sql_chat": 8}  # of 80, 20, 20, 10
TURN_END_MIN = 0.95

_SQL_LINE = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|WITH)\b", re.IGNORECASE | re.MULTILINE)
_PLAN_LABELS = ("Folders", "Steps", "Tools")


@lru_cache(maxsize=1)
def load_questions() -> dict[str, Any]:
    """The question set: {'sql': [...], 'sql_chat': [...], 'project': [...], 'general': [...]}."""
    return json.loads(QUESTIONS_PATH.read_text(encoding="utf-8"))


def has_sql(text: str) -> bool:
    """True when a reply holds SQL: a sql code block or a line that starts with a SQL verb."""
    return "```sql" in text.lower() or bool(_SQL_LINE.search(text))


def is_plan(text: str) -> bool:
    """True when a reply has the project persona's structure: Folders, Steps and Tools lines."""
    return all(re.search(rf"^{label}:", text, re.MULTILINE) for label in _PLAN_LABELS)


def mentions(text: str, word: str) -> bool:
    """`word` occurs in `text` as a whole word (or phrase), ignoring case."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def check_reply(item: dict[str, Any], text: str) -> str | None:
    """None when a reply to a project/general/sql_chat question follows its rule, else why it does not.

    plan: no SQL, Folders/Steps/Tools lines, and every word of `all` (the language asked for).
    chat: no SQL, no plan, and (when `any` is given) at least one of its words: on topic.
    """
    if has_sql(text):
        return "SQL where none belongs"
    if item["expect"] == "plan":
        if not is_plan(text):
            return "not a Folders/Steps/Tools plan"
        missing = [w for w in item.get("all", []) if not mentions(text, w)]
        return f"plan without {', '.join(missing)}" if missing else None
    if any(re.search(rf"^{label}:", text, re.MULTILINE) for label in _PLAN_LABELS):
        return "a plan where none belongs"
    words = item.get("any", [])
    if words and not any(mentions(text, w) for w in words):
        return f"mentions none of {words}"
    return None


def _norm(question: str) -> str:
    """Case, spacing and final punctuation folded, for comparing questions."""
    return re.sub(r"\s+", " ", question.lower()).strip().rstrip(".?!")


# ---------------------------------------------------------------------------------------------- the set
def test_the_set_has_80_sql_20_project_and_20_general_questions() -> None:
    qs = load_questions()
    assert [len(qs[k]) for k in ("sql", "project", "general", "sql_chat")] == [80, 20, 20, 10]
    ids = [x["id"] for k in ("sql", "project", "general", "sql_chat") for x in qs[k]]
    assert len(ids) == len(set(ids))
    texts = [_norm(x["question"]) for k in ("sql", "project", "general", "sql_chat") for x in qs[k]]
    assert len(texts) == len(set(texts))


def test_every_reference_runs_and_gives_a_non_empty_answer() -> None:
    from training.sqleval import result_of

    unchanged = result_of("UPDATE customers SET id = id WHERE 0")
    for item in load_questions()["sql"]:
        assert item["sql"], item
        for ref in item["sql"]:
            kind, value = result_of(ref)
            assert kind != "error", (item["id"], ref, value)
            if kind == "rows":
                assert value and value != [(None,)], (item["id"], ref)
            elif kind == "tables":
                assert (kind, value) != unchanged, (item["id"], ref)  # a change that changes something


def test_no_hand_written_question_occurs_in_the_training_documents() -> None:
    from training.corpus import documents
    from training.train import build_parser

    args = build_parser().parse_args([])
    docs = documents(args.steps * args.batch, seed=args.seed, split="train")
    prompts = {_norm(seg.text.removeprefix("User: ").removesuffix("\n\nAssistant:"))
               for doc in docs for seg in doc[1::2]}
    qs = load_questions()
    found = []
    for item in (x for k in ("sql", "project", "general", "sql_chat") for x in qs[k]):
        q = _norm(item["question"])
        # the same question, or (for 4 words or more) the question inside a longer training prompt
        if q in prompts or (len(q.split()) >= 4 and any(q in p for p in prompts)):
            found.append(item["id"])
    assert not found, found


# ---------------------------------------------------------------------------------------------- the rules
def test_rules_accept_a_plan_and_reject_sql_and_off_topic_replies() -> None:
    plan = {"expect": "plan", "all": ["Go"]}
    good = "Folders: cmd/ and internal/, tests/, docs/.\nSteps: 1. Do it.\nTools: Go, Cobra, go test, golangci-lint."
    assert check_reply(plan, good) is None
    assert check_reply(plan, good.replace("Go,", "Rust,").replace("go test", "cargo test")) == "plan without Go"
    assert check_reply(plan, "```sql\nSELECT * FROM customers;\n```\nThis reads.") == "SQL where none belongs"
    assert check_reply(plan, "I only plan software projects.") == "not a Folders/Steps/Tools plan"
    chat = {"expect": "chat", "any": ["project", "plan"]}
    assert check_reply(chat, "I only plan software projects. Tell me what app you want to build.") is None
    assert check_reply(chat, good) == "a plan where none belongs"
    assert check_reply(chat, "SELECT name FROM customers;") == "SQL where none belongs"
    assert check_reply(chat, "Canberra is the capital.") == "mentions none of ['project', 'plan']"
    assert check_reply({"expect": "chat", "any": ["hi"]}, "This is it.") is not None  # whole words only
    assert check_reply({"expect": "chat", "any": []}, "You are welcome!") is None


# ---------------------------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def shipped_report() -> Any:
    from training.evaluate import evaluate_hand_written
    from weprompt_cli.demo import DEMO_MODEL_PATH

    return evaluate_hand_written(DEMO_MODEL_PATH)


# The sets whose bar the shipped model does not reach yet (issue 21 stays open for them): strict, so a model
# that reaches one makes its test fail until the mark goes. Scores of the shipped weights in models/README.md.
NOT_YET = {
    "sql_chat": "issue 21: the shipped model scores 7/10 on sql small talk (three answered with SQL where none belongs)",
}


@pytest.mark.slow
@pytest.mark.parametrize("key", [
    pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=NOT_YET[k])) if k in NOT_YET else k for k in MUST
])
def test_shipped_model_meets_the_hand_written_bar(shipped_report: Any, key: str) -> None:
    hit, total = shipped_report.scores[key]
    misses = [m["id"] for m in shipped_report.misses if m["set"] == key]
    assert hit >= MUST[key], (key, hit, total, misses)


@pytest.mark.slow
def test_shipped_model_ends_its_turns(shipped_report: Any) -> None:
    assert shipped_report.turn_end / shipped_report.turn_total >= TURN_END_MIN, (shipped_report.turn_end, shipped_report.turn_total)


@pytest.mark.slow
def test_weprompt_chat_gives_the_answers_that_were_scored(tmp_path: Path) -> None:
    """The scores come from `training.demo_run` (the training corpus's prefix, greedy); `weprompt chat -m` with the
    app's own prefix ({schema} filled for the demo database) must give the same answers, word for word."""
    from training.evaluate import ask
    from weprompt_cli.demo import DEMO_MODEL_PATH

    qs = load_questions()
    picks = [("sql", qs["sql"][i]["question"]) for i in (0, 22, 45, 70)]
    picks += [("sql", qs["sql_chat"][1]["question"]), ("project", qs["project"][1]["question"]),
              ("project", qs["project"][17]["question"]), ("general", qs["general"][4]["question"])]
    expected = ask(DEMO_MODEL_PATH, [{"persona": p, "question": q} for p, q in picks])["results"]
    env = {**os.environ, "WEPROMPT_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    for (persona, question), want in zip(picks, expected):
        proc = subprocess.run([sys.executable, "-m", "weprompt_cli", "chat", "--persona", persona, "--model", "demo",
                               "-t", "0", "-m", question], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == want["text"].strip(), (persona, question)
