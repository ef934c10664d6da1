"""`/alternatives N` and `/pick K`: N answers to the last message in one batched pass, one of them kept.

The chat layer (chat/alternatives.py) on a tiny RWKV-7: each alternative is the answer a
solo turn with its settings gives, the session is untouched until a pick, and the picked
answer becomes an ordinary turn whose state is the one sampled (equal to replaying its
ids) and from which the session goes on, resumed included. Then the REPL commands
(repl/alternatives_commands.py) in a real pseudo-terminal on the demo model: the kept
answer is the second one shown, and `weprompt resume` continues from it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from checkpoints import tiny_model
from gguf_models import needs_llama_cpp

from weprompt_cli.chat.formats import chat_format_for
from weprompt_cli.paths import resolve_home

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "weprompt_cli" / "demo" / "weprompt-demo-rwkv7.pth"
QUESTION = "What should I build next?"  # the demo model answers it in several ways at temperature 2


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from weprompt_cli.engine import load_engine

    return load_engine(tiny_model("v7", tmp_path_factory.getbasetemp() / "tiny-models"), "cpu fp32")


@pytest.fixture
def store(weprompt_home: Path) -> Any:
    from weprompt_cli.store import SessionStore

    return SessionStore(resolve_home())


@pytest.fixture
def persona() -> Any:
    from weprompt_cli.personas import find_persona

    return find_persona("sql", home=resolve_home())


def sampling(**changes: Any) -> Any:
    from weprompt_cli.engine import SamplingParams

    return SamplingParams(**{"temperature": 0.9, "top_p": 0.9, "seed": 11, "max_tokens": 10, **changes})


def same_state(a: list[Any], b: list[Any], tol: float = 1e-5) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.allclose(x.float(), y.float(), atol=tol, rtol=tol), float((x.float() - y.float()).abs().max())


def replay(engine: Any, ids: list[int]) -> list[Any]:
    state = engine.zero_state()
    engine.feed(ids, state)
    return state  # type: ignore[no-any-return]


def history_ids(engine: Any, persona: Any, turns: list[Any]) -> list[int]:
    from weprompt_cli.chat.persona_state import persona_prompt

    ids = engine.tokenizer.encode(persona_prompt(chat_format_for(engine.info, engine.tokenizer), persona))
    for turn in turns:
        ids += list(turn.prompt_tokens) + list(turn.reply_tokens)
    return ids


def solo_answer(engine: Any, chat: Any, alternatives: Any, k: int) -> Any:
    """Alternative k's turn run alone on the plain engine, from the state before the replaced turn."""
    from weprompt_cli.chat.alternatives import alternative_params
    from weprompt_cli.chat.turn import TurnStream

    last = alternatives.replaces
    stream = TurnStream(engine, engine.clone_state(alternatives.before), index=last.index, user=last.user,
                        prompt_text=last.prompt_text, prompt_tokens=list(last.prompt_tokens),
                        params=alternative_params(chat.params, k), stops=(chat.fmt.separator, *chat.persona.stop),
                        ban=chat.fmt.ban)
    stream.text()
    return stream.turn


