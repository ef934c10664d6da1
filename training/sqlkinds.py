"""More SQL question kinds: look-ups of one row by name, e-mail or id; sorting; joins composed with
filters, HAVING, ORDER BY and LIMIT; changes that name the column and the row in many ways.

Like `training.sqlgen`, each kind has training frames and held-out frames, and values that are made
up in training (so the answer must copy them) and the demo data's in held-out questions.
"""

from __future__ import annotations

import random

from training.conds import Values, compound
from training.sqlbase import Split, SqlItem, _frames, _pick

ENT = {"customers": ["customers", "clients"], "orders": ["orders"], "products": ["products", "items"],
       "employees": ["employees", "staff members", "workers"]}


def _tidy(q: str) -> str:
    from training.sqlgen import _tidy as tidy

    return tidy(q)


# ---- look-ups: one row named by name, e-mail or id ----------------------------------------------------------
# (table, column, the column's words, natural questions with {ref}); {ref} is the row's reference.
LOOKUP_COLS: list[tuple[str, str, list[str], list[str]]] = [
    ("customers", "email", ["email", "email address", "e-mail"], ["How do I reach {ref} by email?"]),
    ("customers", "city", ["city"], ["Where does {ref} live?", "Which city is {ref} from?", "What city is {ref} in?"]),
    ("customers", "created_at", ["signup date", "registration date"], ["When did {ref} sign up?", "When did {ref} join?"]),
    ("employees", "salary", ["salary", "pay"], ["How much does {ref} earn?", "How much is {ref} paid?", "What does {ref} make?"]),
    ("employees", "department", ["department", "team"], ["Which department does {ref} work in?", "What team is {ref} on?",
                                                          "Which department is {ref} in?"]),
    ("employees", "manager_id", ["manager id", "manager's id"], ["Who is the manager id of {ref}?"]),
    ("products", "price", ["price", "cost"], ["How much does {ref} cost?", "What does {ref} cost?", "How much is {ref}?"]),
    ("products", "stock", ["stock", "stock level", "number in stock"], ["How many of {ref} do we have in stock?",
                                                                        "How many units of {ref} are left?"]),
    ("products", "category", ["category"], ["Which category is {ref} in?", "What category does {ref} belong to?"]),
    ("orders", "status", ["status", "state"], ["Has {ref} shipped yet? What is its status?", "Where is {ref} at, status-wise?"]),
    ("orders", "total", ["total", "amount", "value"], ["How much was {ref}?", "What was {ref} worth?"]),
    ("orders", "created_at", ["date", "order date"], ["When was {ref} placed?", "When did {ref} come in?"]),
    ("orders", "customer_id", ["customer id"], ["Which customer id placed {ref}?"]),
]
LOOKUP_FRAMES = _frames(
    ["What is", "What's", "Give me", "Show", "Show me", "Find", "Get", "Look up", "Tell me", "I need"],
    ["the {colp} of {ref}.", "{ref}'s {colp}.", "the {colp} for {ref}."],
    ["{ref}'s {colp}?", "What {colp} does {ref} have?", "Can you look up the {colp} of {ref}?"],
    ["Could you find the {colp} of {ref}?", "Which {colp} does {ref} have?"],
)
ROW_FRAMES = _frames(  # the whole row
    ["Show", "Show me", "Pull up", "Get", "Find", "Display", "Look up", "Give me"],
    ["{ref}.", "everything about {ref}.", "all the details of {ref}.", "the record of {ref}."],
    ["What do we know about {ref}?", "Details of {ref}, please.", "All info on {ref}?"],
    ["Show me all the info on {ref}.", "Everything we have on {ref}?"],
)
WHO_FRAMES = _frames(  # the name of the row with an e-mail or an id
    ["Who", "Which customer"],
    ["has the email {email}?", "uses the email address {email}?", "owns the address {email}?"],
    ["Whose email is {email}?", "Find the customer with the email {email}.", "Which client has the email {email}?"],
    ["Who is behind the email {email}?"],
)


