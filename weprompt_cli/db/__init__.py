"""A user's database for the SQL persona: connection, schema text, query checks, read-only runs.

    target = parse_target("postgresql://me@localhost/shop")   # or a SQLite path, or "demo"
    db = open_database(target, cache_dir=home.cache / "db")   # cache_dir: where "demo" is built
    schema = read_schema(db)                                   # .text for the prompt, .sha256 for cache keys
    verdict = check_answer(db, answer)                         # .mark under the answer, .fix_request()
    result = run_query(db, pick_block(answer, 1).sql)          # read-only; write=True + confirm= to change data

sqlalchemy and sqlglot are imported inside the functions that use them, so importing this
package stays cheap (`weprompt --help` never loads them).
"""

from __future__ import annotations

from weprompt_cli.db.blocks import SqlBlock, pick_block, sql_blocks
from weprompt_cli.db.check import AnswerCheck, QueryCheck, check_answer, check_query
from weprompt_cli.db.connect import Database, open_database
from weprompt_cli.db.demo import demo_database
from weprompt_cli.db.errors import QueryError, QueryTimeoutError
from weprompt_cli.db.run import RunResult, cell_text, run_query
from weprompt_cli.db.schema import SchemaText, read_schema
from weprompt_cli.db.url import PASSWORD_ENV, DbTarget, parse_target

__all__ = [
    "PASSWORD_ENV",
    "AnswerCheck",
    "Database",
    "DbTarget",
    "QueryCheck",
    "QueryError",
    "QueryTimeoutError",
    "RunResult",
    "SchemaText",
    "SqlBlock",
    "cell_text",
    "check_answer",
    "check_query",
    "demo_database",
    "open_database",
    "parse_target",
    "pick_block",
    "read_schema",
    "run_query",
    "sql_blocks",
]
