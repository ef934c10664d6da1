"""SQL questions about the demo schema with their reference query and a one-sentence explanation.

Every kind has training frames and held-out frames (phrasings training never sees); slot
values (cities, numbers, column phrases) are shared. `sql_item(rng, split)` draws one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from training import values as V
from training.conds import Compound, Values, compound
from training.sqlbase import (  # noqa: F401  (the lists are re-exported: sqleval builds the database from them)
    ADJ,
    CATEGORIES,
    CITIES,
    DEPARTMENTS,
    DOMAINS,
    FIRST,
    LAST,
    LETTERS,
    NOUN,
    STATUSES,
    YEARS,
    Split,
    SqlItem,
    _frames,
    _pick,
    _punctuate,
)
from training.sqlkinds import k_change, k_join2, k_lookup, k_sort


def _date(rng: random.Random) -> str:
    return f"{rng.choice(YEARS)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _n(rng: random.Random, col: str) -> int:
    return {"price": rng.randrange(5, 205, 5), "stock": rng.randrange(5, 105, 5),
            "total": rng.randrange(50, 510, 10), "salary": rng.randrange(30000, 125000, 5000),
            "id": rng.randint(1, 40)}[col]


# ---- tables: entity words and column choices; conditions are training.conds -------------------
ENTITY = {"customers": ["customers", "clients"], "orders": ["orders"], "products": ["products", "items"],
          "employees": ["employees", "staff members", "workers"]}
COLS = {
    "customers": [("name", "the names"), ("name, email", "the names and emails"), ("email", "the emails"),
                  ("*", "all columns"), ("name, city", "the names and cities")],
    "orders": [("id, total", "the ids and totals"), ("*", "all columns"), ("id", "the ids"),
               ("id, status", "the ids and statuses"), ("customer_id, total", "the customer ids and totals")],
    "products": [("name", "the names"), ("name, price", "the names and prices"), ("*", "all columns"),
                 ("name, stock", "the names and stock")],
    "employees": [("name", "the names"), ("name, salary", "the names and salaries"), ("*", "all columns"),
                  ("name, department", "the names and departments")],
}
NAME_COL = {"customers": "name", "orders": "id", "products": "name", "employees": "name"}  # what "which ..." returns


def _slots(rng: random.Random, split: Split = "heldout") -> dict[str, object]:
    """One question's slot values: the demo data's (held-out) or mostly made up (training), see training.conds."""
    x = Values(rng, split)
    d1, d2 = x.dates()
    return {"city": x.city(), "status": x.status(), "cat": x.category(), "dept": x.department(), "domain": x.domain(),
            "L": x.letter(), "word": x.word(), "d": x.date(), "d1": d1, "d2": d2, "y": x.year(),
            "price": x.amount("price"), "stock": x.amount("stock"), "total": x.amount("total"),
            "salary": x.amount("salary"), "id": x.ident(), "real": x.real}


def _tidy(q: str) -> str:
    """A composed question without doubled spaces or a space before its punctuation; first letter upper-case."""
    q = re.sub(r"\s+([.?,!:])", r"\1", re.sub(r"\s{2,}", " ", q)).strip()
    return q[0].upper() + q[1:]


# ---- kinds --------------------------------------------------------------------------------------------
FILTER_FRAMES = _frames(
    ["Show", "Show me", "List", "Get", "Get me", "Give me", "Display", "Fetch", "Find", "Pull up", "Select", "Query",
     "Print", "Look up", "Retrieve", "I need", "I want", "We need", "Can you show", "Could you list", "Please show",
     "Please list", "Please get", "Let me see"],
    ["{cols} of {entity} {cond}.", "{cols} of the {entity} {cond}.", "{cols} of all {entity} {cond}.",
     "{cols} for {entity} {cond}.", "{cols} for every one of the {entity} {cond}."],
    ["Write a query that returns {cols} of {entity} {cond}.", "Find {entity} {cond} and return {cols}.",
     "SQL to fetch {cols} of {entity} {cond}?", "Select {cols} from {entity} {cond}.",
     "Which {entity} are {cond}? Show {cols}.", "What are the {entity} {cond}? I need {cols}.",
     "Return {cols} for the {entity} {cond}.", "{entity} {cond}: {cols}, please."],
    ["Please pull up {cols} of the {entity} {cond}.", "What are {cols} of {entity} {cond}?",
     "Return {cols} of {entity} {cond}.", "Could you get me {cols} of the {entity} {cond}?"],
)


ROWS_FRAMES = _frames(  # no columns named: all of them
    ["Show", "Show me", "List", "Get", "Give me", "Display", "Fetch", "Find", "Pull up", "Look up", "I need", "I want",
     "Can you show", "Please list", "Let me see"],
    ["{entity} {cond}.", "all {entity} {cond}.", "the {entity} {cond}.", "every one of the {entity} {cond}."],
    ["{entity} {cond}?", "All {entity} {cond}, please."],
    ["Show me everything about the {entity} {cond}.", "Bring up all the {entity} {cond}."],
)
WHICH_FRAMES = _frames(  # a verb phrase condition; the answer names the rows
    ["Which", "What", "Tell me which", "Find which", "Show which", "List which", "Can you tell me which", "I want to know which"],
    ["{entity} {vp}?", "of the {entity} {vp}?"],
    ["Who are the {entity} that {vp}?", "Name the {entity} that {vp}.", "Names of the {entity} that {vp}?"],
    ["Which {entity} {vp}? Just the names.", "Do we have {entity} that {vp}? List them."],
)


def _subject(rng: random.Random, table: str, split: Split, verbs: bool = False, n: int | None = None) -> tuple[str, str, Compound]:
    """The entity words (sometimes with a value before them: "pending orders") and the rest of the condition."""
    c = compound(rng, table, split, n)
    entity = rng.choice(ENTITY[table])
    rest = c.rest_vp if verbs else c.rest_np
    if c.pre and rng.random() < 0.4 and (rest or not verbs):
        return f"{c.pre} {entity}", rest, c
    return entity, c.vp if verbs else c.np, c


def k_filter(rng: random.Random, split: Split) -> SqlItem:
    table = rng.choice(list(ENTITY))
    x = rng.random()
    if x < 0.2:
        verbs = rng.random() < 0.4  # "orders that are pending" as well as "orders with status pending"
        entity, cphrase, c = _subject(rng, table, split, verbs)
        cphrase = f"that {cphrase}" if verbs else cphrase
        q, cols = _pick(rng, ROWS_FRAMES, split).format(entity=entity, cond=cphrase), "*"
    elif x < 0.45:
        entity, vp, c = _subject(rng, table, split, verbs=True)
        q, cols = _pick(rng, WHICH_FRAMES, split).format(entity=entity, vp=vp), NAME_COL[table]
    else:
        cols, cols_p = rng.choice(COLS[table])
        entity, cphrase, c = _subject(rng, table, split)
        q = _pick(rng, FILTER_FRAMES, split).format(cols=cols_p, entity=entity, cond=cphrase)
    return SqlItem("filter", _tidy(q), f"SELECT {cols} FROM {table} WHERE {c.sql};", f"This reads the {table} table and {c.why}.")


MEASURES = {"price": ("products", "price", "prices"), "stock": ("products", "stock", "stock levels"),
            "total": ("orders", "order total", "order totals"), "salary": ("employees", "salary", "salaries")}
AGGS = {"SUM": ["sum of the {mp}", "combined {mp}", "sum of all {mp}", "total of the {mp}"],
        "AVG": ["average {ms}", "mean {ms}", "avg {ms}"],
        "MIN": ["lowest {ms}", "minimum {ms}", "smallest {ms}", "least {ms}"],
        "MAX": ["highest {ms}", "maximum {ms}", "largest {ms}", "biggest {ms}"]}
# Everyday names of some measures: "revenue", "payroll", "average order value".
AGG_NAMES = {("SUM", "total"): ["total revenue", "revenue", "total sales", "total order value", "total amount of the orders"],
             ("SUM", "salary"): ["total salary", "salary bill", "payroll", "total payroll", "total of all salaries"],
             ("SUM", "stock"): ["total stock", "total number of units in stock", "combined stock"],
             ("AVG", "total"): ["average order value", "average order total", "mean order value", "average order size"],
             ("AVG", "salary"): ["average pay", "average salary"], ("AVG", "price"): ["average price", "typical price"],
             ("MAX", "price"): ["highest price", "top price"], ("MIN", "price"): ["lowest price", "cheapest price"],
             ("MAX", "salary"): ["top salary", "highest salary"], ("MIN", "salary"): ["lowest salary"],
             ("MAX", "total"): ["biggest order total", "largest order amount"], ("MIN", "stock"): ["lowest stock level"]}
AGG_MONEY_FRAMES = _frames(  # SUM(total) in money words
    ["How much money have we made from", "How much revenue came from", "How much did we earn from", "What did we make from",
     "How much money came in from", "What is the revenue from", "What's our revenue from"],
    ["{entity}{cond}?", "all {entity}{cond}?", "the {entity}{cond}?"],
    ["How much did {entity}{cond} bring in?", "How much money did {entity}{cond} bring in?"],
    ["How much have {entity}{cond} earned us?", "What revenue did {entity}{cond} generate?"],
)


def _aggp(rng: random.Random, agg: str, col: str) -> str:
    """How a question names an aggregate of a measure: 'average salary', 'sum of the order totals', 'payroll'."""
    _, ms, mp = MEASURES[col]
    names = AGG_NAMES.get((agg, col), [])
    if names and rng.random() < 0.4:
        return rng.choice(names)
    return rng.choice(AGGS[agg]).format(ms=ms, mp=mp)


AGG_WORD = {"SUM": "adds up", "AVG": "averages", "MIN": "takes the minimum of", "MAX": "takes the maximum of"}
AGG_FRAMES = _frames(
    ["What is", "What's", "Find", "Calculate", "Compute", "Get", "Get me", "Show", "Show me", "Give me", "Tell me",
     "I want", "I need", "Query for", "Work out", "Return", "Report"],
    ["the {aggp} of {entity}{cond}.", "the {aggp} across {entity}{cond}.", "the {aggp} among {entity}{cond}.",
     "the {aggp} of all {entity}{cond}.", "the {aggp} for {entity}{cond}."],
    ["What is the {aggp} of {entity}{cond}?", "What's the {aggp} of all {entity}{cond}?",
     "Which is the {aggp} among {entity}{cond}?", "{aggp} of {entity}{cond}?"],
    ["Tell me the {aggp} of {entity}{cond}.", "What's the {aggp} among {entity}{cond}?",
     "Compute the {aggp} over the {entity}{cond}."],
)
AGG_BARE_FRAMES = _frames(
    ["What is", "What's", "Find", "Calculate", "Get", "Show", "Give me", "Tell me", "I need"],
    ["the {aggp}{cond}.", "the overall {aggp}{cond}."],
    ["What is the {aggp}{cond}?", "{aggp}{cond}?"],
    ["What's the {aggp}{cond}?", "Work out the {aggp}{cond}."],
)
COUNT_VERB_FRAMES = _frames(
    ["How many", "Count the", "Count all", "Count how many", "Tell me how many", "Find out how many"],
    ["{entity} {vp}?", "{entity} {vp}."],
    ["What is the number of {entity} that {vp}?", "Number of {entity} that {vp}?"],
    ["How many of our {entity} {vp}?", "Give me the number of {entity} that {vp}."],
)
COUNT_FRAMES = _frames(
    ["What is", "What's", "Give me", "Get", "Show", "Tell me", "Find", "Return", "I need"],
    ["the number of {entity}{cond}.", "the count of {entity}{cond}.", "the total number of {entity}{cond}.",
     "the count of all {entity}{cond}."],
    ["How many {entity} are there{cond}?", "How many {entity} do we have{cond}?", "How many {entity} exist{cond}?",
     "How many {entity} have we got{cond}?", "Count the {entity}{cond}.", "Count all {entity}{cond}.",
     "Count how many {entity} exist{cond}.", "Count how many {entity} there are{cond}.", "Number of {entity}{cond}?",
     "Total number of {entity}{cond}?", "Can you count the {entity}{cond}?", "Tell me how many {entity} there are{cond}.",
     "I need to know how many {entity} we have{cond}.", "What is the number of {entity}{cond}?"],
    ["Tell me how many {entity} we have{cond}.", "What's the total number of {entity}{cond}?",
     "How many {entity} are in the table{cond}?"],
)


def k_aggregate(rng: random.Random, split: Split) -> SqlItem:
    if rng.random() < 0.35:
        table = rng.choice(list(ENTITY))
        where, why = "", ""
        if rng.random() < 0.3:
            entity, vp, c = _subject(rng, table, split, verbs=True)
            where, why = f" WHERE {c.sql}", c.why
            q = _pick(rng, COUNT_VERB_FRAMES, split).format(entity=entity, vp=vp)
        else:
            entity, cphrase = rng.choice(ENTITY[table]), ""
            if rng.random() < 0.65:
                entity, cphrase, c = _subject(rng, table, split)
                where, why, cphrase = f" WHERE {c.sql}", c.why, " " + cphrase
            q = _pick(rng, COUNT_FRAMES, split).format(entity=entity, cond=cphrase)
        expl = f"COUNT(*) counts the rows{' and the WHERE clause ' + why if why else ''}."
        return SqlItem("count", _tidy(q), f"SELECT COUNT(*) FROM {table}{where};", expl)
    col = rng.choice(list(MEASURES))
    table = MEASURES[col][0]
    agg = rng.choice(["AVG", "MIN", "MAX"] if col == "price" else list(AGGS))
    aggp = _aggp(rng, agg, col)
    where, cphrase, entity = "", "", rng.choice(ENTITY[table])
    if rng.random() < 0.6:
        entity, cphrase, c = _subject(rng, table, split)
        where, cphrase = f" WHERE {c.sql}", " " + cphrase if cphrase else ""
    if agg == "SUM" and col == "total" and rng.random() < 0.35:  # "How much money have we made from paid orders?"
        q = _pick(rng, AGG_MONEY_FRAMES, split).format(entity=entity, cond=cphrase)
    elif rng.random() < 0.25 and entity in ENTITY[table]:  # the measure names its table: "the average salary in sales"
        q = _pick(rng, AGG_BARE_FRAMES, split).format(aggp=aggp, cond=cphrase)
    else:
        q = _pick(rng, AGG_FRAMES, split).format(aggp=aggp, entity=entity, cond=cphrase)
    expl = f"{agg}({col}) {AGG_WORD[agg]} the {col} column{' of the rows that match the WHERE clause' if where else ''}."
    return SqlItem("aggregate", _tidy(q), f"SELECT {agg}({col}) FROM {table}{where};", expl)


GROUPS = [("customers", "city", "city", "cities"), ("orders", "status", "status", "statuses"),
          ("orders", "customer_id", "customer", "customers"), ("products", "category", "category", "categories"),
          ("employees", "department", "department", "departments"), ("employees", "manager_id", "manager", "managers")]
GROUP_FRAMES = _frames(
    ["Show", "Show me", "List", "Give", "Give me", "Get", "Find", "Calculate", "Compute", "What is", "What's", "Tell me",
     "Break down", "Report", "I need"],
    ["the {metric} per {g}.", "the {metric} for each {g}.", "the {metric} for every {g}.", "the {metric} in each {g}.",
     "the {metric} by {g}.", "the {metric} grouped by {g}.", "the {metric} broken down by {g}.",
     "the {metric} split by {g}."],
    ["Group {entity} by {g} and show the {metric}.", "For each {g}, what is the {metric}?",
     "For every {g}, show the {metric}.", "List each {g} with the {metric}.", "List every {g} and its {metric}.",
     "Per {g}: the {metric}.", "{metric} by {g}?", "What is the {metric} of each {g}?"],
    ["Break down the {metric} by {g}.", "What is the {metric} for every {g}?", "Per {g}, what is the {metric}?"],
)
HAVING_FRAMES = _frames(
    [" Only show", " Keep only", " Just the", " Only include", " Only list", " Show only", " Include only"],
    ["{gs} where the {metric} is {cmp} {n}.", "{gs} with the {metric} {cmp} {n}.", "{gs} whose {metric} is {cmp} {n}.",
     "{gs} with a {metric} {cmp} {n}."],
    [" Skip {gs} unless the {metric} is {cmp} {n}.", " Only those having a {metric} {cmp} {n}."],
    [" Only include {gs} having a {metric} {cmp} {n}.", " Leave only the {gs} where the {metric} is {cmp} {n}."],
)


GROUP_TOP_FRAMES = _frames(  # the one group with the most / highest: LIMIT 1, the group column only
    ["Which", "What"],
    ["{g} has {sup}?", "{g} has got {sup}?", "{g} is the one with {sup}?"],
    ["Find the {g} with {sup}.", "Tell me the {g} with {sup}.", "Show the {g} with {sup}.", "The {g} with {sup}?",
     "Name the {g} with {sup}.", "Which is the {g} with {sup}?", "Get the {g} that has {sup}.",
     "Which {g} comes first by {metric}?"],
    ["Which {g} has {sup}?", "What is the {g} with {sup}?"],
)
GROUP_TOPN_FRAMES = _frames(  # the N groups with the most: the group column and the measure
    ["Show", "List", "Give me", "Get", "Find", "I want", "Show me"],
    ["the top {n} {gs} by {metric}.", "the {n} {gs} with {sup}.", "the {n} {gs} that have {sup}."],
    ["Top {n} {gs} by {metric}?", "Rank the {gs} by {metric} and show the top {n}.", "The {n} {gs} with {sup}, please."],
    ["What are the {n} {gs} with {sup}?"],
)
RANK_FRAMES = _frames(
    ["Rank", "Sort", "Order", "List"],
    ["the {gs} by {metric}.", "the {gs} by {metric}, highest first.", "all {gs} by {metric}."],
    ["Which {gs} have the highest {metric}? Rank them.", "{gs} ranked by {metric}."],
    ["Show the {gs} from the highest {metric} to the lowest."],
)
WHICH_HAVING_FRAMES = _frames(  # groups kept by a condition on their aggregate: the group column only
    ["Which", "What"],
    ["{gs} have {hav}?", "{gs} are there with {hav}?"],
    ["Find the {gs} that have {hav}.", "Name the {gs} with {hav}.", "Which of the {gs} have {hav}?"],
    ["Which {gs} have got {hav}?", "Tell me which {gs} have {hav}."],
)
WHERE_SUFFIXES = [" for {entity} {cond}", ", only for {entity} {cond}", ", counting only {entity} {cond}",
                  " among {entity} {cond}", " ({entity} {cond} only)"]
# Verb phrases for a condition on a group's sum: "Which departments spend more than 400000 on salaries?"
SUM_VERBS = {"salary": ["spend {cmp} {n} on salaries", "pay {cmp} {n} in salaries", "have a payroll of {cmp} {n}"],
             "total": ["bring in {cmp} {n}", "have sales of {cmp} {n}"], "stock": ["hold {cmp} {n} units in stock"]}
CMPS = {">": ["more than", "over", "above", "greater than"], "<": ["less than", "under", "below"],
        ">=": ["at least"], "<=": ["at most", "no more than"]}


def _group_where(rng: random.Random, table: str, gcol: str, split: Split) -> tuple[str, str, str]:
    """A WHERE for a grouped query (not on the group column): its words as a suffix, its SQL, the entity."""
    for _ in range(6):
        entity, cphrase, c = _subject(rng, table, split, n=rng.choice([1, 1, 2]))
        if not re.search(rf"\b{gcol}\b", c.sql):
            return rng.choice(WHERE_SUFFIXES).format(entity=entity, cond=cphrase), f" WHERE {c.sql}", entity
    return "", "", ""


def _suffix(q: str, extra: str) -> str:
    """`extra` put before the question's final punctuation."""
    return q[:-1] + extra + q[-1] if q[-1] in ".?" else q + extra


