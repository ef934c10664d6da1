"""The `Idempotency-Key` request header: a client names a request so that sending it again (a retry
after a lost connection or a failed-over replica) gets the turn already saved instead of a second one.

The key is saved with the turn it made (`Turn.request_key`, in the session's transcript), so a
retry is recognised by any server or replica on the same session store, after a restart too.
Keys apply to requests that write a stored session (`/generate-response`, and
`/v1/chat/completions` with `session`); a stateless completion stores nothing and ignores it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from weprompt_cli.server.errors import APIError

HEADER = "idempotency-key"
MAX_LENGTH = 255
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")


def request_key(headers: Mapping[str, str]) -> str | None:
    """The request's Idempotency-Key, None when it has none; a malformed one is a 400."""
    value = headers.get(HEADER)
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_LENGTH or not _VISIBLE_ASCII.fullmatch(value):
        raise APIError(400, f"the Idempotency-Key header must be 1 to {MAX_LENGTH} visible ASCII characters "
                            "(no spaces)", param="Idempotency-Key")
    return value


def reused_key_error(key: str, session: str) -> APIError:
    """A key sent again with another message: a client bug, refused rather than guessed at."""
    return APIError(422, f"Idempotency-Key '{key}' was already used in session '{session}' for another message; "
                         "use a new key for a new message", param="Idempotency-Key")
