"""Filter conditions of the demo schema, one at a time or composed (two or three, AND / OR).

A condition has noun-phrase forms ("from Paris", "over 300"), verb-phrase forms for "Which
customers live in Paris?", sometimes a pre-modifier form ("pending orders", "kitchen
products"), and its SQL. `compound()` draws one to three on different columns and writes
them as one phrase and one WHERE clause; two values of one column read "from Oslo or Madrid"
and become `city = 'Oslo' OR city = 'Madrid'` (in parentheses when more conditions follow).

Values come from `training.values` (made up about half the time, from the demo data
otherwise); held-out questions use the demo data's values only, so that their reference
queries give non-empty answers on the demo database.
"""

from __future__ import annotations

import calendar
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from training import values as V
from training.sqlbase import ADJ, CATEGORIES, CITIES, DEPARTMENTS, DOMAINS, FIRST, LAST, LETTERS, NOUN, STATUSES

MONTHS = list(calendar.month_name)[1:]


@dataclass(frozen=True)
class Cond:
    np: list[str]  # noun-phrase forms: "customers {np}"
    vp: list[str]  # verb-phrase forms: "customers that {vp}"
    sql: str
    col: str
    why: str  # the explanation's clause: "filters on the city column"
    pre: list[str] = field(default_factory=list)  # the value as a pre-modifier of the entity: "pending" orders
    value: str = ""  # the equality's value (for "X or Y" of one column)
    eq: Callable[[str], Cond] | None = None  # the same condition for another value (equalities only)


_DEMO_ROWS: dict[str, list[tuple]] = {}


def demo_rows(table: str) -> list[tuple]:
    """The demo database's rows of `table` (held-out questions name rows that exist)."""
    if not _DEMO_ROWS:
        from training.sqleval import TABLES, build_db

        db = build_db()
        _DEMO_ROWS.update({t: db.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES})
        db.close()
    return _DEMO_ROWS[table]


class Values:
    """Slot values for one question: the demo data's (held-out) or mostly made up (training)."""

    def __init__(self, rng: random.Random, split: str) -> None:
        self.rng, self.real = rng, split == "heldout" or rng.random() < 0.35

    def city(self) -> str:
        return self.rng.choice(CITIES) if self.real else V.city(self.rng)

    def status(self) -> str:
        if self.real or self.rng.random() < 0.75:
            return self.rng.choice(STATUSES)
        return self.rng.choice(["refunded", "returned", "delivered", "processing", "on hold", V.word(self.rng)])

    def category(self) -> str:
        return self.rng.choice(CATEGORIES) if self.real else V.category(self.rng)

    def department(self) -> str:
        return self.rng.choice(DEPARTMENTS) if self.real else V.department(self.rng)

    def domain(self) -> str:
        return self.rng.choice(DOMAINS) if self.real else V.domain(self.rng)

    def letter(self) -> str:
        return self.rng.choice(LETTERS)

    def last_name(self) -> str:
        return self.rng.choice(LAST) if self.real else V.proper(self.rng, (1, 3))

    def word(self) -> str:
        return self.rng.choice(NOUN) if self.real or self.rng.random() < 0.4 else V.proper(self.rng, (1, 2))

    def person(self, table: str = "") -> tuple[str, str]:
        """A name and e-mail; held-out: a customer's or employee's of the demo database when `table` says which."""
        if self.real and table in ("customers", "employees") and self.rng.random() < 0.85:
            row = self.rng.choice(demo_rows(table))
            return row[1], row[2] if table == "customers" else ""
        if self.real:
            first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
            return f"{first} {last}", f"{first.lower()}.{last.lower()}@{self.rng.choice(DOMAINS)}"
        return V.person(self.rng)

    def product(self, existing: bool = False) -> str:
        """A product name; held-out with `existing`: one of the demo database's products."""
        if self.real and existing:
            return str(self.rng.choice(demo_rows("products"))[1])
        return f"{self.rng.choice(ADJ)} {self.rng.choice(NOUN)}" if self.real else V.product(self.rng)

    def date(self) -> str:
        if self.real:
            return f"{self.rng.choice(['2023', '2024', '2025'])}-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}"
        return V.date(self.rng)

    def year(self) -> str:
        return self.rng.choice(["2023", "2024", "2025"]) if self.real else V.year(self.rng)

    def amount(self, col: str) -> str:
        """A threshold for a numeric column, as written in the SQL."""
        r = self.rng
        if self.real:
            return str({"price": r.randrange(5, 250, 5), "stock": r.randrange(5, 120, 5), "total": r.randrange(20, 600, 10),
                        "salary": r.randrange(30000, 130000, 5000), "quantity": r.randint(1, 5)}[col])
        if col == "salary":
            return str(r.randrange(20000, 250000, r.choice([1000, 5000, 10000])))
        if col == "stock" or col == "quantity":
            return str(r.randint(0, 300))
        return V.money(r, 1, 2000)

    def ident(self, table: str = "customers") -> str:
        """An id; held-out: one that exists in `table` of the demo database."""
        if self.real:
            return str(self.rng.randint(1, {"customers": 40, "orders": 150, "products": 30, "employees": 25}.get(table, 40)))
        return str(self.rng.choice([self.rng.randint(1, 200), self.rng.randint(1, 9999)]))

    def pair(self, col: str) -> tuple[str, str]:
        """Two thresholds, the smaller first."""
        a, b = self.amount(col), self.amount(col)
        if float(a) == float(b):
            b = str(int(float(a)) + 10)
        return (a, b) if float(a) < float(b) else (b, a)

    def dates(self) -> tuple[str, str]:
        """Two different dates, the earlier first."""
        a, b = self.date(), self.date()
        if a == b:
            b = f"{int(a[:4]) + 1}{a[4:]}"
        return (a, b) if a < b else (b, a)


