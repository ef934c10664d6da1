"""WePrompt 1.0's ids: validation, and the one session each (user_id, discussion_id) maps to.

The name is deterministic, so a discussion finds its session again after a restart, and
readable, so `weprompt list-sessions` and `weprompt resume u-alice--42` work as is:

    u-{user_id}--{discussion_id}

`user_id` may not contain `--`, so the first `--` always splits a name back into its two
ids and no two pairs share a name. A pair too long for a session name (64 characters)
becomes `h-{user_id[:20]}--{discussion_id[:20]}-{sha256 of the pair, 12 hex}`; the `h-`
prefix keeps those apart from the readable ones.
"""

from __future__ import annotations

import hashlib
import re

from weprompt_cli.errors import UsageError

MAX_ID_LEN = 128
_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
ID_RULE = f"1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 . _ -, not starting with '.' or '-'"
_MAX_NAME = 64


def validate_id(value: object, field: str) -> str:
    """`value` as a string when it is a safe id (a string or an integer); `UsageError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UsageError(f"invalid {field}: it must be a string or an integer", hint=f"use {ID_RULE}")
    text = str(value)
    if text == "":
        raise UsageError(f"invalid {field}: it is empty", hint=f"use {ID_RULE}")
    if len(text) > MAX_ID_LEN:
        raise UsageError(f"invalid {field}: longer than {MAX_ID_LEN} characters", hint=f"use {ID_RULE}")
    if "/" in text or "\\" in text or ".." in text:
        raise UsageError(f"invalid {field} {text[:40]!r}: it may not be or contain a path", hint=f"use {ID_RULE}")
    if not _ID_RE.fullmatch(text):
        raise UsageError(f"invalid {field} {text[:40]!r}", hint=f"use {ID_RULE}")
    if field == "user_id" and "--" in text:
        raise UsageError(f"invalid user_id {text[:40]!r}: it may not contain '--'", hint=f"use {ID_RULE}")
    return text


def discussion_session_name(user_id: object, discussion_id: object) -> str:
    """The session name of one WePrompt 1.0 discussion (validated ids -> a valid name)."""
    from weprompt_cli.store.names import validate_name

    user = validate_id(user_id, "user_id")
    discussion = validate_id(discussion_id, "discussion_id")
    name = f"u-{user}--{discussion}"
    if len(name) > _MAX_NAME:
        digest = hashlib.sha256(f"{user}\0{discussion}".encode()).hexdigest()[:12]
        name = f"h-{user[:20]}--{discussion[:20]}-{digest}"
    return validate_name(name)
