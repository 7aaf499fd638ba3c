"""The lane client: one per endpoint, streams chat answers and measures them.

Each endpoint keeps its connections open (``httpx.AsyncClient`` pools, split into shards
of 8 connections under concurrency) so every request after the first reuses one (TTFT then
measures the server, not a TCP handshake). Timing is
taken with ``time.perf_counter_ns()`` where each network chunk arrives, with the same
definitions as vLLM's benchmark, so numbers compare with ``vllm bench serve``.

Every failure is returned as a :class:`LaneError` on the :class:`LaneResult`, never
raised: a comparison must keep going when one server misbehaves. The one exception is
task cancellation, which closes the response and propagates as :class:`LaneStopped`: a
``CancelledError`` that carries the answer as far as it came (a person who presses Esc keeps
what was already on screen).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import itertools
import json
import os
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, cast
from urllib.parse import urlsplit

import httpcore
import httpx
import orjson

from quantlab.agreement.logprobs import RawLogprobs, split_logprobs
from quantlab.backends import Probe, detect, for_endpoint
from quantlab.limits import ClientLimits, token_cap
from quantlab.records import Endpoint, LaneError, LaneResult, SamplingParams
from quantlab.sse import DONE, SSEParser

#: Markers of a request that does not fit the model's context (vLLM, llama.cpp, OpenAI).
_CONTEXT_TYPES = ("exceed_context_size_error", "context_length_exceeded")
_CONTEXT_PHRASES = (
    "maximum context length",
    "exceeds the available context size",
    "cannot be greater than max_model_len",  # vLLM 0.26: max_tokens alone over the context
)

#: The most bytes one read of an HTTP/1.1 body takes (httpcore's default: 64 KiB). asyncio's
#: transport already receives up to 256 KiB per ``recv``, which anyio then cuts into 64 KiB
#: reads, copying the rest each time, and each read is a trip through h11, httpcore and the
#: event loop. Where the bytes come faster than they are read (top-20 log-probabilities
#: make a token ~2 KB), taking what has arrived in one read costs httpx a third less CPU
#: per byte for events packed into large HTTP chunks and a tenth less for one event per
#: chunk (benchmarks/logprobs_cost.py). A read returns what is there and never waits to
#: fill up, so a token-by-token stream reads as before. Process-wide: httpcore has no
#: per-client setting.
READ_BYTES = 256 * 1024
if getattr(httpcore.AsyncHTTP11Connection, "READ_NUM_BYTES", READ_BYTES) < READ_BYTES:
    httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = READ_BYTES

Messages = list[dict[str, str]]

#: The message of a lane stopped before its answer ended (``LaneError`` kind "cancelled").
STOPPED_MESSAGE = "stopped before the answer ended"


class LaneStopped(asyncio.CancelledError):
    """The task streaming a lane was cancelled; ``result`` holds the text that had come,
    its timing so far and ``error`` kind "cancelled". Being a ``CancelledError``, it cancels
    the task as a plain one does (``asyncio.timeout`` and task groups see no difference)."""

    def __init__(self, result: LaneResult) -> None:
        super().__init__(f"{result.lane}: {STOPPED_MESSAGE}")
        self.result = result


_TEXT_LIMIT = 500  # characters of a non-JSON error body kept in a message
#: Connections per pool shard of a LaneClient (see LaneClient.__init__).
SHARD_CONNECTIONS = 8


def server_message(body: bytes) -> tuple[str, str | None]:
    """The human message and error type in an error body, whatever its shape.

    Nested ``{"error": {"message", "type"}}`` (vLLM >= 0.10.1, llama.cpp, OpenAI), flat
    ``{"object": "error", "message", "type"}`` (older vLLM), ``{"detail": …}`` (FastAPI),
    else the body's text.
    """
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:_TEXT_LIMIT] or "(empty body)"), None
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict):
            msg = err.get("message")
            kind = err.get("type") or err.get("code")
            return str(msg if msg is not None else err), None if kind is None else str(kind)
        if isinstance(err, str):
            return err, None if obj.get("type") is None else str(obj.get("type"))
        if "message" in obj:
            kind = obj.get("type")
            return str(obj["message"]), None if kind is None else str(kind)
        if "detail" in obj:
            return str(obj["detail"]), None
    return body.decode("utf-8", "replace")[:_TEXT_LIMIT], None


def is_context_error(message: str, kind: str | None) -> bool:
    """True when the server says the request does not fit the model's context."""
    if kind in _CONTEXT_TYPES:
        return True
    low = message.lower()
    return any(p in low for p in _CONTEXT_PHRASES)