def _with(value: str, make: Callable[[str], Cond]) -> Cond:
    """`make(value)`: a condition built around one drawn value."""
    return make(value)


def _eq(col: str, np: list[str], vp: list[str], why: str, pre: bool = False, quote: bool = True) -> Callable[[str], Cond]:
    """An equality condition for a value (kept as a factory so "X or Y" can make the second one)."""

    def make(v: str) -> Cond:
        sql = f"{col} = '{v}'" if quote else f"{col} = {v}"
        return Cond([p.format(v=v) for p in np], [p.format(v=v) for p in vp], sql, col, why,
                     [v] if pre else [], v, make)
    return make


def _cmp(col: str, op: str, v: str, np: list[str], vp: list[str], why: str) -> Cond:
    return Cond([p.format(v=v) for p in np], [p.format(v=v) for p in vp], f"{col} {op} {v}", col, why)


GT, LT = "keeps rows whose {c} is greater than the value", "keeps rows whose {c} is less than the value"


def _dates(x: Values, col: str, done: list[str], did: list[str]) -> Cond:
    """A date condition on `col`: after / before a date, between two, in a year, a month, since or before a year.

    done: noun-phrase verbs ("who signed up", "created"); did: verb-phrase verbs ("signed up", "joined")."""
    r = x.rng
    form = r.choice(["after", "before", "between", "year", "year", "month", "since", "before_year", "after_year"])
    npv, vpv = r.choice(done), r.choice(did)
    if form in ("after", "before"):
        d = x.date()
        op = ">" if form == "after" else "<"
        return Cond([f"{npv} {form} {d}"], [f"{vpv} {form} {d}"], f"{col} {op} '{d}'", col, f"compares {col} with the date")
    if form == "between":
        d1, d2 = x.dates()
        return Cond([f"{npv} between {d1} and {d2}"], [f"{vpv} between {d1} and {d2}"],
                    f"{col} BETWEEN '{d1}' AND '{d2}'", col, f"keeps {col} inside the date range with BETWEEN")
    y = x.year()
    if form == "year":
        ph = r.choice(["in {y}", "in {y}"])
        extra = [f"from {y}"] if col == "created_at" and "placed" in npv else []
        return Cond([f"{npv} {ph.format(y=y)}", *extra], [f"{vpv} {ph.format(y=y)}"],
                    f"{col} BETWEEN '{y}-01-01' AND '{y}-12-31'", col, f"keeps {col} inside that year with BETWEEN")
    if form == "month":
        m = r.randint(1, 12)
        last = calendar.monthrange(int(y), m)[1]
        ph = f"in {MONTHS[m - 1]} {y}"
        return Cond([f"{npv} {ph}"], [f"{vpv} {ph}"], f"{col} BETWEEN '{y}-{m:02d}-01' AND '{y}-{m:02d}-{last}'", col,
                    f"keeps {col} inside that month with BETWEEN")
    if form == "since":
        return Cond([f"{npv} since {y}"], [f"{vpv} since {y}"], f"{col} >= '{y}-01-01'", col,
                    f"keeps {col} from the start of that year on")
    if form == "before_year":
        return Cond([f"{npv} before {y}"], [f"{vpv} before {y}"], f"{col} < '{y}-01-01'", col,
                    f"keeps {col} before the start of that year")
    return Cond([f"{npv} after {y}"], [f"{vpv} after {y}"], f"{col} > '{y}-12-31'", col,
                f"keeps {col} after the end of that year")


