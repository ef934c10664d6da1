"""Train the demo model's small byte-level BPE (`tokenizers`) on the corpus."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from training.corpus import Segment


def train_tokenizer(docs: Iterable[list[Segment]], vocab_size: int = 4096) -> Tokenizer:
    """A byte-level BPE trained on the documents' segments; any text round-trips through it."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator((s.text for doc in docs for s in doc), trainer=trainer)
    return tok


def encode_segments(tok: Tokenizer, docs: list[list[Segment]]) -> list[tuple[list[int], list[int]]]:
    """Per document: token ids and a 0/1 loss mask (1 on reply tokens), each segment encoded on its own."""
    flat = [s.text for doc in docs for s in doc]
    encs = tok.encode_batch(flat, add_special_tokens=False)
    out, i = [], 0
    for doc in docs:
        ids: list[int] = []
        mask: list[int] = []
        for seg in doc:
            e = encs[i].ids
            i += 1
            ids += e
            mask += [int(seg.is_reply)] * len(e)
        out.append((ids, mask))
    return out


def save(tok: Tokenizer, path: Path) -> None:
    """Write the tokenizer JSON (the engine reads `<model-stem>.tokenizer.json`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