def _error_from_object(obj: dict[str, Any]) -> LaneError | None:
    """A LaneError for an error object inside the stream (nested or flat shape)."""
    err = obj.get("error")
    if isinstance(err, dict):
        msg, kind, code = str(err.get("message", err)), err.get("type"), err.get("code")
    elif isinstance(err, str):
        msg, kind, code = err, obj.get("type"), obj.get("code")
    elif obj.get("object") == "error":
        msg, kind, code = str(obj.get("message", obj)), obj.get("type"), obj.get("code")
    else:
        return None
    status = code if isinstance(code, int) else None
    if is_context_error(msg, None if kind is None else str(kind)):
        return LaneError("context", msg, status)
    return LaneError("stream", msg, status)


def _describe(exc: BaseException) -> str:
    """A one-line reason from an httpx/OS error chain (httpx messages are often empty)."""
    parts: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError):
            return "connection refused (is the server running?)"
        if isinstance(cur, socket.gaierror):
            return f"host name not found ({cur})"
        if isinstance(cur, OSError) and cur.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"host unreachable ({cur})"
        text = str(cur).strip()
        if text and text not in parts:
            parts.append(text)
        cur = cur.__cause__ or cur.__context__
    return "; ".join(parts) or type(exc).__name__


class _NoAnswer(Exception):
    """The server closed the connection before any response, on two tries."""


