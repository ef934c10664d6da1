"""The FastAPI application: routes, API key, body limit, and streaming.

Every route that touches the model submits a job to the worker pool (one thread per
request in flight, `--max-batch` of them; one with `--max-batch 1`) and waits for it
while watching the connection: a client that goes away cancels its job (the engine
checks the flag between tokens, so only that stream stops; a job still waiting never
starts). Past `max_queue` waiting jobs a request gets 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from weprompt_cli import __version__
from weprompt_cli.errors import WePromptError
from weprompt_cli.server import sse
from weprompt_cli.server.errors import APIError, from_weprompt_error, install_handlers
from weprompt_cli.server.idempotency import request_key
from weprompt_cli.server.schemas import ChatCompletionRequest, GenerateRequest
from weprompt_cli.server.settings import ServerSettings
from weprompt_cli.server.worker import Job, JobCancelled, QueueFull, WorkerPool

if TYPE_CHECKING:
    from weprompt_cli.server.backend import Answer, Backend


DISCONNECT_POLL_S = 0.1
DRAIN_BYTES = 32 * 1024 * 1024  # a refused body up to this size is read to the end first


OPEN_PATHS = frozenset({"/health"})  # answered without the API key: load balancers probe it


class Guard:
    """ASGI middleware run before any route: the API key (401), then the body size (413).

    Both checks come before the body is parsed, so a request without the key learns
    nothing about what the server would have made of its body. The body is read here
    (it is small by construction) and replayed to the app; later `receive` calls (the
    disconnect notice) go to the server as usual.
    """

    def __init__(self, app: Any, max_bytes: int, api_key: str | None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        if scope.get("path") not in OPEN_PATHS:
            problem = key_problem(headers, self.api_key)
            if problem:
                await _reply(send, APIError(401, problem))
                return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= DRAIN_BYTES:
                await _drain(receive)
            await _reply(send, self._too_large(int(declared)))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.max_bytes:
                if more:
                    await _drain(receive)
                await _reply(send, self._too_large(size))
                return
            chunks.append(chunk)
            if not more:
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int) -> APIError:
        return APIError(413, f"the request body is too large ({size} bytes; at most {self.max_bytes})")


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a refused body (up to DRAIN_BYTES).

    Closing a connection with unread request bytes makes the kernel reset it, and the
    client would see "connection reset" instead of the 413 and its message.
    """
    seen = 0
    while seen <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _reply(send: Send, err: APIError) -> None:
    headers = {"Connection": "close"}
    if err.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    response = JSONResponse(err.body(), status_code=err.status, headers=headers)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def key_problem(headers: dict[str, str], api_key: str | None) -> str | None:
    """Why the request may not pass (missing or wrong key), or None (Bearer token or X-API-Key)."""
    if not api_key:
        return None
    given = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    if given is None and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if given is None:
        return "missing API key: send 'Authorization: Bearer KEY' (or 'X-API-Key: KEY')"
    if not hmac.compare_digest(given.encode("utf-8"), api_key.encode("utf-8")):
        return "wrong API key"
    return None


def create_app(backend: Backend, settings: ServerSettings) -> FastAPI:
    """The API on `backend` (one loaded model, one store)."""
    worker = WorkerPool(workers=max(1, settings.max_batch), max_queue=settings.limits.max_queue)
    limits = settings.limits
    started = int(time.time())

    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(
        title="WePrompt",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,  # type: ignore[arg-type]
    )
    app.state.worker = worker
    app.state.backend = backend
    install_handlers(app)
    app.add_middleware(Guard, max_bytes=limits.max_body_bytes, api_key=settings.api_key)

    def submit(fn: Callable[[Job], Any], label: str) -> Job:
        try:
            return worker.submit(fn, label, key=getattr(fn, "session_name", None))
        except QueueFull as exc:
            wait = worker.retry_after()
            raise APIError(503, f"the server is busy: {exc}; try again in {wait} s", retry_after=wait) from None

    def batching() -> dict[str, Any]:
        report = getattr(backend, "batching", None)
        if callable(report):
            return report()  # type: ignore[no-any-return]
        return {"enabled": False, "summary": f"off ({settings.batching_note})"}

    # ------------------------------------------------------------------ routes
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": backend.model_id,
            "uptime_s": int(time.time()) - started,
            "queue": {
                "waiting": worker.waiting,
                "running": worker.running,
                "busy": worker.busy,
                "workers": worker.workers,
                "max_queue": worker.max_queue,
                "completed": worker.completed,
            },
            "batching": batching(),
            "stats": backend.stats(),
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(backend, started)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != backend.model_id:
            raise APIError(404, f"no model '{model_id}' here; this server has '{backend.model_id}'")
        return _model_card(backend, started)

    @app.post("/generate-response")
    async def generate_response(body: GenerateRequest, request: Request) -> dict[str, Any]:
        body.check(limits)
        key = request_key(request.headers)
        plan = backend.plan_discussion(body, limits, key)  # validates ids and the persona before queueing
        job = submit(plan, f"discussion {plan.session_name}")
        outcome = await _run_watched(job, request)
        return {"generated_text": outcome.text}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        body.check(limits)
        plan = backend.plan_completion(body, limits, request_key(request.headers))
        job = submit(plan, "chat completion")
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            # Wait for the first piece (or the end) before sending the status line, so a
            # failure before the answer starts (a busy session, say) is a real 4xx.
            bunches = job.bunches()
            first = await _first_piece(job, bunches, request)
            return StreamingResponse(
                _stream_chunks(job, bunches, first, request, cid, created, backend.model_id, include_usage),
                media_type=sse.MEDIA_TYPE,
                headers=sse.HEADERS,
            )
        outcome = await _run_watched(job, request)
        response: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": backend.model_id,
            "system_fingerprint": backend.system_fingerprint,
            "choices": [
                {
                    "index": 0,
                    "message": outcome.message(),
                    "logprobs": None,
                    "finish_reason": outcome.finish_reason,
                }
            ],
            "usage": outcome.usage(),
        }
        if outcome.session_name:
            response["session"] = outcome.session_name
        if outcome.checks:
            response["checks"] = outcome.checks  # `--db`: the answer's SQL checked on the server's database
        return response

    return app