def k_group(rng: random.Random, split: Split) -> SqlItem:
    table, gcol, g, gs = rng.choice(GROUPS)
    entity = rng.choice(ENTITY[table])
    measures = [c for c, (t, _, _) in MEASURES.items() if t == table]
    if not measures or rng.random() < 0.45:
        agg, col, agg_sql, metric, nkey = "COUNT", "", "COUNT(*)", f"number of {entity}", None
        what = "counts the rows of each group"
    else:
        col = rng.choice(measures)
        agg = rng.choice(list(AGGS))
        agg_sql, metric, nkey = f"{agg}({col})", _aggp(rng, agg, col), col
        what = f"{AGG_WORD[agg]} {col} within each group"
    where_q, where = "", ""
    if rng.random() < 0.3:
        where_q, where, _ = _group_where(rng, table, gcol, split)
    mode = rng.random()
    if mode < 0.3:  # ordered groups: the one with the most, the top N, or all ranked
        if agg in ("MIN", "MAX"):  # "the highest biggest stock" reads badly: rank groups by an average or a sum
            agg = rng.choice(["AVG", "SUM"])
            agg_sql, metric = f"{agg}({col})", _aggp(rng, agg, col)
        most = rng.random() < 0.75
        d = "DESC" if most else "ASC"
        if agg == "COUNT":
            sup = f"the {'most' if most else 'fewest'} {entity}"
        else:
            sup = f"the {'highest' if most else 'lowest'} {metric}"
        kind = rng.random()
        if kind < 0.5:
            q = _pick(rng, GROUP_TOP_FRAMES, split).format(g=g, sup=sup, metric=metric)
            sql = f"SELECT {gcol} FROM {table}{where} GROUP BY {gcol} ORDER BY {agg_sql} {d} LIMIT 1"
            expl = f"GROUP BY {gcol} makes one row per {g}, ORDER BY {agg_sql} {d} puts the first one on top and LIMIT 1 keeps it."
        elif kind < 0.85:
            n = rng.randint(2, 10)
            q = _pick(rng, GROUP_TOPN_FRAMES, split).format(gs=gs, sup=sup, metric=metric, n=n)
            sql = f"SELECT {gcol}, {agg_sql} FROM {table}{where} GROUP BY {gcol} ORDER BY {agg_sql} {d} LIMIT {n}"
            expl = f"GROUP BY {gcol} makes one row per {g}, ORDER BY sorts the groups and LIMIT {n} keeps the first {n}."
        else:
            q = _pick(rng, RANK_FRAMES, split).format(gs=gs, metric=metric)
            sql = f"SELECT {gcol}, {agg_sql} FROM {table}{where} GROUP BY {gcol} ORDER BY {agg_sql} DESC"
            expl = f"GROUP BY {gcol} makes one row per {g} and ORDER BY {agg_sql} DESC ranks them."
        return SqlItem("group", _tidy(_suffix(q, where_q)), sql + ";", expl)
    op = rng.choices([">", "<", ">=", "<="], weights=[0.6, 0.25, 0.1, 0.05])[0]
    cmp = rng.choice(CMPS[op])
    n = rng.randint(1, 12) if nkey is None else _n(rng, nkey) * (rng.choice([1, 3, 5, 10]) if agg == "SUM" else 1)
    if mode < 0.45:  # "Which departments have more than 5 employees?": the groups that pass, by name
        if agg == "COUNT":
            hav = f"{cmp} {n} {entity}"
        elif agg == "SUM" and col in SUM_VERBS and rng.random() < 0.5:
            hav = ""
            q = f"{rng.choice(['Which', 'What'])} {gs} {rng.choice(SUM_VERBS[col]).format(cmp=cmp, n=n)}?"
        else:
            hav = f"{'an' if metric[0] in 'aeiou' else 'a'} {metric} of {cmp} {n}"
        if hav:
            q = _pick(rng, WHICH_HAVING_FRAMES, split).format(gs=gs, hav=hav)
        sql = f"SELECT {gcol} FROM {table}{where} GROUP BY {gcol} HAVING {agg_sql} {op} {n}"
        expl = f"GROUP BY {gcol} makes one row per {g} and HAVING keeps the groups whose {agg_sql} passes."
        return SqlItem("group", _tidy(_suffix(q, where_q)), sql + ";", expl)
    q = _suffix(_pick(rng, GROUP_FRAMES, split).format(metric=metric, g=g, entity=entity), where_q)
    sql = f"SELECT {gcol}, {agg_sql} FROM {table}{where} GROUP BY {gcol}"
    expl = f"GROUP BY {gcol} makes one row per {g} and {agg_sql} {what}."
    if rng.random() < 0.4:
        q += _pick(rng, HAVING_FRAMES, split).format(gs=gs, metric=metric, cmp=cmp, n=n)
        sql += f" HAVING {agg_sql} {op} {n}"
        expl = f"GROUP BY {gcol} makes one row per {g} and HAVING filters the groups on {agg_sql}."
    return SqlItem("group", _tidy(q), sql + ";", expl)


