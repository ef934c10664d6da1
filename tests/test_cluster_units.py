"""The cluster's parts without a cluster: session keys, rendezvous routing, the proxy and replica middlewares, YAML.

Fast (no Ray cluster is started); the YAML check uses Ray's own schema when Ray is installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from store_helpers import make_session, make_store

from weprompt_cli.cluster.keys import owner, rendezvous_score, session_key
from weprompt_cli.cluster.proxy import LOST_MESSAGE, SessionAffinity
from weprompt_cli.cluster.replica import REPLICA_TAG, ReplicaFront
from weprompt_cli.store import lock as lockmod
from weprompt_cli.store.layout import LOCK

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- keys
def test_session_key_is_the_session_name_the_app_will_use() -> None:
    v1 = json.dumps({"user_message": "hi", "user_id": "alice", "discussion_id": 42}).encode()
    assert session_key("/generate-response", v1) == "u-alice--42"
    oa = json.dumps({"messages": [{"role": "user", "content": "hi"}], "session": "my-work"}).encode()
    assert session_key("/v1/chat/completions", oa) == "my-work"
    stateless = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    assert session_key("/v1/chat/completions", stateless) is None
    assert session_key("/generate-response", b'{"user_id": "a--b", "discussion_id": 1}') is None  # the app says 400
    assert session_key("/generate-response", b"not json") is None
    assert session_key("/health", v1) is None


def test_rendezvous_spreads_sessions_and_moves_only_a_lost_replicas_share() -> None:
    keys = [f"u-user--{i}" for i in range(2000)]
    three = ["aaaa1111", "bbbb2222", "cccc3333"]
    placed = {k: owner(k, three) for k in keys}
    counts = Counter(placed.values())
    assert all(500 < counts[r] < 830 for r in three), counts
    after = {k: owner(k, three[:2]) for k in keys}
    moved = [k for k in keys if after[k] != placed[k]]
    assert all(placed[k] == "cccc3333" for k in moved)  # only the lost replica's sessions move
    assert rendezvous_score("k", "r") == rendezvous_score("k", "r")  # the same in every process
    assert owner("k", []) is None


# ----------------------------------------------------------------------- ASGI helpers
def _run(app: Any, *, path: str, body: bytes, method: str = "POST", chunk: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Call an ASGI app once; (messages sent, scope the inner app saw)."""
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    incoming = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [(b"content-type", b"application/json")]}
    asyncio.run(app(scope, receive, send))
    return sent, scope


class Inner:
    """A stand-in for Ray's proxy app: records what it got, answers as told."""

    def __init__(self, *responses: list[dict[str, Any]]) -> None:
        self.responses = list(responses)
        self.bodies: list[bytes] = []
        self.headers: list[dict[bytes, bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.headers.append(dict(scope["headers"]))
        data = b""
        while True:
            message = await receive()
            data += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(data)
        for message in self.responses.pop(0) if self.responses else []:
            await send(message)


def _ok(status: int = 200, body: bytes = b"{}", headers: list[tuple[bytes, bytes]] | None = None) -> list[dict[str, Any]]:
    return [
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), *(headers or [])]},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


REPLICA = [(b"x-weprompt-replica", b"r1 (pid 1 on h)")]


# ----------------------------------------------------------------------- the proxy
def test_proxy_puts_the_session_in_rays_header_and_replays_the_body_byte_for_byte() -> None:
    body = json.dumps({"user_message": "x" * 5000, "user_id": "bob", "discussion_id": "7"}).encode()
    inner = Inner(_ok(headers=REPLICA))
    sent, _ = _run(SessionAffinity(inner), path="/generate-response", body=body, chunk=1000)
    assert inner.bodies == [body]
    assert inner.headers[0][b"x-session-id"] == b"u-bob--7" and inner.headers[0][b"x-weprompt-routed"] == b"session"
    assert sent[0]["status"] == 200 and (b"x-weprompt-route", b"session") in sent[0]["headers"]


def test_proxy_leaves_a_client_session_header_out_of_stateless_routing_and_skips_huge_bodies() -> None:
    inner = Inner(_ok(headers=REPLICA), _ok(headers=REPLICA))
    stateless = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    _run(SessionAffinity(inner), path="/v1/chat/completions", body=stateless)
    assert b"x-session-id" not in inner.headers[0] and inner.headers[0][b"x-weprompt-routed"] == b"any"
    huge = json.dumps({"messages": [], "session": "s", "pad": "y" * 3000}).encode()
    _run(SessionAffinity(inner, max_parse_bytes=1000), path="/v1/chat/completions", body=huge, chunk=500)
    assert inner.bodies[1] == huge and b"x-session-id" not in inner.headers[1]


