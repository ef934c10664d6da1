"""Answer questions with an exported demo model through the real `rwkv` package, greedily.

Run it as its own process (it sets RWKV_V7_ON before importing `rwkv.model`, which fixes the
model family for the whole process):

    echo '{"items": [{"persona": "sql", "question": "How many customers are there?"}]}' \\
        | python -m training.demo_run --model weprompt_cli/demo/weprompt-demo-rwkv7.pth

Prints JSON: per item the reply text (separator cut, leading space stripped), whether it ended
with the turn separator, the number of generated tokens and the seconds spent generating.
"""

from __future__ import annotations

import os

os.environ["RWKV_V7_ON"] = "1"
os.environ["RWKV_JIT_ON"] = "1"
os.environ["RWKV_CUDA_ON"] = "0"

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

SEP = "\n\n"


def main() -> None:
    ap = argparse.ArgumentParser(description="Greedy answers of a demo model through rwkv.model.RWKV.")
    ap.add_argument("--model", type=Path, required=True, help="the .pth file (tokenizer JSON beside it)")
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    request = json.load(sys.stdin)

    import torch
    from tokenizers import Tokenizer

    torch.set_num_threads(args.threads)
    from training.corpus import fold, persona_prefix

    t0 = time.time()
    stem = str(args.model).removesuffix(".pth")
    with contextlib.redirect_stdout(sys.stderr):  # the package prints banners; stdout carries the JSON only
        from rwkv.model import RWKV

        model = RWKV(stem, "cpu fp32")
    tok = Tokenizer.from_file(stem + ".tokenizer.json")
    load_s = time.time() - t0

    prefix_state: dict[str, list[torch.Tensor]] = {}
    results = []
    for item in request["items"]:
        persona = item.get("persona", "sql")
        if persona not in prefix_state:
            _, st = model.forward(tok.encode(persona_prefix(persona)).ids, None)
            prefix_state[persona] = [t.clone() for t in st]
        state = [t.clone() for t in prefix_state[persona]]
        t1 = time.time()
        logits, state = model.forward(tok.encode(f"User: {fold(item['question'])}\n\nAssistant:").ids, state)
        t2 = time.time()
        out: list[int] = []
        text, ended = "", False
        while len(out) < args.max_tokens:
            nxt = int(torch.argmax(logits.float()))
            out.append(nxt)
            text = tok.decode(out)
            if SEP in text:
                ended = True
                break
            logits, state = model.forward([nxt], state)
        results.append({"text": text.split(SEP)[0].lstrip(" "), "ended": ended, "tokens": len(out),
                        "prefill_s": round(t2 - t1, 4), "seconds": round(time.time() - t2, 4)})
    json.dump({"load_s": round(load_s, 3), "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
