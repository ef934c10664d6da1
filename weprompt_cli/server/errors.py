"""The JSON error contract: every failure is `{"error": {"message": ..., "type": ...}}`.

Handlers turn `APIError`, `WePromptError`, FastAPI's validation errors, Starlette's
HTTP errors and unexpected exceptions into that shape with a fitting status code, so
a client never gets an HTML page or a bare traceback.
"""

from __future__ import annotations

import logging
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

    def __init__(self, status: int, message: str, *, type: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        self.param = param

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def from_weprompt_error(exc: WePromptError) -> APIError:
    """The HTTP form of a core error: not found -> 404, busy session -> 409, bad name -> 400."""
    message = exc.one_line()
    if exc.hint and not isinstance(exc, (LockedError,)):
        message = f"{message}; {exc.hint}"
    if isinstance(exc, NotFoundError):
        return APIError(404, message)
    if isinstance(exc, (LockedError, ConflictError)):
        return APIError(409, message)
    if isinstance(exc, (UsageError, UnsafeError)):
        return APIError(400, message)
    if isinstance(exc, DiskError):
        return APIError(507, message)
    # Anything else the core refuses (another model's session, a damaged file) is a
    # conflict between the request and what is stored, not a bug of the server.
    return APIError(409, message)


def _field_path(loc: Any) -> str:
    parts = [str(p) for p in (loc or ()) if p not in ("body",)]
    return ".".join(parts)


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One readable line from pydantic's error list, and the field it is about."""
    if not errors:
        return "invalid request body", None
    first = errors[0]
    kind = first.get("type", "")
    where = _field_path(first.get("loc"))
    if kind == "json_invalid":
        detail = (first.get("ctx") or {}).get("error") or first.get("msg", "")
        return f"the body is not valid JSON ({detail})", None
    if kind == "missing":
        return f"missing field '{where}'", where or None
    if where == "" and kind in ("model_attributes_type", "dict_type", "model_type"):
        return "the body must be a JSON object", None
    msg = first.get("msg", "invalid value")
    return (f"invalid field '{where}': {msg}" if where else msg), where or None


def install_handlers(app: FastAPI) -> None:
    """Register the handlers that make every error JSON."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def respond(err: APIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

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
