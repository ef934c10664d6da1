"""Held-out evaluation of the demo model: execution match, turn-end rate, tokens/s.

The model runs in a child process (`training.demo_run`), so this module never imports `rwkv`.
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.corpus import turn
from training.sqleval import FIXED_HELDOUT, NATURAL_HELDOUT, execution_match, extract_sql, heldout_sql_items

ROOT = Path(__file__).resolve().parent.parent
RULES_PATH = ROOT / "tests" / "test_demo_questions.py"  # the hand-written set's loader and rules
HAND_SETS = ("sql", "sql_chat", "project", "general")
HAND_PERSONA = {"sql": "sql", "sql_chat": "sql", "project": "project", "general": "general"}


def ask(model: Path, items: list[dict[str, str]], max_tokens: int = 200, timeout: float = 600) -> dict[str, Any]:
    """Greedy answers of the model for [{'persona', 'question'}, ...] (JSON from `training.demo_run`)."""
    proc = subprocess.run([sys.executable, "-m", "training.demo_run", "--model", str(model),
                           "--max-tokens", str(max_tokens)], input=json.dumps({"items": items}), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"demo_run failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def other_heldout_prompts(n_per_persona: int = 4, seed: int = 5) -> list[dict[str, str]]:
    """Held-out questions for the project and general personas and off-topic ones (turn-end check)."""
    rng = random.Random(seed)
    out = []
    for persona in ("project", "general", "sql"):
        for _ in range(n_per_persona):
            q, _ = turn(rng, persona, "heldout")
            out.append({"persona": persona, "question": q})
    return out


@dataclass
class Report:
    fixed_match: int
    fixed_total: int
    heldout_match: int
    heldout_total: int
    turn_end: int
    turn_total: int
    gen_tokens: int
    gen_seconds: float
    failures: list[dict[str, str]]
    by_kind: dict[str, tuple[int, int]]  # question kind -> (matched, asked)

    @property
    def tokens_per_s(self) -> float:
        return self.gen_tokens / self.gen_seconds if self.gen_seconds else 0.0


def evaluate(model: Path, n_generated: int = 0, n_other: int = 4, max_tokens: int = 200,
             with_natural: bool = False) -> Report:
    """Run the fixed held-out SQL questions, n_generated more held-out SQL questions, optionally the plain
    questions of `NATURAL_HELDOUT`, and other personas' prompts."""
    gen = heldout_sql_items(n_generated) if n_generated else []
    natural = NATURAL_HELDOUT if with_natural else []
    sql_qs = [(q, ref) for q, ref in FIXED_HELDOUT] + [(it.question, it.sql) for it in gen] + natural
    kinds = ["fixed"] * len(FIXED_HELDOUT) + [it.kind for it in gen] + ["natural"] * len(natural)
    items = [{"persona": "sql", "question": q} for q, _ in sql_qs] + other_heldout_prompts(n_other)
    res = ask(model, items, max_tokens)["results"]
    matches = [execution_match(extract_sql(r["text"]), ref) for (_, ref), r in zip(sql_qs, res)]
    failures = [{"question": q, "reference": ref, "answer": r["text"]}
                for (q, ref), r, ok in zip(sql_qs, res, matches) if not ok]
    nf = len(FIXED_HELDOUT)
    by_kind: dict[str, tuple[int, int]] = {}
    for kind, ok in zip(kinds, matches):
        hit, total = by_kind.get(kind, (0, 0))
        by_kind[kind] = (hit + ok, total + 1)
    n_heldout = nf + len(gen)  # the natural questions are scored apart (by_kind["natural"])
    return Report(fixed_match=sum(matches[:nf]), fixed_total=nf, heldout_match=sum(matches[:n_heldout]),
                  heldout_total=n_heldout, turn_end=sum(r["ended"] for r in res), turn_total=len(res),
                  gen_tokens=sum(r["tokens"] for r in res), gen_seconds=sum(r["seconds"] for r in res),
                  failures=failures, by_kind=by_kind)


