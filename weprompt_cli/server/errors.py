"""The JSON error contract: every failure is `{"error": {"message": ..., "type": ...}}`.

Handlers turn `APIError`, `WePromptError`, FastAPI's validation errors, Starlette's
HTTP errors and unexpected exceptions into that shape with a fitting status code, so
a client never gets an HTML page or a bare traceback.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from weprompt_cli.errors import (
    ConflictError,
    DiskError,
    LockedError,
    NotFoundError,
    UnsafeError,
    UsageError,
    WePromptError,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("weprompt.server")

# OpenAI's error types, by status.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    499: "cancelled",
    500: "server_error",
    503: "server_busy",
    507: "server_error",
}


class APIError(Exception):
    """An error the API reports as JSON with `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        self.param = param
        self.retry_after = retry_after  # seconds, sent as Retry-After: the request may succeed later

    def headers(self) -> dict[str, str] | None:
        """The response headers this error needs (WWW-Authenticate on 401, Retry-After when set)."""
        headers: dict[str, str] = {}
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers or None

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def from_weprompt_error(exc: WePromptError) -> APIError:
    """The HTTP form of a core error: not found -> 404, busy session -> 409, bad name -> 400."""
    if isinstance(exc, LockedError):
        # The core's message names the holder's pid and the lock file: a terminal user can
        # act on those, an HTTP client must not learn them (nor the server's paths).
        return APIError(409, _in_use_message(exc.message), retry_after=1)
    message = exc.message  # never `one_line()`: the path it adds is the server's, not the client's business
    if exc.hint:
        message = f"{message}; {exc.hint}"
    if isinstance(exc, NotFoundError):
        return APIError(404, message)
    if isinstance(exc, ConflictError):
        return APIError(409, message)
    if isinstance(exc, (UsageError, UnsafeError)):
        return APIError(400, message)
    if isinstance(exc, DiskError):
        return APIError(507, message)
    # Anything else the core refuses (another model's session, a damaged file) is a
    # conflict between the request and what is stored, not a bug of the server.
    return APIError(409, message)


def _in_use_message(core_message: str) -> str:
    """The 409 message for a busy session: what is busy, never who holds it (pid) or where (paths)."""
    named = re.match(r"session '?([A-Za-z0-9._-]+)'? is in use by ", core_message)
    what = f"session '{named.group(1)}'" if named else "this session"
    return f"{what} is in use by another client or process; try again when it is free"


def _field_path(loc: Any) -> str:
    parts = [str(p) for p in (loc or ()) if p not in ("body",)]
    return ".".join(parts)


# A union member's tag in pydantic's error location ('str', 'int', 'list[TextPart]'...),
# as opposed to a field name (lower case) or a list index (an int).
_UNION_TAG = re.compile(r"(str|int|float|bool|none|list\[.*\]|dict\[.*\]|[A-Z]\w*|[a-z]+-[a-z-]+\[.*\])")

_TYPE_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false", "none": "null"}


def _type_words(tag: str) -> str:
    if tag in _TYPE_WORDS:
        return _TYPE_WORDS[tag]
    if tag.startswith("list["):
        return "a list"
    return "an object"


def _reason(error: dict[str, Any]) -> str:
    """What the value must be, in words a client can act on ("must be a finite number")."""
    kind = error.get("type", "")
    given = error.get("input")
    if kind == "finite_number":
        return "must be a finite number (not NaN or Infinity)"
    if kind in ("float_type", "int_type", "bool_type", "string_type") and isinstance(given, str):
        wanted = {"float_type": "a JSON number", "int_type": "a JSON integer", "bool_type": "true or false"}
        if kind in wanted:
            return f"must be {wanted[kind]}, not a string ({given[:20]!r})"
    if kind == "float_type":
        return "must be a number"
    if kind == "int_type":
        return "must be an integer"
    if kind == "bool_type":
        return "must be true or false"
    if kind == "string_type":
        return "must be a string"
    if kind == "list_type":
        return "must be a list"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be an object"
    msg = str(error.get("msg", "invalid value"))
    if msg.startswith("Input should be "):
        return "must be " + msg[len("Input should be ") :]
    return msg


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One readable line from pydantic's error list, and the field it is about."""
    if not errors:
        return "invalid request body", None
    first = errors[0]
    kind = first.get("type", "")
    loc = [p for p in (first.get("loc") or ()) if p != "body"]
    if kind == "json_invalid":
        detail = (first.get("ctx") or {}).get("error") or first.get("msg", "")
        return f"the body is not valid JSON ({detail})", None
    tag_at = next((i for i, p in enumerate(loc) if isinstance(p, str) and _UNION_TAG.fullmatch(p)), None)
    if tag_at is not None:
        # A field of several types: pydantic reports one error per type it tried.
        parent = loc[:tag_at]
        members = [
            (e, [p for p in e.get("loc") or () if p != "body"])
            for e in errors
        ]
        members = [(e, l) for e, l in members if l[:tag_at] == parent and len(l) > tag_at]
        deeper = [(e, l) for e, l in members if len(l) > tag_at + 1]
        where = _field_path(parent)
        if deeper:
            # The value had the right type and something inside it is wrong: report that.
            error, member_loc = max(deeper, key=lambda pair: len(pair[1]))
            inner = _field_path(parent + member_loc[tag_at + 1 :])
            return f"invalid field '{inner}': {_reason(error)}", inner or None
        tags = list(dict.fromkeys(str(l[tag_at]) for _, l in members))
        words = " or ".join(dict.fromkeys(_type_words(t) for t in tags))
        return f"invalid field '{where}': must be {words}", where or None
    where = _field_path(loc)
    if kind == "missing":
        return f"missing field '{where}'", where or None
    if where == "" and kind in ("model_attributes_type", "dict_type", "model_type"):
        return "the body must be a JSON object", None
    return (f"invalid field '{where}': {_reason(first)}" if where else str(first.get("msg", "invalid value"))), (
        where or None
    )


def install_handlers(app: FastAPI) -> None:
    """Register the handlers that make every error JSON."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def respond(err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers())

    @app.exception_handler(APIError)
    async def _api(request: Request, exc: APIError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(WePromptError)
    async def _core(request: Request, exc: WePromptError) -> JSONResponse:
        return respond(from_weprompt_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(list(exc.errors()))
        return respond(APIError(400, message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return respond(APIError(exc.status_code, message))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return respond(APIError(500, f"internal error: {type(exc).__name__}: {exc}"))