def test_a_request_whose_replica_died_gets_a_retryable_503() -> None:
    inner = Inner([])  # Ray's proxy sends nothing when the replica died under the request
    sent, _ = _run(SessionAffinity(inner), path="/generate-response", body=b'{"user_id": "a", "discussion_id": 1}')
    assert sent[0]["status"] == 503
    assert dict(sent[0]["headers"])[b"retry-after"] == b"1"
    assert json.loads(sent[1]["body"]) == {"error": {"message": LOST_MESSAGE, "type": "server_busy"}}


def test_rays_own_503_page_becomes_a_json_error_that_says_why() -> None:
    page = [
        {"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]},
        {"type": "http.response.body", "body": b"Deployment 'WePrompt' is unavailable.", "more_body": False},
    ]
    sent, _ = _run(SessionAffinity(Inner(page)), path="/health", body=b"", method="GET")
    assert sent[0]["status"] == 503
    message = json.loads(sent[1]["body"])["error"]["message"]
    assert "Deployment 'WePrompt' is unavailable." in message and "retry" in message


def test_a_stream_cut_by_a_dead_replica_ends_with_an_error_event_and_done() -> None:
    cut = [
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream"), *REPLICA]},
        {"type": "http.response.body", "body": b'data: {"choices": []}\n\n', "more_body": True},
    ]
    sent, _ = _run(SessionAffinity(Inner(cut)), path="/v1/chat/completions", body=b'{"messages": []}')
    tail = sent[-1]["body"].decode()
    assert sent[-1]["more_body"] is False
    assert tail.endswith("data: [DONE]\n\n") and json.loads(tail.split("\n\n")[0][6:])["error"]["message"] == LOST_MESSAGE


def test_app_errors_from_a_replica_pass_through_untouched() -> None:
    own = _ok(500, b'{"error": {"message": "internal error: boom", "type": "server_error"}}', REPLICA)
    sent, _ = _run(SessionAffinity(Inner(own)), path="/generate-response", body=b"{}")
    assert sent[0]["status"] == 500 and b"boom" in sent[1]["body"]


# ----------------------------------------------------------------- replica handover
IN_USE = _ok(409, json.dumps({"error": {"message": "session 'demo' is in use by another client or process; try again "
                                                   "when it is free", "type": "conflict_error"}}).encode())


@pytest.fixture
def restore_lock_settings() -> Any:
    before = (lockmod._settings.holder, lockmod._settings.lease_s)
    yield
    lockmod._settings.holder, lockmod._settings.lease_s = before


def _front(inner: Any, store: Any) -> ReplicaFront:
    return ReplicaFront(inner, name="r9 (pid 9 on h)", store=store, handover_s=10, max_body=1 << 20)


def test_a_session_another_replica_holds_is_waited_for_then_served(restore_lock_settings: None) -> None:
    store = make_store()
    make_session(store).close()
    lockmod.configure(holder=f"{REPLICA_TAG} other")
    held = store.open("demo")  # "another replica" mid-turn
    threading.Timer(0.5, held.close).start()

    class App(Inner):  # the app: 409 while the session is held, 200 once it is free
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            self.responses = [IN_USE if not held.closed else _ok()]
            await super().__call__(scope, receive, send)

    inner = App()
    started = time.monotonic()
    sent, _ = _run(_front(inner, store), path="/v1/chat/completions", body=b'{"messages": [], "session": "demo"}')
    assert sent[0]["status"] == 200 and (b"x-weprompt-replica", b"r9 (pid 9 on h)") in sent[0]["headers"]
    assert len(inner.bodies) >= 2 and len(set(inner.bodies)) == 1  # the same body each time
    assert 0.4 < time.monotonic() - started < 5


def test_a_session_a_person_has_open_is_refused_at_once(restore_lock_settings: None) -> None:
    store = make_store()
    make_session(store).close()
    lockmod.configure(holder="weprompt")
    held = store.open("demo")  # `weprompt resume demo` on this host
    try:
        inner = Inner(IN_USE)
        started = time.monotonic()
        sent, _ = _run(_front(inner, store), path="/v1/chat/completions", body=b'{"messages": [], "session": "demo"}')
        assert sent[0]["status"] == 409 and len(inner.bodies) == 1
        assert time.monotonic() - started < 1
        assert lockmod.latest_record(store.session_dir(store.resolve("demo").id) / LOCK).holder == "weprompt"  # type: ignore[union-attr]
    finally:
        held.close()


# ------------------------------------------------------------------- CLI and YAML
def test_cluster_help_does_not_import_ray() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom weprompt_cli.cli import app\n"
        "r = CliRunner().invoke(app, ['cluster', 'serve', '--help'])\n"
        "assert r.exit_code == 0 and '--ray-address' in r.output and '--gpus-per-replica' in r.output, r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch', 'fastapi')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_config_prints_a_serve_deploy_yaml_that_ray_accepts(tmp_path: Path) -> None:
    model = tmp_path / "m.pth"
    model.write_bytes(b"not read here")
    out = subprocess.run(
        [sys.executable, "-m", "weprompt_cli", "cluster", "config", "--replicas", "3", "--gpus-per-replica", "0.5",
         "--model", str(model), "--strategy", "cuda fp16", "--lease", "20", "--max-batch", "32"],
        capture_output=True, text=True, cwd=str(ROOT), timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=weprompt_cli.cluster.proxy:proxy_middlewares" in out.stdout
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load(out.stdout)
    app = config["applications"][0]
    assert app["import_path"] == "weprompt_cli.cluster.replica:build"
    assert app["args"]["model"] == str(model.resolve()) and app["args"]["lease_s"] == 20
    assert app["args"]["api_key"] is None
    assert (app["args"]["max_batch"], app["args"]["prefill_budget"]) == (32, 128)  # replicas batch as `serve` does
    deployment = app["deployments"][0]
    assert deployment["num_replicas"] == 3 and deployment["ray_actor_options"]["num_gpus"] == 0.5
    assert deployment["request_router_config"]["request_router_class"] == "weprompt_cli.cluster.router:SessionRouter"
    schema = pytest.importorskip("ray.serve.schema", reason="Ray Serve is not installed")
    schema.ServeDeploySchema.model_validate(config) if hasattr(schema.ServeDeploySchema, "model_validate") else (
        schema.ServeDeploySchema.parse_obj(config))


@pytest.mark.parametrize("flags", [("--max-batch", "0"), ("--max-batch", "255"), ("--prefill-budget", "0")])
def test_a_bad_batch_setting_is_one_line(tmp_path: Path, flags: tuple[str, str]) -> None:
    model = tmp_path / "m.pth"
    model.write_bytes(b"not read here")
    out = subprocess.run([sys.executable, "-m", "weprompt_cli", "cluster", "config", "--model", str(model), *flags],
                         capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert out.returncode == 2 and out.stdout == "", out
    assert out.stderr.strip().splitlines()[0] == "weprompt: error: --max-batch must be 1 to 254 and --prefill-budget at least 1"
    assert "Traceback" not in out.stderr


def test_config_with_db_carries_the_databases_place_and_never_its_password(tmp_path: Path) -> None:
    import sqlite3

    model = tmp_path / "m.pth"
    model.write_bytes(b"not read here")
    sqlite3.connect(tmp_path / "crm.sqlite").executescript("CREATE TABLE clients (id INTEGER PRIMARY KEY);")
    env = {**os.environ, "WEPROMPT_HOME": str(tmp_path / "home")}

    def config(db: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "weprompt_cli", "cluster", "config", "--model", str(model),
                               "--db", db], capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=60)

    out = config("crm.sqlite")  # relative to where the command runs: the replicas get the absolute path
    assert out.returncode == 0, out.stderr
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(out.stdout)["applications"][0]["args"]["db"] == str(tmp_path / "crm.sqlite")
    refused = config("postgresql://me:s3cret@localhost/shop")
    assert refused.returncode != 0 and refused.stdout == "" and "s3cret" not in refused.stderr
    assert refused.stderr.splitlines()[0] == ("weprompt: error: a cluster's --db URL must not hold the password: "
                                             "it would travel in Ray's config")
    missing = config("nope.sqlite")
    assert missing.returncode != 0 and missing.stdout == "" and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("weprompt: error: ") and not (tmp_path / "nope.sqlite").exists()
