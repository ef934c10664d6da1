"""A tiny RWKV-7 that answers in the G1 format: `<think>` a thought `</think>`, then the answer.

Random weights never write a `<think>` block, so the thinking tests train one: the
project's own RWKV-7 (training/model.py, the same math as the rwkv package) learns a few
short G1 conversations by heart in about half a minute on one CPU thread, and is written
in the package's `.pth` layout with the tiny BPE tokenizer beside it. Greedy decoding then
reproduces the learned replies, thought and answer, through the real engine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from checkpoints import TINY_TOKENIZER, build_tiny_tokenizer

# (question, thought, answer): the replies the model learns.
DIALOGUES = [
    ("What is two plus two?", "Add the numbers.", "It is four."),
    ("Name a primary key.", "A column that is unique.", "Use the id column."),
    ("Say hello.", "A short greeting.", "Hello there!"),
]


def g1_exchange(question: str, thought: str | None, answer: str) -> tuple[str, str]:
    """(prompt, reply) as WePrompt feeds a G1 turn with thinking on (a thought) or off (None)."""
    from weprompt_cli.chat.formats import G1

    prompt = G1.turn_prompt(question, needs_boundary=False, think="on" if thought is not None else "off")
    reply = f">{thought}</think>\n{answer}\n\n" if thought is not None else f">\n{answer}\n\n"
    return prompt, reply


def build_g1_model(path: Path, *, steps: int = 400, seed: int = 0) -> Path:
    """Train and write the tiny G1 model to `path` (and `<stem>.tokenizer.json` beside it)."""
    import random

    import torch
    import torch.nn.functional as F
    from tokenizers import Tokenizer

    from training.export import export
    from training.model import RWKV7, RWKV7Config

    if not TINY_TOKENIZER.exists():
        build_tiny_tokenizer()
    tok = Tokenizer.from_file(str(TINY_TOKENIZER))
    exchanges = [g1_exchange(q, t, a) for q, t, a in DIALOGUES] + [g1_exchange(q, None, a) for q, _, a in DIALOGUES]
    # The prompt and the reply are tokenized apart, as the engine feeds them; only the reply is learned.
    rows = [(tok.encode(p).ids, tok.encode(r).ids) for p, r in exchanges]
    torch.manual_seed(seed)
    rng = random.Random(seed)
    cfg = RWKV7Config(vocab_size=tok.get_vocab_size(), n_layer=2, n_embd=64, head_size=32, d_decay=16, d_aaa=16,
                      d_mv=16, d_gate=32)
    model = RWKV7(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            batch = rng.sample(rows, k=len(rows))
            width = max(len(p) + len(r) for p, r in batch)
            ids = torch.tensor([p + r + [0] * (width - len(p) - len(r)) for p, r in batch])  # (B, T)
            mask = torch.tensor(
                [[0.0] * (len(p) - 1) + [1.0] * len(r) + [0.0] * (width - len(p) - len(r)) for p, r in batch]
            )  # (B, T-1): the targets that are reply tokens
            logits, _ = model(ids[:, :-1])  # (B, T-1, V)
            loss = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            loss = (loss * mask).sum() / mask.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    export(model, path)
    shutil.copyfile(TINY_TOKENIZER, path.with_name(path.name.removesuffix(".pth") + ".tokenizer.json"))
    return path