def _ref(rng: random.Random, table: str, x: Values, labelled: bool = False) -> tuple[str, str]:
    """A way to name one row, and its SQL condition: a name, an e-mail or an id. `labelled`: a person's name
    always says which table ("customer Ann Lee"), for questions where nothing else does."""
    ident = x.ident(table)
    if table == "orders" or rng.random() < 0.3:
        word = {"customers": ["customer", "client"], "orders": ["order"], "products": ["product"],
                "employees": ["employee"]}[table]
        form = rng.choice(["{w} {i}", "{w} {i}", "{w} number {i}", "{w} #{i}", "{w} with id {i}", "the {w} with id {i}"])
        return form.format(w=rng.choice(word), i=ident), f"id = {ident}"
    if table == "products":
        p = x.product(existing=True)
        return rng.choice([p, f"the {p}", f"the product {p}", f"the {p} product"]), f"name = '{p}'"
    name, email = x.person(table)
    if table == "customers" and rng.random() < 0.25:
        return rng.choice([f"the customer with email {email}", f"the customer whose email is {email}"]), f"email = '{email}'"
    label = {"customers": ["customer ", "the customer "], "employees": ["employee ", "the employee "]}[table]
    if not labelled:
        label = ["", *label]
    return rng.choice(label) + name, f"name = '{name}'"


def k_lookup(rng: random.Random, split: Split) -> SqlItem:
    x = Values(rng, split)
    r = rng.random()
    if r < 0.15:  # who has this e-mail
        _, email = x.person("customers")
        q = _pick(rng, WHO_FRAMES, split).format(email=email)
        return SqlItem("lookup", _tidy(q), f"SELECT name FROM customers WHERE email = '{email}';",
                       "This finds the customer whose email matches and returns the name.")
    if r < 0.35:  # the whole row
        table = rng.choice(list(ENT))
        ref, cond = _ref(rng, table, x, labelled=True)
        q = _pick(rng, ROW_FRAMES, split).format(ref=ref)
        return SqlItem("lookup", _tidy(q), f"SELECT * FROM {table} WHERE {cond};",
                       f"This returns every column of the {table} row that matches.")
    table, col, words, natural = rng.choice(LOOKUP_COLS)
    ref, cond = _ref(rng, table, x)
    if split == "train" and rng.random() < 0.35:
        q = rng.choice(natural).format(ref=ref)
    else:
        q = _pick(rng, LOOKUP_FRAMES, split).format(colp=rng.choice(words), ref=ref)
    return SqlItem("lookup", _tidy(q), f"SELECT {col} FROM {table} WHERE {cond};",
                   f"This reads the {col} column of the {table} row that matches.")


# ---- sorting without a limit ---------------------------------------------------------------------------------
SORTS = [("customers", "name", ["name", "alphabetically"], "ASC"), ("customers", "created_at", ["signup date"], "DESC"),
         ("products", "price", ["price"], "DESC"), ("products", "price", ["price"], "ASC"),
         ("products", "stock", ["stock"], "ASC"), ("products", "name", ["name", "alphabetically"], "ASC"),
         ("employees", "salary", ["salary", "pay"], "DESC"), ("employees", "name", ["name", "alphabetically"], "ASC"),
         ("orders", "total", ["total", "value"], "DESC"), ("orders", "created_at", ["date"], "DESC")]
SORT_FRAMES = _frames(  # every opener with every body: "Put" and "in order of" are seen, never together
    ["Sort", "List", "Show", "Order", "Give me", "Arrange", "Rank", "Display", "Put", "Show me",
     "I need", "Please sort", "Let me see"],
    ["{entity} by {by}{way}.", "all {entity} by {by}{way}.", "the {entity} sorted by {by}{way}.",
     "the {entity} ordered by {by}{way}.", "every one of the {entity} by {by}{way}.",
     "the {entity} in order of {by}{way}.", "the {entity} in {by} order{way}."],
    ["{entity} sorted by {by}{way}?", "Can you sort the {entity} by {by}{way}?", "I want the {entity} sorted by {by}{way}.",
     "Can I see the {entity} ordered by {by}{way}?", "Which {entity} come first by {by}{way}? Show them all."],
    ["Put the {entity} in order of {by}{way}."],
)
WAYS = {"DESC": [", highest first", " from high to low", " descending", ", biggest first"],
        "ASC": ["", ", lowest first", " from low to high", " ascending", ", smallest first"]}


def k_sort(rng: random.Random, split: Split) -> SqlItem:
    table, col, bys, d = rng.choice(SORTS)
    by = rng.choice(bys)
    way = "" if by == "alphabetically" else rng.choice(WAYS[d])
    if col == "created_at":
        way = rng.choice([", newest first", ", most recent first", " from newest to oldest"])
    entity = rng.choice(ENT[table])
    where = ""
    if rng.random() < 0.3:
        c = compound(rng, table, split, n=1)
        entity, where = f"{entity} {c.np}", f" WHERE {c.sql}"
    q = _pick(rng, SORT_FRAMES, split).format(entity=entity, by=by if by != "alphabetically" else "name",
                                              way=way).replace("by name", rng.choice(["by name", "alphabetically"])
                                                               if by == "alphabetically" else "by name")
    order = f"{col}" if d == "ASC" else f"{col} DESC"
    return SqlItem("sort", _tidy(q), f"SELECT * FROM {table}{where} ORDER BY {order};",
                   f"ORDER BY {order} sorts the rows{' that match the WHERE clause' if where else ''}.")