def test_alternatives_are_solo_answers_and_pick_keeps_one_with_its_state(engine: Any, store: Any, persona: Any) -> None:
    from weprompt_cli.chat.alternatives import sample_alternatives
    from weprompt_cli.chat.session import ChatSession

    with ChatSession.start(engine, store, persona, sampling(), name="alts") as chat:
        chat.send("list all customers").text()
        original = chat.turns[-1]
        alternatives = sample_alternatives(chat, 3)
        assert alternatives.batched and [a.number for a in alternatives.items] == [1, 2, 3]
        assert chat.turns == [original]  # nothing changes before a pick
        for k, item in enumerate(alternatives.items):
            assert item.turn.index == 1 and item.turn.user == original.user
            assert item.turn.prompt_tokens == original.prompt_tokens
            assert item.turn.reply_tokens == solo_answer(engine, chat, alternatives, k).reply_tokens
        # The first alternative is what the session's own settings (seed 11) give: the original answer.
        assert alternatives.items[0].turn.reply_tokens == original.reply_tokens
        assert len({tuple(a.turn.reply_tokens) for a in alternatives.items}) > 1

        fed = engine.counters.fed
        kept = alternatives.pick(2)
        assert engine.counters.fed == fed  # the kept answer's state was sampled already: nothing is fed
        assert chat.turns == [kept] and kept.reply_tokens == alternatives.items[1].turn.reply_tokens
        same_state(chat.state, replay(engine, history_ids(engine, persona, chat.turns)))
        with pytest.raises(Exception, match="moved on"):
            alternatives.pick(1)
        chat.send("now only those in Paris").text()
        same_state(chat.state, replay(engine, history_ids(engine, persona, chat.turns)))
        turns, final = chat.turns, [t.clone() for t in chat.state]

    opened = store.open(store.resolve("alts").id)
    fed = engine.counters.fed
    with ChatSession.resume(engine, store, opened, persona, sampling()) as again:
        assert engine.counters.fed == fed  # resumed from the checkpoint, no replay
        assert [t.reply_tokens for t in again.turns] == [t.reply_tokens for t in turns]
        same_state(again.state, final)


@needs_llama_cpp
def test_alternatives_on_a_gguf_model_are_its_solo_answers(
    engine: Any, store: Any, persona: Any, tmp_path: Path
) -> None:
    """On the llama.cpp backend the alternatives are sampled together in one llama.cpp batch, with numpy
    samplers (its logits are numpy arrays), and each is the answer its settings give alone."""
    import shutil

    from weprompt_cli.chat.alternatives import sample_alternatives
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.engine.llama_engine import load_llama_engine
    from weprompt_cli.models.gguf_convert import convert_to_gguf

    pth = engine.info.path
    gguf = tmp_path / "tiny.gguf"
    convert_to_gguf(pth, gguf, quant="f32")
    shutil.copyfile(pth.with_name(pth.name.removesuffix(".pth") + ".tokenizer.json"), tmp_path / "tiny.tokenizer.json")
    llama = load_llama_engine(gguf, "cpu", probe=False)
    try:
        with ChatSession.start(llama, store, persona, sampling(), name="alts-gguf") as chat:
            chat.send("list all customers").text()
            alternatives = sample_alternatives(chat, 3)
            assert alternatives.batched
            for k, item in enumerate(alternatives.items):
                assert item.turn.reply_tokens == solo_answer(llama, chat, alternatives, k).reply_tokens
            assert alternatives.items[0].turn.reply_tokens == chat.turns[-1].reply_tokens  # seed 11: the original
            kept = alternatives.pick(3)
            assert chat.turns == [kept]
    finally:
        llama.close()


