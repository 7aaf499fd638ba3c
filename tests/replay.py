"""A replay server: serves recordings of a real vLLM (``tests/data/vllm-0.26/``) back, byte for
byte, split at odd byte boundaries.

Each recording (written by ``tests/data/record_vllm.py``) holds one request and the response
exactly as the server sent it: status, headers in order, body. The replay sends the same
status, the same headers (the framing ones recomputed) and the same body bytes, cut into
pieces of 1, 2, 3, 5, 7, 11, … bytes (cycling), each flushed on its own, so every parser
above the socket meets events, lines and UTF-8 characters split anywhere.

    from replay import Replay, load_lane

    rec = load_lane("bf16")                    # name -> recording
    with Replay({"GET /v1/models": rec["models"], "GET /version": rec["version"]}) as r:
        r.url                                  # http://127.0.0.1:PORT
    # a route may also map to a function of the parsed JSON body that returns the recording
    Replay({"POST /v1/chat/completions": lambda body: rec["stream_usage"]})

``r.requests`` keeps every request seen as ``(method, path, headers, body bytes)``.
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "vllm-0.26"
#: The piece sizes, cycled: small primes, so no boundary lines up with the recording's own.
PIECES = (1, 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)
#: Framing headers the replay writes itself.
_FRAMING = {"content-length", "transfer-encoding", "connection", "date", "server"}

Recording = dict[str, Any]
Route = Recording | Callable[[Any], Recording]


def load_lane(lane: str, root: Path = DATA) -> dict[str, Recording]:
    """Every recording of one lane, by name (the file name without ``.json``)."""
    out: dict[str, Recording] = {}
    for f in sorted((root / lane).glob("*.json")):
        rec = json.loads(f.read_text(encoding="utf-8"))
        if "response" in rec:
            out[f.stem] = rec
    return out


def lanes(root: Path = DATA) -> list[str]:
    """The lanes recorded (one folder each)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def body_bytes(rec: Recording) -> bytes:
    """The response body exactly as recorded."""
    resp = rec["response"]
    if "body_b64" in resp:
        return base64.b64decode(resp["body_b64"])
    return str(resp["body"]).encode("utf-8")


def header(rec: Recording, name: str) -> str | None:
    """A response header of the recording (first one of that name), or None."""
    for k, v in rec["response"]["headers"]:
        if k.lower() == name.lower():
            return str(v)
    return None


def split_odd(data: bytes, start: int = 0) -> Iterator[bytes]:
    """``data`` in pieces of the PIECES sizes, cycling (``start`` shifts the cycle)."""
    sizes = itertools.cycle(PIECES[start % len(PIECES) :] + PIECES[: start % len(PIECES)])
    i = 0
    while i < len(data):
        n = next(sizes)
        yield data[i : i + n]
        i += n


class Replay:
    """The server. ``with Replay(routes) as r: r.url``. Routes: ``"METHOD /path"`` keys."""

    def __init__(self, routes: Mapping[str, Route], *, start: int = 0) -> None:
        self.routes = dict(routes)
        self.start_at = start
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Replay:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def pick(self, method: str, path: str, raw: bytes) -> Recording | None:
        route = self.routes.get(f"{method} {path}")
        if route is None or isinstance(route, dict):
            return route
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        return route(body)


def _handler_for(replay: Replay) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        server_ref = replay

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_ref: Replay

    def setup(self) -> None:
        super().setup()
        # Each piece its own TCP segment, as far as the kernel allows.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET", b"")

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        self._serve("POST", raw)

    def _serve(self, method: str, raw: bytes) -> None:
        r = self.server_ref
        with r._lock:
            r.requests.append((method, self.path, dict(self.headers.items()), raw))
        rec = r.pick(method, self.path, raw)
        if rec is None:
            body = b'{"detail":"Not Found"}'
            self.send_response(404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        resp = rec["response"]
        data = body_bytes(rec)
        chunked = (header(rec, "transfer-encoding") or "").lower() == "chunked"
        self.send_response(int(resp["status"]))
        for k, v in resp["headers"]:
            if k.lower() not in _FRAMING:
                self.send_header(k, v)
        if chunked:
            self.send_header("transfer-encoding", "chunked")
        else:
            self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.flush()
        try:
            for piece in split_odd(data, r.start_at):
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    self.wfile.write(piece)
                self.wfile.flush()
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