def _num(x: Values, col: str, word: str, more: tuple[list[str], list[str]], less: tuple[list[str], list[str]],
         between: tuple[list[str], list[str]]) -> Cond:
    """A numeric condition: greater than, less than, or between two values."""
    r = x.rng
    form = r.choices(["gt", "lt", "between"], weights=[0.45, 0.4, 0.15])[0]
    if form == "between":
        a, b = x.pair(col)
        return Cond([p.format(a=a, b=b) for p in between[0]], [p.format(a=a, b=b) for p in between[1]],
                    f"{col} BETWEEN {a} AND {b}", col, f"keeps rows whose {word} is between the two values")
    v = x.amount(col)
    np, vp = more if form == "gt" else less
    return _cmp(col, ">" if form == "gt" else "<", v, np, vp, (GT if form == "gt" else LT).format(c=word))


def _customers(x: Values) -> list[Callable[[], Cond]]:
    done = ["who signed up", "created", "who joined", "registered", "who registered"]
    did = ["signed up", "joined", "registered", "were created"]
    return [
        lambda: _eq("city", ["from {v}", "in {v}", "who live in {v}", "based in {v}", "whose city is {v}", "living in {v}",
                             "located in {v}"],
                    ["live in {v}", "are from {v}", "are based in {v}", "are in {v}", "come from {v}"],
                    "filters on the city column", pre=True)(x.city()),
        lambda: _with(x.letter(), lambda L: Cond([f"whose name starts with {L}", f"with names beginning with {L}", f"whose names start with {L}"],
                                [f"have names starting with {L}", f"have a name that starts with {L}"],
                                f"name LIKE '{L}%'", "name", "uses LIKE with a trailing wildcard to match the first letter")),
        lambda: _with(x.last_name(), lambda n: Cond([f"with the last name {n}", f"whose last name is {n}", f"whose surname is {n}"],
                                [f"have the last name {n}", f"are called {n}"],
                                f"name LIKE '% {n}'", "name", "uses LIKE to match the last name")),
        lambda: _with(x.domain(), lambda d: Cond([f"with an email at {d}", f"whose email ends with @{d}", f"using {d} email addresses",
                                 f"with a {d} address", f"whose email is at {d}"],
                                [f"have an email at {d}", f"use {d} email addresses", f"have emails ending with @{d}"],
                                f"email LIKE '%@{d}'", "email", "uses LIKE with a leading wildcard to match the email domain")),
        lambda: _dates(x, "created_at", done, did),
    ]


def _orders(x: Values) -> list[Callable[[], Cond]]:
    done = ["placed", "created", "made"]
    did = ["were placed", "were created", "were made"]
    return [
        lambda: _eq("status", ["with status {v}", "that are {v}", "whose status is {v}", "marked {v}", "marked as {v}"],
                    ["are {v}", "have status {v}", "are marked {v}", "are marked as {v}"],
                    "filters on the status column", pre=True)(x.status()),
        lambda: _num(x, "total", "total",
                     (["with a total above {v}", "worth more than {v}", "over {v}", "above {v}", "with total greater than {v}",
                       "of more than {v}", "totalling more than {v}"],
                      ["are worth more than {v}", "have a total above {v}", "cost more than {v}", "total more than {v}"]),
                     (["with a total below {v}", "worth less than {v}", "under {v}", "below {v}", "with total under {v}",
                       "of less than {v}"],
                      ["are worth less than {v}", "have a total below {v}", "cost less than {v}"]),
                     (["with a total between {a} and {b}", "worth between {a} and {b}"],
                      ["are worth between {a} and {b}", "have a total between {a} and {b}"])),
        lambda: _eq("customer_id", ["of customer {v}", "placed by customer {v}", "for customer id {v}", "from customer {v}",
                                    "by customer number {v}"],
                    ["belong to customer {v}", "were placed by customer {v}", "came from customer {v}"],
                    "filters on the customer_id foreign key", quote=False)(x.ident()),
        lambda: _dates(x, "created_at", done, did),
    ]