# ---- joins composed with filters, HAVING, ORDER BY and LIMIT ---------------------------------------------------
J_OC = "FROM orders JOIN customers ON orders.customer_id = customers.id"
J_CO = "FROM customers JOIN orders ON orders.customer_id = customers.id"
J_ALL = ("FROM customers JOIN orders ON orders.customer_id = customers.id JOIN order_items ON order_items.order_id = "
         "orders.id JOIN products ON order_items.product_id = products.id")


def _qualify(sql: str, table: str) -> str:
    """A condition's columns prefixed with their table ("city = 'X'" -> "customers.city = 'X'")."""
    import re

    return re.sub(r"(?<![\w.'])(name|email|city|created_at|status|total|customer_id|category|price|stock)\b(?=\s*(=|<|>|LIKE|BETWEEN|IS))",
                  rf"{table}.\1", sql)


ORDERS_WITH_NAMES = _frames(
    ["Show", "List", "Give me", "Get", "Find", "Display", "Show me"],
    ["{lim}orders {oc}{cc}{names}.", "{lim}orders {oc}{cc}, with the customer names.", "{lim}orders{cc} {oc}{names}."],
    ["Which are {lim}orders {oc}{cc}? Include the customer names.", "{lim}orders {oc}{cc}{names}?"],
    ["Could you list {lim}orders {oc}{cc}{names}?"],
)
NAMES = [" with the customer name", " with the customer's name", " and who placed them", " along with the customer names",
         " together with their customers' names", " and the names of the customers"]
CUST_FILTER = [" from customers {np}", " placed by customers {np}", " of customers {np}", " by customers {np}"]


def _customer_cond(rng: random.Random, split: Split, x: Values) -> tuple[str, str]:
    """A condition on the customers of a join, as words and qualified SQL."""
    c = compound(rng, "customers", split, n=1, values=x)
    if c.pre and rng.random() < 0.4:
        return rng.choice([" from {p} customers", " by {p} customers"]).format(p=c.pre), _qualify(c.grouped(), "customers")
    return rng.choice(CUST_FILTER).format(np=c.np), _qualify(c.grouped(), "customers")


def j_orders_names(rng: random.Random, split: Split, x: Values) -> tuple[str, str, str]:
    """Orders with their customers' names, filtered on either table, maybe the latest / biggest N."""
    wheres, oc, cc = [], "", ""
    if rng.random() < 0.7:
        c = compound(rng, "orders", split, n=rng.choice([1, 1, 2]), values=x)
        if "customer_id" not in c.sql:
            oc, wheres = c.np, [_qualify(c.grouped(), "orders")]
    if rng.random() < 0.6 or not wheres:
        cc, w = _customer_cond(rng, split, x)
        wheres.append(w)
    lim, order = "", ""
    if rng.random() < 0.45:
        n = rng.randint(2, 10)
        kind = rng.choice([("most recent", "orders.created_at DESC"), ("latest", "orders.created_at DESC"),
                           ("biggest", "orders.total DESC"), ("largest", "orders.total DESC"),
                           ("oldest", "orders.created_at ASC"), ("smallest", "orders.total ASC")])
        lim, order = f"the {n} {kind[0]} ", f" ORDER BY {kind[1]} LIMIT {n}"
    q = _pick(rng, ORDERS_WITH_NAMES, split).format(lim=lim, oc=oc, cc=cc, names=rng.choice(NAMES))
    sql = f"SELECT customers.name, orders.id, orders.total {J_OC} WHERE {' AND '.join(wheres)}{order};"
    return q, sql, "The JOIN matches each order's customer_id with the customer's id and WHERE keeps the matching rows."


