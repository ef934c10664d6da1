"""Deterministic, seeded generator of chat transcripts in WePrompt's chat format.

A document is the real persona prefix (read from `personas/*.toml`) followed by a few turns:

    System: {system}\\n\\n  User: {q}\\n\\nAssistant: {a}\\n\\n (examples)  then per turn the same.

It is produced as segments exactly as the app feeds them (the prefix, each `User: ...\\n\\nAssistant:`
prompt, each ` answer\\n\\n` reply), so tokenizing segment by segment matches inference.
Run `python -m training.corpus --show 5` to print a few documents.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from training.general import GENERAL, general_qa  # noqa: F401 (GENERAL: the general persona's frame tables)
from training.projects import project_qa
from training.smalltalk import SMALL_TALK, SMALL_TALK_ANSWERS, small_talk  # noqa: F401 (re-exported for tests)
from training.sqlgen import render_answer, sql_item

ROOT = Path(__file__).resolve().parent.parent
PERSONA_DIR = ROOT / "personas"
PERSONAS = ("sql", "project", "general")
PERSONA_WEIGHTS = (0.76, 0.12, 0.12)


def fold(text: str) -> str:
    """The app's folding (`weprompt_cli.chat.formats.fold`): CRLF to LF, blank-line runs to one newline, stripped."""
    from weprompt_cli.chat.formats import fold as app_fold

    return app_fold(text)


def persona_prefix(name: str, persona_dir: Path = PERSONA_DIR) -> str:
    """The text the app feeds before the first turn of `weprompt chat --persona NAME --model demo`.

    The app's own code builds it: the persona file loaded and validated by the app's loader, a
    `{schema}` placeholder filled as the app fills it for the demo database (the file's `schema`
    text, see `weprompt_cli.chat.sql_advisor.SqlAdvisor.prompt_schema`), then the World format's
    `System: ...` paragraph and example exchanges (`weprompt_cli.chat.persona_state.persona_prompt`).
    """
    from weprompt_cli.chat.formats import WORLD
    from weprompt_cli.chat.persona_state import persona_prompt
    from weprompt_cli.personas.loader import load_persona_file

    persona = load_persona_file(persona_dir / f"{name}.toml")
    if hasattr(persona, "with_schema"):  # a persona whose system prompt takes the database schema
        persona = persona.with_schema(getattr(persona, "schema", None))
    return persona_prompt(WORLD, persona)


@dataclass(frozen=True)
class Segment:
    text: str
    is_reply: bool  # assistant text (the part the loss is taken on)


# ---- off-topic ------------------------------------------------------------------------------------------
OFF_TOPIC = {
    "train": ["What is the capital of France?", "Write a poem about the sea.", "Who won the football match yesterday?",
              "What should I cook for dinner?", "Tell me a joke.", "What's the weather like today?",
              "Translate good morning into Spanish.", "How tall is Mount Everest?", "Recommend a good movie.",
              "What is the meaning of life?", "Can you help me with my homework on history?",
              "Who was the first person on the moon?", "Write me a love letter.", "What time is it in Tokyo?",
              "Give me a recipe for pancakes.", "Which car should I buy?", "Sing me a song.",
              "Who is the president of the United States?", "How do I bake bread?", "Recommend a book to read.",
              "What is 12 plus 30?", "Can you speak French?", "Tell me something interesting.",
              "What's your favourite colour?", "How old is the universe?", "Write a short story about a cat.",
              "Which phone should I get?", "How do I lose weight?", "Play a game with me.", "Do you like music?",
              "Where should I go on holiday?", "How do I fix my wifi?", "Give me some life advice.",
              "Explain quantum physics.", "Who painted the Mona Lisa?", "How far away is the moon?",
              "Convert 10 miles to kilometres.", "Write a limerick about a frog.", "Is it going to rain tomorrow?",
              "Suggest a name for my dog.", "What's the best pizza in town?", "How many legs does a spider have?",
              "Can you book me a flight?", "What is the population of Brazil?", "Tell me the news.",
              "Why is the sky blue?", "Compose a song about summer.", "How do I tie a tie?"],
    "heldout": ["What is the best pizza topping in your opinion?", "Summarise the news for me.",
                "How do I fix a flat bicycle tyre?", "Tell me a story about a dragon.",
                "What's a good name for a cat?", "How long should I boil an egg?"],
}
REDIRECT = {
    "sql": ["I can only help with SQL for the shop database. Ask me about customers, orders, products, order items "
            "or employees.",
            "That is outside what I do: I write and explain SQL for the shop database. Try a question about "
            "customers, orders, products or employees."],
    "project": ["I only plan software projects. Tell me what app you want to build and I will suggest folders, "
                "steps and tools.",
                "That is not something I can help with: I plan software projects. Describe an app and I will "
                "outline folders, steps and tools."],
    "general": ["I am only a small demo model, so I cannot answer that well. For real answers load a real model: "
                "run weprompt models pull NAME, or start WePrompt with --model PATH."],
}
CROSS_TOPIC = {  # questions for another persona
    "sql": ["Plan a todo app in Python.", "How should I structure a web scraper project?",
            "What folders does a REST API project need?", "I want to build a phone app that tracks my habits.",
            "Give me a plan for a blog in Go.", "Help me plan a Discord bot."],
    "project": ["How many customers are from Paris?", "Write a SQL query that lists all products.",
                "What is a primary key?", "Show the names of customers from Berlin.", "Delete order 12.",
                "What's the average salary per department?", "Which products cost more than 50?"],
}


