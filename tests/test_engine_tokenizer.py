"""Tokenizers: World (WePrompt's byte table) agrees with the rwkv package's TRIE; JSON files; resolution."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from checkpoints import TINY_TOKENIZER

from weprompt_cli.engine.checkpoint import ModelInfo
from weprompt_cli.engine.tokenizer import JsonTokenizer, WorldTokenizer, resolve_tokenizer, world_tokenizer
from weprompt_cli.errors import NotFoundError

VARIED = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "def main(argv):\n    for i in range(10):\n        print(f'{i:>4}')  # comment\n\treturn {'a': [1, 2.5e-3]}\n",
    "SELECT c.name, COUNT(*) AS n FROM customers c JOIN orders o ON o.cid = c.id GROUP BY 1;",
    "Ünïcödé: café, naïve, Straße, Ελληνικά, русский, עברית, العربية",
    "中文测试：你好，世界！日本語のテキスト。한국어 문장입니다.",
    "emoji 😀🎉👍🏽 👨‍👩‍👧‍👦 flags 🇫🇷 and ✓ ✗ → ≠ ∞",
    "spaces    and\ttabs\t\t and   \n\n\n\nnewlines\r\n\r\nand \u3000 ideographic",
    "User: hi\n\nAssistant: hello there\n\nUser:",
    "",
    " ",
    "\n",
]


@pytest.fixture(scope="module")
def trie():  # the rwkv package's own pure-Python tokenizer
    from rwkv.rwkv_tokenizer import TRIE_TOKENIZER

    from weprompt_cli.engine.tokenizer import world_vocab_file

    return TRIE_TOKENIZER(str(world_vocab_file()))


def test_the_world_tokenizer_and_the_rwkv_trie_agree(trie) -> None:  # type: ignore[no-untyped-def]
    import random

    world = world_tokenizer()
    rng = random.Random(7)
    alphabet = "abc XYZ 012 \n\t.,;:!?'\"()[]{}<>/\\|@#$%^&*-_=+~`éüßçñ中文字日本語한국어😀👍🏽ﬁ\u200b"
    noise = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120))) for _ in range(200)]
    text = "".join(VARIED) * 3
    for sample in [*VARIED, text, *noise]:
        ids = world.encode(sample)
        assert ids == trie.encode(sample), sample
        assert world.decode(ids) == sample
        assert world.decode_bytes(ids) == trie.decodeBytes(ids)


def test_world_bytes_of_a_split_character_are_exact() -> None:
    world = world_tokenizer()
    ids = world.encode("😀")
    assert world.decode_bytes(ids) == "😀".encode()
    byte_token = 0xF0 + 1  # World ids 1..256 are the single bytes 0x00..0xFF
    assert world.token_bytes(byte_token) == b"\xf0"
    assert world.decode([byte_token]) == "\ufffd"  # no panic on partial UTF-8


def test_json_tokenizer_bytes_match_its_own_decode() -> None:
    from tokenizers import Tokenizer as HF

    tok = JsonTokenizer(TINY_TOKENIZER)
    hf = HF.from_file(str(TINY_TOKENIZER))
    assert tok.has_bytes
    for sample in VARIED:
        ids = tok.encode(sample)
        assert ids == hf.encode(sample).ids
        assert tok.decode(ids) == hf.decode(ids) == sample
        assert tok.decode_bytes(ids) == sample.encode("utf-8")
    split = tok.encode("é")
    assert len(split) == 2 and tok.decode_bytes(split[:1]) == b"\xc3"


def _info(vocab: int) -> ModelInfo:
    return ModelInfo(Path("/m.pth"), "v4", 2, 32, vocab, 0, 0, 1, 1)


def test_the_sidecar_tokenizer_wins(tmp_path: Path) -> None:
    model = tmp_path / "m.pth"
    shutil.copyfile(TINY_TOKENIZER, tmp_path / "m.tokenizer.json")
    tok = resolve_tokenizer(model, _info(65536), tmp_path)
    assert isinstance(tok, JsonTokenizer) and tok.name == "m.tokenizer.json"


def test_vocab_65536_is_the_world_tokenizer(tmp_path: Path) -> None:
    assert isinstance(resolve_tokenizer(tmp_path / "m.pth", _info(65536), tmp_path), WorldTokenizer)


def test_vocab_50277_finds_the_20b_file_beside_the_model_or_in_models(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(NotFoundError, match="20B tokenizer") as err:
        resolve_tokenizer(tmp_path / "raven.pth", _info(50277), models)
    assert "weprompt models pull raven-14b-v12" in (err.value.hint or "")
    shutil.copyfile(TINY_TOKENIZER, models / "20B_tokenizer.json")
    assert resolve_tokenizer(tmp_path / "raven.pth", _info(50277), models).name == "20B_tokenizer.json"


def test_another_vocab_without_a_tokenizer_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no tokenizer for a model with a 1234-token vocabulary") as err:
        resolve_tokenizer(tmp_path / "m.pth", _info(1234), tmp_path)
    assert "m.tokenizer.json" in (err.value.hint or "")