ORDERS_OF = _frames(
    ["Show", "List", "Give me", "Get", "Find", "Pull up", "Display"],
    ["the orders placed by {name}.", "all orders of {name}.", "every order from {name}.", "{name}'s orders."],
    ["What has {name} ordered? List the orders.", "Orders placed by {name}?", "All of {name}'s orders, please."],
    ["Could you list the orders placed by {name}?"],
)
SPENT_BY = _frames(
    ["How much has", "How much money has", "What has"],
    ["{name} spent in total?", "{name} spent so far?", "{name} spent altogether?"],
    ["What's the total spent by {name}?", "Total amount spent by {name}?", "Sum of all orders of {name}?",
     "How much did {name} spend?"],
    ["How much has {name} spent with us?", "What did {name} spend in all?"],
)
COUNT_BY = _frames(
    ["How many orders has", "How many orders did"],
    ["{name} placed?", "{name} made?", "{name} place in total?"],
    ["Number of orders placed by {name}?", "Count the orders of {name}."],
    ["How many times has {name} ordered?"],
)
WHO_PLACED = _frames(
    ["Who", "Which customer"],
    ["placed order {id}?", "made order {id}?", "ordered order number {id}?"],
    ["Whose order is order {id}?", "Name the customer of order {id}."],
    ["Who is the customer behind order {id}?"],
)


def j_named_customer(rng: random.Random, split: Split, x: Values) -> tuple[str, str, str]:
    """A named customer's orders, spending, order count; the customer of an order."""
    name, _ = x.person("customers")
    r = rng.random()
    where = f"WHERE customers.name = '{name}'"
    if r < 0.3:
        return (_pick(rng, ORDERS_OF, split).format(name=name), f"SELECT orders.* {J_OC} {where};",
                "The JOIN links each order to its customer and WHERE picks the customer by name.")
    if r < 0.6:
        return (_pick(rng, SPENT_BY, split).format(name=name), f"SELECT SUM(orders.total) {J_OC} {where};",
                "The JOIN links the orders to the customer and SUM adds up their totals.")
    if r < 0.8:
        return (_pick(rng, COUNT_BY, split).format(name=name), f"SELECT COUNT(orders.id) {J_OC} {where};",
                "The JOIN links the orders to the customer and COUNT counts them.")
    i = x.ident("orders")
    return (_pick(rng, WHO_PLACED, split).format(id=i), f"SELECT customers.name {J_OC} WHERE orders.id = {i};",
            "The JOIN finds the customer whose id is the order's customer_id.")


SPENDERS = _frames(  # customers by their total spending: the names ("which") ...
    ["Which customers", "Which clients", "Which of our customers"],
    ["{cc} have spent more than {n} in total?", "{cc} spent over {n} altogether?", "{cc} have spent above {n}?"],
    ["Find the customers{cc} whose orders add up to more than {n}.", "Name the customers{cc} who have spent over {n}.",
     "Who{cc} has spent more than {n} in total?"],
    ["Which customers{cc} have spent more than {n} overall?"],
)
SPENDERS_VP = {"which": ["Which customers {vp} and have spent more than {n} in total?", "Who {vp} and spent over {n} altogether?",
                         "Which clients {vp} and spent more than {n}?"],
               "show": ["Show customers who {vp} and spent more than {n} in total.",
                        "List the customers that {vp} and have spent over {n}, with the amounts."]}
SPENDERS_SHOW = _frames(  # ... or the names and the sums ("show")
    ["Show", "List", "Give me", "Get", "Show me"],
    ["customers{cc} who spent more than {n} in total.", "the customers{cc} with total spending above {n}.",
     "customers{cc} whose spending is over {n}, with the amounts.", "the total spent by each customer{cc}."],
    ["How much has each customer{cc} spent?", "Total spending per customer{cc}?"],
    ["Show how much every customer{cc} has spent in total."],
)
ORDER_COUNTS = _frames(
    ["Which customers", "Which clients", "Which of our customers"],
    ["{cc} have placed more than {n} orders{oc}?", "{cc} made more than {n} orders{oc}?", "{cc} have at least {n} orders{oc}?"],
    ["Find the customers{cc} with more than {n} orders{oc}.", "Customers{cc} with more than {n} orders{oc}?",
     "Who has placed more than {n} orders{oc}?"],
    ["Which customers{cc} have ordered more than {n} times{oc}?"],
)
CITY_FRAMES = _frames(
    ["Show", "Give me", "List", "What is", "Calculate"],
    ["the {metric} per city.", "the {metric} for each city.", "the {metric} by customer city."],
    ["How many orders came from each city?", "What did the customers of each city spend?", "{metric} by city?"],
    ["For every city, what is the {metric}?"],
)


