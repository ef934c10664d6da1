"""`weprompt cluster serve` for real: a local Ray cluster on 127.0.0.1, 2 replicas of a tiny RWKV-7.

The replicas play two hosts (`--simulate-hosts`: own host ids, no flock), so only the lease
records keep a session on one writer, as on a shared filesystem between machines. One
cluster serves the whole module (it takes about 20 s to start on 2 cores); the test that
kills a replica runs last. Ray's own resources are kept small: 2 logical CPUs, a 128 MiB
object store, no dashboard.
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
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from checkpoints import tiny_model

from weprompt_cli.paths import Home
from weprompt_cli.store import SessionStore

pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'weprompt[cluster]')")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
GREEDY = {"temperature": 0, "max_tokens": 6}
REPLICA = re.compile(r"^(\S+) \(pid (\d+) on (.+)\)$")


class Cluster:
    """A `weprompt cluster serve` subprocess (its own process group, so nothing of Ray outlives it)."""

    def __init__(self, home: Path, model: Path, *extra: str) -> None:
        self.home = home
        env = dict(os.environ, WEPROMPT_HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
        env.pop("WEPROMPT_API_KEY", None)
        port = _free_port()
        cmd = [sys.executable, "-m", "weprompt_cli", "cluster", "serve", "--replicas", "2", "--port", str(port),
               "--model", str(model), "--strategy", "cpu fp32", "--num-cpus", "2", *extra]
        self.proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.log: list[str] = []
        self.url = self._wait_ready()
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_ready(self, timeout: float = 240) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            found = re.match(r"listening on (http://127\.0\.0\.1:\d+)$", line.strip())
            if found:
                return found.group(1)
        self.stop()
        raise AssertionError("the cluster did not start:\n" + "".join(self.log))

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of Ray is left in its group
        except ProcessLookupError:
            pass
        self.proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replica_of(response: httpx.Response) -> tuple[str, int]:
    """(replica id, pid) from the X-WePrompt-Replica header."""
    found = REPLICA.match(response.headers.get("x-weprompt-replica", ""))
    assert found, f"no replica header: {dict(response.headers)} {response.text[:200]}"
    return found.group(1), int(found.group(2))


def turns_of(home: Path, name: str) -> list[Any]:
    return SessionStore(Home(home, "test")).read(name)[1]


def weprompt(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WEPROMPT_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "weprompt_cli", *args], check=False, env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    model = tiny_model("v7", tmp_path_factory.getbasetemp() / "tiny-models")
    home = tmp_path_factory.mktemp("cluster") / "home"
    home.mkdir()
    c = Cluster(home, model, "--lease", "3", "--simulate-hosts", "--db", "demo")
    yield c
    c.stop()


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=120) as c:
        yield c


def discussion_turn(client: httpx.Client, kind: str, n: int, text: str, **extra: Any) -> httpx.Response:
    """One turn of discussion `n`: WePrompt 1.0's endpoint or OpenAI's with `session`."""
    if kind == "v1":
        body = {"user_message": text, "user_id": "cl", "discussion_id": str(n), "prompt_file": "SQLAdvisor"}
        return client.post("/generate-response", json={**body, **GREEDY, **extra})
    body = {"messages": [{"role": "user", "content": text}], "session": f"oa-{n}", **GREEDY, **extra}
    return client.post("/v1/chat/completions", json=body)


def name_of(kind: str, n: int) -> str:
    return f"u-cl--{n}" if kind == "v1" else f"oa-{n}"


# ------------------------------------------------------------------------ affinity
def test_twenty_discussions_over_both_endpoints_stay_on_one_replica_each(cluster: Cluster, client: httpx.Client) -> None:
    discussions = [("v1" if n % 2 else "oa", n) for n in range(20)]
    served: dict[str, list[str]] = {}

    def run(kind: str, n: int) -> None:
        replicas = []
        for t in range(1, 4):
            r = discussion_turn(client, kind, n, f"turn {t} of {n}")
            assert r.status_code == 200, r.text
            replicas.append(replica_of(r)[0])
        served[name_of(kind, n)] = replicas

    stateless: Counter[str] = Counter()

    def ask_stateless(i: int) -> None:
        r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": f"q{i}"}], **GREEDY})
        assert r.status_code == 200, r.text
        stateless[replica_of(r)[0]] += 1

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(run, kind, n) for kind, n in discussions]
        futures += [pool.submit(ask_stateless, i) for i in range(8)]  # mixed in with the sessions
        for f in futures:
            f.result()
    stateless.clear()
    with ThreadPoolExecutor(8) as pool:  # alone: the queue lengths decide, so both replicas take some
        for f in [pool.submit(ask_stateless, i) for i in range(8, 24)]:
            f.result()

    for kind, n in discussions:
        turns = turns_of(cluster.home, name_of(kind, n))
        assert [t.user for t in turns] == [f"turn {t} of {n}" for t in (1, 2, 3)]
        assert [t.index for t in turns] == [1, 2, 3]
        assert all(t.assistant is not None and t.stop_reason in ("stop", "length") for t in turns)
    # >= 95% of a discussion's turns on one replica: with 3 turns, all of them.
    for name, replicas in served.items():
        top = Counter(replicas).most_common(1)[0][1]
        assert top / len(replicas) >= 0.95, (name, replicas)
    owners = Counter(replicas[0] for replicas in served.values())
    assert len(owners) == 2, owners  # sessions spread over both replicas
    assert len(stateless) == 2, stateless  # stateless requests: the less loaded of two


def test_health_names_its_replica_and_routing(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    replica_of(r)
    assert r.headers["x-weprompt-route"] == "any"
    assert r.json()["batching"]["enabled"] and r.json()["batching"]["max_batch"] == 16  # batched, as `weprompt serve`
    assert r.json()["stats"]["db"] == "demo (SQLite, 5 tables)"  # --db reached the replica
    bad = client.post("/generate-response", json={"user_message": "x", "user_id": "a--b", "discussion_id": "1"})
    assert bad.status_code == 400 and "user_id" in bad.json()["error"]["message"]


# ------------------------------------------------------------ one writer per session
def test_one_session_by_name_and_by_id_on_two_replicas_never_writes_twice_at_once(
    cluster: Cluster, client: httpx.Client
) -> None:
    """A session's name and its id route apart (two keys): both replicas then try to write it."""
    for n in range(100, 140):
        first = discussion_turn(client, "oa", n, "opening")
        assert first.status_code == 200, first.text
        sid = SessionStore(Home(cluster.home, "test")).resolve(f"oa-{n}").id
        by_id = client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "probe"}], "session": sid, **GREEDY})
        assert by_id.status_code == 200, by_id.text
        if replica_of(by_id)[0] != replica_of(first)[0]:
            break
    else:
        pytest.fail("no session whose name and id route to different replicas")
    name = f"oa-{n}"
    texts = [f"racing {i}" for i in range(8)]

    def send(i: int) -> tuple[int, str]:
        ref = name if i % 2 else sid
        r = client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": texts[i]}], "session": ref, "temperature": 0, "max_tokens": 200})
        return r.status_code, replica_of(r)[0]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(8)))
    assert [status for status, _ in results] == [200] * 8  # the one not holding it waited for the lock
    assert len({replica for _, replica in results}) == 2
    turns = turns_of(cluster.home, name)
    assert [t.index for t in turns] == list(range(1, 11))
    assert sorted(t.user for t in turns[2:]) == sorted(texts)  # each once, none lost, none twice


