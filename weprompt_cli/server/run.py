"""Running the API: bind the socket first (so `--port 0` gets a real port), then uvicorn."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import Any

from weprompt_cli.errors import DiskError, UsageError


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on (host, port); a port in use is one clear error."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if isinstance(exc, socket.gaierror):
            raise UsageError(f"cannot listen on {host}: unknown host") from None
        raise DiskError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 picks a free one)",
        ) from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(app: Any, sock: socket.socket, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve `app` on `sock` until SIGINT/SIGTERM; `on_ready(url)` once it accepts connections."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
    )

    worker = getattr(getattr(app, "state", None), "worker", None)

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit and on_ready is not None:
                on_ready(url_of(sock))

        def handle_exit(self, sig: int, frame: Any) -> None:
            # Ctrl-C / SIGTERM: stop generating now (a session turn is kept, marked
            # interrupted, as in the REPL) instead of waiting out the graceful timeout.
            if worker is not None:
                worker.cancel_all()
            super().handle_exit(sig, frame)

    _Server(config).run(sockets=[sock])


def announce(url: str) -> None:
    """The line tests and scripts wait for, on stderr."""
    sys.stderr.write(f"listening on {url}\n")
    sys.stderr.flush()