def j_spenders(rng: random.Random, split: Split, x: Values) -> tuple[str, str, str]:
    """Customers' spending (or order counts) with a filter on the customers and a HAVING, or per city."""
    r = rng.random()
    cwhere, cc, vp = "", "", ""
    if rng.random() < 0.6:
        c = compound(rng, "customers", split, n=1, values=x)
        cc, vp, cwhere = " " + c.np, c.vp, f" WHERE {_qualify(c.grouped(), 'customers')}"
    n = x.amount("total") if x.real else str(rng.choice([rng.randrange(100, 5000, 50), rng.randint(10, 3000)]))
    group = f"{J_CO}{cwhere} GROUP BY customers.name HAVING SUM(orders.total) > {n};"
    if r < 0.6 and vp and rng.random() < 0.3:  # "customers who signed up in 2024 and spent more than 500 in total"
        style = "which" if r < 0.35 else "show"
        q = rng.choice(SPENDERS_VP[style]).format(vp=vp, n=n)
        cols = "customers.name" if style == "which" else "customers.name, SUM(orders.total)"
        return (q, f"SELECT {cols} {group}", "The JOIN sums each customer's orders, WHERE keeps the customers that match "
                "and HAVING keeps those above the amount.")
    if r < 0.35:
        q = _pick(rng, SPENDERS, split).format(cc=cc, n=n)
        return (q, f"SELECT customers.name {group}",
                "The JOIN sums each customer's orders and HAVING keeps the customers above the amount.")
    if r < 0.6:
        frame = _pick(rng, SPENDERS_SHOW, split)
        having = f" HAVING SUM(orders.total) > {n}" if "{n}" in frame else ""
        return (frame.format(cc=cc, n=n), f"SELECT customers.name, SUM(orders.total) {J_CO}{cwhere} GROUP BY customers.name{having};",
                "The JOIN links orders to customers, GROUP BY sums the totals per customer" + (" and HAVING filters them." if having else "."))
    if r < 0.8:
        k = rng.randint(1, 9)
        oc, owhere = "", ""
        if rng.random() < 0.35:
            c = compound(rng, "orders", split, n=1, values=x)
            if "customer_id" not in c.sql:
                oc, owhere = " " + c.np, _qualify(c.grouped(), "orders")
        frame = _pick(rng, ORDER_COUNTS, split)
        if "{cc}" not in frame:
            cwhere, cc = "", ""
        op = ">=" if "at least" in frame else ">"
        where = " WHERE " + " AND ".join(w for w in (cwhere.removeprefix(" WHERE "), owhere) if w) if (cwhere or owhere) else ""
        q = frame.format(n=k, oc=oc, cc=cc)
        return (q, f"SELECT customers.name {J_CO}{where} GROUP BY customers.name HAVING COUNT(orders.id) {op} {k};",
                "The JOIN counts each customer's orders and HAVING keeps the customers above the number.")
    agg, metric = rng.choice([("COUNT(orders.id)", rng.choice(["number of orders", "order count"])),
                              ("SUM(orders.total)", rng.choice(["total spent", "total order value", "revenue"]))])
    q = _pick(rng, CITY_FRAMES, split).format(metric=metric)
    if "How many orders" in q:
        agg = "COUNT(orders.id)"
    elif "spend" in q:
        agg = "SUM(orders.total)"
    return (q, f"SELECT customers.city, {agg} {J_CO} GROUP BY customers.city;",
            "The JOIN gives each order its customer's city and GROUP BY makes one row per city.")


MANAGER_OF = _frames(
    ["Who", "Tell me who"],
    ["manages {name}?", "is {name}'s manager?", "does {name} report to?", "is the boss of {name}?"],
    ["Name the manager of {name}.", "Find {name}'s manager.", "Who's in charge of {name}?"],
    ["Who is the manager of {name}?", "Which employee manages {name}?"],
)
REPORTS_TO = _frames(
    ["Who", "Which employees", "Show the names of employees who", "List the employees who"],
    ["reports to {name}?", "report to {name}?", "are managed by {name}?", "work under {name}?"],
    ["Show the team of {name}.", "Employees managed by {name}?", "List everyone who reports to {name}."],
    ["Who works for {name}?", "Who are {name}'s direct reports?"],
)


