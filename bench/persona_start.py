"""Time to first token of a new session: persona prompt cached vs fed afresh (run by hand).

    python bench/persona_start.py [--model PATH] [--lengths 100,1000,4000] [--repeat 3]

For personas whose prompt is about N tokens long (a user persona with a long system
prompt), measures `ChatSession.start` + the first token of the first answer, with an
empty persona cache (the persona is fed) and with a warm one (its state is loaded).
Goal (issue 6): the cached start does not grow with the persona's length.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _models import bench_model
from weprompt_cli.chat.formats import chat_format_for

SENTENCE = "Answer questions about the shop database with one SQL query and one short sentence. "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--lengths", default="100,1000,4000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="weprompt-bench-persona-"))
    os.environ["WEPROMPT_HOME"] = str(home)

    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.engine import SamplingParams, load_engine
    from weprompt_cli.paths import resolve_home
    from weprompt_cli.personas import find_persona
    from weprompt_cli.store import SessionStore

    model = bench_model(args.model)
    engine = load_engine(model, "cpu fp32")
    store = SessionStore(resolve_home())
    params = SamplingParams(temperature=0, top_p=1, max_tokens=1)
    tok = engine.tokenizer
    warm = engine.zero_state()
    engine.feed(tok.encode(SENTENCE * 4), warm)  # TorchScript warm-up, outside the timings
    engine.feed(tok.encode("x"), warm)
    print(f"model {model.name} ({engine.info.arch}, {engine.info.n_params / 1e6:.1f}M params), strategy {engine.strategy}")

    per_sentence = len(tok.encode(SENTENCE))
    (home / "personas").mkdir(exist_ok=True)
    rows = []
    for target in [int(x) for x in args.lengths.split(",")]:
        name = f"long{target}"
        system = (SENTENCE * max(1, target // per_sentence)).strip()
        (home / "personas" / f"{name}.toml").write_text(
            f'schema_version = 1\nname = "{name}"\ntitle = "Long"\ndescription = "bench"\nsystem = """{system}"""\n'
        )
        persona = find_persona(name, home=resolve_home())

        def start_once() -> float:
            t0 = time.perf_counter()
            with ChatSession.start(engine, store, persona, params) as chat:
                reply = chat.send("How many customers are there?")
                next(iter(reply), None)
                ttft = time.perf_counter() - t0
                for _ in reply:
                    pass
            return ttft

        uncached = []
        cached = []
        for _ in range(args.repeat):
            shutil.rmtree(home / "cache", ignore_errors=True)
            uncached.append(start_once())
            cached.append(start_once())
        prompt_tokens = len(tok.encode(chat_format_for(engine.info, engine.tokenizer).persona_prefix(persona.system, list(persona.examples))))
        rows.append((prompt_tokens, statistics.median(uncached), statistics.median(cached)))

    print(f"\n{'persona tokens':>14} {'uncached TTFT':>14} {'cached TTFT':>12} {'speed-up':>9}")
    for tokens, u, c in rows:
        print(f"{tokens:>14} {u * 1000:>12.1f}ms {c * 1000:>10.1f}ms {u / c:>8.1f}x")


if __name__ == "__main__":
    main()
