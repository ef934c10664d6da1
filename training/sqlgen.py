"""SQL questions about the demo schema with their reference query and a one-sentence explanation.

Every kind has training frames and held-out frames (phrasings training never sees); slot
values (cities, numbers, column phrases) are shared. `sql_item(rng, split)` draws one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
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


def _date(rng: random.Random) -> str:
    return f"{rng.choice(YEARS)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _n(rng: random.Random, col: str) -> int:
    return {"price": rng.randrange(5, 205, 5), "stock": rng.randrange(5, 105, 5),
            "total": rng.randrange(50, 510, 10), "salary": rng.randrange(30000, 125000, 5000),
            "id": rng.randint(1, 40)}[col]


def _pick(rng: random.Random, frames: dict[str, list[str]], split: Split) -> str:
    return rng.choice(frames[split])


# ---- tables: entity words, column choices, filter conditions ----------------------------------------
# A condition is (phrases, sql, what-for-the-explanation); phrases and sql are formatted with slot values.
Cond = tuple[list[str], str, str]

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
CONDS: dict[str, list[Cond]] = {
    "customers": [
        (["from {city}", "in {city}", "who live in {city}", "based in {city}", "whose city is {city}"],
         "city = '{city}'", "filters on the city column"),
        (["whose name starts with {L}", "with names beginning with {L}"], "name LIKE '{L}%'",
         "uses LIKE with a trailing wildcard to match the first letter"),
        (["with an email at {domain}", "whose email ends with @{domain}", "using {domain} email addresses"],
         "email LIKE '%@{domain}'", "uses LIKE with a leading wildcard to match the email domain"),
        (["who signed up after {d}", "created after {d}", "who joined after {d}"], "created_at > '{d}'",
         "compares created_at with the date"),
        (["who signed up before {d}", "created before {d}", "who joined before {d}"], "created_at < '{d}'",
         "compares created_at with the date"),
        (["who signed up between {d1} and {d2}", "created between {d1} and {d2}"],
         "created_at BETWEEN '{d1}' AND '{d2}'", "keeps created_at inside the date range with BETWEEN"),
        (["who signed up in {y}", "created in {y}", "who joined in {y}"],
         "created_at BETWEEN '{y}-01-01' AND '{y}-12-31'", "keeps created_at inside that year with BETWEEN"),
    ],
    "orders": [
        (["with status {status}", "that are {status}", "whose status is {status}", "marked {status}"],
         "status = '{status}'", "filters on the status column"),
        (["with a total above {total}", "worth more than {total}", "with total greater than {total}"],
         "total > {total}", "keeps rows whose total is greater than the value"),
        (["with a total below {total}", "worth less than {total}", "with total under {total}"],
         "total < {total}", "keeps rows whose total is less than the value"),
        (["of customer {id}", "placed by customer {id}", "for customer id {id}"], "customer_id = {id}",
         "filters on the customer_id foreign key"),
        (["placed after {d}", "created after {d}"], "created_at > '{d}'", "compares created_at with the date"),
        (["placed before {d}", "created before {d}"], "created_at < '{d}'", "compares created_at with the date"),
        (["placed between {d1} and {d2}", "created between {d1} and {d2}"],
         "created_at BETWEEN '{d1}' AND '{d2}'", "keeps created_at inside the date range with BETWEEN"),
        (["placed in {y}", "from {y}"], "created_at BETWEEN '{y}-01-01' AND '{y}-12-31'",
         "keeps created_at inside that year with BETWEEN"),
    ],
    "products": [
        (["in the {cat} category", "in category {cat}", "of category {cat}", "from the {cat} category"],
         "category = '{cat}'", "filters on the category column"),
        (["cheaper than {price}", "priced under {price}", "with a price below {price}", "costing less than {price}"],
         "price < {price}", "keeps rows whose price is less than the value"),
        (["more expensive than {price}", "priced over {price}", "with a price above {price}",
          "costing more than {price}"], "price > {price}", "keeps rows whose price is greater than the value"),
        (["with fewer than {stock} in stock", "with stock below {stock}"], "stock < {stock}",
         "keeps rows whose stock is less than the value"),
        (["with more than {stock} in stock", "with stock above {stock}"], "stock > {stock}",
         "keeps rows whose stock is greater than the value"),
        (["whose name contains {word}", "with {word} in the name"], "name LIKE '%{word}%'",
         "uses LIKE with wildcards on both sides to match part of the name"),
    ],
    "employees": [
        (["in the {dept} department", "who work in {dept}", "from the {dept} team"], "department = '{dept}'",
         "filters on the department column"),
        (["earning more than {salary}", "with a salary above {salary}", "paid over {salary}"], "salary > {salary}",
         "keeps rows whose salary is greater than the value"),
        (["earning less than {salary}", "with a salary below {salary}", "paid under {salary}"],
         "salary < {salary}", "keeps rows whose salary is less than the value"),
        (["who report to employee {id}", "managed by employee {id}", "whose manager is employee {id}"],
         "manager_id = {id}", "filters on the manager_id column"),
        (["whose name starts with {L}"], "name LIKE '{L}%'", "uses LIKE with a trailing wildcard"),
    ],
}


def _slots(rng: random.Random) -> dict[str, object]:
    d1, d2 = sorted(rng.sample([_date(rng) for _ in range(4)], 2))
    return {"city": rng.choice(CITIES), "status": rng.choice(STATUSES), "cat": rng.choice(CATEGORIES),
            "dept": rng.choice(DEPARTMENTS), "domain": rng.choice(DOMAINS), "L": rng.choice(LETTERS),
            "word": rng.choice(NOUN), "d": _date(rng), "d1": d1, "d2": d2, "y": rng.choice(YEARS),
            "price": _n(rng, "price"), "stock": _n(rng, "stock"), "total": _n(rng, "total"),
            "salary": _n(rng, "salary"), "id": _n(rng, "id")}


def _cond(rng: random.Random, table: str, s: dict[str, object]) -> tuple[str, str, str]:
    phrases, sql, why = rng.choice(CONDS[table])
    return rng.choice(phrases).format(**s), sql.format(**s), why


# ---- kinds --------------------------------------------------------------------------------------------
FILTER_FRAMES = {
    "train": ["Show {cols} of {entity} {cond}.", "List {cols} of all {entity} {cond}.", "Get {cols} for {entity} {cond}.",
              "I need {cols} of {entity} {cond}.", "Write a query that returns {cols} of {entity} {cond}.",
              "Find {entity} {cond} and return {cols}.", "SQL to fetch {cols} of {entity} {cond}?",
              "Give me {cols} of {entity} {cond}.", "Can you select {cols} of {entity} {cond}?",
              "Select {cols} from {entity} {cond}.", "Query {cols} of {entity} {cond}.",
              "Display {cols} for {entity} {cond}."],
    "heldout": ["Please pull up {cols} of the {entity} {cond}.", "What are {cols} of {entity} {cond}?",
                "Return {cols} of {entity} {cond}."],
}


def k_filter(rng: random.Random, split: Split) -> SqlItem:
    table = rng.choice(list(CONDS))
    s = _slots(rng)
    cols, cols_p = rng.choice(COLS[table])
    cphrase, csql, why = _cond(rng, table, s)
    q = _pick(rng, FILTER_FRAMES, split).format(cols=cols_p, entity=rng.choice(ENTITY[table]), cond=cphrase)
    return SqlItem("filter", q, f"SELECT {cols} FROM {table} WHERE {csql};", f"This reads the {table} table and {why}.")


MEASURES = {"price": ("products", "price", "prices"), "stock": ("products", "stock", "stock levels"),
            "total": ("orders", "order total", "order totals"), "salary": ("employees", "salary", "salaries")}
AGGS = {"SUM": ["sum of the {mp}", "combined {mp}"], "AVG": ["average {ms}", "mean {ms}"],
        "MIN": ["lowest {ms}", "minimum {ms}", "smallest {ms}"], "MAX": ["highest {ms}", "maximum {ms}", "largest {ms}"]}
AGG_WORD = {"SUM": "adds up", "AVG": "averages", "MIN": "takes the minimum of", "MAX": "takes the maximum of"}
AGG_FRAMES = {
    "train": ["What is the {aggp} of {entity}{cond}?", "Find the {aggp} of {entity}{cond}.",
              "Calculate the {aggp} across {entity}{cond}.", "Query for the {aggp} of {entity}{cond}.",
              "I want the {aggp} of {entity}{cond}.", "Show the {aggp} for {entity}{cond}.",
              "Get me the {aggp} of all {entity}{cond}."],
    "heldout": ["Tell me the {aggp} of {entity}{cond}.", "What's the {aggp} among {entity}{cond}?"],
}
COUNT_FRAMES = {
    "train": ["How many {entity} are there{cond}?", "Count the {entity}{cond}.", "What is the number of {entity}{cond}?",
              "Give me the count of {entity}{cond}.", "Count how many {entity} exist{cond}.",
              "How many {entity} do we have{cond}?", "Number of {entity}{cond}?"],
    "heldout": ["Tell me how many {entity} we have{cond}.", "What's the total number of {entity}{cond}?"],
}


def k_aggregate(rng: random.Random, split: Split) -> SqlItem:
    s = _slots(rng)
    if rng.random() < 0.35:
        table = rng.choice(list(CONDS))
        where, cphrase, why = "", "", ""
        if rng.random() < 0.6:
            cphrase, csql, why = _cond(rng, table, s)
            where, cphrase = f" WHERE {csql}", " " + cphrase
        q = _pick(rng, COUNT_FRAMES, split).format(entity=rng.choice(ENTITY[table]), cond=cphrase)
        expl = f"COUNT(*) counts the rows{' and the WHERE clause ' + why if why else ''}."
        return SqlItem("count", q, f"SELECT COUNT(*) FROM {table}{where};", expl)
    col = rng.choice(list(MEASURES))
    table, ms, mp = MEASURES[col]
    agg = rng.choice(["AVG", "MIN", "MAX"] if col == "price" else list(AGGS))
    aggp = rng.choice(AGGS[agg]).format(ms=ms, mp=mp)
    where, cphrase = "", ""
    if rng.random() < 0.5:
        cphrase, csql, _ = _cond(rng, table, s)
        where, cphrase = f" WHERE {csql}", " " + cphrase
    q = _pick(rng, AGG_FRAMES, split).format(aggp=aggp, entity=rng.choice(ENTITY[table]), cond=cphrase)
    expl = f"{agg}({col}) {AGG_WORD[agg]} the {col} column{' of the rows that match the WHERE clause' if where else ''}."
    return SqlItem("aggregate", q, f"SELECT {agg}({col}) FROM {table}{where};", expl)


GROUPS = [("customers", "city", "city", "cities"), ("orders", "status", "status", "statuses"),
          ("orders", "customer_id", "customer", "customers"), ("products", "category", "category", "categories"),
          ("employees", "department", "department", "departments"), ("employees", "manager_id", "manager", "managers")]
GROUP_FRAMES = {
    "train": ["Show the {metric} per {g}.", "Group {entity} by {g} and show the {metric}.",
              "For each {g}, what is the {metric}?", "List each {g} with the {metric}.",
              "What is the {metric} in each {g}?", "Give the {metric} grouped by {g}."],
    "heldout": ["Break down the {metric} by {g}.", "What is the {metric} for every {g}?"],
}
HAVING_FRAMES = {
    "train": [" Only show {gs} where the {metric} is {cmp} {n}.", " Keep only {gs} with the {metric} {cmp} {n}.",
              " Just the {gs} whose {metric} is {cmp} {n}."],
    "heldout": [" Only include {gs} having a {metric} {cmp} {n}."],
}


def k_group(rng: random.Random, split: Split) -> SqlItem:
    table, gcol, g, gs = rng.choice(GROUPS)
    entity = rng.choice(ENTITY[table])
    measures = [c for c, (t, _, _) in MEASURES.items() if t == table]
    if not measures or rng.random() < 0.45:
        agg_sql, metric, nkey = "COUNT(*)", f"number of {entity}", None
        what = "counts the rows of each group"
    else:
        col = rng.choice(measures)
        _, ms, mp = MEASURES[col]
        agg = rng.choice(list(AGGS))
        agg_sql, metric, nkey = f"{agg}({col})", rng.choice(AGGS[agg]).format(ms=ms, mp=mp), col
        what = f"{AGG_WORD[agg]} {col} within each group"
    q = _pick(rng, GROUP_FRAMES, split).format(metric=metric, g=g, entity=entity)
    sql = f"SELECT {gcol}, {agg_sql} FROM {table} GROUP BY {gcol}"
    expl = f"GROUP BY {gcol} makes one row per {g} and {agg_sql} {what}."
    if rng.random() < 0.4:
        n = rng.randint(1, 6) if nkey is None else _n(rng, nkey)
        gt = rng.random() < 0.7
        cmp = rng.choice(["more than", "above", "greater than", "over"] if gt else ["less than", "below", "under"])
        q += _pick(rng, HAVING_FRAMES, split).format(gs=gs, metric=metric, cmp=cmp, n=n)
        sql += f" HAVING {agg_sql} {'>' if gt else '<'} {n}"
        expl = f"GROUP BY {gcol} makes one row per {g} and HAVING filters the groups on {agg_sql}."
    return SqlItem("group", q, sql + ";", expl)


TOPS = [  # (phrases, table, columns, order column, direction)
    (["most expensive products", "priciest products"], "products", "name, price", "price", "DESC"),
    (["cheapest products", "least expensive products"], "products", "name, price", "price", "ASC"),
    (["products with the lowest stock", "products closest to selling out"], "products", "name, stock", "stock", "ASC"),
    (["products with the most stock", "best stocked products"], "products", "name, stock", "stock", "DESC"),
    (["highest paid employees", "top earning employees"], "employees", "name, salary", "salary", "DESC"),
    (["lowest paid employees", "employees with the smallest salaries"], "employees", "name, salary", "salary", "ASC"),
    (["largest orders", "biggest orders by total"], "orders", "id, total", "total", "DESC"),
    (["smallest orders", "orders with the lowest totals"], "orders", "id, total", "total", "ASC"),
    (["most recent orders", "latest orders"], "orders", "id, created_at", "created_at", "DESC"),
    (["oldest orders", "earliest orders"], "orders", "id, created_at", "created_at", "ASC"),
    (["newest customers", "most recently registered customers"], "customers", "name, created_at", "created_at", "DESC"),
    (["first customers to sign up", "oldest customers"], "customers", "name, created_at", "created_at", "ASC"),
]
TOP_FRAMES = {
    "train": ["Show the top {n} {desc}.", "List the {n} {desc}.", "Which are the {n} {desc}?", "Get the {n} {desc}.",
              "Find the {n} {desc}.", "Give me the {n} {desc}.", "Top {n} {desc}?"],
    "heldout": ["I'd like to see the {n} {desc}.", "Could you show me the {n} {desc}?"],
}


def k_top(rng: random.Random, split: Split) -> SqlItem:
    phrases, table, cols, col, d = rng.choice(TOPS)
    n = rng.randint(2, 10)
    q = _pick(rng, TOP_FRAMES, split).format(n=n, desc=rng.choice(phrases))
    way = "highest" if d == "DESC" else "lowest"
    return SqlItem("top", q, f"SELECT {cols} FROM {table} ORDER BY {col} {d} LIMIT {n};",
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
        "Which customer placed each order{c}? Include the total."],
       ["Display every order next to its customer's name{c}."])
def _j_orders(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    r = random.Random(str(s))
    opt = r.choice([("", ""), (" for customers from {city}", " WHERE customers.city = '{city}'"),
                    (" for {status} orders", " WHERE orders.status = '{status}'")])
    return (frame.format(c=opt[0].format(**s)),
            f"SELECT customers.name, orders.id, orders.total {J_ORDERS}{opt[1].format(**s)};",
            "The JOIN matches each order's customer_id with the customer's id.")


@_join(["How much has each customer spent in total{c}?", "Total order value per customer name{c}.",
        "Sum of order totals for each customer{c}.", "Show every customer's total spending{c}."],
       ["What did each customer spend altogether{c}?"])
def _j_spent(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    having = random.Random(str(s)).random() < 0.4
    c = f", only those who spent more than {s['total']}" if having else ""
    h = f" HAVING SUM(orders.total) > {s['total']}" if having else ""
    return (frame.format(c=c), f"SELECT customers.name, SUM(orders.total) {J_SPENT} GROUP BY customers.name{h};",
            "The JOIN links orders to customers and GROUP BY sums the totals per customer.")


@_join(["How many orders has each customer placed?", "Count the orders per customer name.",
        "Show each customer with their number of orders."],
       ["Give the order count for every customer."])
def _j_count(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    return (frame, f"SELECT customers.name, COUNT(orders.id) {J_SPENT} GROUP BY customers.name;",
            "The JOIN links orders to customers and COUNT counts the orders of each customer.")


@_join(["Which products are in order {id}?", "List the products and quantities of order {id}.",
        "What did order {id} contain?", "Show the items of order number {id} with their quantities."],
       ["Which products were bought in order {id}, and how many of each?"])
def _j_items(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    return (frame.format(**s), "SELECT products.name, order_items.quantity FROM order_items JOIN products ON "
            f"order_items.product_id = products.id WHERE order_items.order_id = {s['id']};",
            "The JOIN looks up each order item's product by product_id.")


@_join(["List each employee with their manager's name{c}.", "Show employees and who they report to{c}.",
        "Pair every employee with the name of their manager{c}."],
       ["Who is the manager of each employee{c}?"])
def _j_managers(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    dept = random.Random(str(s)).random() < 0.4
    c = f" in {s['dept']}" if dept else ""
    w = f" WHERE e.department = '{s['dept']}'" if dept else ""
    return (frame.format(c=c), f"SELECT e.name, m.name FROM employees e JOIN employees m ON e.manager_id = m.id{w};",
            "This self join matches each employee's manager_id with another employee's id.")


@_join(["Which customers bought {cat} products?", "Find customers who ordered something from the {cat} category.",
        "Names of customers that purchased {cat} items."],
       ["Who has bought anything in the {cat} category?"])
def _j_bought(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    return (frame.format(**s), "SELECT DISTINCT customers.name FROM customers JOIN orders ON orders.customer_id = "
            "customers.id JOIN order_items ON order_items.order_id = orders.id JOIN products ON "
            f"order_items.product_id = products.id WHERE products.category = '{s['cat']}';",
            "The joins follow the foreign keys from customers to products and DISTINCT removes repeats.")


@_join(["Which customers have never placed an order?", "Find customers without any orders.",
        "List customers with no orders."],
       ["Show the customers who have not ordered anything yet."])
def _j_none(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    return (frame, "SELECT customers.name FROM customers LEFT JOIN orders ON orders.customer_id = customers.id "
            "WHERE orders.id IS NULL;", "The LEFT JOIN keeps every customer and IS NULL keeps those without a match.")


@_join(["How many units of each product were sold?", "Total quantity sold per product.",
        "Show each product with the number of units ordered."],
       ["For every product, how many units have been ordered?"])
def _j_units(s: dict[str, object], frame: str) -> tuple[str, str, str]:
    return (frame, "SELECT products.name, SUM(order_items.quantity) FROM products JOIN order_items ON "
            "order_items.product_id = products.id GROUP BY products.name;",
            "The JOIN links order items to products and SUM adds up the quantities per product.")


def k_join(rng: random.Random, split: Split) -> SqlItem:
    frames, fn = rng.choice(JOINS)
    q, sql, expl = fn(_slots(rng), rng.choice(frames[split]))
    return SqlItem("join", q, sql, expl)


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"


DML: list[tuple[str, dict[str, list[str]], Callable[[random.Random, dict[str, object]], dict[str, object]], str, str]] = [
    ("insert", {"train": ["Add a customer named {name} with email {email} from {city}.",
                          "Insert a new customer {name}, email {email}, city {city}.",
                          "Create a customer record for {name} ({email}) in {city}."],
                "heldout": ["Register {name} from {city} as a customer, email {email}."]},
     lambda r, s: dict(zip(("name", "email"), _person(r))),
     "INSERT INTO customers (name, email, city) VALUES ('{name}', '{email}', '{city}');",
     "INSERT adds one row with the given values; the id is assigned automatically."),
    ("insert", {"train": ["Add a product called {pname} in {cat} priced {price} with {stock} in stock.",
                          "Insert a new {cat} product {pname} costing {price}, stock {stock}."],
                "heldout": ["Put a new product {pname} into the {cat} category at price {price} with stock {stock}."]},
     lambda r, s: {"pname": f"{r.choice(ADJ)} {r.choice(NOUN)}"},
     "INSERT INTO products (name, price, category, stock) VALUES ('{pname}', {price}, '{cat}', {stock});",
     "INSERT adds one product row with the given values."),
    ("insert", {"train": ["Add an employee {name} to {dept} with salary {salary}.",
                          "Hire {name} into the {dept} department at a salary of {salary}."],
                "heldout": ["Insert employee {name}, department {dept}, salary {salary}."]},
     lambda r, s: {"name": _person(r)[0]},
     "INSERT INTO employees (name, department, salary) VALUES ('{name}', '{dept}', {salary});",
     "INSERT adds one employee row with the given values."),
    ("update", {"train": ["Set the price of product {id} to {price}.", "Change product {id}'s price to {price}.",
                          "Update the price of product id {id} to {price}."],
                "heldout": ["Product {id} should now cost {price}."]},
     lambda r, s: {}, "UPDATE products SET price = {price} WHERE id = {id};",
     "UPDATE changes the price of the one row whose id matches."),
    ("update", {"train": ["Mark order {id} as {status}.", "Change the status of order {id} to {status}.",
                          "Set order {id} to {status}."],
                "heldout": ["Order {id} is now {status}, update it."]},
     lambda r, s: {}, "UPDATE orders SET status = '{status}' WHERE id = {id};",
     "UPDATE changes the status of the order with that id."),
    ("update", {"train": ["Move customer {id} to {city}.", "Change the city of customer {id} to {city}.",
                          "Customer {id} moved to {city}, update the record."],
                "heldout": ["Set {city} as the city of customer {id}."]},
     lambda r, s: {}, "UPDATE customers SET city = '{city}' WHERE id = {id};",
     "UPDATE changes the city of the customer with that id."),
    ("update", {"train": ["Give everyone in {dept} a salary of {salary}.", "Set the salary of all {dept} employees to {salary}.",
                          "Update salaries in the {dept} department to {salary}."],
                "heldout": ["All employees of {dept} should earn {salary} now."]},
     lambda r, s: {}, "UPDATE employees SET salary = {salary} WHERE department = '{dept}';",
     "UPDATE sets the salary of every row in that department."),
    ("delete", {"train": ["Delete all {status} orders.", "Remove every order with status {status}.",
                          "Delete the orders that are {status}."],
                "heldout": ["Get rid of the {status} orders."]},
     lambda r, s: {}, "DELETE FROM orders WHERE status = '{status}';", "DELETE removes every order with that status."),
    ("delete", {"train": ["Delete customer {id}.", "Remove the customer with id {id}.", "Delete the customer whose id is {id}."],
                "heldout": ["Customer {id} must be removed from the table."]},
     lambda r, s: {}, "DELETE FROM customers WHERE id = {id};", "DELETE removes the one row whose id matches."),
    ("delete", {"train": ["Delete products with less than {stock} in stock.", "Remove products whose stock is below {stock}."],
                "heldout": ["Drop every product with stock under {stock}."]},
     lambda r, s: {}, "DELETE FROM products WHERE stock < {stock};", "DELETE removes the products whose stock is below the value."),
    ("delete", {"train": ["Delete orders placed before {d}.", "Remove all orders created before {d}."],
                "heldout": ["Clear out the orders older than {d}."]},
     lambda r, s: {}, "DELETE FROM orders WHERE created_at < '{d}';", "DELETE removes the orders created before that date."),
]
INDEXABLE = [("orders", "customer_id"), ("orders", "status"), ("orders", "created_at"), ("customers", "email"),
             ("customers", "city"), ("products", "category"), ("order_items", "order_id"),
             ("order_items", "product_id"), ("employees", "department"), ("employees", "manager_id")]
INDEX_FRAMES = {
    "train": ["Create an index on {table}.{col}.", "Add an index for the {col} column of {table}.",
              "My queries that filter {table} by {col} are slow. How do I speed them up?",
              "How can I make lookups of {table} by {col} faster?", "Index {table} on {col}."],
    "heldout": ["Searching {table} on {col} takes too long, what should I do?"],
}


def k_dml(rng: random.Random, split: Split) -> SqlItem:
    if rng.random() < 0.25:
        table, col = rng.choice(INDEXABLE)
        q = _pick(rng, INDEX_FRAMES, split).format(table=table, col=col)
        return SqlItem("index", q, f"CREATE INDEX idx_{table}_{col} ON {table} ({col});",
                       f"An index on {col} lets the database find matching rows without scanning the whole table.")
    kind, frames, extra, sql, expl = rng.choice(DML)
    s = _slots(rng)
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
    (k_filter, 0.26), (k_aggregate, 0.16), (k_group, 0.14), (k_top, 0.1), (k_join, 0.16), (k_dml, 0.12),
    (k_concept, 0.06)]


def _sloppy(rng: random.Random, q: str) -> str:
    """Users type loosely: sometimes lower-case the first letter or drop the final punctuation."""
    if rng.random() < 0.15 and not q[1:2].isupper():
        q = q[0].lower() + q[1:]
    if rng.random() < 0.15 and q[-1] in ".?":
        q = q[:-1]
    return q


def sql_item(rng: random.Random, split: Split = "train") -> SqlItem:
    """One question of the sql persona with its answer (concept answers have no SQL)."""
    fn = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
    item = fn(rng, split)
    return SqlItem(item.kind, _sloppy(rng, item.question), item.sql, item.explanation)


def render_answer(item: SqlItem) -> str:
    """The assistant text: a sql block and one sentence, or just the sentence for concepts and explanations."""
    if item.kind in ("concept", "explain"):
        return item.explanation
    return item.answer