def j_people(rng: random.Random, split: Split, x: Values) -> tuple[str, str, str]:
    """Employees and their managers by name."""
    name, _ = x.person("employees")
    if rng.random() < 0.5:
        return (_pick(rng, MANAGER_OF, split).format(name=name),
                f"SELECT m.name FROM employees e JOIN employees m ON e.manager_id = m.id WHERE e.name = '{name}';",
                "This self join matches the employee's manager_id with the manager's id.")
    q = _tidy(_pick(rng, REPORTS_TO, split).format(name=name)).replace("Show the names of employees who reports", "Show the names of employees who report").replace("List the employees who reports", "List the employees who report")
    return (q, f"SELECT e.name FROM employees e JOIN employees m ON e.manager_id = m.id WHERE m.name = '{name}';",
            "This self join matches each employee's manager_id with the named manager's id.")


UNITS_OF = _frames(
    ["How many units of", "How many", "How much of"],
    ["{p} have we sold?", "{p} were sold?", "{p} have been ordered?"],
    ["Total quantity sold of {p}?", "Units sold of {p}?", "Number of {p} sold so far?"],
    ["How many units of {p} did we sell in total?"],
)
BOUGHT_BY = _frames(
    ["Which customers", "Who", "Which clients"],
    ["bought {what}{when}?", "ordered {what}{when}?", "purchased {what}{when}?", "have bought {what}{when}?"],
    ["Customers who bought {what}{when}?", "Names of the customers that ordered {what}{when}."],
    ["Which customers have ever ordered {what}{when}?"],
)


def j_products(rng: random.Random, split: Split, x: Values) -> tuple[str, str, str]:
    """Units sold of a named product; the customers who bought a product or a category, maybe in a year."""
    p = x.product(existing=True)
    if rng.random() < 0.4:
        return (_pick(rng, UNITS_OF, split).format(p=rng.choice([p, f"the {p}"])),
                "SELECT SUM(order_items.quantity) FROM order_items JOIN products ON order_items.product_id = products.id "
                f"WHERE products.name = '{p}';", "The JOIN finds the product's order items and SUM adds up the quantities.")
    if rng.random() < 0.5:
        what, cond = rng.choice([f"the {p}", p]), f"products.name = '{p}'"
    else:
        cat = x.category()
        what, cond = rng.choice([f"{cat} products", f"something from the {cat} category", f"anything in {cat}",
                                 f"{cat} items"]), f"products.category = '{cat}'"
    when = ""
    if rng.random() < 0.4:
        y = x.year()
        when, cond = f" in {y}", f"{cond} AND orders.created_at BETWEEN '{y}-01-01' AND '{y}-12-31'"
    return (_pick(rng, BOUGHT_BY, split).format(what=what, when=when), f"SELECT DISTINCT customers.name {J_ALL} WHERE {cond};",
            "The joins follow the foreign keys from customers to products and DISTINCT removes repeats.")


JOIN2 = [(j_orders_names, 0.25), (j_named_customer, 0.25), (j_spenders, 0.25), (j_people, 0.1), (j_products, 0.15)]


def k_join2(rng: random.Random, split: Split) -> SqlItem:
    fn = rng.choices([f for f, _ in JOIN2], weights=[w for _, w in JOIN2])[0]
    q, sql, expl = fn(rng, split, Values(rng, split))
    return SqlItem("join", _tidy(q), sql, expl)


# ---- changes: the right column, the row by id, name or condition, the question's values --------------------
SET_FRAMES = _frames(
    ["Change", "Set", "Update", "Make"],
    ["the {colp} of {ref} to {v}.", "{ref}'s {colp} to {v}."],
    ["{ref}'s {colp} is now {v}, please update it.", "The {colp} of {ref} should be {v}.", "{ref} has a new {colp}: {v}.",
     "Please set the {colp} of {ref} to {v}.", "Can you change the {colp} of {ref} to {v}?"],
    ["The {colp} of {ref} has changed to {v}.", "Put {v} as the {colp} of {ref}."],
)
# (table, column, the column's words, is a string, natural phrasings with {ref} and {v})
SETTABLE = [
    ("customers", "email", ["email", "email address", "e-mail"], True, ["{ref} has a new email address: {v}."]),
    ("customers", "city", ["city"], True, ["{ref} moved to {v}.", "Move {ref} to {v}.", "{ref} now lives in {v}."]),
    ("customers", "name", ["name"], True, ["Rename {ref} to {v}."]),
    ("products", "price", ["price"], False, ["Raise the price of {ref} to {v}.", "Lower the price of {ref} to {v}.",
                                             "{ref} now costs {v}.", "Make {ref} cost {v}.", "Cut the price of {ref} to {v}."]),
    ("products", "stock", ["stock", "stock level"], False, ["Restock {ref} to {v}.", "We now have {v} of {ref} in stock.",
                                                            "Set the stock of {ref} to {v}.", "{ref} has {v} in stock now."]),
    ("products", "category", ["category"], True, ["Move {ref} to the {v} category.", "Put {ref} in the {v} category."]),
    ("orders", "status", ["status"], True, ["Mark {ref} as {v}.", "{ref} is now {v}.", "{ref} has been {v}, please update it.",
                                            "Set {ref} to {v}."]),
    ("orders", "total", ["total", "amount"], False, ["Correct the total of {ref} to {v}."]),
    ("employees", "salary", ["salary", "pay"], False, ["Give {ref} a raise to {v}.", "{ref} now earns {v}.",
                                                       "Pay {ref} {v} from now on.", "Increase {ref}'s salary to {v}."]),
    ("employees", "department", ["department", "team"], True, ["Move {ref} to {v}.", "Transfer {ref} to the {v} department.",
                                                               "{ref} now works in {v}."]),
    ("employees", "manager_id", ["manager id"], False, ["{ref} now reports to employee {v}."]),
]


