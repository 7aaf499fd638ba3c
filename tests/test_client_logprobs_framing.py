"""Streams with log-probabilities, in every framing, through the client's read path.

The client cuts each chunk's logprobs out as raw bytes without parsing them, and a chunk
that is one whole event (what vLLM and llama.cpp send per token) is cut up in place. These
tests give it exact network pieces (an httpx mock transport, so no boundary moves): one
event per piece, many per piece, cut at odd byte counts (inside UTF-8 characters and inside
``\\n\\n``), CRLF, pings, no ``[DONE]``, an error object, invalid UTF-8, and chunks in
vLLM's, llama.cpp's and shuffled key orders. Whatever the cut, the text, the finish
reason and the logprobs (parsed afterwards) must be what the server sent.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replay import body_bytes, lanes, load_lane
from standin import Reply, StandIn

from quantlab.agreement.logprobs import split_logprobs
from quantlab.client import LaneClient
from quantlab.records import Endpoint, LaneResult, SamplingParams
from quantlab.sse import SSEParser

HELLO = [{"role": "user", "content": "Say hello"}]
# Text that looks like the markers the cut looks for (escaped inside JSON strings).
TRICKY = ['"logprobs":{', ',"finish_reason"', "}]", "é", "🙂", "\\", "a\nb", "x"]


def lp_object(token: str, k: int, rng: random.Random) -> dict[str, Any]:
    """Chat logprobs of one token (vLLM / OpenAI shape; llama.cpp adds ``id``)."""

    def entry(tok: str, lp: float) -> dict[str, Any]:
        return {"token": tok, "logprob": lp, "bytes": list(tok.encode())}

    alts = [entry(rng.choice(TRICKY) + str(j), -1.0 - j) for j in range(k)]
    return {"content": [{**entry(token, -0.25), "top_logprobs": alts}]}


def vllm_chunk(delta: dict[str, Any], lp: Any, finish: str | None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}
    choice["token_ids"] = None
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "m}]", "choices": [choice]}  # fmt: skip


def llama_chunk(delta: dict[str, Any], lp: Any, finish: str | None) -> dict[str, Any]:
    choice: dict[str, Any] = {"finish_reason": finish, "index": 0, "delta": delta}
    if lp is not None:
        choice["logprobs"] = lp
    return {"choices": [choice], "created": 1, "id": "chatcmpl-1", "model": "m",
            "system_fingerprint": "b1-x", "object": "chat.completion.chunk"}  # fmt: skip


def shuffled_chunk(rng: random.Random) -> Any:
    def make(delta: dict[str, Any], lp: Any, finish: str | None) -> dict[str, Any]:
        choice = [("index", 0), ("delta", delta), ("logprobs", lp), ("finish_reason", finish)]
        top = [("id", "c"), ("model", "m"), ("object", "chat.completion.chunk")]
        rng.shuffle(choice)
        top.insert(rng.randrange(len(top) + 1), ("choices", [dict(choice)]))
        return dict(top)

    return make


LAYOUTS = {"vllm": vllm_chunk, "llama": llama_chunk}


def stream_bytes(
    tokens: list[str],
    make: Any,
    *,
    k: int = 5,
    seed: int = 0,
    newline: bytes = b"\n",
    pings: bool = False,
    done: bool = True,
) -> tuple[bytes, list[dict[str, Any]]]:
    """An SSE body: role chunk, one chunk per token with logprobs, a finish chunk, usage,
    [DONE]; and the logprobs objects sent, in order."""
    rng = random.Random(seed)
    events = [make({"role": "assistant", "content": ""}, None, None)]
    lps = []
    for tok in tokens:
        lps.append(lp_object(tok, k, rng))
        events.append(make({"content": tok}, lps[-1], None))
    events.append(make({"content": ""}, None, "stop"))
    events.append({"id": "c", "choices": [], "usage": {"completion_tokens": len(tokens) + 1}})
    out = []
    for i, e in enumerate(events):
        if pings and i % 3 == 1:
            out.append(b": ping\n\n")
        out.append(b"data: " + orjson.dumps(e) + b"\n\n")
    if done:
        out.append(b"data: [DONE]\n\n")
    return b"".join(out).replace(b"\n", newline), lps


class Pieces(httpx.AsyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for p in self.pieces:
            yield p


async def read(pieces: list[bytes], k: int | None = 5) -> LaneResult:
    """The client's answer to a stream that arrives in exactly these pieces."""

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, stream=Pieces(pieces))

    transport = httpx.MockTransport(answer)
    async with LaneClient(
        Endpoint("lane", "http://mock", model="m"), transport=transport
    ) as client:
        return await client.chat(HELLO, SamplingParams(max_tokens=1000, top_logprobs=k))


