"""Start (or join) a Ray cluster, deploy WePrompt's replicas, wait, and shut down cleanly."""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from weprompt_cli.cluster.options import APP_NAME, PROXY_CALLBACK, PROXY_CALLBACK_ENV, ClusterOptions
from weprompt_cli.errors import UsageError, WePromptError

READY_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class LocalCluster:
    """Resources of a Ray cluster started on this machine (kept small: 2-core laptops run it)."""

    num_cpus: int | None = None  # None: enough for the replicas, at least the machine's cores
    object_store_mb: int = 128
    temp_dir: str | None = None


def free_port(host: str) -> int:
    """A TCP port free on `host` right now (Ray's proxy binds it itself)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host.strip("[]"), 0))
        return int(s.getsockname()[1])


def serve_cluster(
    options: ClusterOptions,
    *,
    ray_address: str | None,
    local: LocalCluster | None = None,
    on_ready: Callable[[str, list[str]], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Deploy `options` and serve until SIGINT/SIGTERM (or `stop` is set); then tear down.

    `ray_address=None` starts a local Ray cluster (dashboard off, small object store) and
    stops it at the end; with an address, WePrompt's application is deployed there and
    deleted at the end, the cluster itself left running. `on_ready(url, warnings)` once
    the replicas answer.
    """
    options.check()
    local = local or LocalCluster()
    own_cluster = ray_address is None
    if own_cluster:
        # Ray's proxy reads this when it starts: it must be in the environment of the
        # cluster's processes, which inherit ours.
        os.environ[PROXY_CALLBACK_ENV] = PROXY_CALLBACK
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise UsageError(
            f"a cluster needs Ray Serve ({exc.name} is missing)", hint="pip install 'weprompt[cluster]'"
        ) from None

    import logging

    from weprompt_cli.cluster.replica import application

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its INFO lines would drown ours

    stop = stop or threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if threading.current_thread() is threading.main_thread():
        for sig in previous:
            signal.signal(sig, lambda *_: stop.set())
    try:
        if own_cluster:
            cpus = local.num_cpus or max(os.cpu_count() or 1, math.ceil(options.replicas * options.cpus_per_replica))
            loopback = options.host in ("127.0.0.1", "localhost", "::1")
            extra: dict[str, Any] = {"_node_ip_address": "127.0.0.1"} if loopback else {}
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=local.object_store_mb * 1024 * 1024,
                namespace="weprompt",
                log_to_driver=False,
                configure_logging=False,
                _temp_dir=local.temp_dir,
                **extra,
            )
        else:
            ray.init(address=ray_address, namespace="weprompt", log_to_driver=False)
        serve.start(http_options={"host": options.host, "port": options.port})
        serve.run(application(options), name=APP_NAME, route_prefix="/", blocking=False)
        url = f"http://{'[' + options.host + ']' if ':' in options.host else options.host}:{options.port}"
        warnings = _wait_ready(url, options, stop)
        if stop.is_set():
            return
        if on_ready is not None:
            on_ready(url, warnings)
        while not stop.wait(0.5):
            pass
    except WePromptError:
        raise
    except Exception as exc:
        raise WePromptError(f"the cluster failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    finally:
        _teardown(own_cluster)
        if threading.current_thread() is threading.main_thread():
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _wait_ready(url: str, options: ClusterOptions, stop: threading.Event) -> list[str]:
    """Wait until the app answers /health through the proxy; warnings about the setup."""
    import urllib.error
    import urllib.request

    from ray import serve

    deadline = time.monotonic() + READY_TIMEOUT_S
    routed = None
    while time.monotonic() < deadline and not stop.is_set():
        status = serve.status().applications.get(APP_NAME)
        if status is not None and str(status.status).endswith("DEPLOY_FAILED"):
            raise WePromptError(f"the replicas failed to start: {status.message.strip().splitlines()[-1] if status.message else ''}")
        if status is not None and str(status.status).endswith("RUNNING"):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
                    routed = response.headers.get("x-weprompt-route")
                break
            except urllib.error.HTTPError as err:
                routed = err.headers.get("x-weprompt-route")
                if err.code != 503:
                    break  # 401 with an API key: it answers
            except OSError:
                pass
        time.sleep(0.3)
    else:
        if not stop.is_set():
            raise WePromptError(f"the replicas did not become ready within {READY_TIMEOUT_S:.0f} s")
    warnings = []
    if routed is None and not stop.is_set():
        warnings.append(
            "Ray's HTTP proxy runs without WePrompt's session routing, so sessions move between replicas "
            f"and a lost replica answers 500: start the cluster with {PROXY_CALLBACK_ENV}={PROXY_CALLBACK}"
        )
    return warnings


def _teardown(own_cluster: bool) -> None:
    try:
        import ray
        from ray import serve
    except ImportError:
        return
    if not ray.is_initialized():
        return
    try:
        if own_cluster:
            serve.shutdown()
        else:
            serve.delete(APP_NAME)
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass
    finally:
        ray.shutdown()
