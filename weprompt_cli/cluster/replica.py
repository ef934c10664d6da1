"""The Ray Serve deployment: one replica = one model + the existing FastAPI app.

`serve.ingress` wraps the app that `weprompt serve` runs (`server.app.create_app`), built
in the replica after its model is loaded. Around it, `ReplicaFront` (ASGI, this module):

- names the replica in every response (`X-WePrompt-Replica: <id> (pid N on HOST)`);
- hands a session over: while the routing changes (a replica died or started), a request
  may reach this replica while another one still holds its session. The app answers 409
  "in use"; if the holder is another replica (its lease record says so) or a dead
  process whose lease has not run out, the request waits for the lock (up to the lease
  plus a margin) and runs again, instead of failing. A session held by a person's
  `weprompt resume` still gets the 409 at once.

`build(args)` is the import path for `serve deploy` (see options.py); `application()`
binds the same deployment for `weprompt cluster serve`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from weprompt_cli.cluster.keys import REPLICA_HEADER, ROUTED_HEADER, SESSION_PATHS, session_key
from weprompt_cli.cluster.options import DEPLOYMENT_NAME, ROUTER_CLASS, ClusterOptions, ReplicaSpec
from weprompt_cli.cluster.proxy import Message, Receive, Send

if TYPE_CHECKING:
    from weprompt_cli.store import SessionStore

log = logging.getLogger("weprompt.cluster")
REPLICA_TAG = "weprompt-replica"  # lock records of replicas start with this (handover decisions)


class ReplicaFront:
    """ASGI middleware around the app: the replica header, and the handover of a busy session."""

    def __init__(self, app: Any, *, name: str, store: SessionStore | None, handover_s: float, max_body: int) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode("latin-1"), name.encode("utf-8"))
        self.store = store
        self.handover_s = handover_s
        self.max_body = max_body
        self._warned = False

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def named(message: Message) -> None:
            if message.get("type") == "http.response.start":
                message = dict(message)
                message["headers"] = [*(message.get("headers") or []), self.header]
            await send(message)

        if scope.get("method") != "POST" or scope.get("path") not in SESSION_PATHS:
            await self.app(scope, receive, named)
            return
        if not self._warned and not any(k.lower() == ROUTED_HEADER.encode() for k, _ in scope.get("headers") or []):
            self._warned = True
            log.warning(
                "requests arrive without WePrompt's session routing: set RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH="
                "weprompt_cli.cluster.proxy:proxy_middlewares for `ray start` on every node (docs/scaling.md)"
            )
        body, complete, gone = await _read(receive, self.max_body)
        if gone:
            return
        key = session_key(scope["path"], body) if complete else None
        if key is None:
            await self.app(scope, _replay(body, complete, receive), named)
            return
        deadline = time.monotonic() + self.handover_s
        attempt = 0
        while True:
            attempt += 1
            held = await _run_holding_409(self.app, scope, _replay(body, True, receive), named)
            if held is None:
                return
            wait = await asyncio.to_thread(self._handover_wait, key, held[1], attempt, deadline)
            if wait is None:
                for message in held[0]:
                    await named(message)
                return
            await asyncio.sleep(wait)

    def _handover_wait(self, key: str, body: bytes, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before trying a refused session again, or None to answer the 409."""
        from weprompt_cli.store.layout import LOCK
        from weprompt_cli.store.lock import SKEW_S, latest_record

        try:
            message = str(json.loads(body)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if "already exists" in message:  # two replicas created the same new session at once
            return 0.0 if attempt == 1 else None
        if "in use" not in message or self.store is None:
            return None
        try:
            meta = self.store.resolve(key)
        except Exception:  # noqa: BLE001 - gone meanwhile: let the app say so on the next try
            return min(0.05, left)
        record = latest_record(self.store.session_dir(meta.id) / LOCK)
        step = min(0.05 * 2 ** min(attempt, 5), 1.0)
        if record is None or record.released:
            return min(0.02, left)  # freed since: go again
        if not record.holder.startswith(REPLICA_TAG) and record.local:
            return None  # a person's `weprompt resume` (or chat) holds it: 409 now
        until_expiry = record.expires_at + SKEW_S - time.time()
        return max(0.02, min(step, left, until_expiry if until_expiry > 0 else step))


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return b"", False, True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True, False
        if size > limit:
            return b"".join(chunks), False, False  # the app's guard answers 413


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay


async def _run_holding_409(app: Any, scope: Message, receive: Receive, send: Send) -> tuple[list[Message], bytes] | None:
    """Run the app; a 409 is held back (its messages and body) instead of sent, anything else passes."""
    held: list[Message] = []
    body = bytearray()
    holding = False

    async def gate(message: Message) -> None:
        nonlocal holding
        if message.get("type") == "http.response.start" and int(message.get("status", 200)) == 409:
            holding = True
        if holding:
            held.append(message)
            if message.get("type") == "http.response.body":
                body.extend(message.get("body", b""))
            return
        await send(message)

    await app(scope, receive, gate)
    return (held, bytes(body)) if holding else None


class Replica:
    """What one replica holds: the loaded model, the app around it, its name."""

    def __init__(self, spec: ReplicaSpec, replica_id: str) -> None:
        from pathlib import Path

        from weprompt_cli.config import load_config
        from weprompt_cli.engine import load_engine
        from weprompt_cli.paths import Home
        from weprompt_cli.server.app import create_app
        from weprompt_cli.server.backend import Backend
        from weprompt_cli.server.batching import serving_engine
        from weprompt_cli.server.settings import CacheBounds, Limits, ServerSettings
        from weprompt_cli.store import SessionStore, lock

        simulated = {"host_id": f"replica-{replica_id}", "use_flock": False} if spec.simulate_hosts else {}
        lock.configure(lease_s=spec.lease_s, holder=f"{REPLICA_TAG} {replica_id}", **simulated)  # type: ignore[arg-type]
        try:
            import torch

            torch.set_num_threads(max(1, spec.threads))
        except ImportError:
            pass
        home = Home(Path(spec.home), "cluster")
        config = load_config(home)
        engine = load_engine(Path(spec.model), spec.strategy, models_dir=home.models, cache_dir=home.cache)
        engine, workers, note = serving_engine(engine, spec.max_batch, spec.prefill_budget)  # as `weprompt serve`
        cap = spec.max_tokens_cap
        limits = Limits(max_tokens_cap=cap, default_max_tokens=min(Limits().default_max_tokens, cap), max_queue=spec.max_queue)
        settings = ServerSettings(
            host="0.0.0.0",
            port=0,
            api_key=spec.api_key or os.environ.get("WEPROMPT_API_KEY") or None,
            limits=limits,
            cache=CacheBounds(max_entries=spec.cache_entries, max_bytes=spec.cache_mb * 1024 * 1024),
            max_batch=workers,
            batching_note=note,
        )
        advisor = None
        if spec.db:  # the password, if any, from this node's $WEPROMPT_DB_PASSWORD
            from weprompt_cli.chat.sql_advisor import SqlAdvisor

            advisor = SqlAdvisor.open(spec.db, cache_dir=home.cache / "db", fix=0)
        self.backend = Backend(engine, SessionStore(home), config, settings, advisor=advisor)
        self.name = f"{replica_id} (pid {os.getpid()} on {socket.gethostname()})"
        self.app = ReplicaFront(
            create_app(self.backend, settings),
            name=self.name,
            store=self.backend.store,
            handover_s=spec.handover_wait_s,
            max_body=limits.max_body_bytes,
        )


def _deployment(options: ClusterOptions | None = None) -> Any:
    """The Ray Serve deployment class (Ray imported here, never at `weprompt --help`)."""
    from ray import serve

    @serve.ingress()
    class WePrompt:
        def __init__(self, spec: dict[str, Any]) -> None:
            replica_id = serve.get_replica_context().replica_id.unique_id
            self._replica = Replica(ReplicaSpec.from_dict(spec), replica_id)

        def __serve_build_asgi_app__(self) -> Any:
            return self._replica.app

    # Without options (`serve deploy`), the YAML's `deployments` entry sets the rest.
    extra = options.deployment_options() if options is not None else {
        "request_router_config": {"request_router_class": ROUTER_CLASS}
    }
    return serve.deployment(name=DEPLOYMENT_NAME, **extra)(WePrompt)


def application(options: ClusterOptions) -> Any:
    """The bound application for `serve.run`: N replicas of WePrompt with `options.spec`."""
    return _deployment(options).bind(options.spec.to_dict())


def build(args: dict[str, Any]) -> Any:
    """`serve deploy`'s application builder: `args` is the YAML's replica spec (options.py).

    Replica count, resources and the router come from the YAML's `deployments` entry.
    """
    spec = ReplicaSpec.from_dict(dict(args))
    return _deployment().bind(spec.to_dict())
