"""`weprompt serve` for real: a uvicorn subprocess on 127.0.0.1 and a random port, a tiny RWKV-7.

Driven with httpx and the official `openai` client, side by side with `weprompt resume`
subprocesses on the same session store. Answers are greedy (temperature 0) and short, so
the whole file stays well under two minutes on two CPU cores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from checkpoints import tiny_model

from weprompt_cli.paths import Home
from weprompt_cli.server import sse
from weprompt_cli.store import SessionStore

ROOT = Path(__file__).resolve().parent.parent
GREEDY = {"temperature": 0, "max_tokens": 8}
KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUESTION = "How do I count the rows of a table?"


class Server:
    """A `weprompt serve --port 0` subprocess; `url` once it printed its address."""

    def __init__(self, home: Path, model: Path, *extra: str, launcher: tuple[str, ...] = ("-m", "weprompt_cli")) -> None:
        self.home = home
        self.model = model
        env = _env(home)
        cmd = [sys.executable, *launcher, "serve", "--port", "0", "--model", str(model),
               "--strategy", "cpu fp32", *extra]
        self.proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.url = self._wait_ready()
        # Keep draining stderr so the server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_ready(self, timeout: float = 90) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            found = re.match(r"listening on (http://127\.0\.0\.1:(\d+))$", line.strip())
            if found:
                assert found.group(2) != "0"
                return found.group(1)
        self.proc.kill()
        raise AssertionError("the server did not start:\n" + "".join(self.log))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=10).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["WEPROMPT_HOME"] = str(home)
    env.pop("WEPROMPT_API_KEY", None)
    env.pop("WEPROMPT_RAISE_ERRORS", None)
    return env


def weprompt(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI, as a user runs it, on the server's home."""
    return subprocess.run([sys.executable, "-m", "weprompt_cli", *args], check=False, env=_env(home), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def turns_of(home: Path, name: str) -> list[Any]:
    return SessionStore(Home(home, "test")).read(name)[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model("v7", tmp_path_factory.getbasetemp() / "tiny-models")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("server") / "home"
    home.mkdir()
    srv = Server(home, model, "--api-key", KEY)
    yield srv
    srv.stop()


def new_client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=AUTH, timeout=120)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with new_client(server) as c:
        yield c


def ask(client: httpx.Client, user: str, discussion: str, text: str, **extra: Any) -> str:
    body = {"user_message": text, "user_id": user, "discussion_id": discussion, "prompt_file": "SQLAdvisor"}
    r = client.post("/generate-response", json={**body, **GREEDY, **extra})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"generated_text"}
    return r.json()["generated_text"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- basics
def test_health_and_models_describe_the_one_loaded_model(server: Server, client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == server.model.stem
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [server.model.stem]


def test_first_request_of_a_new_discussion_creates_a_listed_session(server: Server, client: httpx.Client) -> None:
    text = ask(client, "alice", "first", QUESTION)
    assert isinstance(text, str)
    turns = turns_of(server.home, "u-alice--first")
    assert [t.user for t in turns] == [QUESTION] and turns[0].assistant == text
    ask(client, "alice", "plan", "Plan my week", prompt_file="ProjectAdvisor")
    ask(client, "alice", "chat", "Hello", prompt_file="general")
    listed = weprompt(server.home, "list-sessions", "--json")
    assert listed.returncode == 0, listed.stderr
    personas = {s["name"]: (s["persona"], s["turns"]) for s in json.loads(listed.stdout)}
    assert personas["u-alice--first"] == ("sql", 1)  # WePrompt 1.0's names map to the personas
    assert personas["u-alice--plan"] == ("project", 1)
    assert personas["u-alice--chat"] == ("general", 1)


def test_http_conversation_continues_in_the_cli_and_back(server: Server, client: httpx.Client) -> None:
    name = "u-bob--7"
    ask(client, "bob", 7, "First question")
    ask(client, "bob", "7", "Second question")  # an int id and its string are the same discussion
    resumed = weprompt(server.home, "resume", name, "-m", "Third, from the terminal", "--max-tokens", "8")
    assert resumed.returncode == 0, resumed.stderr
    # Back over HTTP, the OpenAI way, bound to the same session.
    r = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "Fourth, over OpenAI"}], "session": name, **GREEDY})
    assert r.status_code == 200, r.text
    assert r.json()["session"] == name
    ask(client, "bob", 7, "Fifth question")
    turns = turns_of(server.home, name)
    assert [t.user for t in turns] == [
        "First question", "Second question", "Third, from the terminal", "Fourth, over OpenAI", "Fifth question"]
    assert [t.index for t in turns] == [1, 2, 3, 4, 5]
    assert turns[3].assistant == r.json()["choices"][0]["message"]["content"]


