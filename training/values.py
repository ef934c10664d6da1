"""Slot values that come from no fixed list, and numbers written as words.

A model that sees the same ten cities in every training question learns the cities, not the
copying: asked about Toronto it writes Paris. So about half of every slot value in the corpus
is made up on the spot (names, e-mails, cities, product names, categories, ids, amounts,
dates), and the only way to answer is to copy it from the question.
"""

from __future__ import annotations

import random
import re

from training.sqlbase import ADJ, CATEGORIES, CITIES, DEPARTMENTS, DOMAINS, FIRST, LAST, NOUN

_ONSET = ["b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "kr", "l", "m", "n", "p", "pr", "r", "s",
          "sh", "st", "t", "tr", "v", "w", "y", "z", ""]
_VOWEL = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ia", "ou", "y"]
_CODA = ["", "", "", "n", "r", "l", "s", "m", "k", "nd", "rt", "x", "th", "ck", "ng"]
_TLD = ["com", "net", "org", "io", "fm", "de", "co.uk", "dev", "app", "fr"]


def word(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    """A made-up lower-case word of a few syllables ("tamiko", "brelan")."""
    parts = []
    for _ in range(rng.randint(*syllables)):
        parts.append(rng.choice(_ONSET) + rng.choice(_VOWEL))
    return "".join(parts) + rng.choice(_CODA)


def proper(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    """A made-up capitalised word."""
    return word(rng, syllables).capitalize()


def person(rng: random.Random) -> tuple[str, str]:
    """A full name and an e-mail built from it: mostly made up, sometimes from the demo data's lists."""
    first = rng.choice(FIRST) if rng.random() < 0.25 else proper(rng, (1, 3))
    last = rng.choice(LAST) if rng.random() < 0.25 else proper(rng, (1, 3))
    return f"{first} {last}", email_for(rng, first, last)


def email_for(rng: random.Random, first: str, last: str) -> str:
    """An e-mail address for a person, at a demo or a made-up domain."""
    user = rng.choice([f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", f"{first}", f"{first}.{last[0]}",
                       f"{first}{rng.randint(1, 99)}", f"{first}_{last}"]).lower()
    return f"{user}@{domain(rng)}"


def domain(rng: random.Random) -> str:
    """A mail domain: the demo data's or a made-up one."""
    return rng.choice(DOMAINS) if rng.random() < 0.4 else f"{word(rng, (1, 2))}.{rng.choice(_TLD)}"


def city(rng: random.Random) -> str:
    """A city: one of the demo data's or a made-up one (sometimes two words)."""
    if rng.random() < 0.45:
        return rng.choice(CITIES)
    name = proper(rng)
    return f"{rng.choice(['San', 'New', 'Port', 'Saint'])} {name}" if rng.random() < 0.1 else name


def category(rng: random.Random) -> str:
    return rng.choice(CATEGORIES) if rng.random() < 0.55 else word(rng, (2, 3))


def department(rng: random.Random) -> str:
    return rng.choice(DEPARTMENTS) if rng.random() < 0.55 else word(rng, (2, 3))


def product(rng: random.Random) -> str:
    """A product name: the demo data's adjective and noun, or made-up words."""
    adj = rng.choice(ADJ) if rng.random() < 0.4 else proper(rng, (1, 2))
    noun = rng.choice(NOUN) if rng.random() < 0.4 else proper(rng, (1, 3))
    return f"{adj} {noun}"


def money(rng: random.Random, lo: int, hi: int, step: int = 1) -> str:
    """An amount as written in SQL: an integer, sometimes with cents ("34.99", "255.5")."""
    if rng.random() < 0.25:
        return f"{rng.randint(lo, hi - 1)}.{rng.choice([rng.randint(1, 99), 5, 50, 99, 95]):02d}".rstrip("0").rstrip(".")
    return str(rng.randrange(lo, hi, step))


def date(rng: random.Random) -> str:
    return f"{rng.randint(2015, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def year(rng: random.Random) -> str:
    return str(rng.choice([2023, 2024, 2025]) if rng.random() < 0.6 else rng.randint(2012, 2031))


# ---- numbers as words ------------------------------------------------------------------------------------
_SMALL = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """0 <= n < 1,000,000 in English words: 12 -> twelve, 250 -> two hundred and fifty, 70000 -> seventy thousand."""
    if n < 20:
        return _SMALL[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _SMALL[n % 10])
    if n < 1000:
        rest = n % 100
        return _SMALL[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else (" and " if rest < 100 else " ") + number_words(rest))


def spoken(rng: random.Random, n: int) -> str:
    """Another way a person writes the integer n: words ("seventy-five", "two hundred and fifty", "seventy
    thousand"), "70k" or "70,000"; numbers nobody says in words ("1178") stay digits. The value is unchanged."""
    forms = []
    if n < 100 or (n < 1000 and n % 50 == 0) or (n >= 1000 and n % 1000 == 0):
        forms.append(number_words(n))
    if n >= 10000 or (n >= 1000 and n % 1000 == 0):  # "70,000", not "order 1,215"
        forms.append(f"{n:,}")
    if n >= 1000 and n % 1000 == 0:
        forms.append(f"{n // 1000}k")
    return rng.choice(forms) if forms else str(n)


_NUMBER = re.compile(r"(?<![\w.@$#,'-])(\d+)(?![\w@,'-]|\.\d)")


def speak_numbers(rng: random.Random, question: str, p: float = 0.3) -> str:
    """Some integers of a question rewritten as words or with separators; years and dates are kept as digits."""

    def swap(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if rng.random() >= p or m.group(1).startswith("0") or n >= 1_000_000 or 1900 <= n <= 2099:
            return m.group(1)
        return spoken(rng, n)

    return _NUMBER.sub(swap, question)