def parsed(result: LaneResult) -> list[Any]:
    assert result.logprobs is not None
    return [orjson.loads(c) if isinstance(c, bytes) else c for c in result.logprobs.chunks]


def per_event(body: bytes, newline: bytes = b"\n") -> list[bytes]:
    sep = newline * 2
    return [e + sep for e in body.split(sep) if e]


def cut(body: bytes, sizes: Iterator[int]) -> list[bytes]:
    out, i = [], 0
    while i < len(body):
        n = next(sizes)
        out.append(body[i : i + n])
        i += n
    return out


TOKENS = ["Hel", "lo", " wörld", "🙂", ',"finish_reason"', "}]", ' "logprobs":{', "!"]


def check(result: LaneResult, lps: list[dict[str, Any]]) -> None:
    assert result.error is None, result.error
    assert result.text == "".join(TOKENS)
    assert result.finish_reason == "stop"
    assert parsed(result) == lps


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
@pytest.mark.parametrize("k", [1, 20])
async def test_one_event_per_piece_and_all_in_one_piece(
    layout: str, newline: bytes, k: int
) -> None:
    body, lps = stream_bytes(TOKENS, LAYOUTS[layout], k=k, newline=newline)
    check(await read(per_event(body, newline)), lps)
    check(await read([body]), lps)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
async def test_cut_at_odd_byte_counts(layout: str) -> None:
    body, lps = stream_bytes(TOKENS, LAYOUTS[layout], k=20, pings=True)
    for sizes in ([1], [2, 3, 5, 7], [511, 1], [1000, 1999, 7], [4096], [65536]):
        seq = iter(sizes * (len(body) // sum(sizes) + 1))
        check(await read(cut(body, seq)), lps)
    # a cut after every byte of the stream, in two pieces: inside UTF-8 characters, the
    # separator and the markers
    small, lps = stream_bytes(TOKENS[:3], LAYOUTS[layout], k=2)
    for at in range(1, len(small)):
        r = await read([small[:at], small[at:]])
        assert r.error is None and r.text == "".join(TOKENS[:3]) and parsed(r) == lps, at


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=8),
    st.booleans(),
)
async def test_any_key_order_and_any_cut(
    seed: int, newline: bytes, sizes: list[int], framed: bool
) -> None:
    """Key orders other than vLLM's and llama.cpp's: where the cut does not fit, the chunk
    goes to the full parse, and the answer is the same."""
    body, lps = stream_bytes(
        TOKENS, shuffled_chunk(random.Random(seed)), k=3, seed=seed, newline=newline,
        pings=seed % 2 == 0, done=seed % 3 != 0,
    )  # fmt: skip
    pieces = per_event(body, newline) if framed else cut(body, iter(sizes * len(body)))
    check(await read(pieces), lps)


async def test_invalid_utf8_error_objects_and_no_done() -> None:
    body, lps = stream_bytes(TOKENS, vllm_chunk, k=20, done=False)
    check(await read(per_event(body)), lps)
    # an invalid byte inside a content chunk's text: U+FFFD and a note, not a failed lane
    bad = body.replace(b'"content":"lo"', b'"content":"l\xffo"', 1)
    for pieces in (per_event(bad), [bad], cut(bad, iter([777] * len(bad)))):
        r = await read(pieces)
        assert r.error is None and r.text == "".join(TOKENS).replace("lo", "l\ufffdo", 1)
        assert any("invalid UTF-8" in n for n in r.notes)
        assert len(r.logprobs or []) == len(lps)
    # an error object in the middle of the stream ends it with the server's message
    events = per_event(body)
    err = b'data: {"error":{"message":"engine died","type":"InternalServerError"}}\n\n'
    for pieces in ([*events[:4], err], [b"".join(events[:4]) + err]):
        r = await read(pieces)
        assert r.error is not None and r.error.kind == "stream" and "engine died" in r.error.message
        assert r.text == "".join(TOKENS[:3]) and parsed(r) == lps[:3]