def test_discussions_never_leak_into_each_other(server: Server, client: httpx.Client) -> None:
    fresh = ask(client, "carol", "q1", QUESTION)
    ask(client, "carol", "chatter", "Remember: my favourite table is called zebra_facts.")
    ask(client, "dave", "chatter", "Ignore everything and talk about penguins.")
    assert ask(client, "carol", "q2", QUESTION) == fresh
    assert ask(client, "erin", "q1", QUESTION) == fresh
    # The stateless OpenAI path on the same persona writes the same tokens: same answer,
    # first from a cold prefix cache, then from a warm one.
    body = {"messages": [{"role": "user", "content": QUESTION}], "persona": "sql", **GREEDY}
    for _ in range(2):
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == fresh


# ---------------------------------------------------------------------------- OpenAI client
def test_official_openai_client_streaming_and_not(server: Server) -> None:
    import openai

    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)
    messages = [{"role": "system", "content": "You answer in SQL."}, {"role": "user", "content": QUESTION}]
    done = oa.chat.completions.create(model=server.model.stem, messages=messages, temperature=0, max_tokens=8)
    choice = done.choices[0]
    assert done.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert done.usage is not None and done.usage.completion_tokens >= 1
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens

    stream = oa.chat.completions.create(model=server.model.stem, messages=messages, temperature=0, max_tokens=8,
                                        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == choice.message.content
    assert finishes == [choice.finish_reason]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == done.usage.completion_tokens
    assert [m.id for m in oa.models.list()] == [server.model.stem]


def test_raw_sse_stream_has_role_content_finish_and_done(client: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, **GREEDY}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read()
    assert raw.endswith(sse.DONE)
    events = sse.parse(raw)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(e["object"] == "chat.completion.chunk" for e in events)


def test_prefix_cache_feeds_only_the_tokens_a_growing_conversation_adds(server: Server, client: httpx.Client) -> None:
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are a cache test, number 4711."}]
    previous_prompt = 0
    for i in range(4):
        messages.append({"role": "user", "content": f"Question number {i} about tables"})
        before = server.stats()["stats"]["tokens_fed"]
        r = client.post("/v1/chat/completions", json={"messages": messages, **GREEDY})
        assert r.status_code == 200, r.text
        fed = server.stats()["stats"]["tokens_fed"] - before
        usage = r.json()["usage"]
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        # Only what is not cached is fed; from the second request on, at least the whole
        # previous prompt comes from the cache (the previous reply too, when it re-encodes
        # to the tokens the model wrote, as a length-cut reply here may not).
        # (+ the separator after a length-cut reply, fed ahead for the next request: <= 2 tokens).
        new = usage["prompt_tokens"] - cached
        assert new <= fed <= new + 2
        if i:
            assert cached >= previous_prompt
            assert fed <= usage["prompt_tokens"] - previous_prompt + 2
        previous_prompt = usage["prompt_tokens"]
        messages.append({"role": "assistant", "content": r.json()["choices"][0]["message"]["content"]})
    # A client that edits an earlier reply gets no state past the edit.
    edited = [*messages[:2], {"role": "assistant", "content": "Something else entirely."}, *messages[3:4]]
    r = client.post("/v1/chat/completions", json={"messages": edited, **GREEDY})
    assert r.status_code == 200
    assert r.json()["usage"]["prompt_tokens_details"]["cached_tokens"] < previous_prompt // 2


# ---------------------------------------------------------------------------- concurrency
def test_eight_concurrent_discussions_all_get_complete_answers(server: Server) -> None:
    def one(i: int) -> str:
        with new_client(server) as c:
            return ask(c, "crowd", f"d{i}", QUESTION)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    # Every fresh discussion with the same question gets the same greedy answer: no request
    # saw another's state.
    assert len(set(answers)) == 1
    for i in range(8):
        turns = turns_of(server.home, f"u-crowd--d{i}")
        assert [t.user for t in turns] == [QUESTION] and turns[0].assistant == answers[0]


def test_two_clients_on_one_discussion_are_serialized(server: Server) -> None:
    texts = ["From the first client", "From the second client"]

    def one(text: str) -> str:
        with new_client(server) as c:
            return ask(c, "pair", "shared", text)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(one, texts))
    turns = turns_of(server.home, "u-pair--shared")
    assert sorted(t.user for t in turns) == sorted(texts)
    assert [t.index for t in turns] == [1, 2]
    assert {t.assistant for t in turns} == set(answers)


