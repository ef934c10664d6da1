"""The SQL advisor's check-and-fix loop on the demo model and `--db demo` (issue 20), in one run.

    python bench/sql_fix.py                       # 100 held-out questions, --fix 1
    python bench/sql_fix.py --count 200 --fix 2 --questions tests/data/demo_heldout_v1.json

Each question is asked the way `weprompt chat --persona sql --db demo -m QUESTION -t 0` asks it: a
new session on the demo model, the sql persona's prompt with the demo database's schema text, the
answer's SQL checked (sqlglot + EXPLAIN on the demo SQLite database), and, when the check fails, up
to `--fix` follow-up turns "The query failed: ... Fix it." (the same `send_checked` the CLI runs).

Scored like bench/demo_eval.py: the first SQL block of an answer (what `/run` runs) executes on a
fresh copy of the seeded demo database and returns the reference query's rows (for a write: leaves
the same table contents). "without" scores each question's first answer, "with" its last answer
after the fix turns; greedy decoding makes the first answer the same in both, so one run gives both.

Questions: the frozen held-out set `tests/data/demo_heldout_v1.json` when present (its first
`--count`), else `training.sqleval.heldout_sql_items(--count)`. Writes bench/results/sql_fix.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FROZEN = ROOT / "tests" / "data" / "demo_heldout_v1.json"


def questions(count: int, source: Path | None) -> tuple[list[tuple[str, str]], str]:
    """(question, reference SQL) pairs and a line naming where they came from."""
    path = source or (FROZEN if FROZEN.is_file() else None)
    if path is not None:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = [(q["question"], q["sql"]) for q in data["questions"] if q.get("sql")][:count]
        return items, f"the first {len(items)} questions of {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
    from training.sqleval import heldout_sql_items

    gen = heldout_sql_items(count)
    return [(it.question, it.sql) for it in gen], f"training.sqleval.heldout_sql_items({count})"


def first_sql(answer: str) -> str | None:
    from weprompt_cli.db import sql_blocks

    blocks = sql_blocks(answer)
    return blocks[0].sql if blocks else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100, help="held-out questions")
    ap.add_argument("--fix", type=int, default=1, help="fix turns after a failed check (the CLI's --fix)")
    ap.add_argument("--questions", type=Path, help="a JSON file like tests/data/demo_heldout_v1.json")
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sql_fix.txt")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="weprompt-bench-sqlfix-"))
    os.environ["WEPROMPT_HOME"] = str(home)  # sessions of the bench stay out of the user's home

    import torch

    torch.set_num_threads(1)
    from training.sqleval import execution_match
    from weprompt_cli.chat.params import effective_params
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.chat.sql_advisor import SqlAdvisor, send_checked
    from weprompt_cli.config import Config
    from weprompt_cli.demo import DEMO_MODEL_PATH
    from weprompt_cli.engine import load_engine
    from weprompt_cli.paths import resolve_home
    from weprompt_cli.personas import find_persona
    from weprompt_cli.store import SessionStore, Turn

    items, source = questions(args.count, args.questions)
    paths = resolve_home()
    engine = load_engine(DEMO_MODEL_PATH, "cpu fp32", cache_dir=paths.cache)
    store = SessionStore(paths)
    advisor = SqlAdvisor.open("demo", cache_dir=paths.cache / "db", fix=args.fix)
    persona = advisor.persona(find_persona("sql", home=paths))
    params = effective_params(Config(), persona, None, {"temperature": 0.0, "max_tokens": args.max_tokens})

    t0 = time.time()
    rows = []
    for question, reference in items:
        session = ChatSession.start(engine, store, persona, params, extra=advisor.session_extra(persona))
        advisor.attach(session)

        def ask(text: str, session: ChatSession = session) -> Turn | None:
            stream = session.send(text)
            stream.text()  # runs the turn to its end (checked and saved)
            return stream.turn

        try:
            turns = send_checked(advisor, question, ask)
        finally:
            session.close()
        first, last = turns[0], turns[-1]
        rows.append({
            "question": question,
            "reference": reference,
            "first": first.assistant,
            "first_ok": bool(first.checks) and first.checks[0]["ok"],
            "first_mark": first.checks[0]["mark"] if first.checks else "(no SQL)",
            "last": last.assistant,
            "last_mark": last.checks[0]["mark"] if last.checks else "(no SQL)",
            "fix_turns": len(turns) - 1,
            "without": execution_match(first_sql(first.assistant), reference),
            "with": execution_match(first_sql(last.assistant), reference),
        })
    wall = time.time() - t0
    advisor.close()

    n = len(rows)
    without = sum(r["without"] for r in rows)
    with_fix = sum(r["with"] for r in rows)
    failed = [r for r in rows if not r["first_ok"]]
    fixed_check = [r for r in failed if r["fix_turns"] and r["last_mark"].startswith("✓")]
    lines = [
        f"bench/sql_fix.py: demo model, --db demo, --fix {args.fix}, greedy, max_tokens {args.max_tokens}",
        f"questions: {source}",
        f"executes and returns the reference rows, without the fix loop: {without}/{n} ({without / n:.0%})",
        f"executes and returns the reference rows, with the fix loop:    {with_fix}/{n} ({with_fix / n:.0%})",
        (f"first answers whose check failed (or had no SQL): {len(failed)}; fix turns sent: "
         f"{sum(r['fix_turns'] for r in rows)}; answers whose check passed after a fix: {len(fixed_check)}"),
        f"misses whose check passed (valid SQL, other rows): {sum(1 for r in rows if r['first_ok'] and not r['without'])}",
        f"wall {wall:.1f} s on {platform.machine()} (1 torch thread)",
        "",
        "answers that failed their check, and what the fix turns gave:",
    ]
    for r in failed:
        lines += [f"  Q: {r['question']}", f"     ref:   {r['reference']}",
                  f"     first: {' '.join(r['first'].split())}", f"            {r['first_mark']}"]
        if r["fix_turns"]:
            lines += [f"     fixed: {' '.join(r['last'].split())}", f"            {r['last_mark']}",
                      f"            executes and matches: {r['with']}"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
