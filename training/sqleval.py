"""The SQLite demo database (seeded data) and execution-match scoring of generated SQL.

A predicted query matches when it runs on a fresh copy of the database and gives the same
result as the reference: the same rows for a SELECT (in order when the reference has an
ORDER BY, as a multiset otherwise), the same table contents after an INSERT/UPDATE/DELETE,
the same index definition for CREATE INDEX.
"""

from __future__ import annotations

import random
import re
import sqlite3
from typing import Any

from training.sqlgen import (
    ADJ,
    CATEGORIES,
    CITIES,
    DEPARTMENTS,
    DOMAINS,
    FIRST,
    LAST,
    NOUN,
    STATUSES,
    SqlItem,
    sql_item,
)

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, city TEXT, created_at TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), total REAL,
                     status TEXT, created_at TEXT);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL, category TEXT, stock INTEGER);
CREATE TABLE order_items (order_id INTEGER REFERENCES orders(id), product_id INTEGER REFERENCES products(id),
                          quantity INTEGER);
CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT, department TEXT, salary REAL,
                        manager_id INTEGER REFERENCES employees(id));
"""
TABLES = ("customers", "orders", "products", "order_items", "employees")

# Ten fixed held-out questions (phrasings from the held-out frames, never in the training corpus) and their
# reference SQL: one per kind of question.
FIXED_HELDOUT: list[tuple[str, str]] = [
    ("What are the names and emails of customers from Berlin?",
     "SELECT name, email FROM customers WHERE city = 'Berlin';"),
    ("Please pull up the names and prices of the products more expensive than 100.",
     "SELECT name, price FROM products WHERE price > 100;"),
    ("Return the names of employees whose name starts with S.",
     "SELECT name FROM employees WHERE name LIKE 'S%';"),
    ("What are the ids and totals of orders placed in 2024?",
     "SELECT id, total FROM orders WHERE created_at BETWEEN '2024-01-01' AND '2024-12-31';"),
    ("Tell me how many orders we have with status shipped.",
     "SELECT COUNT(*) FROM orders WHERE status = 'shipped';"),
    ("Tell me the average salary of employees in the sales department.",
     "SELECT AVG(salary) FROM employees WHERE department = 'sales';"),
    ("Break down the number of customers by city. Only include cities having a number of customers more than 3.",
     "SELECT city, COUNT(*) FROM customers GROUP BY city HAVING COUNT(*) > 3;"),
    ("I'd like to see the 5 most expensive products.",
     "SELECT name, price FROM products ORDER BY price DESC LIMIT 5;"),
    ("Show the customers who have not ordered anything yet.",
     "SELECT customers.name FROM customers LEFT JOIN orders ON orders.customer_id = customers.id "
     "WHERE orders.id IS NULL;"),
    ("Get rid of the cancelled orders.", "DELETE FROM orders WHERE status = 'cancelled';"),
]

# Plain questions a new user types first, written without looking at the question frames. Convention
# (the corpus follows it): "which ..." answers with the names (ids for orders), "show/list ..." with all columns.
NATURAL_HELDOUT: list[tuple[str, str]] = [
    ("Which customers live in Paris?", "SELECT name FROM customers WHERE city = 'Paris';"),
    ("Which employees earn more than 80000?", "SELECT name FROM employees WHERE salary > 80000;"),
    ("Which products cost less than 20?", "SELECT name FROM products WHERE price < 20;"),
    ("Which orders are pending?", "SELECT id FROM orders WHERE status = 'pending';"),
    ("list orders that are pending", "SELECT * FROM orders WHERE status = 'pending';"),
    ("Show all products in the toys category.", "SELECT * FROM products WHERE category = 'toys';"),
    ("List employees in the sales department.", "SELECT * FROM employees WHERE department = 'sales';"),
    ("Show orders over 300.", "SELECT * FROM orders WHERE total > 300;"),
    ("How many customers are from London?", "SELECT COUNT(*) FROM customers WHERE city = 'London';"),
    ("How many orders were cancelled?", "SELECT COUNT(*) FROM orders WHERE status = 'cancelled';"),
    ("What's the average salary in engineering?", "SELECT AVG(salary) FROM employees WHERE department = 'engineering';"),
    ("What is the most expensive product?", "SELECT name, price FROM products ORDER BY price DESC LIMIT 1;"),
    ("Top 3 customers by spending", "SELECT customers.name, SUM(orders.total) FROM customers JOIN orders ON "
     "orders.customer_id = customers.id GROUP BY customers.name ORDER BY SUM(orders.total) DESC LIMIT 3;"),
    ("Count products per category.", "SELECT category, COUNT(*) FROM products GROUP BY category;"),
    ("average order total by status", "SELECT status, AVG(total) FROM orders GROUP BY status;"),
    ("How many orders does each customer have?", "SELECT customers.name, COUNT(orders.id) FROM customers JOIN "
     "orders ON orders.customer_id = customers.id GROUP BY customers.name;"),
    ("Which customers have no orders?", "SELECT customers.name FROM customers LEFT JOIN orders ON "
     "orders.customer_id = customers.id WHERE orders.id IS NULL;"),
    ("Show me the 3 newest customers.", "SELECT name, created_at FROM customers ORDER BY created_at DESC LIMIT 3;"),
    ("Delete customer 12.", "DELETE FROM customers WHERE id = 12;"),
    ("Change the price of product 4 to 35.", "UPDATE products SET price = 35 WHERE id = 4;"),
]


def _date(rng: random.Random) -> str:
    return f"{rng.choice(['2023', '2024', '2025'])}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def build_db(seed: int = 7) -> sqlite3.Connection:
    """A fresh in-memory database of the demo schema with the same seeded rows every time."""
    rng = random.Random(seed)
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    names = rng.sample([f"{f} {last}" for f in FIRST for last in LAST], 40)
    for i, name in enumerate(names, 1):
        first, last = name.split()
        db.execute("INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
                   (i, name, f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}", rng.choice(CITIES), _date(rng)))
    products = rng.sample([f"{a} {n}" for a in ADJ for n in NOUN], 30)
    for i, pname in enumerate(products, 1):
        db.execute("INSERT INTO products VALUES (?, ?, ?, ?, ?)",
                   (i, pname, rng.randint(300, 25000) / 100, rng.choice(CATEGORIES), rng.choice([0, *range(1, 120)])))
    for i in range(1, 151):  # customers 35-40 never order (for the LEFT JOIN questions)
        db.execute("INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
                   (i, rng.randint(1, 34), rng.randint(1000, 60000) / 100, rng.choice(STATUSES), _date(rng)))
        for pid in rng.sample(range(1, 31), rng.randint(1, 4)):
            db.execute("INSERT INTO order_items VALUES (?, ?, ?)", (i, pid, rng.randint(1, 5)))
    emp = rng.sample([f"{f} {last}" for f in FIRST for last in LAST if f"{f} {last}" not in names], 25)
    for i, name in enumerate(emp, 1):
        manager = None if i <= 3 else rng.randint(1, min(i - 1, 8))
        db.execute("INSERT INTO employees VALUES (?, ?, ?, ?, ?)",
                   (i, name, rng.choice(DEPARTMENTS), rng.randrange(30000, 130000, 1000), manager))
    db.commit()
    return db


def extract_sql(answer: str) -> str | None:
    """The SQL of a reply: the first ```sql block, else the first line that starts with a SQL verb."""
    m = re.search(r"```(?:sql)?\s*\n(.*?)(?:\n```|$)", answer, re.DOTALL | re.IGNORECASE)
    if m and m.group(1).strip():
        return m.group(1).strip()
    for line in answer.splitlines():
        if re.match(r"\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|WITH)\b", line, re.IGNORECASE):
            return line.strip()
    return None


def _norm(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


def result_of(sql: str) -> tuple[str, Any]:
    """Run `sql` on a fresh database: ('rows', ...), ('tables', ...), ('index', ...) or ('error', message)."""
    db = build_db()
    try:
        cur = db.execute(sql)
        if cur.description is not None:
            rows = [tuple(_norm(v) for v in r) for r in cur.fetchall()]
            ordered = bool(re.search(r"\border\s+by\b", sql, re.IGNORECASE))
            return "rows", rows if ordered else sorted(rows, key=repr)
        if re.match(r"\s*create\s+(unique\s+)?index", sql, re.IGNORECASE):
            idx = db.execute("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index'").fetchall()
            cols = [(t, re.sub(r"\s+", "", s.split("(", 1)[1]).lower()) for t, s in idx]
            return "index", cols
        dump = {t: sorted((tuple(_norm(v) for v in r) for r in db.execute(f"SELECT * FROM {t}")), key=repr)
                for t in TABLES}
        return "tables", dump
    except sqlite3.Error as e:
        return "error", str(e)
    finally:
        db.close()


def execution_match(pred_sql: str | None, ref_sql: str) -> bool:
    """True when the predicted SQL runs and gives the reference's result."""
    if not pred_sql:
        return False
    got = result_of(pred_sql)
    return got[0] != "error" and got == result_of(ref_sql)


def heldout_sql_items(n: int, seed: int = 99) -> list[SqlItem]:
    """n held-out questions that have SQL answers with something in them (for the bench)."""
    rng = random.Random(seed)
    out: list[SqlItem] = []
    while len(out) < n:
        item = sql_item(rng, "heldout")
        if item.sql and item.kind != "explain" and _informative(item.sql):
            out.append(item)
    return out


def _informative(sql: str) -> bool:
    """False for a SELECT whose answer is empty (or one NULL): any wrong query that finds nothing would match it."""
    kind, value = result_of(sql)
    return kind != "rows" or bool(value) and value != [(None,)]