def _products(x: Values) -> list[Callable[[], Cond]]:
    return [
        lambda: _eq("category", ["in the {v} category", "in category {v}", "of category {v}", "from the {v} category"],
                    ["are in the {v} category", "belong to {v}", "are in category {v}", "belong to the {v} category"],
                    "filters on the category column", pre=True)(x.category()),
        lambda: _num(x, "price", "price",
                     (["more expensive than {v}", "priced over {v}", "with a price above {v}", "costing more than {v}",
                       "over {v}", "that cost more than {v}"],
                      ["cost more than {v}", "are more expensive than {v}", "are priced over {v}", "cost over {v}"]),
                     (["cheaper than {v}", "priced under {v}", "with a price below {v}", "costing less than {v}", "under {v}",
                       "that cost less than {v}"],
                      ["cost less than {v}", "are cheaper than {v}", "are priced under {v}", "cost under {v}"]),
                     (["priced between {a} and {b}", "costing between {a} and {b}"],
                      ["cost between {a} and {b}", "are priced between {a} and {b}"])),
        lambda: x.rng.choice([
            lambda: _num(x, "stock", "stock",
                         (["with more than {v} in stock", "with stock above {v}", "with over {v} units in stock"],
                          ["have more than {v} in stock", "have stock above {v}", "have over {v} left"]),
                         (["with fewer than {v} in stock", "with stock below {v}", "with less than {v} left",
                           "with under {v} units in stock"],
                          ["have fewer than {v} in stock", "have stock below {v}", "have less than {v} left in stock"]),
                         (["with between {a} and {b} in stock"], ["have between {a} and {b} in stock"])),
            lambda: Cond(["that are out of stock", "with no stock", "with zero stock"],
                         ["are out of stock", "have no stock left", "have zero stock"], "stock = 0", "stock",
                         "keeps the products whose stock is zero"),
        ])(),
        lambda: _with(x.word(), lambda w: Cond([f"whose name contains {w}", f"with {w} in the name", f"named like {w}"],
                                [f"have {w} in the name", f"have names containing {w}"],
                                f"name LIKE '%{w}%'", "name", "uses LIKE with wildcards on both sides to match part of the name")),
    ]


def _employees(x: Values) -> list[Callable[[], Cond]]:
    return [
        lambda: _eq("department", ["in the {v} department", "who work in {v}", "from the {v} team", "in {v}", "working in {v}"],
                    ["work in {v}", "are in the {v} department", "belong to the {v} team", "are in {v}"],
                    "filters on the department column", pre=True)(x.department()),
        lambda: _num(x, "salary", "salary",
                     (["earning more than {v}", "with a salary above {v}", "paid over {v}", "making more than {v}",
                       "who earn over {v}"],
                      ["earn more than {v}", "make more than {v}", "are paid over {v}", "have a salary above {v}", "earn over {v}"]),
                     (["earning less than {v}", "with a salary below {v}", "paid under {v}", "making less than {v}"],
                      ["earn less than {v}", "make less than {v}", "are paid under {v}", "earn under {v}"]),
                     (["earning between {a} and {b}", "with a salary between {a} and {b}"],
                      ["earn between {a} and {b}", "are paid between {a} and {b}"])),
        lambda: x.rng.choice([
            lambda: _eq("manager_id", ["who report to employee {v}", "managed by employee {v}", "whose manager is employee {v}"],
                        ["report to employee {v}", "are managed by employee {v}"], "filters on the manager_id column",
                        quote=False)(x.ident()),
            lambda: Cond(["without a manager", "with no manager", "who have no manager"],
                         ["have no manager", "don't have a manager", "report to nobody"], "manager_id IS NULL", "manager_id",
                         "keeps the rows whose manager_id is NULL"),
            lambda: Cond(["with a manager", "who have a manager"], ["have a manager", "report to someone"],
                         "manager_id IS NOT NULL", "manager_id", "keeps the rows that have a manager_id"),
        ])(),
        lambda: _with(x.letter(), lambda L: Cond([f"whose name starts with {L}", f"with names beginning with {L}"],
                                [f"have names starting with {L}"], f"name LIKE '{L}%'", "name",
                                "uses LIKE with a trailing wildcard")),
    ]


TABLE_CONDS = {"customers": _customers, "orders": _orders, "products": _products, "employees": _employees}