TOPS = [  # (phrases, table, columns, order column, direction)
    (["most expensive products", "priciest products", "products with the highest price"],
     "products", "name, price", "price", "DESC"),
    (["cheapest products", "least expensive products", "products with the lowest price"],
     "products", "name, price", "price", "ASC"),
    (["products with the lowest stock", "products closest to selling out", "products with the least stock"],
     "products", "name, stock", "stock", "ASC"),
    (["products with the most stock", "best stocked products", "products with the highest stock"],
     "products", "name, stock", "stock", "DESC"),
    (["highest paid employees", "top earning employees", "employees with the highest salaries", "best paid employees"],
     "employees", "name, salary", "salary", "DESC"),
    (["lowest paid employees", "employees with the smallest salaries", "employees with the lowest salaries"],
     "employees", "name, salary", "salary", "ASC"),
    (["largest orders", "biggest orders by total", "orders with the highest totals"], "orders", "id, total", "total", "DESC"),
    (["smallest orders", "orders with the lowest totals", "cheapest orders"], "orders", "id, total", "total", "ASC"),
    (["most recent orders", "latest orders", "newest orders"], "orders", "id, created_at", "created_at", "DESC"),
    (["oldest orders", "earliest orders", "first orders"], "orders", "id, created_at", "created_at", "ASC"),
    (["newest customers", "most recently registered customers", "latest customers to sign up"],
     "customers", "name, created_at", "created_at", "DESC"),
    (["first customers to sign up", "oldest customers", "earliest customers"],
     "customers", "name, created_at", "created_at", "ASC"),
]
TOP_FRAMES = _frames(
    ["Show", "Show me", "List", "Get", "Get me", "Find", "Give me", "Display", "Fetch", "Return", "Tell me",
     "I want to see", "I'd like", "I need", "Can you show", "Could you list", "Please show", "Let me see"],
    ["the top {n} {desc}.", "the {n} {desc}.", "only the {n} {desc}."],
    ["Which are the {n} {desc}?", "What are the {n} {desc}?", "Who are the {n} {desc}?", "Top {n} {desc}?",
     "The {n} {desc}, please."],
    ["I'd like to see the {n} {desc}.", "Could you show me the {n} {desc}?", "Show me just the {n} {desc}."],
)