# ---- documents -------------------------------------------------------------------------------------------
def cross_topic(rng: random.Random, persona: str, split: str) -> str:
    """A question for another persona: a generated app idea to the sql persona, a generated SQL question to the
    project persona (or one of a few fixed ones)."""
    if rng.random() < 0.4:
        return rng.choice(CROSS_TOPIC[persona])
    if persona == "sql":
        return project_qa(rng, split)[0]
    return sql_item(rng, split).question


def turn(rng: random.Random, persona: str, split: str) -> tuple[str, str]:
    """One (question, answer) for a persona: about 6% off-topic questions answered with a redirect, 3% questions
    for another persona, 9% small talk (30% for the general persona), the rest the persona's own job."""
    x = rng.random()
    if x < 0.06 or (persona == "general" and x < 0.15):
        return rng.choice(OFF_TOPIC[split]), rng.choice(REDIRECT[persona])
    if x < 0.09 and persona in CROSS_TOPIC:
        return cross_topic(rng, persona, split), rng.choice(REDIRECT[persona])
    if x < 0.18 or (persona == "general" and x < 0.45):
        return small_talk(rng, persona, split)
    if persona == "sql":
        item = sql_item(rng, split)
        return item.question, render_answer(item)
    if persona == "project":
        return project_qa(rng, split)
    return general_qa(rng, split)


HAND_WRITTEN = ROOT / "tests" / "data" / "demo_questions.json"  # the blind test set (tests/test_demo_questions.py)


def _norm(question: str) -> str:
    return re.sub(r"\s+", " ", question.lower()).strip().rstrip(".?!")


@lru_cache(maxsize=1)
def _blind() -> tuple[frozenset[str], tuple[str, ...]]:
    """The hand-written test questions, folded: all of them (for equality) and those of 4+ words (containment)."""
    if not HAND_WRITTEN.exists():
        return frozenset(), ()
    data = json.loads(HAND_WRITTEN.read_text(encoding="utf-8"))
    qs = {_norm(x["question"]) for k in ("sql", "sql_chat", "project", "general") for x in data.get(k, [])}
    return frozenset(qs), tuple(q for q in qs if len(q.split()) >= 4)


def is_blind(question: str) -> bool:
    """True when a generated question is, or holds, one of the hand-written test questions.

    Training never sees those: the document generator draws such a turn again (decontamination;
    a few hundred of the corpus's turns). The generator reads nothing else from the test set.
    """
    same, long = _blind()
    q = _norm(question)
    return q in same or any(b in q for b in long)


def document(rng: random.Random, prefixes: dict[str, str], split: str = "train") -> list[Segment]:
    """A persona prefix and 1-4 turns, as the segments the app would feed."""
    persona = rng.choices(PERSONAS, weights=PERSONA_WEIGHTS)[0]
    segs = [Segment(prefixes[persona], False)]
    for _ in range(rng.choice([1, 2, 2, 3, 3, 4])):
        q, a = turn(rng, persona, split)
        while split == "train" and is_blind(q):
            q, a = turn(rng, persona, split)
        segs.append(Segment(f"User: {fold(q)}\n\nAssistant:", False))
        segs.append(Segment(f" {fold(a)}\n\n", True))
    return segs


def documents(n: int, seed: int, split: str = "train") -> list[list[Segment]]:
    """n documents from one seed (same seed, same documents)."""
    rng = random.Random(seed)
    prefixes = {p: persona_prefix(p) for p in PERSONAS}
    return [document(rng, prefixes, split) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--show", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="train", choices=["train", "heldout"])
    args = ap.parse_args()
    for doc in documents(args.show, args.seed, args.split):
        print("".join(s.text for s in doc) + "=" * 40)


if __name__ == "__main__":
    main()