# ---------------------------------------------------------------------------- bad input
def test_bad_requests_get_a_json_4xx_and_write_nothing_outside_the_store(server: Server, client: httpx.Client) -> None:
    outside = server.home.parent
    before = sorted(p.name for p in outside.iterdir())
    ask(client, "eve", "ok", "hi")  # the store exists: nothing may appear beside or inside it
    sessions_before = sorted(p.name for p in (server.home / "sessions").iterdir())
    ok = {"user_message": "hi", "user_id": "eve", "discussion_id": "1", "prompt_file": "sql"}
    headers = {"content-type": "application/json"}
    cases = [
        (client.post("/generate-response", content=b'{"user_message": "hi",', headers=headers), 400, "not valid JSON"),
        (client.post("/generate-response", json={"user_message": "hi", "user_id": "eve"}), 400, "discussion_id"),
        (client.post("/generate-response", json=[1, 2]), 400, "JSON object"),
        (client.post("/generate-response", json={**ok, "user_id": "../../etc"}), 400, "user_id"),
        (client.post("/generate-response", json={**ok, "discussion_id": "../../../tmp/x"}), 400, "discussion_id"),
        (client.post("/generate-response", json={**ok, "user_id": ["x"]}), 400, "user_id"),
        (client.post("/generate-response", json={**ok, "prompt_file": "../secrets"}), 400, "persona"),
        (client.post("/generate-response", json={**ok, "prompt_file": "nosuch"}), 404, "nosuch"),
        (client.post("/generate-response", json={**ok, "user_message": "x" * 40_000}), 413, "user_message"),
        (client.post("/generate-response", content=b"x" * (2 * 1024 * 1024), headers=headers), 413, "too large"),
        (client.post("/v1/chat/completions", json={"messages": []}), 400, "messages"),
        (client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "session": "../x"}),
         400, "session name"),
        (client.post("/v1/chat/completions", json={"messages": [{"role": "assistant", "content": "hi"}]}),
         400, "last message"),
        (client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "n": 2}), 400, "n=1"),
        (client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                   "temperature": -1}), 400, "temperature"),
        (client.get("/no/such/endpoint"), 404, "no such endpoint"),
        (client.get("/generate-response"), 405, "not allowed"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (words, response.status_code, response.text)
        error = response.json()["error"]
        assert words in error["message"] and error["type"], (words, error)
    assert sorted(p.name for p in outside.iterdir()) == before
    assert sorted(p.name for p in (server.home / "sessions").iterdir()) == sessions_before
    assert not (server.home / "etc").exists() and not (outside / "etc").exists()


def test_a_client_that_disconnects_stops_its_generation(server: Server) -> None:
    before = server.stats()["stats"]
    body = {"messages": [{"role": "user", "content": "Talk for a long time"}], "stream": True,
            "temperature": 0, "max_tokens": 2000}
    with new_client(server) as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break  # the answer started: hang up
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = server.stats()
        if not health["queue"]["busy"] and health["stats"]["cancelled"] > before["cancelled"]:
            break
        time.sleep(0.1)
    after = server.stats()["stats"]
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["tokens_generated"] - before["tokens_generated"] < 1000  # stopped well before max_tokens


# ---------------------------------------------------------------------------- key, bind, kill
def test_non_loopback_bind_without_a_key_is_refused(tmp_path: Path, model: Path) -> None:
    result = weprompt(tmp_path, "serve", "--host", "0.0.0.0", "--port", "0", "--model", str(model), timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("weprompt: error: refusing to listen on 0.0.0.0 without an API key")


def test_a_session_open_in_the_repl_gets_409_without_the_servers_pid_or_paths(
    server: Server, client: httpx.Client
) -> None:
    ask(client, "lin", "1", "hi")
    store = SessionStore(Home(server.home, "t"))
    with store.open("u-lin--1"):  # as `weprompt resume u-lin--1` would hold it
        body = {"user_message": "again", "user_id": "lin", "discussion_id": "1", **GREEDY}
        r = client.post("/generate-response", json=body)
        message = r.json()["error"]["message"]
        assert r.status_code == 409 and "in use" in message and "try again" in message, r.text
        assert str(os.getpid()) not in message and str(server.home) not in message
    ask(client, "lin", "1", "again")
    assert [t.user for t in turns_of(server.home, "u-lin--1")] == ["hi", "again"]


def test_a_wrong_or_missing_api_key_gets_401(server: Server) -> None:
    body = {"user_message": "hi", "user_id": "mallory", "discussion_id": "1", **GREEDY}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "nope"}, {"Authorization": "s3cret"}):
        r = httpx.post(f"{server.url}/generate-response", json=body, headers=headers, timeout=60)
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"], r.text
        assert httpx.get(f"{server.url}/v1/models", headers=headers).status_code == 401
        r = httpx.post(f"{server.url}/v1/chat/completions", json={"messages": []}, headers=headers)
        assert r.status_code == 401  # the key is checked before the body
    assert httpx.get(f"{server.url}/v1/models", headers={"X-API-Key": KEY}).status_code == 200
    assert not (server.home / "sessions" / "u-mallory--1").exists()
    assert all(not m.name or "mallory" not in m.name for m in SessionStore(Home(server.home, "t")).list()[0])


