"""`weprompt serve` with continuous batching, for real: uvicorn subprocesses on 127.0.0.1, a tiny RWKV-7.

A batched server (`--max-batch 16`) answers 16 stored discussions of two turns and 8
stateless OpenAI requests at once; a serialized one (`--max-batch 1`, the FIFO worker)
answers the same requests one at a time. Greedy answers must be the same, transcripts
complete and in order: no request sees another's state. A client that hangs up stops only
its own stream; past the queue limit a request gets 503 with Retry-After; `/health` shows
the batch filling and draining. An RWKV-5 model is served one request at a time and
`/health` says why.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from checkpoints import tiny_model
from test_server import Server, turns_of

from weprompt_cli.server import sse

GREEDY = {"temperature": 0, "max_tokens": 10}
QUESTIONS = [
    "How do I select every row of a table?",
    "What is a primary key?",
    "Write a query that counts the orders per customer.",
    "How should I plan a small software project?",
    "Which index helps a report by country and month?",
    "What does GROUP BY do?",
    "How do I join two tables?",
    "What is a foreign key?",
]
LONG = "Talk for a long time"  # the tiny model never stops on its own: it runs to max_tokens


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model("v7", tmp_path_factory.getbasetemp() / "tiny-models")


def _server(tmp_path_factory: pytest.TempPathFactory, model: Path, name: str, *extra: str) -> Server:
    home = tmp_path_factory.mktemp(name) / "home"
    home.mkdir()
    return Server(home, model, *extra)


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[Server]:
    srv = _server(tmp_path_factory, model, "batched", "--max-batch", "16", "--prefill-budget", "48")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[Server]:
    srv = _server(tmp_path_factory, model, "serial", "--max-batch", "1")
    yield srv
    srv.stop()


def discuss(srv: Server, discussion: str, texts: list[str]) -> list[str]:
    """One discussion's turns, one request after another."""
    answers = []
    with httpx.Client(base_url=srv.url, timeout=300) as c:
        for text in texts:
            body = {"user_message": text, "user_id": "crowd", "discussion_id": discussion, "prompt_file": "SQLAdvisor"}
            r = c.post("/generate-response", json={**body, **GREEDY})
            assert r.status_code == 200, r.text
            answers.append(r.json()["generated_text"])
    return answers


def complete(srv: Server, question: str, *, stream: bool, max_tokens: int = 10) -> str:
    """A stateless OpenAI chat completion; streamed or not, the answer's text."""
    body = {"messages": [{"role": "user", "content": question}], "temperature": 0, "max_tokens": max_tokens,
            "stream": stream}
    with httpx.Client(base_url=srv.url, timeout=300) as c:
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        if not stream:
            return r.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]
        assert r.content.rstrip().endswith(b"data: [DONE]")
        events = sse.parse(r.content)
        assert events[-1]["choices"][0]["finish_reason"] == "length"
        return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))


def workload() -> tuple[dict[str, list[str]], list[str]]:
    discussions = {f"d{i}": [f"{QUESTIONS[i % 8]} (case {i})", f"And then? Say more about case {i}."] for i in range(16)}
    questions = [f"Question {j}: {QUESTIONS[(3 * j + 1) % 8]}" for j in range(8)]
    return discussions, questions


# ---------------------------------------------------------------------------- no cross-talk


def test_sixteen_discussions_and_eight_openai_requests_at_once_each_get_their_solo_answer(
    batched: Server, serial: Server
) -> None:
    discussions, questions = workload()
    # Alone: the serialized server, one request at a time.
    solo_talks = {name: discuss(serial, name, texts) for name, texts in discussions.items()}
    solo_answers = [complete(serial, q, stream=False) for q in questions]

    before = batched.stats()
    with ThreadPoolExecutor(24) as pool:
        talks = {name: pool.submit(discuss, batched, name, texts) for name, texts in discussions.items()}
        answers = [pool.submit(complete, batched, q, stream=j % 2 == 0) for j, q in enumerate(questions)]
        got_talks = {name: f.result() for name, f in talks.items()}
        got_answers = [f.result() for f in answers]
    after = batched.stats()

    assert got_talks == solo_talks
    assert got_answers == solo_answers
    for name, texts in discussions.items():
        turns = turns_of(batched.home, f"u-crowd--{name}")
        assert [t.index for t in turns] == [1, 2] and [t.user for t in turns] == texts
        assert [t.assistant for t in turns] == solo_talks[name]
        assert [t.reply_tokens for t in turns] == [t.reply_tokens for t in turns_of(serial.home, f"u-crowd--{name}")]
    # They really ran together: steps carried more than one stream on average.
    assert after["batching"]["enabled"] and after["batching"]["steps"] > before["batching"]["steps"]
    assert after["batching"]["mean_batch"] > 1.5
    assert after["queue"]["completed"] - before["queue"]["completed"] == 16 * 2 + 8


# ---------------------------------------------------------------------------- cancellation