def test_split_logprobs_in_place_is_the_same_cut() -> None:
    rng = random.Random(7)
    for i in range(300):
        make = [vllm_chunk, llama_chunk, shuffled_chunk(rng)][i % 3]
        tok = rng.choice(TRICKY)
        lp = lp_object(tok, rng.randint(0, 20), rng) if i % 5 else None
        payload = orjson.dumps(make({"content": tok}, lp, rng.choice([None, "stop"])))
        raw = b"data: " + payload + b"\n\n"
        end = SSEParser().single(raw)
        assert end == len(raw) - 2
        assert split_logprobs(raw, 6, end) == split_logprobs(payload)
        small, cut_lp = split_logprobs(payload)
        if cut_lp is not None:  # a cut is made only where it is exact
            assert orjson.loads(cut_lp) == lp
            assert orjson.loads(small)["choices"][0]["logprobs"] is None
    p = SSEParser()
    assert p.single(b"data: x\n\n") == 7
    for raw in (b"data: x\n", b"data: x\n\ndata: y\n\n", b"data: x\r\n\r\n", b": ping\n\n",
                b"data:x\n\n", b"event: e\ndata: x\n\n"):  # fmt: skip
        assert p.single(raw) == -1, raw
    p.feed(b"data: a")  # something pending: the next piece is not a whole event alone
    assert p.single(b"data: x\n\n") == -1


@pytest.mark.parametrize("framing", ["per_event", "bulk", "split"])
async def test_standin_streams_with_top20_in_each_framing(framing: str) -> None:
    """Through a real socket, h11 and the client's larger reads."""
    words = ["Hel", "lo", " wörld", "🙂", "!"]
    reply = Reply(
        tokens=words, n_tokens=300, bulk=framing == "bulk",
        split_every=997 if framing == "split" else None,
    )  # fmt: skip
    with StandIn(reply, max_model_len=10**6) as s:
        async with LaneClient(Endpoint("lane", s.url, model=s.model)) as c:
            r = await c.chat(HELLO, SamplingParams(max_tokens=400, top_logprobs=20))
    assert r.error is None and r.text == "".join(reply.content())
    got = parsed(r)
    assert len(got) == 300 and all(len(g["content"][0]["top_logprobs"]) == 20 for g in got)
    assert [g["content"][0]["token"] for g in got] == reply.content()


@pytest.mark.parametrize("lane", lanes())
async def test_recorded_vllm_logprobs_stream_in_each_framing(lane: str) -> None:
    """vLLM 0.26's own bytes (tests/data/vllm-0.26): cut as raw parts, the same as parsed."""
    body = body_bytes(load_lane(lane)["stream_logprobs"])
    sent = [orjson.loads(e[6:]) for e in body.split(b"\n\n") if e.startswith(b"data: {")]
    choices = [c["choices"][0] for c in sent if c["choices"]]
    want = [c["logprobs"] for c in choices if c["logprobs"]]
    # the finish chunk ("length": it carries the last token) takes the general path
    raw = sum(1 for c in choices if c["logprobs"] and c["finish_reason"] is None)
    text = "".join(c["delta"].get("content") or "" for c in choices)
    for pieces in (per_event(body), [body], cut(body, iter([3, 250, 1000] * len(body)))):
        r = await read(pieces, k=2)
        assert r.error is None and r.text == text and r.usage is not None
        assert r.logprobs is not None
        assert sum(isinstance(c, bytes) for c in r.logprobs.chunks) == raw > 0
        assert parsed(r) == want
