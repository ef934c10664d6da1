"""Session names and ids: what is allowed, and where a session's folder may be.

A name or id becomes a folder name under `<home>/sessions`, so both are held to
`[A-Za-z0-9._-]{1,64}`, may not start with `.` (hidden, `..`) or `-` (an option to a
shell command), and every path built from them is checked to stay inside the folder.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

from weprompt_cli.errors import UnsafeError, UsageError

MAX_NAME_LEN = 64
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ID_RE = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4,}")
NAME_RULE = "1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with '.' or '-'"


def _show(name: str) -> str:
    """The name as it can be printed on one line (control characters escaped)."""
    shown = name if len(name) <= 40 else name[:40] + "..."
    return ascii(shown)[1:-1] if any(unicodedata.category(c).startswith("C") for c in shown) else shown


def validate_name(name: str, *, what: str = "session name") -> str:
    """`name` unchanged when it is a safe session name or id; else a `UsageError` saying why."""
    if not isinstance(name, str) or name == "":
        raise UsageError(f"invalid {what}: it is empty", hint=f"use {NAME_RULE}")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise UsageError(f"invalid {what} '{_show(name)}': it contains control characters", hint=f"use {NAME_RULE}")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise UsageError(f"invalid {what} '{_show(name)}': it may not be a path", hint=f"use {NAME_RULE}")
    if len(name) > MAX_NAME_LEN:
        raise UsageError(
            f"invalid {what} '{_show(name)}': it has {len(name)} characters, at most {MAX_NAME_LEN} are allowed",
            hint=f"use {NAME_RULE}",
        )
    if name[0] in ".-":
        raise UsageError(f"invalid {what} '{_show(name)}': it may not start with '{name[0]}'", hint=f"use {NAME_RULE}")
    if not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not re.fullmatch(r"[A-Za-z0-9._-]", c)})
        raise UsageError(f"invalid {what} '{_show(name)}': '{''.join(bad)}' not allowed", hint=f"use {NAME_RULE}")
    return name


def looks_like_id(text: str) -> bool:
    """True for a string shaped like a session id (`20261126-041233-3fa9`)."""
    return _ID_RE.fullmatch(text) is not None


def new_session_id(now: datetime | None = None) -> str:
    """A fresh id that sorts by creation time (UTC): `YYYYMMDD-HHMMSS-xxxx`."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def inside(root: Path, *parts: str) -> Path:
    """`root/parts...`, refused with `UnsafeError` unless it resolves inside `root`."""
    base = root.resolve()
    path = base.joinpath(*parts)
    resolved = path.resolve()
    if resolved != base and base not in resolved.parents:
        raise UnsafeError("refusing a path outside the sessions folder", path=path)
    return path