def test_a_client_that_hangs_up_stops_only_its_own_stream(batched: Server, serial: Server) -> None:
    others = [f"{LONG}, part {i}" for i in range(3)]
    solo = [complete(serial, q, stream=True, max_tokens=60) for q in others]
    before = batched.stats()
    hung_up = False

    def leaver() -> None:
        nonlocal hung_up
        body = {"messages": [{"role": "user", "content": LONG}], "stream": True, "temperature": 0, "max_tokens": 2000}
        with httpx.Client(base_url=batched.url, timeout=120) as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    hung_up = True
                    break  # the answer started: hang up

    with ThreadPoolExecutor(4) as pool:
        gone = pool.submit(leaver)
        stayed = [pool.submit(complete, batched, q, stream=True, max_tokens=60) for q in others]
        gone.result()
        got = [f.result() for f in stayed]
    assert hung_up and got == solo
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = batched.stats()
        if health["stats"]["cancelled"] > before["stats"]["cancelled"] and not health["queue"]["busy"]:
            break
        time.sleep(0.1)
    after = batched.stats()
    assert after["stats"]["cancelled"] == before["stats"]["cancelled"] + 1
    generated = after["stats"]["tokens_generated"] - before["stats"]["tokens_generated"]
    assert generated < 3 * 60 + 1000  # the one that hung up stopped well before its 2000 tokens
    assert after["batching"]["decoding"] == 0


# ---------------------------------------------------------------------------- limits and /health


class _Long:
    """`n` long streamed answers started at once and left unread (their status line waits for the first piece)."""

    def __init__(self, srv: Server, n: int, max_tokens: int = 2000) -> None:
        self.clients = [httpx.Client(base_url=srv.url, timeout=120) for _ in range(n)]
        self.responses: list[Any] = []
        self._pool = ThreadPoolExecutor(n)
        self._futures = [self._pool.submit(self._open, c, i, max_tokens) for i, c in enumerate(self.clients)]

    def _open(self, c: httpx.Client, i: int, max_tokens: int) -> Any:
        body = {"messages": [{"role": "user", "content": f"{LONG} ({i})"}], "stream": True, "temperature": 0,
                "max_tokens": max_tokens}
        return c.send(c.build_request("POST", "/v1/chat/completions", json=body), stream=True)

    def hang_up(self) -> None:
        for future in self._futures:
            try:
                future.result(timeout=120).close()
            except Exception:  # noqa: BLE001 - a request refused or cut is fine here
                pass
        for c in self.clients:
            c.close()
        self._pool.shutdown()


def _wait_for(srv: Server, check: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = srv.stats()
        if check(health):
            return health
        time.sleep(0.05)
    raise AssertionError(f"/health never got there: {srv.stats()}")


def test_health_shows_the_batch_fill_up_and_drain(batched: Server) -> None:
    idle = _wait_for(batched, lambda h: not h["queue"]["busy"])
    assert idle["batching"]["enabled"] and idle["batching"]["decoding"] == 0
    assert idle["batching"]["max_batch"] == 16 and idle["queue"]["workers"] == 16
    assert idle["batching"]["summary"].startswith("on (up to 16 streams per step")
    opened = _Long(batched, 4)
    try:
        busy = _wait_for(batched, lambda h: h["batching"]["decoding"] == 4 and h["batching"]["decode_tokens_per_s"] > 0)
        assert busy["queue"]["running"] == 4 and busy["queue"]["waiting"] == 0
        assert busy["batching"]["occupancy"] == 0.25
    finally:
        opened.hang_up()
    drained = _wait_for(batched, lambda h: h["batching"]["decoding"] == 0 and not h["queue"]["busy"])
    assert drained["batching"]["steps"] > busy["batching"]["steps"]
    assert drained["stats"]["tokens_generated"] > idle["stats"]["tokens_generated"]
    assert drained["stats"]["cancelled"] == idle["stats"]["cancelled"] + 4


def test_past_the_queue_limit_a_request_gets_503_with_retry_after(
    tmp_path_factory: pytest.TempPathFactory, model: Path
) -> None:
    srv = _server(tmp_path_factory, model, "small", "--max-batch", "2", "--max-queue", "1")
    try:
        opened = _Long(srv, 3)
        try:
            full = _wait_for(srv, lambda h: h["queue"]["running"] == 2 and h["queue"]["waiting"] == 1)
            assert full["batching"]["decoding"] <= 2
            r = httpx.post(f"{srv.url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]},
                           timeout=30)
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"].isdigit() and int(r.headers["Retry-After"]) >= 1
            error = r.json()["error"]
            assert error["type"] == "server_busy" and "busy" in error["message"]
        finally:
            opened.hang_up()
        _wait_for(srv, lambda h: not h["queue"]["busy"] and h["queue"]["waiting"] == 0)
        assert complete(srv, "hi again", stream=False, max_tokens=3)  # it serves again once the queue drained
    finally:
        srv.stop()


def test_an_rwkv5_model_is_served_one_request_at_a_time_and_health_says_why(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    v5 = tiny_model("v5.2", tmp_path_factory.getbasetemp() / "tiny-models")
    srv = _server(tmp_path_factory, v5, "v5", "--max-batch", "16")
    try:
        health = srv.stats()
        assert health["batching"] == {"enabled": False, "summary": "off (RWKV-4/5/6 run one stream at a time)"}
        assert health["queue"]["workers"] == 1
        assert complete(srv, QUESTIONS[0], stream=False, max_tokens=4)
    finally:
        srv.stop()
