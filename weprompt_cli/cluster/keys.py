"""Which session a request belongs to, from its path and JSON body; rendezvous ranking.

Pure functions (no Ray, no FastAPI): the HTTP proxy calls `session_key` before Ray picks
a replica, and the router ranks replicas with `rendezvous_score`. A session key is the
session's name as the app will see it: `u-{user_id}--{discussion_id}` for a WePrompt 1.0
discussion (`server.ids`), the `session` field of an OpenAI request. Requests without one
(stateless completions, /health, /v1/models) have no key and go to the least loaded replica.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from weprompt_cli.errors import WePromptError

GENERATE_PATH = "/generate-response"
CHAT_PATH = "/v1/chat/completions"
SESSION_PATHS = frozenset({GENERATE_PATH, CHAT_PATH})

# Ray Serve's session header (RAY_SERVE_SESSION_ID_HEADER_KEY, default x-session-id): the
# proxy turns it into the request's `session_id`, which SessionRouter routes on.
SESSION_HEADER = os.environ.get("RAY_SERVE_SESSION_ID_HEADER_KEY", "x-session-id").lower()
ROUTED_HEADER = "x-weprompt-routed"  # set by the proxy middleware: "session" or "any"
REPLICA_HEADER = "x-weprompt-replica"  # on every response: "<replica id> (pid N on HOST)"


def session_key(path: str, body: bytes) -> str | None:
    """The session a POST to `path` with `body` continues or starts, or None (stateless, unreadable)."""
    if path not in SESSION_PATHS or not body:
        return None
    try:
        obj: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None  # the replica answers 400 for it
    if not isinstance(obj, dict):
        return None
    if path == GENERATE_PATH:
        from weprompt_cli.server.ids import discussion_session_name

        try:
            return discussion_session_name(obj.get("user_id"), obj.get("discussion_id"))
        except WePromptError:
            return None
    session = obj.get("session")
    if isinstance(session, str) and session:
        return session[:256]
    return None


def rendezvous_score(key: str, replica: str) -> int:
    """Highest-random-weight score of `replica` for `key`: the owner has the highest.

    Stable across processes and restarts (blake2b, not Python's salted hash), so the proxy
    on every node agrees; when a replica leaves, only its own sessions move.
    """
    digest = hashlib.blake2b(f"{key}\0{replica}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, replicas: list[str]) -> str | None:
    """The replica (of `replicas`, ids) that serves session `key`; None when there is none."""
    return max(replicas, key=lambda r: rendezvous_score(key, r)) if replicas else None