class _Stream:
    """Per-request state for the rare events; the hot loop keeps its own locals.

    ``arrivals`` holds the arrival time of every chunk with choices (vLLM's benchmark
    times those); ``parts`` the non-empty content pieces, one per content chunk.
    """

    __slots__ = (
        "arrivals",
        "bad_utf8",
        "cut_off",
        "done",
        "error",
        "finish",
        "first_content",
        "last_data",
        "logprobs",
        "model",
        "notes",
        "on_text",
        "parts",
        "timings",
        "token_cap",
        "usage",
        "want_logprobs",
    )

    def __init__(
        self,
        on_text: Callable[[str], None] | None,
        token_cap: int | None,
        logprobs: list[Any] | None = None,
    ) -> None:
        self.arrivals: list[int] = []
        self.parts: list[str] = []
        self.on_text = on_text
        self.done = False
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.timings: dict[str, Any] | None = None
        self.error: LaneError | None = None
        self.model: str | None = None
        self.first_content: int | None = None
        # The last data line other than [DONE] (vLLM's benchmark ends its latency there).
        self.last_data: int | None = None
        self.cut_off: str | None = None
        self.token_cap = token_cap
        self.notes: list[str] = []
        self.bad_utf8 = 0  # data lines that held invalid UTF-8 (decoded with U+FFFD)
        # choices[0].logprobs of each chunk that has them: parsed objects, or the raw JSON
        # bytes the fast path cut out unparsed (parsed later, only as far as needed)
        self.logprobs: list[Any] = [] if logprobs is None else logprobs
        self.want_logprobs = False

    def add_text(self, text: str, now: int) -> None:
        if self.first_content is None:
            self.first_content = now
        self.parts.append(text)
        if self.on_text is not None:
            self.on_text(text)

    def whole_answer(self, body: bytes, now: int) -> None:
        """A non-streamed chat completion: the whole text arrives as one chunk."""
        obj = self._loads(body)
        if obj is None:
            self.error = LaneError("protocol", f"answer is neither SSE nor JSON: {body[:120]!r}")
            return
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            self.error = _error_from_object(obj) if isinstance(obj, dict) else None
            if self.error is None:
                self.error = LaneError("protocol", f"no choices in the answer: {body[:120]!r}")
            return
        self.arrivals.append(now)
        message = choices[0].get("message") or {}
        text = message.get("content") if isinstance(message, dict) else None
        if isinstance(text, str) and text:
            self.add_text(text, now)
        if choices[0].get("finish_reason") is not None:
            self.finish = str(choices[0]["finish_reason"])
        if choices[0].get("logprobs"):
            self.logprobs.append(choices[0]["logprobs"])
        self.done = True
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        if isinstance(obj.get("timings"), dict):
            self.timings = obj["timings"]
        if isinstance(obj.get("model"), str):
            self.model = obj["model"]

    def _loads(self, payload: bytes) -> Any:
        """JSON of a payload, or None. Invalid UTF-8 is decoded with U+FFFD (and counted)
        rather than failing the lane: one bad byte must not drop the rest of an answer."""
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
        fixed: str | None = None
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            fixed = payload.decode("utf-8", "replace")
        try:
            if fixed is not None:
                obj = orjson.loads(fixed)
                self.bad_utf8 += 1
                return obj
            # orjson refuses lone surrogate escapes ("\ud800"); the stdlib takes them and
            # the session store cleans them at save time.
            obj = json.loads(payload)
            self.bad_utf8 += 1
            return obj
        except (ValueError, RecursionError):
            return None

    def event(self, payload: bytes, now: int) -> bool:
        """Apply any event the fast path did not take. Returns True to stop reading."""
        obj = self._loads(payload)
        if obj is None:
            if payload.strip() == DONE:
                self.done = True
                return False
            shown = payload[:120].decode("utf-8", "replace")
            self.error = LaneError("protocol", f"malformed JSON in a data line: {shown!r}")
            return True
        if not isinstance(obj, dict):
            self.error = LaneError("protocol", f"data line is not a JSON object: {obj!r:.120}")
            return True
        self.last_data = now
        choices = obj.get("choices")
        if not isinstance(choices, list):
            err = _error_from_object(obj)
            if err is not None:
                self.error = err
                return True
            if choices is not None:
                self.error = LaneError("protocol", f"'choices' is not a list: {choices!r:.120}")
                return True
        if self.model is None and isinstance(obj.get("model"), str):
            self.model = obj["model"]
        if choices and self._choice(choices[0], now):
            return True
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            tokens = usage.get("completion_tokens")
            cap = self.token_cap
            if cap is not None and isinstance(tokens, int) and tokens > cap and not self.finish:
                self.cut(f"usage says {tokens} output tokens, over the cap of {cap}")
                return True
        timings = obj.get("timings")
        if isinstance(timings, dict):
            self.timings = timings
        return False

    def _choice(self, choice: Any, now: int) -> bool:
        """Apply a chunk's first choice (text, logprobs, finish). True to stop reading."""
        if not isinstance(choice, dict):
            self.error = LaneError("protocol", f"choice is not an object: {choice!r:.120}")
            return True
        self.arrivals.append(now)
        delta = choice.get("delta") or {}
        text = delta.get("content") if isinstance(delta, dict) else None
        if text and isinstance(text, str):
            self.add_text(text, now)
            if self.token_cap is not None and len(self.parts) > self.token_cap:
                self.cut(self.chunk_cap_reason())
                return True
        if choice.get("logprobs"):
            self.logprobs.append(choice["logprobs"])
        if choice.get("finish_reason") is not None:
            self.finish = str(choice["finish_reason"])
        return False

    def chunk_cap_reason(self) -> str:
        cap = self.token_cap or 0
        return (
            f"over {cap} content chunks for max_tokens {(cap - 64) // 2} "
            "(the server ignores max_tokens?)"
        )

    def cut(self, why: str) -> None:
        """Stop a runaway answer: keep what came, say why (the lane is not failed)."""
        self.cut_off = f"cut off by quantlab: {why}"


