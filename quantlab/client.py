"""The lane client: one per endpoint, streams chat answers and measures them.

One ``httpx.AsyncClient`` per endpoint is kept open so every request after the first
reuses its connection (TTFT then measures the server, not a TCP handshake). Timing is
taken with ``time.perf_counter_ns()`` where each network chunk arrives, with the same
definitions as vLLM's benchmark, so numbers compare with ``vllm bench serve``.

Every failure is returned as a :class:`LaneError` on the :class:`LaneResult`, never
raised: a comparison must keep going when one server misbehaves. The one exception is
task cancellation, which closes the response and propagates.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import itertools
import os
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from quantlab.records import Endpoint, LaneError, LaneResult, SamplingParams
from quantlab.sse import DONE, SSEParser

#: Markers of a request that does not fit the model's context (vLLM, llama.cpp, OpenAI).
_CONTEXT_TYPES = ("exceed_context_size_error", "context_length_exceeded")
_CONTEXT_PHRASES = (
    "maximum context length",
    "exceeds the available context size",
    "cannot be greater than max_model_len",  # vLLM 0.26: max_tokens alone over the context
)

Messages = list[dict[str, str]]

_TEXT_LIMIT = 500  # characters of a non-JSON error body kept in a message


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
    """Per-request state for the rare events; the hot loop keeps its own locals."""

    __slots__ = (
        "arrivals",
        "done",
        "error",
        "finish",
        "model",
        "on_text",
        "parts",
        "timings",
        "usage",
    )

    def __init__(self, on_text: Callable[[str], None] | None) -> None:
        self.arrivals: list[int] = []
        self.parts: list[str] = []
        self.on_text = on_text
        self.done = False
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.timings: dict[str, Any] | None = None
        self.error: LaneError | None = None
        self.model: str | None = None

    def whole_answer(self, body: bytes, now: int) -> None:
        """A non-streamed chat completion: the whole text arrives as one chunk."""
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.error = LaneError("protocol", f"answer is neither SSE nor JSON: {body[:120]!r}")
            return
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            self.error = _error_from_object(obj) if isinstance(obj, dict) else None
            if self.error is None:
                self.error = LaneError("protocol", f"no choices in the answer: {body[:120]!r}")
            return
        message = choices[0].get("message") or {}
        text = message.get("content") if isinstance(message, dict) else None
        if isinstance(text, str) and text:
            self.arrivals.append(now)
            self.parts.append(text)
            if self.on_text is not None:
                self.on_text(text)
        if choices[0].get("finish_reason") is not None:
            self.finish = str(choices[0]["finish_reason"])
        self.done = True
        if isinstance(obj.get("usage"), dict):
            self.usage = obj["usage"]
        if isinstance(obj.get("timings"), dict):
            self.timings = obj["timings"]
        if isinstance(obj.get("model"), str):
            self.model = obj["model"]

    def event(self, payload: bytes, now: int) -> bool:
        """Apply any event the fast path did not take. Returns True to stop reading."""
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if payload.strip() == DONE:
                self.done = True
                return False
            shown = payload[:120].decode("utf-8", "replace")
            self.error = LaneError("protocol", f"malformed JSON in a data line: {shown!r}")
            return True
        if not isinstance(obj, dict):
            self.error = LaneError("protocol", f"data line is not a JSON object: {obj!r:.120}")
            return True
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
        if choices:
            choice = choices[0]
            if not isinstance(choice, dict):
                self.error = LaneError("protocol", f"choice is not an object: {choice!r:.120}")
                return True
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if text and isinstance(text, str):
                self.arrivals.append(now)
                self.parts.append(text)
                if self.on_text is not None:
                    self.on_text(text)
            if choice.get("finish_reason") is not None:
                self.finish = str(choice["finish_reason"])
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        timings = obj.get("timings")
        if isinstance(timings, dict):
            self.timings = timings
        return False


class LaneClient:
    """One endpoint's connection: discovery, streamed chat with timing, token counting.

    ``read_timeout``: seconds the server may stay silent mid-answer before the lane fails
    with kind "timeout"; ``total_timeout``: optional cap on a whole answer.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        read_timeout: float = 120.0,
        connect_timeout: float = 10.0,
        total_timeout: float | None = None,
        max_connections: int = 64,
    ) -> None:
        self.endpoint = endpoint
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        base = endpoint.base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=base,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # An HTTP(S)_PROXY meant for the internet must not capture a server on this
            # machine (httpx does not exempt loopback by itself).
            trust_env=not _is_loopback(urlsplit(base).hostname),
        )

    @property
    def name(self) -> str:
        return self.endpoint.name

    def _auth(self) -> dict[str, str]:
        """The Authorization header, read from the environment at each request (never kept)."""
        env = self.endpoint.api_key_env
        key = os.environ.get(env) if env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        """Send, and once more when the server closed the connection without answering.

        That is a kept-alive connection whose server-side idle timeout fired just as the
        request went out (llama.cpp's HTTP server closes idle connections after 5 s): the
        server never answered, so nothing runs twice. A second hang-up is reported.
        """
        try:
            return await self._http.send(request, stream=stream)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            pass
        try:
            return await self._http.send(request, stream=stream)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise _NoAnswer(_describe(exc)) from exc

    async def aclose(self) -> None:
        await self._http.aclose()

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

        is_llama = isinstance(props, dict) and (
            "default_generation_settings" in props or "total_slots" in props
        )
        if is_llama or card.get("owned_by") == "llamacpp":
            ep.backend = "llama.cpp"
            props = props if isinstance(props, dict) else {}
            meta = card.get("meta") if isinstance(card.get("meta"), dict) else {}
            dgs = props.get("default_generation_settings") or {}
            ep.max_context = _int(dgs.get("n_ctx")) or _int(meta.get("n_ctx"))
            ep.max_context = ep.max_context or _int(meta.get("n_ctx_train"))
            ep.server_version = _str(props.get("build_info")) or ep.server_version
            ep.quantization = _str(meta.get("ftype")) or _str(props.get("model_ftype"))
            ep.slots = _int(props.get("total_slots"))
            ep.model_path = _str(props.get("model_path"))
        elif card.get("owned_by") == "vllm" or "max_model_len" in card:
            ep.backend = "vllm"
            ep.max_context = _int(card.get("max_model_len"))
            if isinstance(version, dict):
                ep.server_version = _str(version.get("version"))
        else:
            ep.backend = "other"
            ep.max_context = _int(card.get("max_model_len")) or _int(card.get("context_length"))
            if isinstance(version, dict):
                ep.server_version = _str(version.get("version"))
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
    ) -> LaneResult:
        """Stream one answer. Errors come back on ``result.error``; cancellation raises."""
        ep = self.endpoint
        result = LaneResult(lane=ep.name, model=ep.model)
        content = orjson.dumps(self.build_body(messages, params, extra_body))
        st = _Stream(on_text)
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
                "connect", f"{ep.base_url}: connect timed out (unreachable?) {_describe(exc)}"
            )
        except httpx.TimeoutException as exc:
            last = time.perf_counter_ns()
            what = "no answer" if not st.arrivals else "the stream stalled"
            st.error = LaneError(
                "timeout", f"{what} for {self.read_timeout:g} s ({_describe(exc)})"
            )
        except httpx.ConnectError as exc:
            st.error = LaneError("connect", f"{ep.base_url}: {_describe(exc)}")
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            last = time.perf_counter_ns()
            if not (st.done or st.finish):
                st.error = LaneError("stream", f"connection broke mid-answer: {_describe(exc)}")
        except httpx.HTTPError as exc:
            st.error = LaneError("connect", f"{ep.base_url}: {_describe(exc)}")
        except Exception as exc:  # e.g. an on_text callback that raised: still a value
            last = time.perf_counter_ns()
            st.error = LaneError("protocol", f"client failure: {exc!r}")
        if last == t0:  # failed before any byte came: e2e is the time it took to fail
            last = time.perf_counter_ns()
        self._finish(result, st, t0, last)
        return result

    async def _stream(self, content: bytes, st: _Stream, t0: int) -> int:
        """Send the request and read the stream into ``st``; returns the last byte's time."""
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        headers.update(self._auth())
        request = self._http.build_request(
            "POST", "/v1/chat/completions", content=content, headers=headers
        )
        resp = await self._send(request, stream=True)
        try:
            if resp.status_code >= 400:
                body = await resp.aread()
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
                body = await resp.aread()
                last = time.perf_counter_ns()
                st.whole_answer(body, last)
                return last
            enc = resp.headers.get("content-encoding", "identity").lower()
            # The transport's own iterator: one Python layer fewer per chunk than
            # aiter_bytes(). Only valid when the body is not content-encoded.
            chunks = resp.stream if enc == "identity" else resp.aiter_bytes()
            parser = SSEParser()
            feed = parser.feed
            loads = orjson.loads
            clock = time.perf_counter_ns
            arrivals = st.arrivals
            parts = st.parts
            on_text = st.on_text
            last = t0
            stop = False
            async for raw in chunks:
                last = clock()
                for payload in feed(raw):
                    # Fast path: a content delta with no finish reason, read with plain
                    # subscripts (a try costs nothing in 3.11 until it raises). Anything
                    # else (role chunk, finish, usage, errors, [DONE], odd shapes) goes to
                    # st.event, which parses again: a handful of events per answer.
                    try:
                        choice = loads(payload)["choices"][0]
                        text = choice["delta"]["content"]
                        fast = choice["finish_reason"] is None and text.__class__ is str
                    except Exception:
                        fast = False
                    if fast and text:
                        arrivals.append(last)
                        parts.append(text)
                        if on_text is not None:
                            on_text(text)
                    elif st.event(payload, last):
                        stop = True
                        break
                if stop:
                    break
            if not stop:
                for payload in parser.flush():
                    if st.event(payload, last):
                        break
                if st.error is None and not (st.done or st.finish):
                    cut = f" (cut inside: {parser.truncated[:80]!r})" if parser.truncated else ""
                    st.error = LaneError(
                        "stream", f"stream ended before the answer was complete{cut}"
                    )
            return last
        finally:
            await resp.aclose()

    @staticmethod
    def _finish(result: LaneResult, st: _Stream, t0: int, last: int) -> None:
        """Fill text, usage and the vLLM-benchmark timing numbers from the stream state."""
        result.text = "".join(st.parts)
        result.finish_reason = st.finish
        result.usage = st.usage
        result.server_timings = st.timings
        result.error = st.error
        if result.model is None:
            result.model = st.model
        t = result.timing
        arrivals = st.arrivals
        t.e2e_ms = round((last - t0) / 1e6, 3)
        if arrivals:
            first = arrivals[0]
            t.ttft_ms = round((first - t0) / 1e6, 3)
            t.itl_ms = [round((b - a) / 1e6, 3) for a, b in itertools.pairwise(arrivals)]
        tokens = st.usage.get("completion_tokens") if st.usage else None
        if isinstance(tokens, int):
            t.output_tokens = tokens
            t.tokens_counted = False
        elif arrivals:
            t.output_tokens = len(arrivals)
            t.tokens_counted = True
        # A failed lane's "last" is when it failed; its rate counts up to its last token.
        end = last if st.error is None or not arrivals else arrivals[-1]
        if arrivals and t.output_tokens and t.output_tokens > 1 and end > arrivals[0]:
            t.tokens_per_s = round((t.output_tokens - 1) / ((end - arrivals[0]) / 1e9), 3)

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
        backend = self.endpoint.backend
        if backend == "llama.cpp":
            return await self._count_llama(messages, text)
        count = await self._count_vllm(messages, text)
        if count is None and backend != "vllm":
            count = await self._count_llama(messages, text)
        return count

    async def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        try:
            req = self._http.build_request(
                "POST", path, content=orjson.dumps(body), headers=self._auth(), timeout=30.0
            )
            resp = await self._send(req, stream=False)
            if resp.status_code >= 400:
                return None
            return orjson.loads(resp.content)
        except (httpx.HTTPError, _NoAnswer, orjson.JSONDecodeError):
            return None

    async def _count_vllm(self, messages: Messages | None, text: str | None) -> int | None:
        body: dict[str, Any] = {"messages": messages} if messages is not None else {"prompt": text}
        if self.endpoint.model:
            body["model"] = self.endpoint.model
        ans = await self._post_json("/tokenize", body)
        count = ans.get("count") if isinstance(ans, dict) else None
        return count if isinstance(count, int) else None

    async def _count_llama(self, messages: Messages | None, text: str | None) -> int | None:
        if messages is not None:
            templ = await self._post_json("/apply-template", {"messages": messages})
            text = templ.get("prompt") if isinstance(templ, dict) else None
            if not isinstance(text, str):
                return None
        ans = await self._post_json("/tokenize", {"content": text})
        tokens = ans.get("tokens") if isinstance(ans, dict) else None
        return len(tokens) if isinstance(tokens, list) else None


def with_system_prompt(messages: Messages, params: SamplingParams) -> Messages:
    """``messages`` as sent: the params' system prompt first, unless one is already there."""
    msgs = list(messages)
    if params.system_prompt and not (msgs and msgs[0].get("role") == "system"):
        msgs.insert(0, {"role": "system", "content": params.system_prompt})
    return msgs


def _is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None
