"""Benchmark the streaming Markdown renderer against plain printing (run by hand).

    python bench/render.py [--sizes 1000 4000 16000] [--width 100]

A deterministic Markdown answer (prose, lists, a code block every 7 sections: three in
4,000 tokens) is cut into ~4-character tokens and streamed into a captured terminal
console (truecolor, so code highlighting is paid for). Two modes:

- full speed: tokens fed as fast as the renderer takes them, real clock, 12 fps cap;
- 50 tok/s model: a fake clock moves 20 ms per token, so the renderer draws as many
  frames as during a real 50 tok/s generation (12 a second) while the benchmark still
  runs at full speed; this is the cost a user's CPU pays while chatting.

CPU time is time.process_time() around the feed loop and finish(); plain is PlainStream
writing the same tokens to a StringIO; "at once" prints the whole answer with
rich.markdown.Markdown once, the floor for any Markdown output. Goal: >= 5,000 tokens/s
and a cost per token that does not grow from 1k to 16k tokens.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

from rich.console import Console
from rich.markdown import Markdown

from weprompt_cli.render import MarkdownStream, PlainStream

PROSE = (
    "the query planner reads each table once and joins rows on the customer id while an index "
    "on orders keeps the lookup cheap so the sort at the end only sees one row per customer and "
    "returns quickly even when the tables grow large"
)
WORDS = PROSE.split()

# (language, lines); {n} makes each copy differ. No blank lines: RWKV answers have none.
CODE_BLOCKS = [
    (
        "sql",
        [
            "SELECT c.name, COUNT(o.id) AS orders",
            "FROM customers AS c",
            "JOIN orders AS o ON o.customer_id = c.id",
            "WHERE o.created_at >= DATE '2024-01-01'",
            "GROUP BY c.name",
            "HAVING COUNT(o.id) > {n}",
            "ORDER BY orders DESC",
            "LIMIT 20;",
        ],
    ),
    (
        "python",
        [
            "def top_customers(rows, limit={n}):",
            "    counts = {{}}",
            "    for name, order_id in rows:",
            "        counts[name] = counts.get(name, 0) + 1",
            "    ranked = sorted(counts.items(), key=lambda kv: -kv[1])",
            "    return ranked[:limit]",
            "if __name__ == '__main__':",
            "    print(top_customers([('ann', 1), ('bob', 2)]))",
        ],
    ),
    (
        "bash",
        [
            "psql -d shop -c 'EXPLAIN ANALYZE SELECT 1'",
            "for table in customers orders; do",
            '    psql -d shop -c "VACUUM ANALYZE $table"',
            "done",
            'echo "done after {n} runs"',
        ],
    ),
]


def make_answer(tokens: int) -> str:
    """A Markdown answer of about ``tokens`` 4-character tokens, with no blank lines (as RWKV writes)."""
    parts: list[str] = []
    size = 0
    section = 0
    while size < tokens * 4:
        words = [WORDS[(section * 7 + i) % len(WORDS)] for i in range(40)]
        prose = " ".join(words).capitalize() + f", with **{words[3]}** and `{words[5]}` in step {section}."
        items = "\n".join(f"- {WORDS[(section + k) % len(WORDS)]} keeps *step {section}.{k}* simple" for k in range(4))
        parts += [prose, items, prose.replace("The", "Then the", 1)]
        if section % 7 == 2:
            lang, lines = CODE_BLOCKS[(section // 7) % len(CODE_BLOCKS)]
            body = "\n".join(lines).format(n=section)
            parts += [f"For example:\n```{lang}\n{body}\n```"]
        section += 1
        size = sum(len(p) + 1 for p in parts)
    return "\n".join(parts)[: tokens * 4]


def tokenize(text: str) -> list[str]:
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def terminal(width: int) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=width, height=40, color_system="truecolor")


class ModelClock:
    """A clock that moves one token's time (1/rate s) per read: frames as in a real generation."""

    def __init__(self, rate: float) -> None:
        self.now = 0.0
        self.step = 1.0 / rate

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def run_markdown(
    tokens: list[str], width: int, clock: Callable[[], float], max_cpu_share: float | None
) -> tuple[float, float, int]:
    console = terminal(width)
    wall, cpu = time.perf_counter(), time.process_time()
    stream = MarkdownStream(console, clock=clock, max_cpu_share=max_cpu_share)
    for token in tokens:
        stream.feed(token)
    stream.finish()
    return time.perf_counter() - wall, time.process_time() - cpu, stream.refreshes


def run_plain(tokens: list[str]) -> tuple[float, float]:
    out = io.StringIO()
    wall, cpu = time.perf_counter(), time.process_time()
    with PlainStream(out) as stream:
        for token in tokens:
            stream.feed(token)
    return time.perf_counter() - wall, time.process_time() - cpu


def run_at_once(text: str, width: int) -> float:
    console = terminal(width)
    cpu = time.process_time()
    console.print(Markdown(text))
    return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="simulated model speed, tokens/s")
    args = parser.parse_args()

    run_at_once(make_answer(2000), args.width)  # load the Pygments lexers once, outside the timings

    print(
        "| tokens | code blocks | mode | frames | renderer CPU s | CPU µs/token | tokens/s (wall) "
        "| tokens per CPU s | CPU share at model rate | plain CPU s | rich at once CPU s |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        text = make_answer(size)
        tokens = tokenize(text)
        blocks = text.count("```") // 2
        _, plain_cpu = run_plain(tokens)
        once_cpu = run_at_once(text, args.width)
        rate = f"{args.rate:g} tok/s model"
        modes: list[tuple[str, Callable[[], float], float | None]] = [
            ("full speed", time.monotonic, 0.1),
            (rate, ModelClock(args.rate), 0.1),
            (f"{rate}, no CPU cap", ModelClock(args.rate), None),
        ]
        for mode, clock, share in modes:
            wall, cpu, frames = run_markdown(tokens, args.width, clock, share)
            model_s = len(tokens) / args.rate
            print(
                f"| {len(tokens):,} | {blocks} | {mode} | {frames} | {cpu:.3f} | {cpu / len(tokens) * 1e6:.0f} "
                f"| {len(tokens) / wall:,.0f} | {len(tokens) / cpu:,.0f} "
                f"| {'' if mode == 'full speed' else f'{cpu / model_s:.1%}'} | {plain_cpu:.4f} | {once_cpu:.3f} |"
            )


if __name__ == "__main__":
    main()
