"""`SessionRouter`: Ray Serve's request-router API, strict for sessions, least loaded otherwise.

Ray Serve calls `choose_replicas` for every request, in the HTTP proxy and in any
deployment handle. A request with a session (`RequestMetadata.session_id`, from the
`x-session-id` header that proxy.py sets) gets exactly one candidate: the replica with the
highest rendezvous score for that session among the running ones. Ray then waits (with
backoff) while that replica's queue is full instead of sending the request elsewhere, so
one session stays on one replica while the set of replicas is stable. When a replica
dies or a new one starts, only the sessions whose top-scoring replica changed move, and
they are opened from their last checkpoint on the shared store.

A request without a session gets two random candidates; Ray probes their queue lengths
and picks the shorter (power of two choices, as Ray's default router does).

Why not `@serve.multiplexed`: it is a preference (Ray sends a model id to any replica when
none has it loaded, and measured here right after start 10 sequential requests per id
reached both replicas), and it means "load a model", which a session is not. Why not
Ray's experimental ConsistentHashRouter: it hashes session-less requests by request id
(uniform, blind to load), and it is experimental.
"""

from __future__ import annotations

import random
from typing import Any

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica

from weprompt_cli.cluster.keys import rendezvous_score


def session_of(pending: PendingRequest | None) -> str | None:
    """The session a pending request belongs to (Ray's session_id), or None."""
    if pending is None:
        return None
    meta: Any = pending.metadata
    return getattr(meta, "session_id", None) or None


class SessionRouter(FIFOMixin, RequestRouter):
    """One replica per session (rendezvous hashing); the less loaded of two for the rest."""

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        key = session_of(pending_request)
        if key:
            assert pending_request is not None
            # Back off between tries while the owner is busy: strict affinity, no spill-over.
            pending_request.routing_context.should_backoff = True
            best = max(candidate_replicas, key=lambda r: rendezvous_score(key, r.replica_id.unique_id))
            return [[best]]
        # Two at random, in random order: Ray takes the shorter queue, the first on a tie.
        return [random.sample(candidate_replicas, min(2, len(candidate_replicas)))]
