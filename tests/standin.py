"""A scripted stand-in for a vLLM server, for what a real server can't do on demand.

It is a real HTTP/1.1 server on loopback (stdlib, one thread per connection, keep-alive,
chunked transfer like uvicorn) that speaks vLLM's wire format as written in vLLM's
``chat_completion/serving.py``: a role chunk first (``"delta": {"role": "assistant",
"content": ""}``), one content chunk per token, a finish chunk (empty content for "stop";
for "length" the last token rides on it), a usage chunk with ``"choices": []`` when
``stream_options.include_usage`` is asked, then ``data: [DONE]``. Errors use vLLM's
shapes: ``{"error": {"message", "type", "param", "code"}}`` (flat ``{"object": "error", …}``
for old versions). ``/v1/models`` (with ``max_model_len``), ``/version``, ``/health``,
``/tokenize`` and ``/metrics`` (``vllm:*`` lines that follow what was served) answer too.
As in vLLM 0.26, ``/tokenize`` and ``/v1/chat/completions`` refuse a body that is not sent
as ``Content-Type: application/json`` (400, its validation-error shape), and ``/tokenize``
refuses a ``model`` it does not serve (404); its answer has ``token_strs: null``.

For token-level agreement it also plays a toy model: ``/tokenize`` splits on whitespace
(ids from a per-server vocabulary; ``add_generation_prompt`` / ``continue_final_message``
shape the chat template as vLLM's do, when sent), and ``/v1/completions`` answers
``prompt_logprobs: k`` in vLLM's format (``choices[0].prompt_logprobs``: first entry null,
then ``{"<id>": {"logprob", "rank", "decoded_token"}}`` with the top-k and the prompt's own
token), and streamed chat chunks carry ``logprobs`` when ``logprobs: true`` is asked.
The toy distribution at every position gives the prompt's own token
``p_actual`` and alternatives ids 1000, 1001, … ``(1 - p_actual) / 2, / 4, …``: two
stand-ins with different ``p_actual`` have a KL known by hand. Like vLLM it refuses k over
``max_logprobs`` (20) with a 400.

Use it from tests::

    from standin import Reply, StandIn

    with StandIn(Reply(tokens=["Hel", "lo"])) as s:          # s.url -> http://127.0.0.1:PORT
        ...
    with StandIn([Reply(fault="http500"), Reply()]) as s:      # one reply per request, in
        ...                                                    # order; the last one repeats
    with StandIn(lambda body: Reply(tokens=[body["model"]])):  # or decide per request
        ...
    # 1000 tok/s for 20 s. Like vLLM it stops at the request's max_tokens (finish "length")
    # and refuses prompt + max_tokens over max_model_len: send max_tokens >= 20_000.
    StandIn(Reply(tokens=words, n_tokens=20_000, tokens_per_s=1000), max_model_len=10**6)

``s.requests`` holds every chat request body received (parsed JSON), ``s.headers`` their
headers, ``s.connections`` the TCP connections accepted, ``s.script = …``
changes the script between requests. From a shell (for benchmarks, in its own process):
``python tests/standin.py --port 0 --tokens 5000`` prints the URL, then serves until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: What a reply can do wrong (see Reply.fault).
FAULTS = (
    "http500",  # HTTP 500 before the stream, vLLM's nested JSON error body
    "http500_flat",  # the same with the old flat {"object": "error", ...} body
    "http500_text",  # HTTP 500 with a plain-text body
    "context",  # HTTP 400 "This model's maximum context length is N tokens..."
    "error_event",  # fault_after tokens, then a nested error event, then [DONE]
    "error_event_flat",  # the same with the old flat error object
    "reset",  # fault_after tokens, then a TCP reset (RST)
    "truncate",  # fault_after tokens, then the connection closes mid-body (FIN)
    "no_done",  # fault_after tokens, then the body ends cleanly: no finish, no [DONE]
    "malformed",  # fault_after tokens, then a data line that is not JSON
    "stall",  # fault_after tokens, then silence for stall_s seconds (read timeouts)
    "hangup",  # read the request, close the connection without a response (an idle
    # keep-alive connection closed by the server just as the request arrived)
)


@dataclass
class Reply:
    """One scripted answer to a chat request.

    tokens: the content pieces, one chunk each (cycled up to ``n_tokens`` when given).
    tokens_per_s: pace of the content chunks; None sends everything at once.
    first_token_s: delay before the role chunk and first content chunk (a TTFT: the prefill).
    finish_reason: "stop" (vLLM then counts the EOS token in usage) or "length".
    ping_every_s: send ``: ping`` comment lines this often while pacing (slow drip).
    crlf: end lines with CRLF instead of LF.
    bulk: put all events written at once into one HTTP chunk (as a coalescing proxy or a
        fast server does) instead of one HTTP chunk per event (uvicorn, vLLM's server).
    whole: answer with one non-streamed chat.completion JSON even when asked to stream
        (not vLLM: some other OpenAI-compatible servers do this).
    runaway: ignore max_tokens and stream the tokens, cycled, until the client hangs up.
    bad_utf8_at: put an invalid UTF-8 byte (0xFF) in the middle of this content chunk.
    split_every: write the stream in HTTP chunks of this many bytes, cutting events (and
        multi-byte characters) anywhere.
    usage_delay_s: wait this long between the finish chunk and the usage chunk.
    """

    tokens: Sequence[str] = ("Hello", ",", " world", "!")
    n_tokens: int | None = None
    tokens_per_s: float | None = None
    first_token_s: float = 0.0
    finish_reason: str = "stop"
    fault: str | None = None
    fault_after: int = 2
    status: int | None = None  # overrides the HTTP status of http500* faults
    message: str = "Internal server error"
    stall_s: float = 30.0
    ping_every_s: float | None = None
    crlf: bool = False
    bulk: bool = False
    whole: bool = False
    runaway: bool = False
    bad_utf8_at: int | None = None
    split_every: int | None = None
    usage_delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; one of {FAULTS}")

    def content(self) -> list[str]:
        toks = list(self.tokens)
        if self.n_tokens is None:
            return toks
        return [toks[i % len(toks)] for i in range(self.n_tokens)]


Script = Reply | Sequence[Reply] | Callable[[dict[str, Any]], Reply]


def _dumps(obj: Any) -> bytes:
    """Pydantic's model_dump_json look: no spaces, UTF-8 as is."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def prompt_tokens(body: dict[str, Any]) -> int:
    """The stand-in's tokenizer: whitespace words, plus 4 per message of template."""
    if "messages" in body:
        return sum(4 + len(str(m.get("content", "")).split()) for m in body["messages"])
    return len(str(body.get("prompt", "")).split())


@dataclass
class _Counters:
    prompt_tokens: int = 0
    generation_tokens: int = 0
    running: int = 0
    success: dict[str, int] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    """uvicorn (vLLM) listens with a backlog of 2048; http.server's default of 5 resets
    the connections of a burst of concurrent requests, which no real server does."""

    request_queue_size = 2048


class StandIn:
    """The server. ``with StandIn(script) as s: s.url``; or ``start()`` / ``stop()``."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        model: str = "standin/Qwen2.5-0.5B-Instruct",
        max_model_len: int = 4096,
        version: str = "0.26.0",
        port: int = 0,
        p_actual: float = 0.7,
        max_logprobs: int = 20,
    ) -> None:
        self.script: Script = Reply() if script is None else script
        self.p_actual = p_actual
        self.max_logprobs = max_logprobs
        self.vocab: dict[str, int] = {}  # the toy tokenizer's words -> ids (from 10)
        self.completions: list[dict[str, Any]] = []  # /v1/completions bodies received
        self.model = model
        self.max_model_len = max_model_len
        self.version = version
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # each chat request's headers, in order
        self.connections = 0  # TCP connections accepted (keep-alive reuse shows here)
        self.refused_media: list[str] = []  # POST paths refused for their Content-Type
        self.counters = _Counters()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StandIn:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def next_reply(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
        with self._lock:
            self.headers.append(headers or {})
            self.requests.append(body)
            n = len(self.requests)
        script = self.script
        if isinstance(script, Reply):
            return script
        if callable(script):
            return script(body)
        return script[min(n - 1, len(script) - 1)]

    def word_ids(self, text: str) -> list[int]:
        with self._lock:
            return [self.vocab.setdefault(w, 10 + len(self.vocab)) for w in text.split()]

    def chat_ids(self, body: dict[str, Any]) -> list[int]:
        """The toy chat template: per message [1, role, 3, *words, 2]; the generation
        prompt [1, 5, 3] when ``add_generation_prompt`` is sent true; the last message left
        open (no 2) with ``continue_final_message``."""
        roles = {"system": 4, "user": 6, "assistant": 5}
        msgs = list(body.get("messages") or [])
        ids: list[int] = []
        for i, m in enumerate(msgs):
            ids += [1, roles.get(str(m.get("role")), 7), 3, *self.word_ids(str(m.get("content")))]
            if not (body.get("continue_final_message") and i == len(msgs) - 1):
                ids.append(2)
        if body.get("add_generation_prompt") is True and not body.get("continue_final_message"):
            ids += [1, 5, 3]
        return ids

    def toy_top(self, own: int, k: int) -> list[tuple[int, float]]:
        """(id, logprob) of the k most likely tokens where ``own`` comes next."""
        top = [(own, math.log(self.p_actual))]
        rest = 1.0 - self.p_actual
        top += [(1000 + j, math.log(rest / 2 ** (j + 1))) for j in range(max(0, k - 1))]
        return sorted(top, key=lambda t: -t[1])[: max(1, k)]

    def chat_logprobs(self, token: str, k: int) -> dict[str, Any]:
        """vLLM's chat ``logprobs`` for one streamed token, from the toy distribution:
        ``{"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}``."""

        def entry(tok: str, lp: float) -> dict[str, Any]:
            return {"token": tok, "logprob": lp, "bytes": list(tok.encode())}

        top = [
            entry(token if tid == -1 else f"<alt{tid - 1000}>", lp)
            for tid, lp in self.toy_top(-1, k)
        ]
        own = entry(token, math.log(self.p_actual))
        return {"content": [{**own, "top_logprobs": top if k else []}]}

    def decode(self, tid: int) -> str:
        for w, i in self.vocab.items():
            if i == tid:
                return " " + w
        return f"<{tid}>"

    def metrics_text(self) -> str:
        c, m = self.counters, self.model
        lab = f'model_name="{m}"'
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{lab}}} {float(c.running)}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{lab}}} 0.0",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{{{lab}}} {0.05 * c.running}",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{lab}}} {float(c.prompt_tokens)}",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{lab}}} {float(c.generation_tokens)}",
            "# TYPE vllm:request_success_total counter",
        ]
        for reason, n in sorted(c.success.items()):
            lines.append(f'vllm:request_success_total{{finished_reason="{reason}",{lab}}} {n}.0')
        return "\n".join(lines) + "\n"