def _value(x: Values, table: str, col: str) -> str:
    r = x.rng
    return {"email": lambda: x.person()[1], "city": x.city, "name": lambda: x.person()[0] if table != "products" else x.product(),
            "price": lambda: x.amount("price"), "stock": lambda: x.amount("stock"), "category": x.category,
            "status": x.status, "total": lambda: x.amount("total"), "salary": lambda: x.amount("salary"),
            "department": x.department, "manager_id": lambda: str(r.randint(1, 25))}[col]()


DEL_FRAMES = _frames(
    ["Delete", "Remove", "Get rid of", "Erase", "Drop"],
    ["{ref}.", "{ref} from the table.", "{ref} from the database."],
    ["{ref} should be deleted.", "Please delete {ref}.", "Can you remove {ref}?", "{ref} has to go, delete it."],
    ["We no longer need {ref}, delete it.", "Please remove {ref} from the database."],
)
DEL_WHERE_FRAMES = _frames(
    ["Delete", "Remove", "Get rid of", "Erase", "Clear out", "Drop"],
    ["all {entity} {cond}.", "the {entity} {cond}.", "every one of the {entity} {cond}.", "{entity} {cond}."],
    ["Please delete the {entity} {cond}.", "Can you remove all {entity} {cond}?"],
    ["The {entity} {cond} should all be deleted."],
)
UPD_WHERE_FRAMES = _frames(  # a change to every row that matches: "Cancel all pending orders from before 2024."
    ["Set", "Change", "Update"],
    ["the {colp} of all {entity} {cond} to {v}.", "the {colp} to {v} for all {entity} {cond}.",
     "the {colp} of every one of the {entity} {cond} to {v}."],
    ["All {entity} {cond} should have {colp} {v}.", "Make the {colp} {v} for the {entity} {cond}."],
    ["For all {entity} {cond}, change the {colp} to {v}."],
)
STATUS_VERBS = {"cancelled": ["Cancel"], "shipped": ["Ship", "Mark as shipped"], "paid": ["Mark as paid"]}
INSERT_ORDER = _frames(
    ["Add", "Insert", "Create", "Record"],
    ["an order for customer {cid} worth {total}, status {status}.", "a new order: customer {cid}, total {total}, {status}.",
     "a {status} order of {total} for customer {cid}."],
    ["Customer {cid} just placed an order of {total}; it is {status}.", "New order from customer {cid}: {total}, {status}."],
    ["Put in a {status} order for customer {cid} with a total of {total}."],
)
INSERT_CUSTOMER = _frames(
    ["Add", "Insert", "Create", "Register"],
    ["a new customer: {name}, {email}, from {city}.", "a customer {name} ({email}) who lives in {city}.",
     "{name} from {city} as a customer, email {email}.", "a customer named {name}, email {email}, city {city}."],
    ["New customer: {name}, {email}, {city}.", "We have a new client, {name} from {city}, email {email}. Add them."],
    ["{name} ({email}) from {city} just signed up, add them."],
)
INSERT_PRODUCT = _frames(
    ["Add", "Insert", "Create", "Put"],
    ["a product called {p} to the {cat} category for {price} with {stock} in stock.",
     "a new {cat} product {p} priced {price}, stock {stock}.", "{p} in the catalog: {cat}, {price}, {stock} in stock."],
    ["New product: {p}, {cat}, price {price}, {stock} units.", "We now sell {p} ({cat}) at {price}; we have {stock}. Add it."],
    ["Please add {p} to {cat} at {price}, with {stock} in stock."],
)
INSERT_EMPLOYEE = _frames(
    ["Add", "Insert", "Create", "Hire"],
    ["a new employee {name} in {dept} with a salary of {salary}.", "{name} to the {dept} team at {salary}.",
     "an employee named {name}, department {dept}, salary {salary}."],
    ["We hired {name} for {dept} at {salary}. Add them.", "New hire: {name}, {dept}, {salary}."],
    ["Please add {name} to {dept}, paid {salary}."],
)


