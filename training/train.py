"""Train the embedded demo model from scratch and write it into `weprompt_cli/demo/`.

    python -m training.train                # the shipped weights (defaults below), CPU or CUDA
    python -m training.train --steps 40     # a smoke run

Steps: generate the seeded corpus, train the BPE, tokenize segment by segment, train the RWKV-7
with AdamW on the assistant tokens, export the `.pth` and `.tokenizer.json`.

Most rows start from the persona prefix's state computed without gradient (the prefix is the
same for every document of a persona, so recomputing it with gradient would spend most of the
compute on it); a quarter of the rows carry the whole prefix with gradient.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from training.corpus import PERSONAS, Segment, documents, persona_prefix
from training.export import export
from training.model import RWKV7, RWKV7Config
from training.tokenizer import encode_segments, save, train_tokenizer

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "weprompt_cli" / "demo"
STEM = "weprompt-demo-rwkv7"


def build_rows(
    docs: list[list[Segment]], tok, full_prefix_frac: float, rng: random.Random,
) -> list[tuple[int, list[int], list[int]]]:
    """Per document (persona index or -1 for 'prefix included', ids, loss mask)."""
    prefixes = [persona_prefix(p) for p in PERSONAS]
    enc = encode_segments(tok, docs)
    n_prefix_of = [len(tok.encode(p).ids) for p in prefixes]
    rows = []
    for doc, (ids, mask) in zip(docs, enc):
        p = prefixes.index(doc[0].text)
        n_prefix = n_prefix_of[p]
        if rng.random() < full_prefix_frac:
            rows.append((-1, ids, mask))
        else:
            # the last prefix token is kept in the row: it is fed here, and the state is of the tokens before it
            rows.append((p, ids[n_prefix - 1:], mask[n_prefix - 1:]))
    return rows


def batches(
    rows: list[tuple[int, list[int], list[int]]], batch: int, rng: random.Random,
) -> list[list[tuple[int, list[int], list[int]]]]:
    """Rows bucketed by length (less padding), then the batches shuffled."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    out = []
    window = batch * 32
    for w in range(0, len(order), window):
        chunk = sorted(order[w:w + window], key=lambda i: len(rows[i][1]))
        out += [[rows[i] for i in chunk[j:j + batch]] for j in range(0, len(chunk), batch)]
    rng.shuffle(out)
    return [b for b in out if len(b) == batch]