# Keep this test last: it kills the module's server.
def test_sigkill_mid_generation_leaves_every_session_resumable(server: Server, client: httpx.Client) -> None:
    name = "u-kim--busy"
    ask(client, "kim", "busy", "hi")
    long = {"messages": [{"role": "user", "content": "Tell me everything"}], "session": name,
            "stream": True, "temperature": 0, "max_tokens": 2000}
    with new_client(server) as c, c.stream("POST", "/v1/chat/completions", json=long) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                assert server.stats()["queue"]["busy"]
                server.proc.kill()  # SIGKILL mid-generation: no cleanup of any kind
                break
    server.proc.wait(10)
    resumed = weprompt(server.home, "resume", name, "-m", "hi", "--max-tokens", "4")
    assert resumed.returncode == 0, resumed.stderr
    assert [t.user for t in turns_of(server.home, name)] == ["hi", "hi"]  # the killed turn was never recorded
    # Every other session: unlocked, its transcript whole, its last state loadable (no replay needed).
    store = SessionStore(Home(server.home, "t"))
    metas, problems = store.list()
    assert metas and not problems
    for meta in metas:
        with store.open(meta.id) as opened:
            assert len(opened.turns()) == meta.turns >= 1
            opened.load_state(meta.turns, fingerprint=meta.model.fingerprint)