class LaneClient:
    """One endpoint's connection: discovery, streamed chat with timing, token counting.

    ``limits`` (:class:`~quantlab.limits.ClientLimits`): connect, stall (no bytes for N s)
    and total timeouts, and the byte cap of one answer. The older keyword arguments
    ``read_timeout`` (the stall timeout), ``connect_timeout`` and ``total_timeout``
    override the matching limit when given.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        limits: ClientLimits | None = None,
        read_timeout: float | None = None,
        connect_timeout: float | None = None,
        total_timeout: float | None = None,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``transport``: what every pool sends through instead of the network (a test's
        ``httpx.MockTransport``, a recorder)."""
        limits = limits or ClientLimits()
        changes: dict[str, Any] = {}
        if read_timeout is not None:
            changes["stall_s"] = read_timeout
        if connect_timeout is not None:
            changes["connect_s"] = connect_timeout
        if total_timeout is not None:
            changes["total_s"] = total_timeout
        self.limits = replace(limits, **changes) if changes else limits
        self.endpoint = endpoint
        self.read_timeout = self.limits.stall_s
        self.connect_timeout = self.limits.connect_s
        self.total_timeout = self.limits.total_s
        base = endpoint.base_url.rstrip("/")
        # An HTTP(S)_PROXY meant for the internet must not capture a server on this
        # machine (httpx does not exempt loopback by itself).
        trust_env = not _is_loopback(urlsplit(base).hostname)
        self._base = base
        self._trust_env = trust_env
        self._transport = transport
        # Streams are spread over several small connection pools ("shards") instead of
        # one pool of max_connections: httpcore's pool re-scans every connection (and
        # polls each idle socket) on every request start and end, quadratically in the
        # idle ones, which took a third of the client's CPU at 64 in flight on real
        # vLLM (docs/vllm-bench/README.md). Shards are made when concurrency needs them.
        shards = max(1, -(-max_connections // SHARD_CONNECTIONS))
        self._per_shard = -(-max_connections // shards)
        self._http = self._new_pool()
        self._shards: list[httpx.AsyncClient | None] = [self._http] + [None] * (shards - 1)
        self._busy = [0] * shards

    def _new_pool(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._base,
            verify=tls_verify(self._base, trust_env=self._trust_env),
            # read/write: the stall timeout (httpx times each socket read); a wait for a
            # pooled connection is bounded by the total timeout instead.
            timeout=httpx.Timeout(
                self.limits.stall_s, connect=self.limits.connect_s, pool=self.limits.total_s
            ),
            limits=httpx.Limits(
                max_connections=self._per_shard, max_keepalive_connections=self._per_shard
            ),
            trust_env=self._trust_env,
            transport=self._transport,
        )

    def _take_shard(self) -> tuple[int, httpx.AsyncClient]:
        """The first shard with a free connection (so one stream at a time keeps reusing
        one kept-alive connection), else the least busy one; made on first use."""
        busy = self._busy
        i = next((j for j, n in enumerate(busy) if n < self._per_shard), None)
        if i is None:
            i = busy.index(min(busy))
        http = self._shards[i]
        if http is None:
            http = self._shards[i] = self._new_pool()
        busy[i] += 1
        return i, http

    @property
    def name(self) -> str:
        return self.endpoint.name

    def _auth(self) -> dict[str, str]:
        """The Authorization header, read from the environment at each request (never kept)."""
        env = self.endpoint.api_key_env
        key = os.environ.get(env) if env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _send(
        self, request: httpx.Request, *, stream: bool, http: httpx.AsyncClient | None = None
    ) -> httpx.Response:
        """Send, and once more when the server closed the connection without answering.

        That is a kept-alive connection whose server-side idle timeout fired just as the
        request went out (llama.cpp's HTTP server closes idle connections after 5 s): the
        server never answered, so nothing runs twice. A second hang-up is reported.
        """
        http = http or self._http
        try:
            return await http.send(request, stream=stream)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            pass
        try:
            return await http.send(request, stream=stream)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise _NoAnswer(_describe(exc)) from exc

    async def aclose(self) -> None:
        for http in self._shards:
            if http is not None:
                await http.aclose()

    async def __aenter__(self) -> LaneClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---------------------------------------------------------------- discovery

    async def _get_json(self, path: str, timeout: float) -> tuple[int | None, Any, str | None]:
        """(status, parsed JSON or None, reason when it failed). Never raises."""
        try:
            req = self._http.build_request("GET", path, headers=self._auth(), timeout=timeout)
            resp = await self._send(req, stream=False)
        except httpx.TimeoutException as exc:
            return None, None, f"timed out ({_describe(exc)})"
        except (httpx.HTTPError, _NoAnswer) as exc:
            return None, None, _describe(exc)
        if resp.status_code >= 400:
            msg, _ = server_message(resp.content)
            return resp.status_code, None, f"HTTP {resp.status_code}: {msg}"
        try:
            return resp.status_code, orjson.loads(resp.content), None
        except orjson.JSONDecodeError:
            return resp.status_code, None, "answer is not JSON"

    async def discover(self, timeout: float = 5.0) -> Endpoint:
        """Ask the server what it is and fill the endpoint's discovered facts.

        Reads ``/v1/models`` (model id; vLLM's ``max_model_len``; llama.cpp's ``meta``),
        vLLM's ``/version`` and llama.cpp's ``/props``. A server that is down or refuses
        leaves ``status`` "down"/"error" and the reason in ``status_detail``.
        """
        ep = self.endpoint
        (m_st, models, m_err), (_, version, _), (_, props, _) = await asyncio.gather(
            self._get_json("/v1/models", timeout),
            self._get_json("/version", timeout),
            self._get_json("/props", timeout),
        )
        notes: list[str] = []
        if m_st is None and models is None and version is None and props is None:
            ep.status, ep.status_detail = "down", f"{ep.base_url}: {m_err}"
            return ep
        if m_err:
            ep.status, ep.status_detail = "error", f"/v1/models: {m_err}"
        else:
            ep.status, ep.status_detail = "ok", None

        data = models.get("data") if isinstance(models, dict) else None
        cards = [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []
        ids = [str(c.get("id")) for c in cards if c.get("id") is not None]
        if ep.model is None and ids:
            ep.model = ids[0]
        elif ep.model is not None and ids and ep.model not in ids:
            notes.append(f"model {ep.model!r} not served here (server has {', '.join(ids)})")
        card = next((c for c in cards if c.get("id") == ep.model), cards[0] if cards else {})
        probe = Probe(card=card, version=version, props=props)
        backend = detect(probe)
        ep.backend = backend.name
        backend.apply_facts(ep, probe)
        if notes:
            head = [ep.status_detail] if ep.status_detail else []
            ep.status_detail = "; ".join([*head, *notes])
        return ep

    # ---------------------------------------------------------------- chat

    def build_body(
        self,
        messages: list[dict[str, str]],
        params: SamplingParams,
        extra_body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The exact JSON sent: every sampling field explicit, usage asked for."""
        body: dict[str, Any] = {"messages": with_system_prompt(messages, params)}
        if self.endpoint.model:
            body["model"] = self.endpoint.model
        body.update(params.request_fields())
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        if extra_body:
            body.update(extra_body)
        return body

    async def chat(
        self,
        messages: list[dict[str, str]],
        params: SamplingParams,
        *,
        on_text: Callable[[str], None] | None = None,
        extra_body: dict[str, Any] | None = None,
        logprobs_into: list[Any] | None = None,
    ) -> LaneResult:
        """Stream one answer. Errors come back on ``result.error``; cancellation raises
        :class:`LaneStopped` with the partial answer. ``logprobs_into``: the list each
        chunk's raw logprobs are appended to as they come (a live agreement reads it
        while the answer streams; quantlab.agreement.live), else a new one."""
        ep = self.endpoint
        result = LaneResult(lane=ep.name, model=ep.model)
        body = self.build_body(messages, params, extra_body)
        try:
            content = orjson.dumps(body)
        except TypeError:  # a lone surrogate: undecodable bytes (argv, a paste) in the prompt
            content = orjson.dumps(_without_surrogates(body))
            result.notes.append(
                "the prompt held undecodable bytes (lone surrogates): sent as U+FFFD"
            )
        asked = body.get("max_completion_tokens", body.get("max_tokens"))
        st = _Stream(on_text, token_cap(asked if isinstance(asked, int) else None), logprobs_into)
        st.want_logprobs = bool(body.get("logprobs"))
        stall = self.limits.stall_s
        t0 = time.perf_counter_ns()
        last = t0
        try:
            if self.total_timeout is None:
                last = await self._stream(content, st, t0)
            else:
                async with asyncio.timeout(self.total_timeout):
                    last = await self._stream(content, st, t0)
        except _NoAnswer as exc:
            st.error = LaneError(
                "connect",
                f"{ep.base_url}: the server closed the connection without answering ({exc})",
            )
        except TimeoutError:
            last = time.perf_counter_ns()
            st.error = LaneError("timeout", f"no complete answer within {self.total_timeout:g} s")
        except httpx.ConnectTimeout as exc:
            st.error = LaneError(
                "connect",
                f"{ep.base_url}: could not connect within {self.connect_timeout:g} s "
                f"(unreachable?) {_describe(exc)}",
            )
        except httpx.TimeoutException as exc:
            last = time.perf_counter_ns()
            when = "after the request" if not st.arrivals else "in the middle of the answer"
            st.error = LaneError(
                "timeout",
                f"no bytes for {stall:g} s {when}: the server is hung or overloaded "
                f"(stall timeout; {_describe(exc)})",
            )
        except httpx.ConnectError as exc:
            st.error = LaneError("connect", f"{ep.base_url}: {_describe(exc)}")
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            last = time.perf_counter_ns()
            if not (st.done or st.finish):
                st.error = LaneError("stream", f"connection broke mid-answer: {_describe(exc)}")
        except httpx.HTTPError as exc:
            st.error = LaneError("connect", f"{ep.base_url}: {_describe(exc)}")
        except asyncio.CancelledError:
            st.error = LaneError("cancelled", STOPPED_MESSAGE)
            self._finish(result, st, t0, time.perf_counter_ns())
            raise LaneStopped(result) from None
        except Exception as exc:  # e.g. an on_text callback that raised: still a value
            last = time.perf_counter_ns()
            st.error = LaneError("protocol", f"client failure: {exc!r}")
        if last == t0:  # failed before any byte came: e2e is the time it took to fail
            last = time.perf_counter_ns()
        self._finish(result, st, t0, last)
        if result.error is not None:
            result.error.message = self._without_key(result.error.message)
        return result

    def _without_key(self, text: str) -> str:
        """``text`` with this lane's API key taken out: a server that echoes a wrong key
        ("invalid key sk-…") must not put it on the screen, in a log or a report."""
        env = self.endpoint.api_key_env
        key = os.environ.get(env) if env else None
        if key and len(key) >= 4 and key in text:
            return text.replace(key, "[redacted]")
        return text

    async def _stream(self, content: bytes, st: _Stream, t0: int) -> int:
        """Send the request and read the stream into ``st`` on a connection shard."""
        i, http = self._take_shard()
        try:
            return await self._stream_on(http, content, st, t0)
        finally:
            self._busy[i] -= 1

    async def _stream_on(  # noqa: PLR0912
        self, http: httpx.AsyncClient, content: bytes, st: _Stream, t0: int
    ) -> int:
        """Send the request and read the stream into ``st``; returns the last byte's time.

        One loop on purpose: it runs per chunk, and each helper call there costs a
        measurable share of the ingest budget (benchmarks/stream_ingest.py)."""
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        headers.update(self._auth())
        request = http.build_request(
            "POST", "/v1/chat/completions", content=content, headers=headers
        )
        max_bytes = self.limits.max_answer_bytes
        resp = await self._send(request, stream=True, http=http)
        try:
            if resp.status_code >= 400:
                body = await _read_capped(resp, max_bytes)
                last = time.perf_counter_ns()
                msg, kind = server_message(body)
                if resp.status_code in (400, 413) and is_context_error(msg, kind):
                    st.error = LaneError("context", msg, resp.status_code)
                else:
                    st.error = LaneError("http", msg, resp.status_code)
                return last
            ctype = resp.headers.get("content-type", "")
            if "json" in ctype and "event-stream" not in ctype:
                # A server that ignored stream=true and sent the whole answer at once.
                body = await _read_capped(resp, max_bytes)
                last = time.perf_counter_ns()
                if len(body) > max_bytes:
                    st.error = LaneError(
                        "protocol", f"a non-streamed answer over {max_bytes} bytes: not read"
                    )
                    return last
                st.whole_answer(body, last)
                return last
            enc = resp.headers.get("content-encoding", "identity").lower()
            # The transport's own iterator: one Python layer fewer per chunk than
            # aiter_bytes(). Only valid when the body is not content-encoded.
            stream = cast("AsyncIterator[bytes]", resp.stream)  # async for an AsyncClient
            chunks = stream if enc == "identity" else resp.aiter_bytes()
            parser = SSEParser()
            feed = parser.feed
            single = parser.single
            loads = orjson.loads
            clock = time.perf_counter_ns
            arrivals = st.arrivals
            parts = st.parts
            on_text = st.on_text
            logprobs = st.logprobs
            want_lp = st.want_logprobs
            max_chunks = st.token_cap if st.token_cap is not None else 1 << 62
            received = 0
            # Log-probability bytes do not count against max_answer_bytes: top-20 makes a
            # chunk ~2 KB, so an 8 MiB cap would cut a 4,000-token answer as a runaway.
            # Their memory is bounded by the chunk cap (token_cap) instead.
            lp_bytes = 0
            last = t0
            stop = False
            async for raw in chunks:
                last = clock()
                received += len(raw)
                if received - lp_bytes > max_bytes:
                    # Everything up to the cap still counts; the rest is not parsed.
                    raw = raw[: len(raw) - (received - lp_bytes - max_bytes)]
                    stop = True
                # With logprobs, a chunk that is one whole event (what vLLM and llama.cpp
                # send per token) is cut up in place: the event is raw[6:end], not copied
                # out first (it is ~2 KB with top-20 logprobs).
                end = single(raw) if want_lp else -1
                for payload in (raw,) if end > 0 else feed(raw):
                    # Fast path: a content delta with no finish reason, read with plain
                    # subscripts (a try costs nothing in 3.11 until it raises). Anything
                    # else (role chunk, finish, usage, errors, [DONE], odd shapes) goes to
                    # st.event, which parses again: a handful of events per answer.
                    lp = None
                    try:
                        # logprobs are ~10x the rest of a chunk: cut out, parsed later
                        if end > 0:
                            small, lp = split_logprobs(payload, 6, end)
                        elif want_lp:
                            small, lp = split_logprobs(payload)
                        else:
                            small = payload
                        choice = loads(small)["choices"][0]
                        text = choice["delta"]["content"]
                        fast = choice["finish_reason"] is None and text.__class__ is str
                    except Exception:
                        fast = False
                    if fast and text:
                        arrivals.append(last)
                        if not parts:
                            st.first_content = last
                        parts.append(text)
                        if lp is not None:
                            logprobs.append(lp)
                            lp_bytes += len(lp)
                        elif want_lp and choice.get("logprobs"):  # not cut out: parsed
                            logprobs.append(choice["logprobs"])
                        if on_text is not None:
                            on_text(text)
                        if len(parts) > max_chunks:
                            st.cut(st.chunk_cap_reason())
                            stop = True
                            break
                    elif st.event(payload[6:end] if end > 0 else payload, last):
                        stop = True
                        break
                if stop:
                    if received - lp_bytes > max_bytes and st.cut_off is None and st.error is None:
                        st.cut(f"the answer passed {max_bytes} bytes (max_answer_bytes)")
                    break
            if not stop:
                for payload in parser.flush():
                    if st.event(payload, last):
                        break
                if st.error is None and st.cut_off is None and not (st.done or st.finish):
                    cut = f" (cut inside: {parser.truncated[:80]!r})" if parser.truncated else ""
                    st.error = LaneError(
                        "stream", f"stream ended before the answer was complete{cut}"
                    )
            return last
        finally:
            # Mid-body, this closes the connection (httpx does not pool a half-read one):
            # a runaway server sees the hang-up and stops.
            await resp.aclose()

    @staticmethod
    def _finish(result: LaneResult, st: _Stream, t0: int, last: int) -> None:
        """Fill text, usage and the vLLM-benchmark timing numbers from the stream state."""
        result.text = "".join(st.parts)
        result.finish_reason = st.finish
        result.usage = st.usage
        result.server_timings = st.timings
        result.logprobs = RawLogprobs(st.logprobs) if st.logprobs else None
        result.error = st.error
        result.cut_off = st.cut_off
        if st.bad_utf8:
            result.notes.append(
                f"invalid UTF-8 from the server in {st.bad_utf8} data line(s): "
                "decoded with U+FFFD replacement characters"
            )
        if result.model is None:
            result.model = st.model
        t = result.timing
        arrivals = st.arrivals
        t.last_byte_ms = round((last - t0) / 1e6, 3)
        # vLLM's latency (vllm bench serve, openai-chat) ends at the last data line other
        # than [DONE]: the usage chunk counts, [DONE] does not. A failed lane's e2e is the
        # time until it failed.
        end = max(arrivals[-1], st.last_data or 0) if arrivals and st.error is None else last
        t.e2e_ms = round((end - t0) / 1e6, 3)
        if arrivals:
            t.ttft_ms = round((arrivals[0] - t0) / 1e6, 3)
            # Whole microseconds, rounded half up on the integer nanoseconds: a third of
            # round()'s cost, which took 15-20 ms of the event loop at 40,000 tokens.
            t.itl_ms = [((b - a + 500) // 1000) / 1000 for a, b in itertools.pairwise(arrivals)]
        if st.first_content is not None:
            t.ttfc_ms = round((st.first_content - t0) / 1e6, 3)
        tokens = st.usage.get("completion_tokens") if st.usage else None
        if isinstance(tokens, int) and not isinstance(tokens, bool):
            t.output_tokens = tokens
            t.tokens_counted = False
        elif st.parts:
            t.output_tokens = len(st.parts)
            t.tokens_counted = True
        # vLLM's TPOT: (e2e - ttft) / (n - 1), with vLLM's e2e (usage chunk included); a
        # failed lane's counts up to its last chunk, not the wait that failed it.
        # tokens_per_s is quantlab's decode rate between the first and the last chunk with
        # choices only, so a late usage chunk never lowers it.
        n = t.output_tokens
        if arrivals and n and n > 1 and arrivals[-1] > arrivals[0]:
            tail = end if st.error is None else arrivals[-1]
            t.tpot_ms = round((tail - arrivals[0]) / 1e6 / (n - 1), 4)
            span_ms = (arrivals[-1] - arrivals[0]) / 1e6
            t.tokens_per_s = round((n - 1) / (span_ms / 1e3), 3)

    # ---------------------------------------------------------------- tokens

    async def count_tokens(
        self, messages: list[dict[str, str]] | None = None, text: str | None = None
    ) -> int | None:
        """Tokens in ``messages`` (chat template applied) or in ``text``, by the server's
        own tokenizer. None when the server cannot say."""
        if (messages is None) == (text is None):
            raise ValueError("give exactly one of messages= or text=")
        if self.endpoint.backend is None:
            await self.discover()
        backend = for_endpoint(self.endpoint)
        return await backend.count_tokens(self._post_json, self.endpoint.model, messages, text)

    async def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        """POST ``body`` as JSON; the parsed answer, or None on any failure.

        The Content-Type header is not optional: vLLM's routes refuse a body without
        ``application/json`` with a 400 (its ``validate_json_request``)."""
        headers = {"Content-Type": "application/json", **self._auth()}
        try:
            req = self._http.build_request(
                "POST",
                path,
                content=orjson.dumps(_without_surrogates(body)),
                headers=headers,
                timeout=30.0,
            )
            resp = await self._send(req, stream=False)
            if resp.status_code >= 400:
                return None
            return orjson.loads(resp.content)
        except (httpx.HTTPError, _NoAnswer, orjson.JSONDecodeError):
            return None


async def _read_capped(resp: httpx.Response, cap: int) -> bytes:
    """A whole (non-streamed) body, but never more than ``cap`` + one chunk of it."""
    parts: list[bytes] = []
    size = 0
    async for raw in resp.aiter_bytes():
        parts.append(raw)
        size += len(raw)
        if size > cap:
            break
    return b"".join(parts)


def with_system_prompt(messages: Messages, params: SamplingParams) -> Messages:
    """``messages`` as sent: the params' system prompt first, unless one is already there."""
    msgs = list(messages)
    if params.system_prompt and not (msgs and msgs[0].get("role") == "system"):
        msgs.insert(0, {"role": "system", "content": params.system_prompt})
    return msgs


def tls_verify(base_url: str | None, *, trust_env: bool) -> ssl.SSLContext | bool:
    """httpx's ``verify`` for a client: the same certificate checks as httpx's default,
    built once per process and shared, or none where no TLS can happen.

    httpx builds a fresh CA store for every client (~15 ms each, before the TUI's first
    frame for every lane). A client whose base URL is plain http and that ignores proxy
    settings never opens a TLS connection, so it needs no context at all."""
    if base_url is not None and urlsplit(base_url).scheme == "http" and not trust_env:
        return False
    return _shared_tls()


@functools.cache
def _shared_tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def _is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(obj: Any) -> Any:
    """``obj`` with every lone surrogate replaced by U+FFFD (JSON must be valid UTF-8)."""
    if isinstance(obj, str):
        return _SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {k: _without_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_without_surrogates(v) for v in obj]
    return obj