def k_change(rng: random.Random, split: Split) -> SqlItem:
    x = Values(rng, split)
    r = rng.random()
    if r < 0.4:  # one row's column
        table, col, words, is_str, natural = rng.choice(SETTABLE)
        ref, cond = _ref(rng, table, x)
        v = _value(x, table, col)
        if col == "status" and v in STATUS_VERBS and rng.random() < 0.3:
            q = f"{rng.choice(STATUS_VERBS[v])} {ref}."
        elif rng.random() < 0.5:
            q = rng.choice(natural).format(ref=ref, v=v)
        else:
            q = _pick(rng, SET_FRAMES, split).format(colp=rng.choice(words), ref=ref, v=v)
        sv = f"'{v}'" if is_str else v
        return SqlItem("update", _tidy(q), f"UPDATE {table} SET {col} = {sv} WHERE {cond};",
                       f"UPDATE changes the {col} of the row that matches.")
    if r < 0.55:  # every row that matches a condition
        table, col, words, is_str, _ = rng.choice([s for s in SETTABLE if s[1] in ("status", "price", "stock", "salary",
                                                                                   "category", "department", "city")])
        for _ in range(5):
            c = compound(rng, table, split, n=rng.choice([1, 1, 2]), values=x)
            if f"{col} " not in c.sql:
                break
        v = _value(x, table, col)
        entity = rng.choice(ENT[table])
        if col == "status" and v in STATUS_VERBS and rng.random() < 0.5:
            q = f"{rng.choice(STATUS_VERBS[v])} all {c.pre + ' ' if c.pre else ''}{entity} {c.rest_np if c.pre else c.np}."
        else:
            q = _pick(rng, UPD_WHERE_FRAMES, split).format(colp=rng.choice(words), entity=entity, cond=c.np, v=v)
        sv = f"'{v}'" if is_str else v
        return SqlItem("update", _tidy(q), f"UPDATE {table} SET {col} = {sv} WHERE {c.sql};",
                       f"UPDATE sets the {col} of every row that matches the WHERE clause.")
    if r < 0.7:  # delete one row or the rows that match
        table = rng.choice(list(ENT))
        if rng.random() < 0.5:
            ref, cond = _ref(rng, table, x, labelled=True)
            q = _pick(rng, DEL_FRAMES, split).format(ref=ref)
        else:
            c = compound(rng, table, split, values=x)
            q, cond = _pick(rng, DEL_WHERE_FRAMES, split).format(entity=rng.choice(ENT[table]), cond=c.np), c.sql
        return SqlItem("delete", _tidy(q), f"DELETE FROM {table} WHERE {cond};", "DELETE removes the rows that match the WHERE clause.")
    name, email = x.person()
    kind = rng.random()
    if kind < 0.3:
        city = x.city()
        q = _pick(rng, INSERT_CUSTOMER, split).format(name=name, email=email, city=city)
        sql = f"INSERT INTO customers (name, email, city) VALUES ('{name}', '{email}', '{city}');"
    elif kind < 0.6:
        p, cat, price, stock = x.product(), x.category(), x.amount("price"), x.amount("stock")
        q = _pick(rng, INSERT_PRODUCT, split).format(p=p, cat=cat, price=price, stock=stock)
        sql = f"INSERT INTO products (name, price, category, stock) VALUES ('{p}', {price}, '{cat}', {stock});"
    elif kind < 0.8:
        dept, salary = x.department(), x.amount("salary")
        q = _pick(rng, INSERT_EMPLOYEE, split).format(name=name, dept=dept, salary=salary)
        sql = f"INSERT INTO employees (name, department, salary) VALUES ('{name}', '{dept}', {salary});"
    else:
        cid, total, status = x.ident(), x.amount("total"), x.status()
        q = _pick(rng, INSERT_ORDER, split).format(cid=cid, total=total, status=status)
        sql = f"INSERT INTO orders (customer_id, total, status) VALUES ({cid}, {total}, '{status}');"
    return SqlItem("insert", _tidy(q), sql, "INSERT adds one row with the given values; the id is assigned automatically.")