# "the most expensive product": one row, LIMIT 1; (singular phrase, index into TOPS)
TOP_ONE = [("most expensive product", 0), ("priciest product", 0), ("cheapest product", 1),
           ("least expensive product", 1), ("product with the lowest stock", 2), ("best stocked product", 3),
           ("highest paid employee", 4), ("top earner", 4), ("lowest paid employee", 5), ("largest order", 6),
           ("biggest order", 6), ("smallest order", 7), ("most recent order", 8), ("latest order", 8),
           ("oldest order", 9), ("first order", 9), ("newest customer", 10), ("latest customer to sign up", 10),
           ("oldest customer", 11), ("first customer to sign up", 11)]
TOP_ONE_FRAMES = _frames(
    ["Show", "Show me", "Find", "Get", "Give me", "Tell me", "I want to see", "Can you find", "Please show"],
    ["the {one}.", "which is the {one}.", "the single {one}."],
    ["Which is the {one}?", "Who is the {one}?", "Which one is the {one}?", "The {one}?", "Find me the {one}."],
    ["What's the {one}?", "Name the {one}.", "Which row is the {one}?"],
)


def _top_where(rng: random.Random, table: str, desc: str, split: Split) -> tuple[str, str]:
    """Sometimes one condition for a top-N question: "the 3 cheapest kitchen products", "the 4 biggest orders from 2024"."""
    if rng.random() >= 0.35:
        return desc, ""
    c = compound(rng, table, split, n=1)
    nouns = [e for e in ENTITY[table] if desc.endswith(" " + e)]
    if c.pre and nouns and rng.random() < 0.5:
        return desc[: -len(nouns[0])] + f"{c.pre} {nouns[0]}", f" WHERE {c.sql}"
    return f"{desc} {c.np}", f" WHERE {c.sql}"


