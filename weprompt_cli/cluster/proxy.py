"""ASGI middleware that runs inside Ray Serve's HTTP proxy, before Ray picks a replica.

Ray's proxy routes on headers only; a WePrompt session is named in the JSON body. This
middleware reads the body of the two chat endpoints (bounded), puts the session in Ray's
session header (`x-session-id`) so `SessionRouter` sends it to its replica, and replays the
body untouched. It also turns what Ray answers when the replica serving a request dies
(a bare 500, or a stream cut short) into WePrompt's JSON error: a 503 with Retry-After,
which a client may retry; the retry reaches a live replica, which opens the session from
its last saved turn.

Ray loads it from `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=weprompt_cli.cluster.proxy:proxy_middlewares`
in the environment of the proxy's node (`weprompt cluster serve` sets it for the cluster it
starts). Pure ASGI: nothing here imports Ray, FastAPI or torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from weprompt_cli.cluster.keys import REPLICA_HEADER, ROUTED_HEADER, SESSION_HEADER, SESSION_PATHS, session_key

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Bodies up to this size are read to find the session (the app refuses larger ones anyway).
MAX_PARSE_BYTES = int(os.environ.get("WEPROMPT_CLUSTER_MAX_PARSE_BYTES", str(1024 * 1024)))
RETRY_AFTER_S = 1
LOST_MESSAGE = (
    "the replica serving this request stopped before it answered; retry the request: "
    "a live replica continues the session from its last saved turn"
)
_RAY_FAILURES = {500, 502, 503, 504}


def error_body(message: str, status: int = 503) -> bytes:
    kind = "server_busy" if status == 503 else "server_error"
    return json.dumps({"error": {"message": message, "type": kind}}).encode("utf-8")


class SessionAffinity:
    """Route chat requests by session (a header for Ray's router); a clear 503 when a replica is lost."""

    def __init__(self, app: Any, max_parse_bytes: int = MAX_PARSE_BYTES) -> None:
        self.app = app
        self.max_parse_bytes = max_parse_bytes

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        replay: Receive = receive
        route = "any"
        if scope.get("method") == "POST" and scope.get("path") in SESSION_PATHS:
            chunks, complete, disconnected = await _read_body(receive, self.max_parse_bytes)
            if disconnected:
                return
            key = session_key(scope["path"], b"".join(chunks)) if complete else None
            headers = [
                (k, v) for k, v in scope.get("headers") or [] if k.lower() not in (SESSION_HEADER.encode(), ROUTED_HEADER.encode())
            ]
            if key is not None:
                route = "session"
                headers.append((SESSION_HEADER.encode("latin-1"), key.encode("utf-8")))
            headers.append((ROUTED_HEADER.encode("latin-1"), route.encode("latin-1")))
            scope = dict(scope)
            scope["headers"] = headers
            replay = _replaying(chunks, complete, receive)
        await self._forward(scope, replay, send, route)

    async def _forward(self, scope: Message, receive: Receive, send: Send, route: str) -> None:
        """Run Ray's proxy app; repair what reaches the client when the replica died."""
        state: dict[str, Any] = {"started": False, "ended": False, "held": None, "sse": False, "text": b""}

        async def watch(message: Message) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers") or []}
                status = int(message.get("status", 200))
                if status in _RAY_FAILURES and REPLICA_HEADER.encode() not in headers:
                    state["held"] = status  # Ray's own failure page: replaced below
                    return
                state["started"] = True
                state["sse"] = headers.get(b"content-type", b"").startswith(b"text/event-stream")
                message = dict(message)
                message["headers"] = [*(message.get("headers") or []), (b"x-weprompt-route", route.encode("latin-1"))]
            elif kind == "http.response.body":
                if state["held"] is not None:
                    state["text"] += message.get("body", b"")[:500]  # Ray's failure page
                    return
                if not message.get("more_body", False):
                    state["ended"] = True
            await send(message)

        await self.app(scope, receive, watch)
        if state["ended"]:
            return
        if not state["started"]:
            said = state["text"].decode("utf-8", "replace").strip()[:300]
            # Ray answers 503 itself when no replica is up yet or all are full; a bare 500
            # (nothing sent) when the replica died under the request.
            message = f"the cluster could not take this request now ({said}); retry shortly" if said else LOST_MESSAGE
            await _send_error(send, 503, message)
        elif state["sse"]:
            # The stream started, then its replica died: end it the way the app reports
            # an error after the status line (an error event, then [DONE]).
            event = b"data: " + error_body(LOST_MESSAGE) + b"\n\ndata: [DONE]\n\n"
            await send({"type": "http.response.body", "body": event, "more_body": False})
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _read_body(receive: Receive, limit: int) -> tuple[list[bytes], bool, bool]:
    """The request body's chunks up to `limit` bytes; (chunks, complete, client gone)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return chunks, False, True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return chunks, True, False
        if size > limit:
            return chunks, False, False  # too large to route by: the app refuses it (413)


def _replaying(chunks: list[bytes], complete: bool, receive: Receive) -> Receive:
    """A `receive` that first returns the chunks already read, then the real messages."""
    pending = list(chunks)

    async def replay() -> Message:
        if pending:
            body = pending.pop(0)
            more = bool(pending) or not complete
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


async def _send_error(send: Send, status: int, message: str) -> None:
    body = error_body(message, status)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_S).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body, "more_body": False})


def proxy_middlewares() -> list[Any]:
    """Ray's HTTP proxy callback: the Starlette middlewares it wraps its ASGI app in."""
    from starlette.middleware import Middleware

    return [Middleware(SessionAffinity)]
