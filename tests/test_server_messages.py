"""What an HTTP client reads when a request is refused: the field, what it must be, nothing private.

The app runs in process (FastAPI's TestClient) on a stand-in backend: a refused body never
reaches the model, and the busy-session case takes a real session lock file held here,
as `weprompt resume` holds it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from weprompt_cli.server.app import create_app
from weprompt_cli.server.settings import ServerSettings
from weprompt_cli.store.lock import FileLock

OK = {"user_message": "hi", "user_id": "lin", "discussion_id": "1"}
MESSAGES = [{"role": "user", "content": "hi"}]


class _Plan:
    """What the app queues: `plan(job)` runs on the worker thread."""

    def __init__(self, run: Callable[[Any], Any], session_name: str | None) -> None:
        self.run = run
        self.session_name = session_name

    def __call__(self, job: Any) -> Any:
        return self.run(job)


class _Backend:
    """The app's view of a backend; every turn opens the session's lock file, as the store does."""

    model_id = "tiny"
    system_fingerprint = "fp_test"

    def __init__(self, lock_path: Path) -> None:
        self.lock_path = lock_path
        self.planned = 0

    def stats(self) -> dict[str, Any]:
        return {}

    def _turn(self, job: Any) -> Any:
        FileLock.acquire(self.lock_path, label="session u-lin--1").release()
        raise AssertionError("the test holds this lock: acquire must refuse")

    def plan_discussion(self, body: Any, limits: Any, request_key: str | None = None) -> _Plan:
        self.planned += 1
        return _Plan(self._turn, "u-lin--1")

    def plan_completion(self, body: Any, limits: Any, request_key: str | None = None) -> _Plan:
        self.planned += 1
        return _Plan(self._turn, "u-lin--1")


@pytest.fixture()
def backend(tmp_path: Path) -> _Backend:
    folder = tmp_path / "home" / "sessions" / "0123abcd"
    folder.mkdir(parents=True)
    return _Backend(folder / "lock")


@pytest.fixture()
def client(backend: _Backend) -> Iterator[TestClient]:
    with TestClient(create_app(backend, ServerSettings())) as test_client:  # type: ignore[arg-type]
        yield test_client


def _post_raw(client: TestClient, path: str, text: str) -> Any:
    """POST a JSON text as is (NaN and Infinity are not JSON, but Python's parser and many clients emit them)."""
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


def _error(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("field", ["user_id", "discussion_id"])
@pytest.mark.parametrize("value", [True, 1.5, None, ["x"], {"a": 1}])
def test_an_id_of_the_wrong_type_says_it_must_be_a_string_or_an_integer(
    client: TestClient, backend: _Backend, field: str, value: object
) -> None:
    error = _error(client.post("/generate-response", json={**OK, field: value}))
    assert error["message"] == f"invalid field '{field}': must be a string or an integer"
    assert error["param"] == field and ".str" not in error["message"]
    assert backend.planned == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("path", ["/generate-response", "/v1/chat/completions"])
def test_a_temperature_that_is_not_finite_says_it_must_be_a_finite_number(
    client: TestClient, backend: _Backend, literal: str, path: str
) -> None:
    body = json.dumps(OK if path == "/generate-response" else {"messages": MESSAGES})
    error = _error(_post_raw(client, path, body[:-1] + f', "temperature": {literal}}}'))
    assert "temperature" in error["message"] and "must be a finite number" in error["message"], error
    assert "less than" not in error["message"] and "greater than" not in error["message"]
    assert error["param"] == "temperature" and backend.planned == 0


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("temperature", "0.5", "must be a JSON number, not a string"),
        ("top_p", "0.9", "must be a JSON number, not a string"),
        ("presence_penalty", "1", "must be a JSON number, not a string"),
        ("max_tokens", "8", "must be a JSON integer, not a string"),
        ("seed", "1", "must be a JSON integer, not a string"),
        ("temperature", True, "must be a number"),
        ("max_tokens", 8.0, "must be an integer"),
        ("top_k", False, "must be an integer"),
    ],
)
def test_numbers_must_be_json_numbers(
    client: TestClient, backend: _Backend, field: str, value: object, words: str
) -> None:
    for path, body in (("/generate-response", OK), ("/v1/chat/completions", {"messages": MESSAGES})):
        error = _error(client.post(path, json={**body, field: value}))
        assert error["message"].startswith(f"invalid field '{field}': {words}"), error
        assert error["param"] == field
    assert backend.planned == 0


