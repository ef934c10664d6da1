"""Held-out evaluation of the shipped demo model on this CPU.

    python bench/demo_eval.py                  # 10 fixed + 190 generated held-out SQL questions
    python bench/demo_eval.py --generated 100 --model path/to/other.pth
    python bench/demo_eval.py --baseline path/to/previous.pth   # the same questions, both models

Reports execution match on held-out phrasings (SQL run on the seeded SQLite demo database,
rows compared with the reference query's), the turn-end rate (replies that end with the turn
separator rather than the token limit) over all held-out prompts, and greedy decode tokens/s.
Writes bench/results/demo_eval.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.evaluate import Report, evaluate
from weprompt_cli.demo import DEMO_MODEL_PATH


def by_kind_line(rep: Report) -> str:
    """'aggregate 15/17, count 9/11, ...': matched / asked per question kind."""
    return ", ".join(f"{k} {hit}/{n}" for k, (hit, n) in sorted(rep.by_kind.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEMO_MODEL_PATH)
    ap.add_argument("--generated", type=int, default=190, help="generated held-out SQL questions besides the 10 fixed")
    ap.add_argument("--other", type=int, default=6, help="held-out prompts per persona for the turn-end rate")
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--baseline", type=Path, help="also score this model on the same questions and print the ratio")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "demo_eval.json")
    args = ap.parse_args()

    t0 = time.time()
    rep = evaluate(args.model, n_generated=args.generated, n_other=args.other, max_tokens=args.max_tokens,
                   with_natural=True)
    summary = {
        "model": str(args.model),
        "fixed_heldout_match": f"{rep.fixed_match}/{rep.fixed_total}",
        "heldout_execution_match": round(rep.heldout_match / rep.heldout_total, 3),
        "heldout_questions": rep.heldout_total,
        "turn_end_rate": round(rep.turn_end / rep.turn_total, 3),
        "turn_prompts": rep.turn_total,
        "decode_tokens_per_s": round(rep.tokens_per_s, 1),
        "wall_s": round(time.time() - t0, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(f"execution match (held-out): {rep.heldout_match}/{rep.heldout_total} "
          f"({summary['heldout_execution_match']:.0%}); fixed ten: {summary['fixed_heldout_match']}")
    nat_hit, nat_n = rep.by_kind["natural"]
    summary["natural_match"] = f"{nat_hit}/{nat_n}"
    print(f"plain questions (training/sqleval.py NATURAL_HELDOUT): {nat_hit}/{nat_n}")
    print(f"turn-end rate: {rep.turn_end}/{rep.turn_total} ({summary['turn_end_rate']:.0%})")
    print(f"greedy decode: {summary['decode_tokens_per_s']} tokens/s (1 thread, fp32)")
    for f in rep.failures[:10]:
        print(f"  miss: {f['question']!r}\n    got: {f['answer']!r}\n    ref: {f['reference']}")
    print("by kind: " + by_kind_line(rep))
    if args.baseline:
        base = evaluate(args.baseline, n_generated=args.generated, n_other=args.other, max_tokens=args.max_tokens,
                        with_natural=True)
        summary["baseline"] = {"model": str(args.baseline), "heldout_match": f"{base.heldout_match}/{base.heldout_total}",
                               "turn_end": f"{base.turn_end}/{base.turn_total}",
                               "decode_tokens_per_s": round(base.tokens_per_s, 1)}
        print(f"baseline {args.baseline.name}: {base.heldout_match}/{base.heldout_total}; "
              f"execution match ratio {rep.heldout_match / max(base.heldout_match, 1):.2f}, "
              f"turn-end {base.turn_end}/{base.turn_total}, decode ratio {rep.tokens_per_s / base.tokens_per_s:.2f}")
        print("baseline by kind: " + by_kind_line(base))
    summary["by_kind"] = {k: f"{hit}/{n}" for k, (hit, n) in sorted(rep.by_kind.items())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**summary, "failures": rep.failures}, indent=1) + "\n")


if __name__ == "__main__":
    main()