def _model_card(backend: Backend, created: int) -> dict[str, Any]:
    return {"id": backend.model_id, "object": "model", "created": created, "owned_by": "weprompt"}


async def _watch(job: Job, request: Request) -> None:
    """Cancel `job` as soon as the client's connection is gone."""
    while not job.finished.is_set():
        if await request.is_disconnected():
            job.cancel()
            return
        await asyncio.sleep(DISCONNECT_POLL_S)


def _raise_for(exc: BaseException) -> None:
    if isinstance(exc, APIError):
        raise exc
    if isinstance(exc, WePromptError):
        raise from_weprompt_error(exc)
    if isinstance(exc, JobCancelled):
        raise APIError(499, f"request cancelled: {exc}")
    raise exc


async def _run_watched(job: Job, request: Request) -> Answer:
    watcher = asyncio.ensure_future(_watch(job, request))
    try:
        return await job.wait()  # type: ignore[no-any-return]
    except Exception as exc:
        _raise_for(exc)
        raise
    finally:
        watcher.cancel()
        job.cancel()  # a no-op once finished; stops the model if this request was cancelled


async def _first_piece(job: Job, bunches: AsyncIterator[list[str]], request: Request) -> list[str] | None:
    """The first text pieces, or None when the job ended without one; errors raise as JSON."""
    watcher = asyncio.ensure_future(_watch(job, request))
    try:
        return await bunches.__anext__()
    except StopAsyncIteration:
        return None
    except Exception as exc:
        job.cancel()
        _raise_for(exc)
        raise
    finally:
        watcher.cancel()


def _delta(piece: str) -> dict[str, Any]:
    """A streamed piece as OpenAI's delta: the thought as `reasoning_content` (as DeepSeek's API does)."""
    from weprompt_cli.chat.turn import Reasoning

    return {"reasoning_content": str(piece)} if isinstance(piece, Reasoning) else {"content": piece}


def _grouped(pieces: list[str]) -> list[str]:
    """Runs of pieces of one kind (answer text, or the thought's `Reasoning`) joined: one delta each."""
    out: list[str] = []
    for piece in pieces:
        if out and type(out[-1]) is type(piece):
            out[-1] = type(piece)(out[-1] + piece)
        else:
            out.append(piece)
    return out


async def _stream_chunks(
    job: Job,
    bunches: AsyncIterator[list[str]],
    first: list[str] | None,
    request: Request,
    cid: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The OpenAI chunk stream: a role chunk, content chunks, a finish chunk, usage, [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        return sse.event(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
        )

    watcher = asyncio.ensure_future(_watch(job, request))
    try:
        yield chunk({"role": "assistant", "content": ""}, None)
        try:
            if first is not None:
                # The pieces that arrived together go out together (one write; one delta per kind).
                yield b"".join(chunk(_delta(piece), None) for piece in _grouped(first))
                async for bunch in bunches:
                    yield b"".join(chunk(_delta(piece), None) for piece in _grouped(bunch))
        except Exception as exc:  # noqa: BLE001 - the status line is gone: report in-band
            try:
                _raise_for(exc)
            except APIError as err:
                yield sse.event(err.body())
            except Exception as other:  # noqa: BLE001
                yield sse.event(APIError(500, f"internal error: {type(other).__name__}: {other}").body())
            yield sse.DONE
            return
        outcome: Answer = job.result
        yield chunk({}, outcome.finish_reason)
        if include_usage:
            yield sse.event(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": outcome.usage(),
                }
            )
        yield sse.DONE
    finally:
        watcher.cancel()
        job.cancel()
