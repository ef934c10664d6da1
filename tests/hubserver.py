"""A local stand-in for the Hugging Face hub: a real HTTP server on 127.0.0.1.

It answers what huggingface_hub's `get_hf_file_metadata` and `http_get` ask (read from
huggingface_hub 2.4's file_download.py and utils/_http.py):

- `HEAD /{repo}/resolve/{revision}/{file}` (and `/spaces/...`, `/datasets/...`): 200 with
  `X-Repo-Commit` (required, else FileMetadataError), `ETag` (required), and for LFS files
  `X-Linked-Etag` (the file's sha256, preferred over ETag) and `X-Linked-Size` (preferred
  over Content-Length); a missing file is 404 with `X-Error-Code: EntryNotFound`.
- `GET` of the same path: the bytes, honouring `Range: bytes=N-` / `bytes=N-M` with 206
  and `Content-Range` (how http_get resumes).

Faults for tests: drop the connection after N bytes (the first time only, or always),
serve bytes that differ from the announced sha256, or announce a size that differs from
what is served. Every request is recorded in `server.requests`.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    data: bytes  # what GET serves
    lfs: bool = True
    announced_sha256: str | None = None  # default: sha256(data)
    announced_size: int | None = None  # default: len(data)
    drop_after: int | None = None  # close the connection after this many body bytes...
    drop_times: int = 1  # ...this many times (then serve normally)
    gets: int = 0

    @property
    def sha256(self) -> str:
        return self.announced_sha256 or hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return self.announced_size if self.announced_size is not None else len(self.data)


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    """The server's state: files by (prefix, repo, revision, filename) and the requests seen."""

    files: dict[tuple[str, str, str, str], HubFile] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add(
        self,
        repo: str,
        filename: str,
        data: bytes,
        *,
        repo_type: str = "model",
        revision: str = "main",
        **faults: object,
    ) -> HubFile:
        prefix = {"model": "", "space": "spaces", "dataset": "datasets"}[repo_type]
        hub_file = HubFile(data, **faults)  # type: ignore[arg-type]
        self.files[(prefix, repo, revision, filename)] = hub_file
        return hub_file

    def lookup(self, path: str) -> HubFile | None:
        parts = unquote(urlparse(path).path).lstrip("/").split("/")
        prefix = ""
        if parts and parts[0] in ("spaces", "datasets"):
            prefix, parts = parts[0], parts[1:]
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        repo = "/".join(parts[:2])
        revision = parts[3]
        filename = "/".join(parts[4:])
        return self.files.get((prefix, repo, revision, filename))

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _headers(self, f: HubFile) -> None:
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Accept-Ranges", "bytes")
                if f.lfs:
                    self.send_header("ETag", f'"{f.sha256}"')
                    self.send_header("X-Linked-Etag", f'"{f.sha256}"')
                    self.send_header("X-Linked-Size", str(f.size))
                else:
                    self.send_header("ETag", f'"{hashlib.sha1(f.data).hexdigest()}"')

            def _missing(self) -> None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Error-Message", "Entry not found")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802
                hub.requests.append(Request("HEAD", self.path, self.headers.get("Range")))
                f = hub.lookup(self.path)
                if f is None:
                    return self._missing()
                self.send_response(200)
                self._headers(f)
                self.send_header("Content-Length", str(f.size))
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                rng = self.headers.get("Range")
                hub.requests.append(Request("GET", self.path, rng))
                f = hub.lookup(self.path)
                if f is None:
                    return self._missing()
                f.gets += 1
                start, end = 0, len(f.data) - 1
                if rng and rng.startswith("bytes="):
                    a, _, b = rng[len("bytes=") :].partition("-")
                    start = int(a) if a else 0
                    end = int(b) if b else end
                body = f.data[start : end + 1]
                self.send_response(206 if rng else 200)
                self._headers(f)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(f.data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if f.drop_after is not None and f.drop_times > 0:
                    f.drop_times -= 1
                    self.wfile.write(body[: f.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def closed_port_endpoint() -> str:
    """An http endpoint on 127.0.0.1 where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


if __name__ == "__main__":  # manual use: serve one file and wait
    import sys
    import time

    hub = FakeHub().start()
    hub.add("BlinkDL/test", "x.pth", b"x" * 1000)
    print(hub.endpoint, file=sys.stderr)
    time.sleep(3600)
