"""G1 thinking through the real engine: a tiny model trained to answer in the G1 format
(tests/g1_model.py) thinks, answers, and is stored, shown, resumed and served as users see it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from checkpoints import build_checkpoint
from g1_model import DIALOGUES, build_g1_model

torch = pytest.importorskip("torch")

GREEDY: dict[str, Any] = {"temperature": 0.0, "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
                          "max_tokens": 40}


@pytest.fixture(scope="module")
def g1_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Named as BlinkDL names G1 checkpoints, so WePrompt picks the G1 format by itself.
    return build_g1_model(tmp_path_factory.mktemp("g1") / "rwkv7-g1-tiny.pth")


@pytest.fixture(scope="module")
def engine(g1_model: Path) -> Any:
    from weprompt_cli.engine import load_engine

    return load_engine(g1_model, "cpu fp32")


def start(engine: Any, home: Path, think: str, name: str) -> Any:
    from weprompt_cli.chat.params import effective_params, family_defaults
    from weprompt_cli.chat.session import ChatSession
    from weprompt_cli.chat.formats import chat_format_for
    from weprompt_cli.paths import Home
    from weprompt_cli.personas import find_persona
    from weprompt_cli.store import SessionStore

    h = Home(home, "test")
    fmt = chat_format_for(engine.info, engine.tokenizer)
    params = effective_params(None, None, None, GREEDY, family=family_defaults(fmt))
    persona = find_persona("general", home=h)
    return ChatSession.start(engine, SessionStore(h), persona, params, name=name, think=think)


def test_the_format_is_g1_by_the_file_name(engine: Any) -> None:
    from weprompt_cli.chat.formats import chat_format_for

    assert chat_format_for(engine.info, engine.tokenizer).name == "g1"


def test_a_thought_is_split_from_the_answer_and_stored_apart(engine: Any, weprompt_home: Path) -> None:
    from weprompt_cli.chat.turn import Reasoning

    question, thought, answer = DIALOGUES[0]
    with start(engine, weprompt_home, "on", "thinks") as chat:
        stream = chat.send(question)
        pieces = list(stream)
        turn = stream.turn
    assert "".join(p for p in pieces if isinstance(p, Reasoning)) == thought
    assert "".join(p for p in pieces if not isinstance(p, Reasoning)) == answer
    assert (turn.reasoning, turn.assistant, turn.think) == (thought, answer, "on")
    assert turn.thought_tokens > 0
    # The state keeps exactly what was fed: the thought too (an RNN cannot forget it).
    assert thought in turn.reply_text and turn.prompt_text.endswith("Assistant: <think")
    [folder] = [p for p in (weprompt_home / "sessions").iterdir() if p.is_dir() and not p.name.startswith(".")]
    [line] = [json.loads(x) for x in (folder / "transcript.jsonl").read_text().splitlines()]
    assert (line["reasoning"], line["assistant"], line["think"]) == (thought, answer, "on")


def test_thinking_off_answers_at_once_and_a_typed_suffix_thinks_for_one_turn(engine: Any, weprompt_home: Path) -> None:
    question, thought, answer = DIALOGUES[2]
    with start(engine, weprompt_home, "off", "quick") as chat:
        first = chat.send(question)
        assert first.text() == answer and first.turn.reasoning == "" and first.turn.think == "off"
        assert first.turn.prompt_text.endswith("Assistant: <think></think")
        typed = chat.send(f"{DIALOGUES[1][0]} (think a bit)")
        typed.text()
        assert typed.turn.user == DIALOGUES[1][0]  # stored without the suffix
        assert typed.turn.think == "bit" and "(think a bit)" in typed.turn.prompt_text
        chat.set_think("on")
    from weprompt_cli.paths import Home
    from weprompt_cli.store import SessionStore

    assert SessionStore(Home(weprompt_home, "t")).resolve("quick").extra["think"] == "on"


def test_the_thought_streams_dim_then_folds_to_one_line_and_resume_shows_the_fold(
    engine: Any, weprompt_home: Path
) -> None:
    from weprompt_cli.render.output import Output

    question, thought, answer = DIALOGUES[1]
    out, err = io.StringIO(), io.StringIO()
    output = Output(stdout=out, stderr=err)
    output.out = Console(file=out, force_terminal=True, width=100, color_system=None)
    output.err = Console(file=err, force_terminal=True, width=100, color_system=None, highlight=False)
    with start(engine, weprompt_home, "on", "shown") as chat:
        stream = chat.send(question)
        output.stream_reply(stream)
        turns = chat.turns
    screen, status = out.getvalue(), err.getvalue()
    assert thought in screen  # streamed while it was thought...
    assert f"thought for {turns[0].thought_tokens} tokens · /show-thoughts" in status  # ...then folded
    assert answer in screen
    resumed = io.StringIO()
    output.out = Console(file=resumed, width=100, color_system=None)
    output.show_recent_turns(turns)
    shown = resumed.getvalue()
    assert "thought for" in shown and answer in shown and thought not in shown


def test_in_a_pipe_only_the_answer_reaches_stdout(engine: Any, weprompt_home: Path) -> None:
    from weprompt_cli.render.output import Output

    question, thought, answer = DIALOGUES[0]
    out, err = io.StringIO(), io.StringIO()
    with start(engine, weprompt_home, "on", "piped") as chat:
        Output(stdout=out, stderr=err).stream_reply(chat.send(question))
    assert out.getvalue().strip() == answer
    assert thought not in out.getvalue() and "thought for" in err.getvalue()


def test_g1_decoding_defaults_come_from_the_family_then_the_levels_above(engine: Any) -> None:
    from weprompt_cli.chat.formats import G1, WORLD
    from weprompt_cli.chat.params import effective_params, family_defaults
    from weprompt_cli.config import Config

    g1 = family_defaults(G1)
    base = effective_params(None, None, None, None, family=g1)
    assert (base.temperature, base.top_p, base.presence_penalty, base.frequency_penalty) == (1.0, 0.3, 0.5, 0.5)
    with_state = effective_params(None, None, None, None, family=family_defaults(G1, state_file=True))
    assert (with_state.top_p, with_state.presence_penalty) == (0.2, 0.3)
    assert effective_params(Config(top_p=0.9), None, None, None, family=g1).top_p == 0.9  # config over family
    assert effective_params(Config(top_p=0.9), None, {"top_p": 0.4}, None, family=g1).top_p == 0.4  # session
    assert effective_params(Config(top_p=0.9), None, {"top_p": 0.4}, {"top_p": 0.1}, family=g1).top_p == 0.1
    assert family_defaults(WORLD) == {}


def test_token_0_is_never_sampled_by_a_g1_model_on_the_world_vocabulary(tmp_path: Path, weprompt_home: Path) -> None:
    from weprompt_cli.engine import load_engine

    path = build_checkpoint("v7", tmp_path / "rwkv7-g1-biased.pth", n_embd=64, vocab_size=65536, tokenizer=None)
    weights = torch.load(path, weights_only=True)
    # Token 0 wins every argmax: a constant large input to its row of the head.
    weights["ln_out.bias"][0] = 10.0
    weights["head.weight"][0] = 0.0
    weights["head.weight"][0, 0] = 100.0
    torch.save(weights, path)
    engine = load_engine(path, "cpu fp32")
    ids = engine.encode("User: hi\n\nAssistant:")
    assert int(engine.feed(ids, engine.zero_state()).argmax()) == 0  # unbanned, it would be token 0
    with start(engine, weprompt_home, "off", "banned") as chat:
        for _ in range(2):
            stream = chat.send("hi")
            stream.text()
            assert 0 not in stream.turn.reply_tokens and stream.turn.reply_tokens
        assert len(chat.turns) == 2


def test_the_openai_endpoint_returns_reasoning_content_beside_content(g1_model: Path, tmp_path: Path) -> None:
    import httpx

    from test_server import Server

    question, thought, answer = DIALOGUES[0]
    home = tmp_path / "home"
    home.mkdir()
    server = Server(home, g1_model)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            body = {"messages": [{"role": "user", "content": question}], "think": "on", **GREEDY}
            r = client.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            message = r.json()["choices"][0]["message"]
            assert (message["content"], message["reasoning_content"]) == (answer, thought)
            # Streaming: the thought arrives as reasoning_content deltas, the answer as content.
            reasoning, content = "", ""
            with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        delta = json.loads(line[6:])["choices"][0]["delta"] if json.loads(line[6:])["choices"] else {}
                        reasoning += delta.get("reasoning_content", "")
                        content += delta.get("content", "") or ""
            assert (content, reasoning) == (answer, thought)
            # OpenAI's reasoning_effort maps to a thinking mode; "none" answers at once.
            quick = client.post("/v1/chat/completions", json={**body, "think": None, "reasoning_effort": "none"})
            assert quick.json()["choices"][0]["message"] == {"role": "assistant", "content": answer,
                                                             "reasoning_content": ""}
            # A stored session keeps both fields in its transcript; /generate-response answers with the answer only.
            r = client.post("/generate-response", json={"user_message": question, "user_id": "u", "discussion_id": "1",
                                                         **GREEDY})
            assert r.json() == {"generated_text": answer}
    finally:
        server.stop()