def test_alternatives_without_batching_run_one_after_another_and_give_the_same_answers(
    engine: Any, store: Any, persona: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import weprompt_cli.engine.batched as batched
    from weprompt_cli.chat.alternatives import sample_alternatives

    from weprompt_cli.chat.session import ChatSession

    with ChatSession.start(engine, store, persona, sampling(), name="seq") as chat:
        chat.send("how many orders are there").text()
        together = sample_alternatives(chat, 2)
        monkeypatch.setattr(batched, "shared_batched", lambda engine, max_batch=8: None)
        apart = sample_alternatives(chat, 2)
        assert together.batched and not apart.batched
        assert [a.turn.reply_tokens for a in apart.items] == [a.turn.reply_tokens for a in together.items]


def test_a_greedy_session_still_gets_different_alternatives_and_bad_counts_are_refused(
    engine: Any, store: Any, persona: Any
) -> None:
    from weprompt_cli.chat.alternatives import FALLBACK_TEMPERATURE, alternative_params, sample_alternatives
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.errors import WePromptError

    greedy = sampling(temperature=0, seed=None)
    assert alternative_params(greedy, 2).temperature == FALLBACK_TEMPERATURE
    assert alternative_params(sampling(), 2).seed == 13 and alternative_params(sampling(), 0) == sampling()
    with ChatSession.start(engine, store, persona, greedy, name="greedy") as chat:
        with pytest.raises(WePromptError, match="send a message first"):
            sample_alternatives(chat, 2)
        chat.send("list all customers").text()
        for bad in (0, 9):
            with pytest.raises(WePromptError, match="1 to 8"):
                sample_alternatives(chat, bad)
        alternatives = sample_alternatives(chat, 4)
        assert len({tuple(a.turn.reply_tokens) for a in alternatives.items}) > 1
        with pytest.raises(WePromptError, match="pick 1 to 4"):
            alternatives.pick(5)


# ---------------------------------------------------------------------------- the REPL, in a pty

REGISTER = (
    "import sys\n"
    "from weprompt_cli.repl import alternatives_commands as a, commands as c\n"
    "for name, usage, text, run in a.ENTRIES:\n"
    "    c.COMMANDS.setdefault(name, c.Command(name, usage, text, run))  # until commands.py registers them\n"
    "from weprompt_cli.cli import main\n"
    "main(sys.argv[1:])\n"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b\][^\x07]*\x07|\r")


def _flat(text: str) -> str:
    return " ".join(ANSI.sub("", text).split())


@pytest.mark.skipif(not DEMO.exists(), reason="the demo model is not shipped in this checkout")
def test_alternatives_then_pick_2_in_the_repl_keeps_the_second_answer_shown(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "WEPROMPT_HOME": str(home), "TERM": "xterm-256color", "PYTHONUNBUFFERED": "1",
           "COLUMNS": "200", "LINES": "50"}
    child = pexpect.spawn(sys.executable, ["-c", REGISTER, "chat", "--persona", "general", "--model", "demo", "-s", "alt",
                                           "-t", "2", "--top-p", "1", "--seed", "4", "--max-tokens", "24"],
                          env=env, cwd=str(ROOT), dimensions=(50, 200), encoding="utf-8", codec_errors="replace",
                          timeout=180)
    prompt = "general · alt ›"
    try:
        child.expect_exact(prompt)
        child.sendline(QUESTION)
        child.expect(r"tokens · .* tok/s")
        child.expect_exact(prompt)
        child.sendline("/alternatives 3")
        child.expect(r"3 answers to turn 1 \(sampled together\); /pick K keeps one")
        shown = child.before
        child.expect_exact(prompt)
        child.sendline("/pick 2")
        child.expect(r"kept answer 2 as turn 1; 2 others discarded")
        child.expect_exact(prompt)
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)

    parts = re.split(r"── answer (\d) ──", ANSI.sub("", shown))
    answers = {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    assert sorted(answers) == [1, 2, 3]
    answers = {k: _flat(re.split(r"\n\d+ tokens", v)[0]) for k, v in answers.items()}  # the text above its status

    def transcript() -> list[dict[str, Any]]:
        [folder] = [p for p in (home / "sessions").iterdir() if p.is_dir()]
        return [json.loads(line) for line in (folder / "transcript.jsonl").read_text().splitlines()]

    [kept] = transcript()
    assert answers[2] not in (answers[1], answers[3])  # so the kept one can only be the second
    assert _flat(kept["assistant"]) == answers[2]
    assert kept["index"] == 1 and kept["user"] == QUESTION

    # `weprompt resume` goes on from the kept answer's checkpoint.
    resumed = subprocess.run([sys.executable, "-m", "weprompt_cli", "resume", "alt", "-m", "And in Paris?"],
                             env={**env, "TERM": "dumb"}, cwd=str(ROOT), capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "replaying" not in resumed.stderr  # the checkpoint of the kept answer was good: no replay
    first, second = transcript()
    assert first == kept and second["index"] == 2 and second["user"] == "And in Paris?"