def hand_rules() -> Any:
    """The module of the hand-written set's rules (`tests/test_demo_questions.py`): load_questions, check_reply."""
    spec = importlib.util.spec_from_file_location("demo_question_rules", RULES_PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@dataclass
class HandReport:
    scores: dict[str, tuple[int, int]]  # set (sql, sql_chat, project, general) -> (passed, asked)
    by_kind: dict[str, tuple[int, int]]  # sql question kind -> (matched, asked)
    turn_end: int
    turn_total: int
    gen_tokens: int
    gen_seconds: float
    misses: list[dict[str, str]]  # set, id, kind, question, answer, why

    @property
    def tokens_per_s(self) -> float:
        return self.gen_tokens / self.gen_seconds if self.gen_seconds else 0.0


def sql_matches_any(answer: str, refs: list[str]) -> bool:
    """True when the answer's SQL gives the result of one of the references (they differ in columns only)."""
    sql = extract_sql(answer)
    return any(execution_match(sql, ref) for ref in refs)


def evaluate_hand_written(model: Path, max_tokens: int = 200) -> HandReport:
    """Greedy answers to the hand-written set (tests/data/demo_questions.json), scored: sql by execution match
    against any reference, the other sets by the rules of tests/test_demo_questions.py."""
    rules = hand_rules()
    qs = rules.load_questions()
    entries = [(name, x) for name in HAND_SETS for x in qs[name]]
    items = [{"persona": HAND_PERSONA[name], "question": x["question"]} for name, x in entries]
    res = ask(model, items, max_tokens)["results"]
    scores = {name: (0, 0) for name in HAND_SETS}
    by_kind: dict[str, tuple[int, int]] = {}
    misses = []
    for (name, x), r in zip(entries, res):
        if name == "sql":
            why = None if sql_matches_any(r["text"], x["sql"]) else "no execution match"
            hit, n = by_kind.get(x["kind"], (0, 0))
            by_kind[x["kind"]] = (hit + (why is None), n + 1)
        else:
            why = rules.check_reply(x, r["text"])
        hit, n = scores[name]
        scores[name] = (hit + (why is None), n + 1)
        if why is not None:
            misses.append({"set": name, "id": x["id"], "kind": x.get("kind", x.get("expect", "")),
                           "question": x["question"], "answer": r["text"], "why": why})
    return HandReport(scores=scores, by_kind=by_kind, turn_end=sum(r["ended"] for r in res), turn_total=len(res),
                      gen_tokens=sum(r["tokens"] for r in res), gen_seconds=sum(r["seconds"] for r in res),
                      misses=misses)


FROZEN_V1 = ROOT / "tests" / "data" / "demo_heldout_v1.json"  # the previous generator's 600 held-out questions


def evaluate_frozen(model: Path, n: int = 200, max_tokens: int = 200, path: Path = FROZEN_V1) -> Report:
    """The first n questions of a frozen held-out set (the shipped model before issue 21: 185 of the first 200)."""
    qs = json.loads(path.read_text(encoding="utf-8"))["questions"][:n]
    res = ask(model, [{"persona": "sql", "question": x["question"]} for x in qs], max_tokens)["results"]
    matches = [execution_match(extract_sql(r["text"]), x["sql"]) for x, r in zip(qs, res)]
    by_kind: dict[str, tuple[int, int]] = {}
    for x, ok in zip(qs, matches):
        hit, total = by_kind.get(x["kind"], (0, 0))
        by_kind[x["kind"]] = (hit + ok, total + 1)
    nf = sum(x["kind"] == "fixed" for x in qs)
    return Report(fixed_match=sum(m for x, m in zip(qs, matches) if x["kind"] == "fixed"), fixed_total=nf,
                  heldout_match=sum(matches), heldout_total=len(qs), turn_end=sum(r["ended"] for r in res),
                  turn_total=len(res), gen_tokens=sum(r["tokens"] for r in res),
                  gen_seconds=sum(r["seconds"] for r in res),
                  failures=[{"question": x["question"], "reference": x["sql"], "answer": r["text"]}
                            for x, r, ok in zip(qs, res, matches) if not ok], by_kind=by_kind)