def test_stream_must_be_a_json_boolean(client: TestClient, backend: _Backend) -> None:
    error = _error(client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": "false"}))
    assert error["message"].startswith("invalid field 'stream': must be true or false"), error
    assert backend.planned == 0


def test_real_numbers_are_still_accepted(client: TestClient, backend: _Backend) -> None:
    # Integers are fine where a float is expected; the backend is reached (and meets the held lock below).
    body = {**OK, "temperature": 0, "top_p": 1, "presence_penalty": 0.5, "max_tokens": 8, "seed": 3}
    with FileLock.acquire(backend.lock_path, label="session u-lin--1"):
        assert client.post("/generate-response", json=body).status_code == 409
    assert backend.planned == 1


def test_a_union_field_reports_the_part_that_is_wrong(client: TestClient) -> None:
    error = _error(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": 5}]}))
    assert error["message"] == "invalid field 'messages.0.content': must be a string or a list"
    parts = [{"type": "image", "text": "x"}]
    error = _error(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]}))
    assert error["message"] == "invalid field 'messages.0.content.0.type': must be 'text'"
    error = _error(client.post("/v1/chat/completions", json={"messages": MESSAGES, "stop": ["ok", 3]}))
    assert error["message"] == "invalid field 'stop.1': must be a string"


@pytest.mark.parametrize("stream", [False, True])
def test_a_session_in_use_says_so_without_the_pid_or_any_path(
    client: TestClient, backend: _Backend, tmp_path: Path, stream: bool
) -> None:
    with FileLock.acquire(backend.lock_path, label="session u-lin--1"):  # as `weprompt resume` holds it
        if stream:
            response = client.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
        else:
            response = client.post("/generate-response", json=OK)
    error = _error(response, 409)
    message = error["message"]
    assert message == "session 'u-lin--1' is in use by another client or process; try again when it is free"
    assert "pid" not in response.text and str(os.getpid()) not in response.text
    assert str(tmp_path) not in response.text and "/" not in message and "lock" not in message
    assert error["type"] == "conflict_error" and response.headers["retry-after"] == "1"


def test_the_terminal_still_names_the_holder() -> None:
    # The pid and the lock file stay in the core error the CLI prints: a terminal user can act on them.
    from weprompt_cli.errors import LockedError
    from weprompt_cli.server.errors import from_weprompt_error

    core = LockedError("session mine is in use by pid 4242", hint="close the other weprompt first",
                       path="/home/u/.local/share/weprompt/sessions/abc/lock")
    api = from_weprompt_error(core)
    assert api.status == 409 and api.message.startswith("session 'mine' is in use by another client or process")
    assert "4242" not in api.message and "/home" not in api.message
    assert "pid 4242" in core.one_line() and "lock" in core.one_line()


def test_no_core_error_shows_http_clients_a_server_path() -> None:
    from weprompt_cli.errors import InvalidFileError, NotFoundError, WePromptError
    from weprompt_cli.server.errors import from_weprompt_error

    for exc in (
        InvalidFileError("invalid persona: field 'temperature' must be a number", path="/srv/home/personas/x.toml"),
        NotFoundError("model file not found", path="/srv/home/models/m.pth"),
        WePromptError("session s was made with another model", path="/srv/home/sessions/s"),
    ):
        err = from_weprompt_error(exc)
        assert "/srv/home" not in err.message and exc.message in err.message
