"""Resume from a checkpoint vs replaying the transcript (run by hand).

    python bench/resume.py [--model PATH] [--histories 0,1000,4000,16000] [--threads N]

For each history length, builds a real session (turns of ~200 tokens fed through the
model and checkpointed by the store, exactly as chat does), then measures in the same
process and on the same model:

- resume: open the session, load the last checkpoint, feed the next message, first token;
- replay: what a chat that re-reads its history does: feed the persona prompt and every
  recorded token, then the next message, first token;
- the checkpoint: write time and size per turn, against the time of the turn it follows.

Goal (issue 4): resume flat in history length, >= 100x faster than replay at 4k tokens,
checkpoint write < 2% of a turn's time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from _models import bench_model
from weprompt_cli.chat.formats import chat_format_for

MESSAGE = "Which customers in Paris placed an order last month?"
REPLY = (
    " Join customers to orders and filter on the city and the date:\n```sql\nSELECT DISTINCT c.name FROM customers c "
    "JOIN orders o ON o.customer_id = c.id WHERE c.city = 'Paris' AND o.created_at >= date('now', '-1 month');\n```\n"
    "This lists each matching customer once.\n\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--histories", default="0,1000,4000,16000")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["WEPROMPT_HOME"] = tempfile.mkdtemp(prefix="weprompt-bench-resume-")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from weprompt_cli.chat.persona_state import persona_prompt
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.engine import SamplingParams, Sampler, load_engine
    from weprompt_cli.paths import resolve_home
    from weprompt_cli.personas import find_persona
    from weprompt_cli.store import SessionStore, Turn, utc_now

    model = bench_model(args.model)
    engine = load_engine(model, "cpu fp32")
    persona = find_persona("sql", home=resolve_home())
    store = SessionStore(resolve_home())
    greedy = SamplingParams(temperature=0, top_p=1, max_tokens=1)
    tok = engine.tokenizer
    reply_ids = tok.encode(REPLY)
    print(f"model {model.name} ({engine.info.arch}, {engine.info.n_layer}x{engine.info.n_embd}, "
          f"{engine.info.n_params / 1e6:.1f}M params), strategy {engine.strategy}, torch threads {torch.get_num_threads()}")

    # Warm up the TorchScript paths once (the first forward compiles).
    warm = engine.zero_state()
    engine.feed(tok.encode(MESSAGE * 3), warm)
    engine.feed(tok.encode("x"), warm)

    rows = []
    writes: list[float] = []
    sizes: list[int] = []
    turn_times: list[float] = []
    for target in [int(x) for x in args.histories.split(",")]:
        name = f"h{target}"
        with ChatSession.start(engine, store, persona, greedy, name=name) as chat:
            fed = 0
            while fed < target:
                prompt = chat_format_for(engine.info, engine.tokenizer).turn_prompt(f"{MESSAGE} (turn {len(chat.turns) + 1})", needs_boundary=False)
                p_ids = tok.encode(prompt)
                t0 = time.perf_counter()
                engine.feed(p_ids + reply_ids, chat.state)
                turn_s = time.perf_counter() - t0
                turn = Turn(index=len(chat.turns) + 1, user=MESSAGE, assistant=REPLY.strip(), prompt_text=prompt,
                            reply_text=REPLY, prompt_tokens=p_ids, reply_tokens=reply_ids, stop_reason="stop",
                            started_at=utc_now(), finished_at=utc_now())
                t1 = time.perf_counter()
                chat._checkpoint(turn)
                writes.append(time.perf_counter() - t1)
                turn_times.append(turn_s)
                sizes.append(chat.opened.state_path(turn.index).stat().st_size)
                fed += len(p_ids) + len(reply_ids)
            history_tokens = fed

        def resume_once() -> float:
            t0 = time.perf_counter()
            opened = store.open(name)
            with ChatSession.resume(engine, store, opened, persona, greedy) as chat:
                reply = chat.send(MESSAGE)
                next(iter(reply), None)
                ttft = time.perf_counter() - t0
                for _ in reply:
                    pass
                chat.undo()  # keep the history length fixed for the next run
            return ttft

        def replay_once() -> float:
            opened = store.open(name)
            turns = opened.turns()
            opened.close()
            t0 = time.perf_counter()
            state = engine.zero_state()
            ids = tok.encode(persona_prompt(engine, persona))
            for t in turns:
                ids += t.prompt_tokens + t.reply_tokens
            ids += tok.encode(chat_format_for(engine.info, engine.tokenizer).turn_prompt(MESSAGE, needs_boundary=False))
            logits = engine.feed(ids, state)
            Sampler(greedy).sample(logits)
            return time.perf_counter() - t0

        resume_s = statistics.median(resume_once() for _ in range(args.repeat))
        replay_s = statistics.median(replay_once() for _ in range(args.repeat))
        rows.append((history_tokens, resume_s, replay_s))

    print()
    print(f"{'history':>8} {'resume TTFT':>12} {'replay TTFT':>12} {'replay/resume':>14}")
    for tokens, resume_s, replay_s in rows:
        print(f"{tokens:>8} {resume_s * 1000:>10.1f}ms {replay_s * 1000:>10.1f}ms {replay_s / resume_s:>13.1f}x")
    # The checkpoint's share of real turns: generate answers of up to 64 tokens, time the
    # whole send() and, inside it, the store's append_turn (state file + transcript + meta).
    real = SamplingParams(temperature=0, top_p=1, max_tokens=64)
    with ChatSession.start(engine, store, persona, real, name="share") as chat:
        append = chat.opened.append_turn
        spent: list[float] = []

        def timed_append(*a, **kw):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return append(*a, **kw)
            finally:
                spent.append(time.perf_counter() - t0)

        chat.opened.append_turn = timed_append  # type: ignore[method-assign]
        shares = []
        for i in range(10):
            t0 = time.perf_counter()
            reply = chat.send(f"{MESSAGE} ({i})")
            reply.text()
            total = time.perf_counter() - t0
            shares.append((spent[-1], total, len(reply.turn.reply_tokens) if reply.turn else 0))
    w = statistics.median(s[0] for s in shares)
    t = statistics.median(s[1] for s in shares)
    n = statistics.median(s[2] for s in shares)
    print()
    print(f"checkpoint per turn: {statistics.median(sizes) / 1024:.1f} KiB on disk; append_turn (state file, "
          f"transcript line, session.json, each fsync'd) {w * 1000:.2f} ms = {100 * w / t:.2f}% of a real turn "
          f"({t * 1000:.0f} ms for a {n:.0f}-token answer, median of {len(shares)})")


if __name__ == "__main__":
    main()