def _handler_for(stand: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        server_ref = stand

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_ref: StandIn

    def setup(self) -> None:
        super().setup()
        with self.server_ref._lock:
            self.server_ref.connections += 1
        # Like uvicorn: no Nagle, or the headers/body split waits on a delayed ACK (40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    # ------------------------------------------------------------ plain answers

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error_body(self, message: str, kind: str, code: int, flat: bool = False) -> bytes:
        # vLLM builds these with json.dumps(...) (spaces after separators).
        err = {"message": message, "type": kind, "param": None, "code": code}
        obj = {"object": "error", **err} if flat else {"error": err}
        return json.dumps(obj).encode()

    def do_GET(self) -> None:
        s = self.server_ref
        if self.path == "/v1/models":
            card = {
                "id": s.model,
                "object": "model",
                "created": int(time.time()),
                "owned_by": "vllm",
                "root": s.model,
                "parent": None,
                "max_model_len": s.max_model_len,
                "permission": [],
            }
            self._send(200, _dumps({"object": "list", "data": [card]}))
        elif self.path == "/version":
            self._send(200, _dumps({"version": s.version}))
        elif self.path == "/health":
            self._send(200, b"", "text/plain")
        elif self.path == "/metrics":
            self._send(200, s.metrics_text().encode(), "text/plain; version=0.0.4")
        else:
            self._send(404, _dumps({"detail": "Not Found"}))

    def do_POST(self) -> None:
        s = self.server_ref
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        media = (self.headers.get("content-type") or "").lower().split(";", 1)[0].strip()
        if media != "application/json" and self.path in ("/tokenize", "/v1/chat/completions"):
            # vLLM's validate_json_request dependency, answered by its validation handler.
            msg = "Unsupported Media Type: Only 'application/json' is allowed"
            msg = f"1 validation error:\n  {msg}"
            self._send(400, self._error_body(msg, "Bad Request", 400))
            s.refused_media.append(self.path)
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, self._error_body("invalid JSON body", "BadRequestError", 400))
            return
        if self.path == "/tokenize":
            model = body.get("model")
            if model is not None and model != s.model:
                msg = f"The model `{model}` does not exist."
                self._send(404, self._error_body(msg, "NotFoundError", 404))
                return
            flags = ("add_generation_prompt", "continue_final_message")
            if "messages" in body and any(f in body for f in flags):
                ids = s.chat_ids(body)
            elif "messages" in body:
                ids = list(range(prompt_tokens(body)))
            else:
                ids = s.word_ids(str(body.get("prompt", "")))
            ans = {"count": len(ids), "max_model_len": s.max_model_len, "tokens": ids}
            ans["token_strs"] = None
            self._send(200, _dumps(ans))
        elif self.path == "/v1/completions":
            self._completion(body)
        elif self.path == "/v1/chat/completions":
            self._chat(body)
        else:
            self._send(404, _dumps({"detail": "Not Found"}))

    def _completion(self, body: dict[str, Any]) -> None:
        """A non-streamed text completion; ``prompt_logprobs`` as vLLM returns them."""
        s = self.server_ref
        with s._lock:
            s.completions.append(body)
        prompt = body.get("prompt")
        ids = prompt if isinstance(prompt, list) else s.word_ids(str(prompt or ""))
        k = body.get("prompt_logprobs")
        if isinstance(k, int) and k > s.max_logprobs:
            msg = f"Requested prompt logprobs of {k}, which is greater than max allowed: "
            self._send(400, self._error_body(msg + str(s.max_logprobs), "BadRequestError", 400))
            return
        max_tokens = int(body.get("max_tokens") or 16)
        if len(ids) + max_tokens > s.max_model_len:
            msg = f"This model's maximum context length is {s.max_model_len} tokens."
            self._send(400, self._error_body(msg, "BadRequestError", 400))
            return
        plp: list[dict[str, Any] | None] | None = None
        if isinstance(k, int) and k >= 0:
            plp = [None]
            for own in ids[1:]:
                top = s.toy_top(own, k)
                ranks = {t: r for r, (t, _) in enumerate(s.toy_top(own, k + 1), 1)}
                entry = {
                    str(t): {"logprob": lp, "rank": ranks.get(t, 1), "decoded_token": s.decode(t)}
                    for t, lp in top
                }
                plp.append(entry)
        choice = {"index": 0, "text": " ok", "logprobs": None, "finish_reason": "length"}
        choice |= {"stop_reason": None, "prompt_logprobs": plp}
        usage = {"prompt_tokens": len(ids), "total_tokens": len(ids) + 1, "completion_tokens": 1}
        obj = {"id": "cmpl-standin", "object": "text_completion", "created": int(time.time())}
        obj |= {"model": s.model, "choices": [choice], "usage": usage}
        self._send(200, _dumps(obj))

    # ------------------------------------------------------------ the stream

    def _chat(self, body: dict[str, Any]) -> None:
        s = self.server_ref
        reply = s.next_reply(body, {k.lower(): v for k, v in self.headers.items()})
        n_prompt = prompt_tokens(body)
        fault = reply.fault
        if fault == "hangup":
            self._drop(rst=False)
            return
        if fault in ("http500", "http500_flat"):
            flat = fault.endswith("_flat")
            err = self._error_body(reply.message, "InternalServerError", 500, flat)
            self._send(reply.status or 500, err)
            return
        if fault == "http500_text":
            self._send(reply.status or 500, reply.message.encode(), "text/plain")
            return
        max_tokens = int(body.get("max_tokens") or 16)
        if fault == "context" or n_prompt + max_tokens > s.max_model_len:
            msg = (
                f"This model's maximum context length is {s.max_model_len} tokens. However, "
                f"your request has {n_prompt} input tokens. Please reduce the length of "
                "the input messages."
            )
            self._send(400, self._error_body(msg, "BadRequestError", 400))
            return
        if reply.whole or not body.get("stream"):
            self._whole(reply, body, n_prompt)
            return

        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        with s._lock:
            s.counters.running += 1
            s.counters.prompt_tokens += n_prompt
        try:
            self._stream(reply, body, n_prompt)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away: that is its right
        finally:
            with s._lock:
                s.counters.running -= 1

    def _whole(self, reply: Reply, body: dict[str, Any], n_prompt: int) -> None:
        """A non-streamed chat.completion (what some servers send even for stream=true)."""
        tokens = reply.content()[: int(body.get("max_tokens") or 16)]
        finish = "length" if len(tokens) < len(reply.content()) else reply.finish_reason
        n_out = len(tokens) + (1 if finish == "stop" else 0)
        message = {"role": "assistant", "content": "".join(tokens)}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        usage = {"prompt_tokens": n_prompt, "total_tokens": n_prompt + n_out}
        usage["completion_tokens"] = n_out
        obj = {"id": "chatcmpl-whole", "object": "chat.completion", "created": int(time.time())}
        obj |= {"model": self.server_ref.model, "choices": [choice], "usage": usage}
        self._send(200, _dumps(obj))

    def _stream(self, reply: Reply, body: dict[str, Any], n_prompt: int) -> None:
        s = self.server_ref
        nl = b"\r\n" if reply.crlf else b"\n"
        head = {
            "id": f"chatcmpl-{id(reply):x}{len(s.requests)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": s.model,
        }
        paced = reply.tokens_per_s is not None
        pending: list[bytes] = []

        def frame(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data)

        def event(payload: bytes) -> None:
            pending.append(b"data: " + payload + nl + nl)
            if paced:
                flush()

        def flush() -> None:
            if not pending:
                return
            if reply.split_every:  # the bytes in fixed-size HTTP chunks, cut anywhere
                data = b"".join(pending)
                step = reply.split_every
                self.wfile.write(
                    b"".join(frame(data[i : i + step]) for i in range(0, len(data), step))
                )
                self.wfile.flush()
            elif reply.bulk:  # everything written so far in one HTTP chunk
                self.wfile.write(frame(b"".join(pending)))
            else:  # one HTTP chunk per event, as uvicorn sends vLLM's stream
                self.wfile.write(b"".join(map(frame, pending)))
            pending.clear()

        want_k = int(body.get("top_logprobs") or 0) if body.get("logprobs") else None

        made: dict[str, bytes] = {}  # a content chunk's bytes depend on its text only

        def chunk(delta: dict[str, Any], finish: str | None = None, first: bool = False) -> bytes:
            # The fields vLLM 0.26 sends (tests/data/vllm-0.26): the role chunk carries
            # prompt_token_ids / prompt_text, every later choice token_ids, all null here.
            text = delta.get("content")
            plain = finish is None and not first and len(delta) == 1 and text is not None
            if plain and (done := made.get(text)) is not None:  # (a benchmark's 6,000 a
                return done  # second with top-20 log-probabilities took a core to encode)
            made_now = _chunk(delta, finish, first, text)
            if plain:
                made[text] = made_now
            return made_now

        def _chunk(delta: dict[str, Any], finish: str | None, first: bool, text: Any) -> bytes:
            lps = s.chat_logprobs(text, want_k) if want_k is not None and text else None
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": lps}
            choice["finish_reason"] = finish
            if finish is not None:
                choice["stop_reason"] = None
            if not first:
                choice["token_ids"] = None
            obj = {**head, "choices": [choice]}
            if first:
                obj |= {"prompt_token_ids": None, "prompt_text": None}
            return _dumps(obj)

        if reply.runaway:
            self._runaway(reply, event, chunk, flush)
            return
        tokens = reply.content()
        max_tokens = int(body.get("max_tokens") or 16)
        finish = reply.finish_reason
        if len(tokens) >= max_tokens:
            tokens, finish = tokens[:max_tokens], "length"
        cut = reply.fault_after if reply.fault else None
        # Like vLLM, the role chunk goes out with the first result of the engine (after
        # the prefill), so it waits first_token_s too.
        if reply.first_token_s:
            s._stopping.wait(reply.first_token_s)
        event(chunk({"role": "assistant", "content": ""}, first=True))
        start = time.perf_counter()
        last_ping = time.perf_counter()
        sent = 0
        last_in_finish = finish == "length" and cut is None
        body_tokens = tokens[:-1] if last_in_finish else tokens
        for i, tok in enumerate(body_tokens):
            if cut is not None and i >= cut:
                break
            if s._stopping.is_set():
                return
            if paced or reply.first_token_s:
                due = start + (i / reply.tokens_per_s if paced else 0.0)
                while (now := time.perf_counter()) < due:
                    if reply.ping_every_s and now - last_ping >= reply.ping_every_s:
                        pending.append(b": ping" + nl + nl)
                        flush()
                        last_ping = now
                    wait = due - now
                    if reply.ping_every_s:
                        wait = min(wait, reply.ping_every_s)
                    time.sleep(wait)
            if i == reply.bad_utf8_at:
                raw = chunk({"content": tok})
                at = raw.index(_dumps(tok)) + 1 + len(tok.encode()) // 2
                pending.append(b"data: " + raw[:at] + b"\xff" + raw[at:] + nl + nl)
                if paced:
                    flush()
            else:
                event(chunk({"content": tok}))
            sent += 1
        with s._lock:
            s.counters.generation_tokens += sent
        if cut is not None:
            flush()
            self._fault(reply, nl, frame)
            return
        n_out = len(tokens) + (1 if finish == "stop" else 0)  # vLLM counts the EOS token
        last = tokens[-1] if last_in_finish and tokens else ""
        event(chunk({"content": last}, finish))
        opts = body.get("stream_options") or {}
        if opts.get("include_usage"):
            if reply.usage_delay_s:
                flush()
                s._stopping.wait(reply.usage_delay_s)
            usage = {"prompt_tokens": n_prompt, "total_tokens": n_prompt + n_out}
            usage["completion_tokens"] = n_out
            fingerprint = f"vllm-{s.version}-standin"
            event(
                _dumps({**head, "choices": [], "usage": usage, "system_fingerprint": fingerprint})
            )
        event(b"[DONE]")
        flush()
        self.wfile.write(b"0\r\n\r\n")
        with s._lock:
            s.counters.generation_tokens += n_out - sent
            s.counters.success[finish] = s.counters.success.get(finish, 0) + 1

    def _runaway(
        self,
        reply: Reply,
        event: Callable[[bytes], None],
        chunk: Callable[[dict[str, Any]], bytes],
        flush: Callable[[], None],
    ) -> None:
        """A server that ignores max_tokens: content chunks until the client hangs up."""
        s = self.server_ref
        event(chunk({"role": "assistant", "content": ""}))
        toks = list(reply.tokens)
        i = 0
        while not s._stopping.is_set():
            for _ in range(64):
                event(chunk({"content": toks[i % len(toks)]}))
                i += 1
            flush()  # raises BrokenPipe/ConnectionReset once the client is gone
            with s._lock:
                s.counters.generation_tokens += 64

    def _fault(self, reply: Reply, nl: bytes, frame: Callable[[bytes], bytes]) -> None:
        fault = reply.fault
        if fault in ("error_event", "error_event_flat"):
            flat = fault.endswith("_flat")
            err = self._error_body(reply.message, "InternalServerError", 500, flat)
            self.wfile.write(frame(b"data: " + err + nl + nl) + frame(b"data: [DONE]" + nl + nl))
            self.wfile.write(b"0\r\n\r\n")
        elif fault == "malformed":
            self.wfile.write(frame(b'data: {"choices": [{"delta": {"content": "x' + nl + nl))
            self.wfile.write(frame(b"data: [DONE]" + nl + nl) + b"0\r\n\r\n")
        elif fault == "no_done":
            self.wfile.write(b"0\r\n\r\n")
        elif fault == "truncate":
            self.wfile.write(b'40\r\ndata: {"id":"x","choi')
            self._drop(rst=False)
        elif fault == "reset":
            self._drop(rst=True)
        elif fault == "stall":
            self.server_ref._stopping.wait(reply.stall_s)
            self._drop(rst=False)

    def _drop(self, rst: bool) -> None:
        """End the connection now: with a RST (SO_LINGER 0) or a plain FIN."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            if rst:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
            self.connection.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve from a shell: one reply of --tokens chunks, as fast as possible by default."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tokens", type=int, default=1000, help="content chunks per answer")
    ap.add_argument("--rate", type=float, default=None, help="tokens per second (default: max)")
    ap.add_argument("--model", default="standin/Qwen2.5-0.5B-Instruct")
    ap.add_argument("--bulk", action="store_true", help="all events in one HTTP chunk")
    a = ap.parse_args(argv)
    words = ("The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")
    reply = Reply(tokens=words, n_tokens=a.tokens, tokens_per_s=a.rate, bulk=a.bulk)
    s = StandIn(reply, model=a.model, max_model_len=10**9, port=a.port)
    print(s.url, flush=True)
    try:
        s._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        s._server.server_close()


if __name__ == "__main__":
    sys.exit(main())
