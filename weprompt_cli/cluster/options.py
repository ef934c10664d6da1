"""What `weprompt cluster` deploys: `ClusterOptions`, the replica spec, the `serve deploy` YAML."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from weprompt_cli.errors import UsageError

APP_NAME = "weprompt"
DEPLOYMENT_NAME = "WePrompt"
ROUTER_CLASS = "weprompt_cli.cluster.router:SessionRouter"
BUILD_PATH = "weprompt_cli.cluster.replica:build"
PROXY_CALLBACK = "weprompt_cli.cluster.proxy:proxy_middlewares"
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"


@dataclass(frozen=True)
class ReplicaSpec:
    """What every replica loads and how it serves: plain values (they travel as YAML `args`)."""

    home: str  # the shared home (sessions, personas, config.toml, caches)
    model: str  # the .pth / .gguf path, the same on every node
    strategy: str = "auto"
    threads: int = 1  # torch threads per replica
    api_key: str | None = None  # None: $WEPROMPT_API_KEY on the replica, or no key
    max_tokens_cap: int = 2048
    cache_entries: int = 64
    cache_mb: int = 256
    max_queue: int = 64
    max_batch: int = 16  # requests a replica answers at once, one batched step per token (1: one at a time)
    prefill_budget: int = 128  # prompt tokens fed between two decode steps
    lease_s: float = 15.0  # session lock lease (see store/lock.py)
    handover_s: float | None = None  # how long a request waits for a session held elsewhere; None: lease + 7 s
    simulate_hosts: bool = False  # tests: each replica plays its own host (own host id, no flock)
    db: str | None = None  # `--db`: the database's display form (never a password: that is $WEPROMPT_DB_PASSWORD)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> ReplicaSpec:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(obj) - known)
        if unknown:
            raise UsageError(f"unknown replica settings: {', '.join(unknown)}")
        if "home" not in obj or "model" not in obj:
            raise UsageError("a replica needs 'home' and 'model'")
        return cls(**obj)

    @property
    def handover_wait_s(self) -> float:
        return self.handover_s if self.handover_s is not None else self.lease_s + 7.0


@dataclass(frozen=True)
class ClusterOptions:
    """A WePrompt deployment on Ray Serve: replicas, their resources, the HTTP proxy's address."""

    spec: ReplicaSpec
    replicas: int = 2
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    max_ongoing_requests: int = 64
    host: str = "127.0.0.1"
    port: int = 8000
    proxy_location: str = "HeadOnly"  # EveryNode behind a load balancer
    extra_actor_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """`UsageError` for values Ray would refuse later, with the flag to fix."""
        if self.replicas < 1:
            raise UsageError(f"--replicas must be at least 1 (got {self.replicas})")
        if self.cpus_per_replica < 0 or self.gpus_per_replica < 0:
            raise UsageError("--cpus-per-replica and --gpus-per-replica must be 0 or more")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"invalid --port {self.port}: use 0 to 65535")
        if not 1 <= self.spec.max_batch <= 254 or self.spec.prefill_budget < 1:
            raise UsageError("--max-batch must be 1 to 254 and --prefill-budget at least 1")
        if self.spec.lease_s < 1:
            raise UsageError("--lease must be at least 1 second")

    def deployment_options(self) -> dict[str, Any]:
        """`serve.deployment(...)` options (also the YAML's deployment entry)."""
        actor: dict[str, Any] = {"num_cpus": self.cpus_per_replica}
        if self.gpus_per_replica:
            actor["num_gpus"] = self.gpus_per_replica
        actor.update(self.extra_actor_options)
        return {
            "num_replicas": self.replicas,
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": actor,
            # A replica finishing a turn when told to stop keeps it (the turn is checkpointed).
            "graceful_shutdown_timeout_s": 20,
            "health_check_period_s": 5,
            "request_router_config": {"request_router_class": ROUTER_CLASS},
        }

    def serve_config(self) -> dict[str, Any]:
        """The config file of `serve deploy` (Ray's schema), for clusters run by their owners."""
        spec = self.spec.to_dict()
        spec.pop("simulate_hosts")
        if spec.get("api_key"):
            spec["api_key"] = None  # never written to a file: set WEPROMPT_API_KEY on the nodes
        deployment = {"name": DEPLOYMENT_NAME, **self.deployment_options()}
        return {
            "proxy_location": self.proxy_location,
            "http_options": {"host": self.host, "port": self.port},
            "applications": [
                {
                    "name": APP_NAME,
                    "route_prefix": "/",
                    "import_path": BUILD_PATH,
                    "args": spec,
                    "deployments": [deployment],
                }
            ],
        }

    def yaml(self) -> str:
        """`serve_config()` as commented YAML."""
        header = (
            "# WePrompt on Ray Serve: `serve deploy` this file (see docs/scaling.md).\n"
            "# Every node needs: weprompt[cluster] installed; the home below on the same shared\n"
            "# path (NFS, EFS, CephFS); the model file at the same path; and, in the environment\n"
            f"# of `ray start`, {PROXY_CALLBACK_ENV}={PROXY_CALLBACK}\n"
            "# (session routing and the 503 on a lost replica live in Ray's HTTP proxy).\n"
            "# API key: export WEPROMPT_API_KEY on every node instead of writing it here.\n"
        )
        config = self.serve_config()
        try:
            import yaml

            body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
        except ImportError:  # JSON is YAML too
            body = json.dumps(config, indent=2) + "\n"
        return header + body
