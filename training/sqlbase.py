"""What the SQL question generators share: the demo data's value lists, `SqlItem`, question frames.

The lists are the seeded demo database's own values (`training/sqleval.py` builds it from them):
changing one changes the database.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CITIES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Lisbon", "Oslo", "Dublin", "Vienna", "Prague"]
STATUSES = ["pending", "paid", "shipped", "cancelled"]
CATEGORIES = ["books", "games", "garden", "kitchen", "toys", "music"]
DEPARTMENTS = ["sales", "engineering", "support", "marketing", "finance"]
DOMAINS = ["example.com", "mail.com", "shop.net", "inbox.org"]
FIRST = ["Ann", "Ben", "Cara", "Dan", "Eva", "Finn", "Gina", "Hugo", "Ines", "Jack", "Kim", "Leo", "Mia",
         "Nina", "Omar", "Paul", "Rosa", "Sam", "Tara", "Uma", "Vera", "Will", "Yara", "Zoe"]
LAST = ["Lee", "Smith", "Brown", "Garcia", "Rossi", "Novak", "Berg", "Walsh", "Silva", "Muller", "Costa", "Young"]
ADJ = ["Blue", "Mini", "Classic", "Smart", "Wooden", "Golden", "Quiet", "Rapid"]
NOUN = ["Lamp", "Mug", "Chair", "Puzzle", "Guitar", "Novel", "Kettle", "Shovel", "Robot", "Drum", "Atlas", "Planter"]
LETTERS = list("ABCDEFGHIJKLMNOPRSTUVWYZ")
YEARS = ["2023", "2024", "2025"]

Split = str  # "train" or "heldout"


@dataclass(frozen=True)
class SqlItem:
    kind: str
    question: str
    sql: str
    explanation: str

    @property
    def answer(self) -> str:
        """The assistant's reply in the persona's format."""
        return f"```sql\n{self.sql}\n```\n{self.explanation}"


def _pick(rng: random.Random, frames: dict[str, list[str]], split: Split) -> str:
    return rng.choice(frames[split])


def _frames(openers: list[str], bodies: list[str], extra: list[str], heldout: list[str]) -> dict[str, list[str]]:
    """Training frames: every opener with every body, plus whole frames, minus the held-out ones.

    Composing the frames gives training many ways to ask the same thing, so a held-out sentence is
    new as a whole while its words are not (a model trained only on this corpus knows no others).
    """
    train = [_punctuate(f"{o} {b}") for o in openers for b in bodies] + extra
    return {"train": sorted(set(train) - set(heldout)), "heldout": heldout}


def _punctuate(frame: str) -> str:
    """A composed frame that opens with a question word ends with a question mark."""
    if frame.split(" ", 1)[0] in ("What", "What's", "Which", "How", "Who") and frame.endswith("."):
        return frame[:-1] + "?"
    return frame