def test_a_cluster_session_resumes_on_the_cli_and_back(cluster: Cluster, client: httpx.Client) -> None:
    r = discussion_turn(client, "v1", 7, "turn 4 of 7")
    assert r.status_code == 200, r.text
    done = weprompt(cluster.home, "resume", "u-cl--7", "-m", "from the terminal", "--max-tokens", "6")
    assert done.returncode == 0, done.stderr
    r = discussion_turn(client, "v1", 7, "back over HTTP")
    assert r.status_code == 200, r.text
    users = [t.user for t in turns_of(cluster.home, "u-cl--7")]
    assert users[-3:] == ["turn 4 of 7", "from the terminal", "back over HTTP"]


# ------------------------------------------------------------------------ failover
def test_killed_replica_loses_no_finished_turn_and_its_requests_succeed_on_retry(
    cluster: Cluster, client: httpx.Client
) -> None:
    names = [name_of("v1" if n % 2 else "oa", n) for n in range(20)]
    before = {name: [t.user for t in turns_of(cluster.home, name)] for name in names}
    owner = {}
    for n in range(20):  # one more turn each: which replica holds which discussion now
        kind = "v1" if n % 2 else "oa"
        r = discussion_turn(client, kind, n, f"turn before kill {n}")
        assert r.status_code == 200, r.text
        owner[name_of(kind, n)] = replica_of(r)
    victim_id, victim_pid = owner[names[0]]
    on_victim = [n for n in range(20) if owner[names[n]][0] == victim_id]
    assert len(on_victim) >= 2
    # A request with an Idempotency-Key that the victim answers and saves (as if its answer were lost on the way)
    keyed = {"messages": [{"role": "user", "content": "keyed before kill"}], "session": names[0], **GREEDY}
    first_keyed = client.post("/v1/chat/completions", json=keyed, headers={"Idempotency-Key": "kill-1"})
    assert first_keyed.status_code == 200 and replica_of(first_keyed)[0] == victim_id, first_keyed.text

    # A long streamed answer on the victim, and plain requests queued behind it there.
    streamed = on_victim[0]
    outcomes: dict[int, Any] = {}
    first_piece = threading.Event()

    def stream_long() -> None:
        body = {"messages": [{"role": "user", "content": "a long answer"}], "session": names[streamed],
                "temperature": 0, "max_tokens": 2048, "stream": True}
        events = []
        with httpx.Client(base_url=cluster.url, timeout=120) as c, c.stream("POST", "/v1/chat/completions", json=body) as r:
            outcomes[streamed] = ("status", r.status_code)
            try:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        if len(events) >= 3:
                            first_piece.set()
            except httpx.HTTPError as exc:
                events.append(f"cut: {exc}")
        first_piece.set()
        outcomes[streamed] = (r.status_code, events)

    def plain(n: int) -> None:
        kind = "v1" if n % 2 else "oa"
        with httpx.Client(base_url=cluster.url, timeout=120) as c:
            r = discussion_turn(c, kind, n, f"in flight {n}", max_tokens=2048)
        outcomes[n] = (r.status_code, r.headers.get("retry-after"), r.text)

    streamer = threading.Thread(target=stream_long)
    streamer.start()
    assert first_piece.wait(60)
    queued = [threading.Thread(target=plain, args=(n,)) for n in on_victim[1:3]]
    for t in queued:
        t.start()
    time.sleep(0.3)
    os.kill(victim_pid, signal.SIGKILL)  # the replica's worker process, mid-generation
    for t in [streamer, *queued]:
        t.join(120)

    # In flight on it: a clear, retryable 503 (in-band for the stream that had started).
    status, events = outcomes[streamed]
    assert status == 200
    last_error = json.loads(events[-2]) if len(events) >= 2 and events[-1] == "[DONE]" else {}
    assert "retry" in last_error.get("error", {}).get("message", ""), events[-3:]
    for n in on_victim[1:3]:
        code, retry_after, text = outcomes[n]
        assert code == 503 and retry_after is not None, (code, text)
        assert "retry" in json.loads(text)["error"]["message"]

    # Each retried request succeeds, on a live replica.
    for n in on_victim[:3]:
        kind = "v1" if n % 2 else "oa"
        deadline = time.monotonic() + 90
        while True:
            r = discussion_turn(client, kind, n, f"retried {n}")
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            assert r.status_code == 503, r.text
            time.sleep(float(r.headers.get("retry-after", "1")))
        assert r.status_code == 200, r.text
        assert replica_of(r)[1] != victim_pid

    # The keyed request sent again reaches a live replica, which answers with the turn the victim saved.
    deadline = time.monotonic() + 90
    while (r := client.post("/v1/chat/completions", json=keyed, headers={"Idempotency-Key": "kill-1"})).status_code == 503:
        assert time.monotonic() < deadline, r.text
        time.sleep(float(r.headers.get("retry-after", "1")))
    assert r.status_code == 200 and replica_of(r)[1] != victim_pid, r.text
    assert r.json()["choices"][0]["message"] == first_keyed.json()["choices"][0]["message"]
    assert [t.user for t in turns_of(cluster.home, names[0])].count("keyed before kill") == 1

    # No finished turn lost, and every discussion continues.
    for n, name in enumerate(names):
        kind = "v1" if n % 2 else "oa"
        r = discussion_turn(client, kind, n, f"after {n}")
        assert r.status_code == 200, r.text
        users = [t.user for t in turns_of(cluster.home, name)]
        assert users[: len(before[name]) + 1] == [*before[name], f"turn before kill {n}"]
        assert users[-1] == f"after {n}"
        assert [t.index for t in turns_of(cluster.home, name)] == list(range(1, len(users) + 1))
        assert all(u not in users for u in (f"in flight {n}",))  # never finished: never recorded

    done = weprompt(cluster.home, "resume", names[on_victim[0]], "-m", "after the failover", "--max-tokens", "6")
    assert done.returncode == 0, done.stderr
