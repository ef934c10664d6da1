"""`weprompt cluster`: many replicas of the HTTP API on Ray Serve, over one shared session store."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from weprompt_cli.cli.app import app
from weprompt_cli.errors import UsageError

cluster_app = typer.Typer(
    help="Run the HTTP API as many replicas on a Ray cluster, over one shared session store.",
    no_args_is_help=True,
)
app.add_typer(cluster_app, name="cluster")

_MODEL = typer.Option(None, "--model", help="Catalog name or path of the model (the same path on every node).")
_STRATEGY = typer.Option(None, "--strategy", help="rwkv strategy for every replica, e.g. 'cpu fp32', 'cuda fp16', auto.")
_REPLICAS = typer.Option(2, "--replicas", "-n", help="How many replicas (each loads the model once).")
_GPUS = typer.Option(0.0, "--gpus-per-replica", help="GPUs Ray reserves for each replica (fractions share one).")
_CPUS = typer.Option(1.0, "--cpus-per-replica", help="CPUs Ray reserves for each replica; also its torch threads.")
_HOST = typer.Option("127.0.0.1", "--host", help="Address Ray's HTTP proxy listens on (loopback unless an API key is set).")
_PORT = typer.Option(8000, "--port", help="Port of Ray's HTTP proxy; 0 picks a free one (printed once ready).")
_KEY = typer.Option(None, "--api-key", help="Require this key (Authorization: Bearer KEY). Default: $WEPROMPT_API_KEY.")
_CAP = typer.Option(2048, "--max-tokens-cap", help="Largest max_tokens a request may ask for.")
_ENTRIES = typer.Option(64, "--cache-entries", help="Prefix state cache per replica: most states kept (0: off).")
_MB = typer.Option(256, "--cache-mb", help="Prefix state cache per replica: most memory for states, in MiB.")
_BATCH = typer.Option(16, "--max-batch", help="Requests each replica answers at once, advanced together (1: one at a time).")
_PREFILL = typer.Option(128, "--prefill-budget", help="Prompt tokens a replica feeds between two decode steps.")
_LEASE = typer.Option(15.0, "--lease", help="Seconds a session lock outlives a lost host before another may take it.")
_DB = typer.Option(None, "--db", help="A database for the sql persona (SQLite path, URL, or demo), as `serve --db`; "
                   "a password only in $WEPROMPT_DB_PASSWORD on every node.")


def _options(
    model: str | None, strategy: str | None, replicas: int, gpus: float, cpus: float, host: str, port: int,
    api_key: str | None, cap: int, entries: int, mb: int, lease: float, max_batch: int, prefill_budget: int, *,
    db: str | None = None, simulate_hosts: bool = False,
) -> tuple[object, str]:
    """ClusterOptions from the flags (the model resolved here, once), and the strategy used."""
    from weprompt_cli.cluster.options import ClusterOptions, ReplicaSpec
    from weprompt_cli.context import Context
    from weprompt_cli.models.resolve import resolve_model
    from weprompt_cli.server.settings import check_bind

    if cap < 1 or entries < 0 or mb < 0:
        raise UsageError("--max-tokens-cap must be at least 1, and the cache bounds 0 or more")
    check_bind(host, api_key)
    ctx = Context.create()
    strategy = strategy or ctx.config.strategy or "auto"
    resolved = resolve_model(model, config=ctx.config, home=ctx.home, strategy=strategy)
    spec = ReplicaSpec(
        home=str(ctx.home.root.resolve()),
        model=str(Path(resolved.path).resolve()),
        strategy=strategy,
        threads=max(1, int(cpus)),
        api_key=api_key,
        max_tokens_cap=cap,
        cache_entries=entries,
        cache_mb=mb,
        lease_s=lease,
        max_batch=max_batch,
        prefill_budget=prefill_budget,
        simulate_hosts=simulate_hosts,
        db=_cluster_db(db, ctx),
    )
    options = ClusterOptions(spec=spec, replicas=replicas, cpus_per_replica=cpus, gpus_per_replica=gpus,
                             host=host, port=port)
    options.check()
    return options, strategy


def _cluster_db(spec: str | None, ctx: object) -> str | None:
    """The database every replica opens, checked here (one line if it cannot be opened); its display form.

    The spec travels to the replicas in Ray's config (and in `cluster config`'s YAML), so a password
    written into the URL is refused: each node reads it from $WEPROMPT_DB_PASSWORD.
    """
    from weprompt_cli.chat.sql_advisor import NO_DB, SqlAdvisor
    from weprompt_cli.db import parse_target

    if spec is None or spec.strip().lower() in NO_DB:
        return None
    if parse_target(spec, environ={}).password is not None:
        raise UsageError("a cluster's --db URL must not hold the password: it would travel in Ray's config",
                         hint="set WEPROMPT_DB_PASSWORD on every node and leave the password out of the URL")
    with SqlAdvisor.open(spec, cache_dir=ctx.home.cache / "db", fix=0) as advisor:  # type: ignore[attr-defined]
        return advisor.display


@cluster_app.command("serve")
def cluster_serve(
    replicas: int = _REPLICAS,
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Join this Ray cluster ('auto', 'host:6379'); default: start a local one."
    ),
    gpus_per_replica: float = _GPUS,
    cpus_per_replica: float = _CPUS,
    model: str | None = _MODEL,
    strategy: str | None = _STRATEGY,
    host: str = _HOST,
    port: int = _PORT,
    api_key: str | None = _KEY,
    max_tokens: int = _CAP,
    cache_entries: int = _ENTRIES,
    cache_mb: int = _MB,
    lease: float = _LEASE,
    max_batch: int = _BATCH,
    prefill_budget: int = _PREFILL,
    db: str | None = _DB,
    num_cpus: int | None = typer.Option(None, "--num-cpus", help="CPUs of a local Ray cluster (default: enough for the replicas)."),
    simulate_hosts: bool = typer.Option(False, "--simulate-hosts", hidden=True),
) -> None:
    """Serve the HTTP API from N Ray Serve replicas; sessions stay on one replica and survive a lost one."""
    from weprompt_cli.cluster.launch import LocalCluster, free_port, serve_cluster
    from weprompt_cli.cluster.options import ClusterOptions

    key = api_key if api_key is not None else os.environ.get("WEPROMPT_API_KEY") or None
    if port == 0:
        port = free_port(host)
    options, strategy = _options(model, strategy, replicas, gpus_per_replica, cpus_per_replica, host, port, key,
                                 max_tokens, cache_entries, cache_mb, lease, max_batch, prefill_budget,
                                 db=db, simulate_hosts=simulate_hosts)
    assert isinstance(options, ClusterOptions)

    def ready(url: str, warnings: list[str]) -> None:
        err = typer.get_text_stream("stderr")
        for line in warnings:
            err.write(f"weprompt: warning: {line}\n")
        where = f"Ray cluster at {ray_address}" if ray_address else "a local Ray cluster"
        err.write(f"{options.replicas} replicas of {Path(options.spec.model).name} ({strategy}) on {where}\n")
        err.write(f"listening on {url}\n")
        err.flush()

    serve_cluster(options, ray_address=ray_address, local=LocalCluster(num_cpus=num_cpus), on_ready=ready)


@cluster_app.command("config")
def cluster_config(
    replicas: int = _REPLICAS,
    gpus_per_replica: float = _GPUS,
    cpus_per_replica: float = _CPUS,
    model: str | None = _MODEL,
    strategy: str | None = _STRATEGY,
    host: str = typer.Option("0.0.0.0", "--host", help="Address Ray's HTTP proxies listen on."),
    port: int = _PORT,
    max_tokens: int = _CAP,
    cache_entries: int = _ENTRIES,
    cache_mb: int = _MB,
    lease: float = _LEASE,
    max_batch: int = _BATCH,
    prefill_budget: int = _PREFILL,
    db: str | None = _DB,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the YAML here instead of stdout."),
) -> None:
    """Print the `serve deploy` YAML for a Ray cluster you run (the home and model paths as resolved here)."""
    from weprompt_cli.atomic import atomic_write_text
    from weprompt_cli.cluster.options import ClusterOptions

    # A key placeholder passes the bind check; the YAML never holds the key itself.
    options, _ = _options(model, strategy, replicas, gpus_per_replica, cpus_per_replica, host, port, "set-on-nodes",
                          max_tokens, cache_entries, cache_mb, lease, max_batch, prefill_budget, db=db)
    assert isinstance(options, ClusterOptions)
    text = ClusterOptions(**{**options.__dict__, "proxy_location": "EveryNode"}).yaml()
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
        typer.echo(f"wrote {output}", err=True)