def k_top(rng: random.Random, split: Split) -> SqlItem:
    if rng.random() < 0.25:
        one, i = rng.choice(TOP_ONE)
        _, table, cols, col, d = TOPS[i]
        one, where = _top_where(rng, table, one, split)
        return SqlItem("top", _tidy(_pick(rng, TOP_ONE_FRAMES, split).format(one=one)),
                       f"SELECT {cols} FROM {table}{where} ORDER BY {col} {d} LIMIT 1;",
                       f"ORDER BY {col} {d} puts the {'highest' if d == 'DESC' else 'lowest'} {col} first "
                       "and LIMIT 1 keeps only that row.")
    phrases, table, cols, col, d = rng.choice(TOPS)
    n = rng.randint(2, 12)
    desc, where = _top_where(rng, table, rng.choice(phrases), split)
    q = _pick(rng, TOP_FRAMES, split).format(n=n, desc=desc)
    way = "highest" if d == "DESC" else "lowest"
    return SqlItem("top", _tidy(q), f"SELECT {cols} FROM {table}{where} ORDER BY {col} {d} LIMIT {n};",
                   f"ORDER BY {col} {d} puts the {way} {col} first and LIMIT {n} keeps the first {n} rows.")


J_ORDERS = "FROM orders JOIN customers ON orders.customer_id = customers.id"
J_SPENT = "FROM customers JOIN orders ON orders.customer_id = customers.id"
JOINS: list[tuple[dict[str, list[str]], Callable[[dict[str, object], str], tuple[str, str, str]]]] = []


def _join(train: list[str], heldout: list[str]) -> Callable[[Callable[..., tuple[str, str, str]]], None]:
    def deco(fn: Callable[..., tuple[str, str, str]]) -> None:
        JOINS.append(({"train": train, "heldout": heldout}, fn))
    return deco


@_join(["Show each order with the name of the customer who placed it{c}.", "List orders together with customer names{c}.",
        "Join orders and customers to show customer names and order totals{c}.",
        "Which customer placed each order{c}? Include the total.", "List every order alongside its customer's name{c}.",
        "Show each order next to the name of its customer{c}.", "Orders with their customer names{c}.",
        "Give me all orders and the customers who placed them{c}.",
        "For each order, show the customer name and the total{c}.", "Display orders with customer names{c}."],
       ["Display every order next to its customer's name{c}.", "Give me each order together with the customer's name{c}."])
