"""`Idempotency-Key` on `weprompt serve`, for real: a retried request gets the turn its first copy saved.

The answers here are sampled (temperature 1), so a second generation would differ: equal answers and a
transcript with one turn mean nothing was generated twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_server import AUTH, KEY, Server, turns_of

from weprompt_cli.server import sse

SAMPLED = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 24}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("idempotency") / "home"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def server(home: Path, model: Path) -> Iterator[Server]:
    srv = Server(home, model, "--api-key", KEY)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from checkpoints import tiny_model

    return tiny_model("v7", tmp_path_factory.getbasetemp() / "tiny-models")


def discussion(client: httpx.Client, discussion_id: str, text: str, key: str | None) -> httpx.Response:
    body = {"user_message": text, "user_id": "ida", "discussion_id": discussion_id, "prompt_file": "sql", **SAMPLED}
    return client.post("/generate-response", json=body, headers={"Idempotency-Key": key} if key else {})


def session_chat(client: httpx.Client, session: str, text: str, key: str | None, *, stream: bool = False) -> str:
    body = {"messages": [{"role": "user", "content": text}], "session": session, "stream": stream, **SAMPLED}
    headers = {"Idempotency-Key": key} if key else {}
    if not stream:
        r = client.post("/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]
    with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200, r.read()
        events = sse.parse(r.read())
    return "".join(e["choices"][0]["delta"].get("content", "") for e in events if e.get("choices"))


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as c:
        yield c


def test_a_retry_with_the_same_key_gets_the_saved_answer_and_adds_no_turn(server: Server, client: httpx.Client) -> None:
    first = discussion(client, "retry", "List the customers from Paris.", "req-1")
    assert first.status_code == 200, first.text
    again = discussion(client, "retry", "List the customers from Paris.", "req-1")
    assert again.status_code == 200 and again.json() == first.json()
    turns = turns_of(server.home, "u-ida--retry")
    assert len(turns) == 1 and turns[0].request_key == "req-1"
    assert turns[0].assistant == first.json()["generated_text"]
    # a new key (or none) is a new message: the session goes on
    assert discussion(client, "retry", "List the customers from Paris.", "req-2").status_code == 200
    assert discussion(client, "retry", "List the customers from Paris.", None).status_code == 200
    assert [t.request_key for t in turns_of(server.home, "u-ida--retry")] == ["req-1", "req-2", None]
    # the first key still answers with the first turn, not the latest
    assert discussion(client, "retry", "List the customers from Paris.", "req-1").json() == first.json()
    assert len(turns_of(server.home, "u-ida--retry")) == 3


def test_a_streamed_retry_and_a_restarted_server_give_the_same_turn(home: Path, model: Path, server: Server,
                                                                      client: httpx.Client) -> None:
    answer = session_chat(client, "stream-retry", "How many orders are there?", "k-42")
    assert session_chat(client, "stream-retry", "How many orders are there?", "k-42", stream=True) == answer
    server.stop()  # the key lives in the transcript, not in the server's memory
    again = Server(home, model, "--api-key", KEY)
    try:
        with httpx.Client(base_url=again.url, headers=AUTH, timeout=120) as c2:
            assert session_chat(c2, "stream-retry", "How many orders are there?", "k-42") == answer
    finally:
        again.stop()
    assert [t.assistant for t in turns_of(home, "stream-retry")] == [answer]


def test_bad_or_reused_keys_get_one_clear_error_and_change_nothing(home: Path, model: Path) -> None:
    srv = Server(home, model, "--api-key", KEY)
    try:
        with httpx.Client(base_url=srv.url, headers=AUTH, timeout=120) as c:
            assert discussion(c, "reuse", "Count the products.", "once").status_code == 200
            before = turns_of(home, "u-ida--reuse")
            reused = discussion(c, "reuse", "Delete every order.", "once")
            assert reused.status_code == 422
            assert "Idempotency-Key 'once' was already used" in reused.json()["error"]["message"]
            for bad in ("has space", "x" * 256, ""):
                r = c.post(
                    "/generate-response", json={"user_message": "Count the products.", "user_id": "ida",
                                                "discussion_id": "reuse", "prompt_file": "sql"},
                    headers={"Idempotency-Key": bad})
                assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"]["message"], (bad, r.text)
            r = c.post("/generate-response", json={"user_message": "x", "user_id": "ida", "discussion_id": "reuse",
                                                   "prompt_file": "sql"}, headers={"Idempotency-Key": b"caf\xc3\xa9"})
            assert r.status_code == 400
            assert turns_of(home, "u-ida--reuse") == before
            # keys belong to a session: the same key in another session makes that session's own turn
            assert discussion(c, "other", "Count the products.", "once").status_code == 200
            assert len(turns_of(home, "u-ida--other")) == 1
            # a stateless completion stores nothing, so its key changes nothing either
            r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], **SAMPLED},
                       headers={"Idempotency-Key": "stateless"})
            assert r.status_code == 200, r.text
    finally:
        srv.stop()