def collate(b: list[tuple[int, list[int], list[int]]], device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Padded inputs (B,T), targets (B,T), mask (B,T) and each row's persona index (-1: zero state)."""
    T = max(len(ids) for _, ids, _ in b) - 1
    x = torch.zeros(len(b), T, dtype=torch.long)
    y = torch.zeros(len(b), T, dtype=torch.long)
    m = torch.zeros(len(b), T)
    for i, (_, ids, mask) in enumerate(b):
        n = len(ids) - 1
        x[i, :n] = torch.tensor(ids[:-1])
        y[i, :n] = torch.tensor(ids[1:])
        m[i, :n] = torch.tensor(mask[1:], dtype=torch.float)
    return x.to(device), y.to(device), m.to(device), [p for p, _, _ in b]


def prefix_states(model: RWKV7, prefix_ids: list[list[int]], device: str) -> list[list[torch.Tensor]]:
    """The state after all but the last token of each persona prefix, without gradient."""
    out = []
    with torch.no_grad():
        for ids in prefix_ids:
            _, st = model(torch.tensor([ids[:-1]], device=device))
            out.append(st)
    return out


def initial_state(model: RWKV7, personas: list[int], pstates: list[list[torch.Tensor]], device: str) -> list[torch.Tensor]:
    """Stack per-row initial states: the persona's prefix state, or zeros for rows that carry the prefix."""
    zero = model.zero_state(1, device)
    return [torch.cat([(pstates[p][j] if p >= 0 else zero[j]) for p in personas]) for j in range(len(zero))]


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m training` (its defaults are the shipped model's recipe)."""
    ap = argparse.ArgumentParser(description="Train the WePrompt demo RWKV-7 from scratch.")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--max-minutes", type=float, default=85.0,
                    help="training time cap: the schedule follows max(step/steps, time/cap), so a slow CPU anneals early")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--head-size", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--full-prefix-frac", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2,
                    help="torch CPU threads; 2 suits an idle 2-core machine, 1 a shared one (0: torch's default)")
    ap.add_argument("--out-dir", type=Path, default=DEMO_DIR)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/weprompt-demo-train"))
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    t0 = time.time()

    n_docs = args.steps * args.batch
    docs = documents(n_docs, seed=args.seed, split="train")
    tok = train_tokenizer(docs[:6000], args.vocab)
    rows = build_rows(docs, tok, args.full_prefix_frac, rng)
    plan = batches(rows, args.batch, rng)
    prefix_ids = [tok.encode(persona_prefix(p)).ids for p in PERSONAS]
    print(f"corpus: {n_docs} docs, {sum(len(r[1]) for r in rows)} row tokens, vocab {tok.get_vocab_size()}, "
          f"{len(plan)} batches, prep {time.time() - t0:.0f}s, device {device}", flush=True)

    cfg = RWKV7Config(vocab_size=tok.get_vocab_size(), n_layer=args.n_layer, n_embd=args.n_embd, head_size=args.head_size,
                      d_gate=32)
    model = RWKV7(cfg).to(device)
    print(f"model: {cfg} params {model.num_params() / 1e6:.2f}M", flush=True)
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "emb" not in name and ".w1" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.99), eps=1e-8)
    warmup = max(1, min(100, len(plan) // 10))

    budget_s = args.max_minutes * 60

    def progress(step: int) -> float:
        return max(step / len(plan), (time.time() - t_train) / budget_s)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        frac = min(1.0, progress(step))
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))

    from tqdm import tqdm

    args.work_dir.mkdir(parents=True, exist_ok=True)
    seen, ema, t_train = 0, None, time.time()
    log = []
    bar = tqdm(plan, desc="train", file=sys.stderr, mininterval=10, dynamic_ncols=False, ncols=100)
    steps_done = 0
    for step, b in enumerate(bar):
        if step >= warmup and progress(step) >= 1.0:
            print(f"time cap reached after {step} steps", flush=True)
            break
        steps_done = step + 1
        model.train()
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y, m, personas = collate(b, device)
        pstates = prefix_states(model, prefix_ids, device)
        h, _ = model.features(x, initial_state(model, personas, pstates, device))  # (B,T,C)
        sel = m.view(-1) > 0  # the assistant tokens: the only ones the loss is taken on
        logits = model.head(h.reshape(-1, h.size(-1))[sel])  # (n,V)
        loss = F.cross_entropy(logits, y.view(-1)[sel])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen += sum(len(ids) - 1 for _, ids, _ in b)
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        tps = seen / (time.time() - t_train)
        bar.set_postfix(loss=f"{ema:.3f}", tok_s=f"{tps:.0f}")
        if step % 25 == 0:
            log.append({"step": step, "loss": round(ema, 4), "tokens": seen, "elapsed_s": round(time.time() - t0)})
            print(json.dumps(log[-1]), flush=True)
        if step % 50 == 49:
            torch.save(model.state_dict(), args.work_dir / "last.pt")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    export(model.cpu(), args.out_dir / f"{STEM}.pth", dtype)
    save(tok, args.out_dir / f"{STEM}.tokenizer.json")
    summary = {"steps": steps_done, "planned_steps": len(plan), "tokens": seen, "final_loss_ema": round(ema or 0.0, 4),
               "train_seconds": round(time.time() - t_train), "total_seconds": round(time.time() - t0),
               "params": model.num_params(), "config": cfg.__dict__, "args": {k: str(v) for k, v in vars(args).items()}}
    (args.work_dir / "summary.json").write_text(json.dumps({**summary, "log": log}, indent=1))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