def _j_orders(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    r = random.Random(str(s))
    opt = r.choice([("", ""), (" for customers from {city}", " WHERE customers.city = '{city}'"),
                    (" for {status} orders", " WHERE orders.status = '{status}'")])
    return (frame.format(c=opt[0].format(**s)),
            f"SELECT customers.name, orders.id, orders.total {J_ORDERS}{opt[1].format(**s)};",
            "The JOIN matches each order's customer_id with the customer's id.")


@_join(["How much has each customer spent in total{c}?", "Total order value per customer name{c}.",
        "Sum of order totals for each customer{c}.", "Show every customer's total spending{c}.",
        "What is the total spent by each customer{c}?", "How much did every customer spend{c}?",
        "Total spending per customer{c}.", "How much money has each customer spent overall{c}?",
        "What did every customer spend in total{c}?"],
       ["What did each customer spend altogether{c}?", "Show how much every customer has spent{c}."])
def _j_spent(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    having = random.Random(str(s)).random() < 0.4
    c = f", only those who spent more than {s['total']}" if having else ""
    h = f" HAVING SUM(orders.total) > {s['total']}" if having else ""
    return (frame.format(c=c), f"SELECT customers.name, SUM(orders.total) {J_SPENT} GROUP BY customers.name{h};",
            "The JOIN links orders to customers and GROUP BY sums the totals per customer.")


@_join(["How many orders has each customer placed?", "Count the orders per customer name.",
        "Show each customer with their number of orders.", "What is the order count per customer?",
        "Number of orders for every customer.", "How many orders did each customer make?",
        "List every customer with how many orders they placed.", "Give the number of orders of each customer."],
       ["Give the order count for every customer.", "For each customer, count their orders."])
def _j_count(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    return (frame, f"SELECT customers.name, COUNT(orders.id) {J_SPENT} GROUP BY customers.name;",
            "The JOIN links orders to customers and COUNT counts the orders of each customer.")


@_join(["Which products are in order {id}?", "List the products and quantities of order {id}.",
        "What did order {id} contain?", "Show the items of order number {id} with their quantities.",
        "What was bought in order {id}?", "Which items were ordered in order {id}, and in what quantity?",
        "Products purchased in order {id} with quantities.", "How many of each product are in order {id}?",
        "Which items does order {id} contain, and how many?", "Which products and quantities make up order {id}?",
        "Which products did order {id} include, with quantities?"],
       ["Which products were bought in order {id}, and how many of each?", "What is in order {id}?"])
def _j_items(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    return (frame.format(**s), "SELECT products.name, order_items.quantity FROM order_items JOIN products ON "
            f"order_items.product_id = products.id WHERE order_items.order_id = {s['id']};",
            "The JOIN looks up each order item's product by product_id.")


@_join(["List each employee with their manager's name{c}.", "Show employees and who they report to{c}.",
        "Pair every employee with the name of their manager{c}.", "Who manages each employee{c}?",
        "Show who is the boss of every employee{c}.", "For every employee, show the manager's name{c}.",
        "Each employee and their manager{c}.", "Who does each employee report to{c}?"],
       ["Who is the manager of each employee{c}?", "Show every employee with the person they report to{c}."])
def _j_managers(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    dept = random.Random(str(s)).random() < 0.4
    c = f" in {s['dept']}" if dept else ""
    w = f" WHERE e.department = '{s['dept']}'" if dept else ""
    return (frame.format(c=c), f"SELECT e.name, m.name FROM employees e JOIN employees m ON e.manager_id = m.id{w};",
            "This self join matches each employee's manager_id with another employee's id.")


@_join(["Which customers bought {cat} products?", "Find customers who ordered something from the {cat} category.",
        "Names of customers that purchased {cat} items.", "Who bought {cat} products?",
        "Which customers have purchased anything from {cat}?", "Customers who ordered {cat} items.",
        "Which clients ordered {cat} products, by name?"],
       ["Who has bought anything in the {cat} category?", "List the customers who ordered {cat} products."])
def _j_bought(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    return (frame.format(**s), "SELECT DISTINCT customers.name FROM customers JOIN orders ON orders.customer_id = "
            "customers.id JOIN order_items ON order_items.order_id = orders.id JOIN products ON "
            f"order_items.product_id = products.id WHERE products.category = '{s['cat']}';",
            "The joins follow the foreign keys from customers to products and DISTINCT removes repeats.")


@_join(["Which customers have never placed an order?", "Find customers without any orders.",
        "List customers with no orders.", "Which customers haven't ordered anything?",
        "Customers who have not placed any orders.", "Show customers that never bought anything.",
        "Who has not ordered yet?", "List the customers with zero orders.", "Which customers never bought anything?",
        "Which clients have not placed any orders?",
        "Who never placed an order?"],
       ["Show the customers who have not ordered anything yet.", "Which customers never ordered?"])
def _j_none(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    return (frame, "SELECT customers.name FROM customers LEFT JOIN orders ON orders.customer_id = customers.id "
            "WHERE orders.id IS NULL;", "The LEFT JOIN keeps every customer and IS NULL keeps those without a match.")


@_join(["How many units of each product were sold?", "Total quantity sold per product.",
        "Show each product with the number of units ordered.", "How many units have been sold of each product?",
        "Units ordered per product.", "For each product, show the total quantity ordered."],
       ["For every product, how many units have been ordered?", "What quantity of each product was sold?"])
def _j_units(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    return (frame, "SELECT products.name, SUM(order_items.quantity) FROM products JOIN order_items ON "
            "order_items.product_id = products.id GROUP BY products.name;",
            "The JOIN links order items to products and SUM adds up the quantities per product.")


@_join(["Which {n} customers spent the most?", "Show the {n} customers who spent the most.",
        "Who are the {n} biggest spenders?", "List the top {n} customers by total spent.",
        "Find the {n} customers with the highest total spending.", "Top {n} spenders among the customers?",
        "Give me the {n} customers who have spent the most money.", "Rank customers by spending and show the top {n}."],
       ["Which {n} customers have spent the most money?", "Name the {n} customers with the highest spending."])
def _j_top_spenders(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    n = 2 + int(s["id"]) % 4
    return (frame.format(n=n), f"SELECT customers.name, SUM(orders.total) {J_SPENT} GROUP BY customers.name "
            f"ORDER BY SUM(orders.total) DESC LIMIT {n};",
            "The JOIN sums each customer's orders, ORDER BY puts the biggest totals first and LIMIT keeps the top.")


def k_join(rng: random.Random, split: Split) -> SqlItem:
    frames, fn = rng.choice(JOINS)
    q, sql, expl = fn(_slots(rng, split), rng.choice(frames[split]))
    return SqlItem("join", q, sql, expl)


def _person(rng: random.Random, real: object = True) -> tuple[str, str]:
    """A name and e-mail: the demo data's lists (held-out), mostly made up (training)."""
    if not real:
        return V.person(rng)
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"


def _product(rng: random.Random, real: object = True) -> str:
    return f"{rng.choice(ADJ)} {rng.choice(NOUN)}" if real else V.product(rng)


DML: list[tuple[str, dict[str, list[str]], Callable[[random.Random, dict[str, object]], dict[str, object]], str, str]] = [
    ("insert", {"train": ["Add a customer named {name} with email {email} from {city}.",
                          "Insert a new customer {name}, email {email}, city {city}.",
                          "Create a customer record for {name} ({email}) in {city}.",
                          "Register a new customer {name} ({email}) from {city}.",
                          "New customer: {name}, {email}, {city}."],
                "heldout": ["Register {name} from {city} as a customer, email {email}.",
                            "Please add {name} ({email}), who lives in {city}, as a customer."]},
     lambda r, s: dict(zip(("name", "email"), _person(r, s["real"]))),
     "INSERT INTO customers (name, email, city) VALUES ('{name}', '{email}', '{city}');",
     "INSERT adds one row with the given values; the id is assigned automatically."),
    ("insert", {"train": ["Add a product called {pname} in {cat} priced {price} with {stock} in stock.",
                          "Insert a new {cat} product {pname} costing {price}, stock {stock}.",
                          "Put {pname} in the catalog: {cat}, price {price}, stock {stock}.",
                          "New {cat} product {pname} at price {price} with {stock} in stock."],
                "heldout": ["Put a new product {pname} into the {cat} category at price {price} with stock {stock}."]},
     lambda r, s: {"pname": _product(r, s["real"])},
     "INSERT INTO products (name, price, category, stock) VALUES ('{pname}', {price}, '{cat}', {stock});",
     "INSERT adds one product row with the given values."),
    ("insert", {"train": ["Add an employee {name} to {dept} with salary {salary}.",
                          "Hire {name} into the {dept} department at a salary of {salary}.",
                          "Insert a new employee {name} in {dept} earning {salary}.",
                          "New employee {name}, department {dept}, salary {salary}."],
                "heldout": ["Insert employee {name}, department {dept}, salary {salary}.",
                            "We hired {name} for {dept} at {salary}, add them."]},
     lambda r, s: {"name": _person(r, s["real"])[0]},
     "INSERT INTO employees (name, department, salary) VALUES ('{name}', '{dept}', {salary});",
     "INSERT adds one employee row with the given values."),
    ("update", {"train": ["Set the price of product {id} to {price}.", "Change product {id}'s price to {price}.",
                          "Update the price of product id {id} to {price}.", "Make product {id} cost {price}.",
                          "The price of product {id} is now {price}, update it.",
                          "Product {id} should be priced at {price}.", "The price of product {id} should be {price}.",
                          "Product {id} now costs {price}.", "Product {id} costs {price} from now on."],
                "heldout": ["Product {id} should now cost {price}."]},
     lambda r, s: {}, "UPDATE products SET price = {price} WHERE id = {id};",
     "UPDATE changes the price of the one row whose id matches."),
    ("update", {"train": ["Mark order {id} as {status}.", "Change the status of order {id} to {status}.",
                          "Set order {id} to {status}.", "Update order {id} so its status is {status}.",
                          "Order {id} should be marked {status}."],
                "heldout": ["Order {id} is now {status}, update it."]},
     lambda r, s: {}, "UPDATE orders SET status = '{status}' WHERE id = {id};",
     "UPDATE changes the status of the order with that id."),
    ("update", {"train": ["Move customer {id} to {city}.", "Change the city of customer {id} to {city}.",
                          "Customer {id} moved to {city}, update the record.", "Customer {id} now lives in {city}.",
                          "Update customer {id}: the city is {city}."],
                "heldout": ["Set {city} as the city of customer {id}."]},
     lambda r, s: {}, "UPDATE customers SET city = '{city}' WHERE id = {id};",
     "UPDATE changes the city of the customer with that id."),
    ("update", {"train": ["Give everyone in {dept} a salary of {salary}.", "Set the salary of all {dept} employees to {salary}.",
                          "Update salaries in the {dept} department to {salary}.",
                          "Everyone in {dept} should now be paid {salary}.",
                          "Make the salary of every {dept} employee {salary}.",
                          "Staff in {dept} should earn {salary} from now on."],
                "heldout": ["All employees of {dept} should earn {salary} now.",
                            "Change every {dept} salary to {salary}."]},
     lambda r, s: {}, "UPDATE employees SET salary = {salary} WHERE department = '{dept}';",
     "UPDATE sets the salary of every row in that department."),
    ("delete", {"train": ["Delete all {status} orders.", "Remove every order with status {status}.",
                          "Delete the orders that are {status}.", "Erase all {status} orders.",
                          "Clear out the {status} orders.", "Remove the {status} orders from the table."],
                "heldout": ["Get rid of the {status} orders.", "Please delete every order marked {status}."]},
     lambda r, s: {}, "DELETE FROM orders WHERE status = '{status}';", "DELETE removes every order with that status."),
    ("delete", {"train": ["Delete customer {id}.", "Remove the customer with id {id}.", "Delete the customer whose id is {id}.",
                          "Get rid of customer {id}.", "Customer {id} should be deleted."],
                "heldout": ["Customer {id} must be removed from the table."]},
     lambda r, s: {}, "DELETE FROM customers WHERE id = {id};", "DELETE removes the one row whose id matches."),
    ("delete", {"train": ["Delete products with less than {stock} in stock.", "Remove products whose stock is below {stock}.",
                          "Get rid of products with stock below {stock}.", "Erase every product with fewer than {stock} in stock."],
                "heldout": ["Drop every product with stock under {stock}."]},
     lambda r, s: {}, "DELETE FROM products WHERE stock < {stock};", "DELETE removes the products whose stock is below the value."),
    ("delete", {"train": ["Delete orders placed before {d}.", "Remove all orders created before {d}.",
                          "Delete orders older than {d}.", "Get rid of orders from before {d}."],
                "heldout": ["Clear out the orders older than {d}."]},
     lambda r, s: {}, "DELETE FROM orders WHERE created_at < '{d}';", "DELETE removes the orders created before that date."),
]
INDEXABLE = [("orders", "customer_id"), ("orders", "status"), ("orders", "created_at"), ("customers", "email"),
             ("customers", "city"), ("products", "category"), ("order_items", "order_id"),
             ("order_items", "product_id"), ("employees", "department"), ("employees", "manager_id")]
INDEX_FRAMES = {
    "train": ["Create an index on {table}.{col}.", "Add an index for the {col} column of {table}.",
              "My queries that filter {table} by {col} are slow. How do I speed them up?",
              "How can I make lookups of {table} by {col} faster?", "Index {table} on {col}.",
              "Filtering {table} by {col} takes too long. Any fix?", "Lookups on {table}.{col} are slow, what should I do?",
              "Speed up searches on {table} by {col}.", "Queries on {table}.{col} take forever."],
    "heldout": ["Searching {table} on {col} takes too long, what should I do?",
                "How do I make searching {table} by {col} quicker?"],
}


def k_dml(rng: random.Random, split: Split) -> SqlItem:
    if rng.random() < 0.25:
        table, col = rng.choice(INDEXABLE)
        q = _pick(rng, INDEX_FRAMES, split).format(table=table, col=col)
        return SqlItem("index", q, f"CREATE INDEX idx_{table}_{col} ON {table} ({col});",
                       f"An index on {col} lets the database find matching rows without scanning the whole table.")
    kind, frames, extra, sql, expl = rng.choice(DML)
    s = _slots(rng, split)
    s.update(extra(rng, s))
    return SqlItem(kind, _pick(rng, frames, split).format(**s), sql.format(**s), expl)


CONCEPTS = [
    ({"train": ["What is a primary key?", "Explain primary keys.", "What does PRIMARY KEY mean?"],
      "heldout": ["Can you tell me what a primary key is?"]},
     "A primary key is a column whose value is unique and never NULL, so it identifies each row, like customers.id."),
    ({"train": ["What is an index?", "Explain what an index does.", "Why would I add an index?"],
      "heldout": ["How does a database index help?"]},
     "An index is a sorted lookup structure on a column, so filters and joins on it avoid scanning the whole table; "
     "it costs some space and slower writes."),
    ({"train": ["What is a LEFT JOIN?", "Explain LEFT JOIN.", "How is a LEFT JOIN different from a JOIN?"],
      "heldout": ["When should I use a LEFT JOIN?"]},
     "A LEFT JOIN keeps every row of the left table and fills the right table's columns with NULL where nothing "
     "matches, for example customers without orders."),
    ({"train": ["What is a foreign key?", "Explain foreign keys.", "What does orders.customer_id point to?"],
      "heldout": ["How do foreign keys work?"]},
     "A foreign key is a column that refers to another table's primary key, like orders.customer_id pointing to "
     "customers.id."),
    ({"train": ["What is the difference between WHERE and HAVING?", "When do I use HAVING instead of WHERE?"],
      "heldout": ["HAVING or WHERE, which one filters groups?"]},
     "WHERE filters rows before grouping and HAVING filters the groups after GROUP BY, so aggregates go in HAVING."),
]
EXPLAIN_FRAMES = {"train": ["What does this query do? {sql}", "Explain this query: {sql}", "Explain: {sql}"],
                  "heldout": ["Can you explain what {sql} does?"]}


def k_concept(rng: random.Random, split: Split) -> SqlItem:
    if rng.random() < 0.4:  # explain a query drawn from the other kinds
        inner = rng.choice([k_filter, k_aggregate, k_group, k_top, k_join])(rng, "train")
        return SqlItem("explain", _pick(rng, EXPLAIN_FRAMES, split).format(sql=inner.sql), inner.sql, inner.explanation)
    frames, text = rng.choice(CONCEPTS)
    return SqlItem("concept", _pick(rng, frames, split), "", text)


KINDS: list[tuple[Callable[[random.Random, Split], SqlItem], float]] = [
    (k_filter, 0.18), (k_lookup, 0.09), (k_aggregate, 0.13), (k_group, 0.13), (k_top, 0.07), (k_sort, 0.04),
    (k_join, 0.07), (k_join2, 0.12), (k_dml, 0.05), (k_change, 0.09), (k_concept, 0.03)]


def _sloppy(rng: random.Random, q: str) -> str:
    """Users type loosely: sometimes lower-case the first letter or drop the final punctuation."""
    if rng.random() < 0.15 and not q[1:2].isupper():
        q = q[0].lower() + q[1:]
    if rng.random() < 0.15 and q[-1] in ".?":
        q = q[:-1]
    return q


LEAD_INS = ["Hi, ", "Hey, ", "Quick question: ", "Question: ", "SQL question: ", "Next one: ", "OK, ", "Now: "]
SIGN_OFFS = [" Thanks!", " Thank you.", " Thanks in advance.", " Please.", " Cheers."]


def _chatty(rng: random.Random, q: str) -> str:
    """Users add greetings and thanks around a question; training sees them so they do not derail an answer."""
    if rng.random() < 0.12:
        q = rng.choice(LEAD_INS) + (q[0].lower() + q[1:] if not q[1:2].isupper() else q)
    if rng.random() < 0.1:
        q = (q if q[-1] in ".?!" else q + ".") + rng.choice(SIGN_OFFS)
    return q


def sql_item(rng: random.Random, split: Split = "train") -> SqlItem:
    """One question of the sql persona with its answer (concept answers have no SQL)."""
    fn = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
    item = fn(rng, split)
    q = item.question
    if item.kind != "explain" and rng.random() < 0.3:  # "the top five", "over seventy thousand", "order number twelve"
        q = V.speak_numbers(rng, q, 0.7)
    q = _sloppy(rng, q)
    if split == "train":
        q = _chatty(rng, q)
    return SqlItem(item.kind, q, item.sql, item.explanation)


def render_answer(item: SqlItem) -> str:
    """The assistant text: a sql block and one sentence, or just the sentence for concepts and explanations."""
    if item.kind in ("concept", "explain"):
        return item.explanation
    return item.answer
