"""What `weprompt serve` configures: where to listen, the API key, limits, cache bounds, batching."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from weprompt_cli.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for; a request over a bound gets a 4xx."""

    max_body_bytes: int = 1024 * 1024  # 413 above this
    max_message_chars: int = 32_000  # one message's text
    max_total_chars: int = 256_000  # all messages of one request together
    max_messages: int = 1_000
    max_tokens_cap: int = 2048  # a request's max_tokens is clamped to this
    default_max_tokens: int = 512  # when neither the request nor the persona/config says
    max_queue: int = 64  # waiting jobs; beyond this a request gets 503 with Retry-After


@dataclass(frozen=True)
class CacheBounds:
    """The prefix state cache holds at most this many entries and this many bytes of states."""

    max_entries: int = 64
    max_bytes: int = 256 * 1024 * 1024

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0


DEFAULT_MAX_BATCH = 16
SERIAL_NOTE = "--max-batch 1: one request at a time"


@dataclass(frozen=True)
class ServerSettings:
    """Everything the app needs besides the model: address, key, limits, cache bounds, batching.

    `max_batch` is how many requests run at once (worker threads; the batched engine's
    streams); 1 is the serialized worker. `batching_note` says why batching is off, if it is.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)
    cache: CacheBounds = field(default_factory=CacheBounds)
    max_batch: int = 1
    batching_note: str = SERIAL_NOTE


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to anything


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond loopback without an API key (`UsageError`, one line)."""
    if not is_loopback(host) and not api_key:
        raise UsageError(
            f"refusing to listen on {host} without an API key: anyone on the network could use the model",
            hint="add --api-key KEY (or set WEPROMPT_API_KEY), or keep the default --host 127.0.0.1",
        )
