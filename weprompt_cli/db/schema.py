"""The schema text the model sees: tables, columns, types, primary and foreign keys, capped in size.

One line per table, in name order, e.g.

    orders(id INTEGER PK, customer_id INTEGER -> customers.id, total REAL, status TEXT)

A schema too large for the prompt keeps the first tables that fit and ends with a note naming
the tables left out. The text's hash goes into the persona state's cache key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from weprompt_cli.db.connect import Database
from weprompt_cli.db.errors import QueryError, QueryTimeoutError, driver_message

DEFAULT_MAX_TABLES = 60
DEFAULT_MAX_CHARS = 6000
DEFAULT_MAX_COLUMNS = 40
NOTE_BUDGET = 400  # characters kept for the "left out" note when the schema is capped
_PRETTY = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MySQL"}


@dataclass(frozen=True)
class ForeignKey:
    """Columns of a table that reference columns of another."""

    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class TableInfo:
    """One table or view as introspected."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, type text; "" when the database declares none)
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    is_view: bool = False


@dataclass(frozen=True)
class SchemaText:
    """What the model is told about the database, and what was left out to keep it short."""

    text: str
    sha256: str  # of `text`
    tables: tuple[str, ...]  # shown
    left_out: tuple[str, ...]  # tables and views not shown (the cap)
    database: str  # "SQLite", "PostgreSQL" or "MySQL"

    @property
    def short_hash(self) -> str:
        """16 hex digits of the text's hash, for cache keys and file names."""
        return self.sha256[:16]


def read_schema(
    db: Database,
    *,
    max_tables: int = DEFAULT_MAX_TABLES,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_columns: int = DEFAULT_MAX_COLUMNS,
    timeout_s: float = 30.0,
) -> SchemaText:
    """The schema text of `db`'s default schema, at most `max_tables` tables and about `max_chars` characters."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    from weprompt_cli.db.connect import is_timeout

    try:
        with db.read_only(timeout_s=timeout_s) as conn:
            insp = inspect(conn)
            views = set(insp.get_view_names())
            names = sorted(set(insp.get_table_names()) | views)
            chosen = names[:max_tables]
            tables = _introspect(insp, chosen, views, db.engine.dialect) if chosen else []
    except DBAPIError as exc:
        if is_timeout(exc, db.kind):
            raise QueryTimeoutError(f"reading the schema took longer than {timeout_s:g} s", path=db.display) from None
        raise QueryError(f"cannot read the schema: {driver_message(exc, db.target)}", path=db.display) from None
    return format_schema(tables, all_names=names, max_chars=max_chars, max_columns=max_columns,
                         database=_PRETTY.get(db.kind, db.kind))


def format_schema(
    tables: Sequence[TableInfo],
    *,
    all_names: Sequence[str] | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_columns: int = DEFAULT_MAX_COLUMNS,
    database: str = "",
) -> SchemaText:
    """The capped schema text of `tables`; names in `all_names` but not shown are listed as left out."""
    lines = [table_line(t, max_columns=max_columns) for t in tables]
    names = list(all_names) if all_names is not None else [t.name for t in tables]
    shown: list[str] = []
    kept: list[str] = []
    fits_whole = len(tables) == len(names) and sum(len(line) + 1 for line in lines) <= max_chars
    budget = max_chars if fits_whole else max(0, max_chars - NOTE_BUDGET)
    used = 0
    for table, line in zip(tables, lines):
        if used + len(line) + 1 > budget:
            break
        kept.append(line)
        shown.append(table.name)
        used += len(line) + 1
    shown_set = set(shown)
    left_out = tuple(n for n in names if n not in shown_set)
    if left_out:
        kept.append(left_out_note(left_out, budget=NOTE_BUDGET))
    text = "\n".join(kept)
    return SchemaText(text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), tables=tuple(shown),
                      left_out=left_out, database=database)


def table_line(table: TableInfo, *, max_columns: int = DEFAULT_MAX_COLUMNS) -> str:
    """`name(col TYPE PK, col TYPE -> other.id, ...)`; a view reads `view name(...)`."""
    single_pk = table.primary_key[0] if len(table.primary_key) == 1 else None
    refs = {fk.columns[0]: f"{fk.ref_table}.{fk.ref_columns[0]}" for fk in table.foreign_keys if len(fk.columns) == 1}
    parts = []
    for name, type_text in table.columns[:max_columns]:
        part = f"{name} {type_text}".rstrip()
        if name == single_pk:
            part += " PK"
        if name in refs:
            part += f" -> {refs[name]}"
        parts.append(part)
    if len(table.columns) > max_columns:
        parts.append(f"... {len(table.columns) - max_columns} more columns")
    if len(table.primary_key) > 1:
        parts.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
    for fk in table.foreign_keys:
        if len(fk.columns) > 1:
            parts.append(f"({', '.join(fk.columns)}) -> {fk.ref_table}({', '.join(fk.ref_columns)})")
    prefix = "view " if table.is_view else ""
    return f"{prefix}{table.name}({', '.join(parts)})"


def left_out_note(names: Sequence[str], *, budget: int = NOTE_BUDGET) -> str:
    """One line naming the tables left out, as many as fit in `budget` characters, then a count."""
    head = f"-- {len(names)} tables not shown (schema too large): "
    listed: list[str] = []
    length = len(head)
    for i, name in enumerate(names):
        after = len(names) - i - 1
        add = len(name) + (2 if listed else 0)
        if listed and length + add + (len(f" and {after} more") if after else 0) > budget:
            break
        listed.append(name)
        length += add
    more = len(names) - len(listed)
    return head + ", ".join(listed) + (f" and {more} more" if more else "")


def _introspect(insp: Any, names: list[str], views: set[str], dialect: Any) -> list[TableInfo]:
    """TableInfo for each of `names`, read with one query per kind of fact where the dialect allows."""
    from sqlalchemy.engine.reflection import ObjectKind

    columns = insp.get_multi_columns(filter_names=names, kind=ObjectKind.ANY)
    pks = insp.get_multi_pk_constraint(filter_names=names, kind=ObjectKind.TABLE)
    fks = insp.get_multi_foreign_keys(filter_names=names, kind=ObjectKind.TABLE)
    by_name = {key[1]: value for key, value in columns.items()}
    pk_by = {key[1]: value for key, value in pks.items()}
    fk_by = {key[1]: value for key, value in fks.items()}
    out = []
    for name in names:
        cols = tuple((c["name"], _type_text(c.get("type"), dialect)) for c in by_name.get(name, []))
        pk = tuple((pk_by.get(name) or {}).get("constrained_columns") or ())
        foreign = tuple(
            ForeignKey(tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
            for fk in fk_by.get(name, []) if fk.get("referred_table") and fk.get("constrained_columns")
        )
        out.append(TableInfo(name, cols, pk, foreign, is_view=name in views))
    return out


def _type_text(type_: Any, dialect: Any) -> str:
    """A column type as the database spells it, shortened; "" for a column declared without one."""
    if type_ is None:
        return ""
    try:
        text = str(type_.compile(dialect=dialect))
    except Exception:  # noqa: BLE001  NullType (no declared type) and exotic types cannot compile
        return ""
    return text.replace(" WITHOUT TIME ZONE", "").replace("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")
