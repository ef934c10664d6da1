"""Server-Sent Events framing for streamed completions (one JSON object per event)."""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
# Proxies (nginx) buffer event streams unless told not to.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(data: Any) -> bytes:
    """One `data:` event. JSON escapes newlines, so an event never spans lines."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


def parse(stream: bytes) -> list[Any]:
    """The JSON payloads of a whole event stream, up to `[DONE]` (tests and the bench use it)."""
    out: list[Any] = []
    for block in stream.decode("utf-8").split("\n\n"):
        for line in block.splitlines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return out
            out.append(json.loads(payload))
    return out