@dataclass(frozen=True)
class Compound:
    np: str  # "from Oslo or Madrid who signed up in 2024"
    vp: str  # "live in Oslo or Madrid and signed up in 2024"
    sql: str  # "(city = 'Oslo' OR city = 'Madrid') AND created_at BETWEEN ..."
    pre: str  # a pre-modifier taken out of the conditions ("pending"), or ""
    rest_np: str  # the noun phrase without the pre-modified condition
    rest_vp: str
    why: str
    n: int  # how many conditions

    def grouped(self) -> str:
        """The SQL to AND with more conditions: in parentheses when its top level is an OR."""
        return f"({self.sql})" if " OR " in self.sql and not self.sql.startswith("(") else self.sql


_JOIN_STARTS = ("in ", "from ", "with ", "of ", "over ", "under ", "above ", "below ", "priced ", "placed ", "created ",
                "marked ", "worth ", "costing ", "earning ", "paid ", "managed ", "based ", "located ", "made ")


def _and(parts: list[str], rng: random.Random, word: str, loose: bool) -> str:
    """Phrases joined in English: 'a and b', 'a, b and c', or (noun phrases) side by side 'a b'."""
    if len(parts) == 1:
        return parts[0]
    if word == "and" and loose and all(p.startswith(_JOIN_STARTS) for p in parts[1:]) and rng.random() < 0.35:
        return " ".join(parts)
    if len(parts) == 3 and rng.random() < 0.5:
        return f"{parts[0]}, {parts[1]} {word} {parts[2]}"
    return f" {word} ".join(parts)


def compound(rng: random.Random, table: str, split: str, n: int | None = None, values: Values | None = None) -> Compound:
    """One to three conditions on `table` (different columns), joined with AND, OR, or one column's 'X or Y'."""
    x = values or Values(rng, split)
    makers = TABLE_CONDS[table](x)
    n = n or rng.choices([1, 2, 3], weights=[0.45, 0.4, 0.15])[0]
    conds: list[Cond] = []
    cols: set[str] = set()
    for make in rng.sample(makers, len(makers)):
        c = make()
        if c.col not in cols:
            conds.append(c)
            cols.add(c.col)
        if len(conds) == n:
            break
    either = n <= 2 and rng.random() < 0.2  # "X or Y" of one column, or (two conditions) one OR the other
    sqls = [c.sql for c in conds]
    nps = [rng.choice(c.np) for c in conds]
    vps = [rng.choice(c.vp) for c in conds]
    word = "and"
    if either and conds[0].eq is not None and (len(conds) == 1 or rng.random() < 0.6):
        c0 = conds[0]
        other = c0.eq(_another(x, c0))
        if other.value != c0.value:
            k = rng.randrange(len(c0.np))
            nps[0] = c0.np[k].replace(c0.value, f"{c0.value} or {other.value}", 1)
            vps[0] = rng.choice(c0.vp).replace(c0.value, f"{c0.value} or {other.value}", 1)
            sqls[0] = f"{c0.sql} OR {other.sql}"
            if len(conds) > 1:
                sqls[0] = f"({sqls[0]})"
    elif either and len(conds) == 2:
        word = "or"
    sql = f" {word.upper()} ".join(sqls)
    pre, rest_np, rest_vp = "", _and(nps, rng, word, True), _and(vps, rng, word, False)
    pres = [i for i, c in enumerate(conds) if c.pre and " or " not in nps[i]]
    if pres and word == "and" and " OR " not in sql:
        i = pres[0]
        pre = conds[i].value
        rest_np = _and([p for j, p in enumerate(nps) if j != i], rng, word, True) if len(conds) > 1 else ""
        rest_vp = _and([p for j, p in enumerate(vps) if j != i], rng, word, False) if len(conds) > 1 else ""
    why = conds[0].why if len(conds) == 1 else ("keeps the rows that match all the conditions" if word == "and"
                                                 else "keeps the rows that match either condition")
    if " OR " in sql and word == "and" and len(conds) == 1:
        why = "keeps the rows that match either value"
    return Compound(_and(nps, rng, word, True), _and(vps, rng, word, False), sql, pre, rest_np, rest_vp, why, len(conds))


def _another(x: Values, c: Cond) -> str:
    """Another value for an equality condition's column."""
    pick = {"city": x.city, "status": x.status, "category": x.category, "department": x.department,
            "customer_id": x.ident, "manager_id": x.ident}.get(c.col)
    return pick() if pick else c.value
