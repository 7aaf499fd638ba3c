"""quantlab against what real vLLM 0.26.0 sent (``tests/data/vllm-0.26/``, recorded on an H200
from three lanes of SmolLM2-135M-Instruct: BF16, FP8 weights, FP8 weights + FP8 KV cache).

``tests/replay.py`` serves each recording back byte for byte, cut at odd byte boundaries, so
these tests check discovery, streaming, token counting, error messages and server stats on
vLLM's real wire format, in CI, without a GPU. The expected values are read from the
recordings themselves with a parser written here (not quantlab's), so a wrong client and a
wrong recording cannot agree by accident. ``test_standin_*`` check that tests/standin.py,
which the other tests use for faults, speaks the same shapes.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from replay import DATA, Replay, body_bytes, header, lanes, load_lane, split_odd
from standin import Reply, StandIn

from quantlab.client import LaneClient
from quantlab.records import Endpoint, SamplingParams
from quantlab.telemetry.server_stats import parse_metrics

LANES = lanes()
pytestmark = pytest.mark.skipif(not LANES, reason=f"no recordings in {DATA}")
STREAMS = (
    "stream_usage",
    "stream_no_usage",
    "stream_continuous_usage",
    "stream_length",
    "stream_logprobs",
    "stream_non_ascii",
)


# ---------------------------------------------------------------- an independent reading


def events(rec: dict[str, Any]) -> list[Any]:
    """The data payloads of a recorded SSE body, JSON-decoded ("[DONE]" kept as a string)."""
    out: list[Any] = []
    for block in body_bytes(rec).decode("utf-8").split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


def expected(rec: dict[str, Any]) -> dict[str, Any]:
    """Text, finish reason and final usage of a recorded stream."""
    text, finish, usage = "", None, None
    for ev in events(rec):
        if not isinstance(ev, dict):
            continue
        for ch in ev.get("choices") or []:
            text += ch.get("delta", {}).get("content") or ""
            finish = ch.get("finish_reason") or finish
        if ev.get("usage"):
            usage = ev["usage"]
    return {"text": text, "finish": finish, "usage": usage}


def error_message(rec: dict[str, Any]) -> str:
    return str(json.loads(body_bytes(rec))["error"]["message"])


def routes(rec: dict[str, dict[str, Any]], chat: str | None = None) -> dict[str, Any]:
    """Discovery routes of a lane (vLLM has no /props: that 404s) and an optional chat."""
    r: dict[str, Any] = {"GET /v1/models": rec["models"], "GET /version": rec["version"]}
    r["GET /health"] = rec["health"]
    if chat is not None:
        r["POST /v1/chat/completions"] = rec[chat]
    return r


async def lane_client(url: str, rec: dict[str, dict[str, Any]]) -> LaneClient:
    client = LaneClient(Endpoint(name="lane", base_url=url), read_timeout=30.0)
    await client.discover()
    return client


PARAMS = SamplingParams(temperature=0.0, max_tokens=48, seed=0)
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


# ---------------------------------------------------------------- the replay itself


def test_replay_cuts_bodies_at_odd_boundaries_and_loses_nothing() -> None:
    data = bytes(range(256)) * 3
    pieces = list(split_odd(data))
    assert b"".join(pieces) == data
    assert {len(p) for p in pieces[:6]} == {1, 2, 3, 5, 7, 11}


@pytest.mark.parametrize("lane", LANES)
def test_replay_sends_the_recorded_bytes(lane: str) -> None:
    rec = load_lane(lane)
    with Replay(routes(rec, "stream_usage")) as r:
        got = httpx.post(r.url + "/v1/chat/completions", json={})
    assert got.status_code == rec["stream_usage"]["response"]["status"]
    assert got.content == body_bytes(rec["stream_usage"])
    assert got.headers["content-type"] == header(rec["stream_usage"], "content-type")


# ---------------------------------------------------------------- discovery


@pytest.mark.parametrize("lane", LANES)
async def test_discovery_reads_model_context_and_version(lane: str) -> None:
    rec = load_lane(lane)
    card = json.loads(body_bytes(rec["models"]))["data"][0]
    version = json.loads(body_bytes(rec["version"]))["version"]
    with Replay(routes(rec)) as r:
        client = LaneClient(Endpoint(name=lane, base_url=r.url))
        try:
            ep = await client.discover()
        finally:
            await client.aclose()
    assert ep.status == "ok", ep.status_detail
    assert ep.backend == "vllm"
    assert ep.model == card["id"] == lane  # served under its lane name
    assert ep.max_context == card["max_model_len"] == 8192
    assert ep.server_version == version == "0.26.0"


# ---------------------------------------------------------------- streaming


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("lane", LANES)
async def test_stream_text_finish_and_usage(lane: str, name: str) -> None:
    rec = load_lane(lane)
    want = expected(rec[name])
    assert want["text"], f"{name}: the recording has no text"
    for start in (0, 3):  # two different cuttings of the same bytes
        with Replay(routes(rec, name), start=start) as r:
            client = await lane_client(r.url, rec)
            try:
                res = await client.chat(PROMPT, PARAMS)
            finally:
                await client.aclose()
        assert res.error is None, res.error
        assert res.text == want["text"]
        assert res.finish_reason == want["finish"]
        t = res.timing
        assert t.ttft_ms is not None and t.e2e_ms is not None and t.e2e_ms >= t.ttft_ms
        if want["usage"] is None:  # no include_usage: counted from the content chunks
            assert res.usage is None and t.tokens_counted
        else:
            assert res.usage == want["usage"]
            assert t.output_tokens == want["usage"]["completion_tokens"]
            assert not t.tokens_counted


@pytest.mark.parametrize("lane", LANES)
def test_recorded_stream_shape_is_vllms(lane: str) -> None:
    """What the client relies on, as vLLM sent it: a role chunk first, a finish chunk, the
    usage chunk with no choices, then [DONE]; a cut answer says "length"."""
    rec = load_lane(lane)
    evs = events(rec["stream_usage"])
    assert evs[-1] == "[DONE]"
    first, usage = evs[0], evs[-2]
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    assert expected(rec["stream_length"])["finish"] == "length"
    assert expected(rec["stream_length"])["usage"]["completion_tokens"] == 8
    assert all(e == "[DONE]" or "usage" not in e or e["usage"] is None
               for e in events(rec["stream_no_usage"]))  # fmt: skip
    cont = [e for e in events(rec["stream_continuous_usage"]) if isinstance(e, dict)]
    assert all(e.get("usage") for e in cont[1:])  # usage on every chunk after the role one


@pytest.mark.parametrize("lane", LANES)
async def test_non_ascii_split_inside_characters(lane: str) -> None:
    rec = load_lane(lane)
    want = expected(rec["stream_non_ascii"])["text"]
    assert any(ord(c) > 127 for c in want), "the recorded answer has no non-ASCII character"
    with Replay(routes(rec, "stream_non_ascii"), start=1) as r:
        client = await lane_client(r.url, rec)
        try:
            res = await client.chat(PROMPT, PARAMS)
        finally:
            await client.aclose()
    assert res.text == want


@pytest.mark.parametrize("lane", LANES)
async def test_non_streamed_answer(lane: str) -> None:
    rec = load_lane(lane)
    whole = json.loads(body_bytes(rec["whole"]))
    with Replay(routes(rec, "whole")) as r:
        client = await lane_client(r.url, rec)
        try:
            res = await client.chat(PROMPT, PARAMS)
        finally:
            await client.aclose()
    assert res.error is None, res.error
    assert res.text == whole["choices"][0]["message"]["content"]
    assert res.usage == whole["usage"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "status", "kind"),
    [
        ("err_unknown_model", 404, "http"),
        ("err_bad_param", 400, "http"),
        ("err_context_prompt", 400, "context"),
        ("err_context_max_tokens", 400, "context"),
    ],
)
@pytest.mark.parametrize("lane", LANES)
async def test_error_status_kind_and_vllms_own_message(
    lane: str, name: str, status: int, kind: str
) -> None:
    rec = load_lane(lane)
    assert rec[name]["response"]["status"] == status
    with Replay(routes(rec, name)) as r:
        client = await lane_client(r.url, rec)
        try:
            res = await client.chat(PROMPT, PARAMS)
        finally:
            await client.aclose()
    assert res.error is not None
    assert (res.error.kind, res.error.status) == (kind, status)
    assert error_message(rec[name]) in str(res.error)


# ---------------------------------------------------------------- token counting


def tokenize_route(rec: dict[str, dict[str, Any]]) -> Any:
    """/tokenize as vLLM answered: each recorded request body gets its recorded answer; a
    request without ``Content-Type: application/json`` is not told apart here (the
    content-type test checks the header)."""

    def key(body: dict[str, Any]) -> str:  # what is counted; other fields may differ
        return json.dumps([body.get("messages"), body.get("prompt")], sort_keys=True)

    table = {
        key(r["request"]["json"]): r
        for n, r in rec.items()
        if n.startswith("tokenize_")
        and n not in ("tokenize_messages_no_ctype", "tokenize_no_model")
    }

    def pick(body: Any) -> dict[str, Any]:
        return table[key(body)]

    return pick


@pytest.mark.parametrize(
    "name",
    [
        "tokenize_prompt_short",
        "tokenize_messages_short",
        "tokenize_prompt_8k",
        "tokenize_messages_8k",
    ],
)
@pytest.mark.parametrize("lane", LANES)
async def test_count_tokens_gets_vllms_count(lane: str, name: str) -> None:
    rec = load_lane(lane)
    req = rec[name]["request"]["json"]
    want = json.loads(body_bytes(rec[name]))["count"]
    with Replay({**routes(rec), "POST /tokenize": tokenize_route(rec)}) as r:
        client = LaneClient(Endpoint(name=lane, base_url=r.url))
        try:
            await client.discover()
            if "messages" in req:
                got = await client.count_tokens(messages=req["messages"])
            else:
                got = await client.count_tokens(text=req["prompt"])
        finally:
            await client.aclose()
        sent = [h for m, p, h, _ in r.requests if (m, p) == ("POST", "/tokenize")]
    assert got == want
    assert want > 7000 if name.endswith("8k") else want < 100
    # vLLM 0.26 refuses a /tokenize body without this header (recorded: see the next test).
    assert all(
        {k.lower(): v for k, v in h.items()}.get("content-type") == "application/json" for h in sent
    )


@pytest.mark.parametrize("lane", LANES)
def test_vllm_refuses_tokenize_without_a_json_content_type(lane: str) -> None:
    """Why token counting failed on real vLLM while a replay of the answer worked: the
    request had no Content-Type, and vLLM 0.26's /tokenize route requires application/json."""
    rec = load_lane(lane)["tokenize_messages_no_ctype"]
    assert "content-type" not in {k.lower() for k in rec["request"]["headers"]}
    assert rec["response"]["status"] == 400
    assert "Unsupported Media Type" in body_bytes(rec).decode()


@pytest.mark.parametrize("lane", LANES)
def test_tokenize_over_the_context_still_counts(lane: str) -> None:
    """/tokenize counts a prompt longer than the context (the long-context builder's
    doubling overshoots): vLLM answers 200 with the count, not an error."""
    rec = load_lane(lane)["tokenize_over_context"]
    assert rec["response"]["status"] == 200
    assert json.loads(body_bytes(rec))["count"] > 8192


# ---------------------------------------------------------------- server stats


@pytest.mark.parametrize("lane", LANES)
def test_server_stats_from_real_metrics_pages(lane: str) -> None:
    rec = load_lane(lane)
    idle = parse_metrics(body_bytes(rec["metrics_idle"]).decode())
    busy = parse_metrics(body_bytes(rec["metrics_busy"]).decode())
    after = parse_metrics(body_bytes(rec["metrics_after"]).decode())
    assert idle["vllm:num_requests_running"] == 0
    assert busy["vllm:num_requests_running"] >= 8  # 32 long answers were in flight
    assert 0 < busy["vllm:kv_cache_usage_perc"] <= 1
    assert after["vllm:generation_tokens_total"] > idle["vllm:generation_tokens_total"]
    assert after["vllm:prompt_tokens_total"] > idle["vllm:prompt_tokens_total"]


# ---------------------------------------------------------------- the stand-in agrees


def _keys(obj: dict[str, Any]) -> set[str]:
    return set(obj)


@pytest.mark.parametrize("lane", LANES)
def test_standin_stream_has_vllms_shape(lane: str) -> None:
    """Chunk by chunk, the stand-in's stream has the fields vLLM's has (role chunk, content
    chunks, finish chunk, usage chunk, [DONE])."""
    real = [e for e in events(load_lane(lane)["stream_usage"]) if isinstance(e, dict)]
    body = {"model": "m", "messages": PROMPT, "max_tokens": 48, "stream": True}
    body["stream_options"] = {"include_usage": True}
    with StandIn(Reply(tokens=["Paris", " is", "."])) as s:
        raw = httpx.post(s.url + "/v1/chat/completions", json=body).content
    fake = [e for e in events({"response": {"body": raw.decode()}}) if isinstance(e, dict)]
    for a, b in (
        (real[0], fake[0]),
        (real[1], fake[1]),
        (real[-2], fake[-2]),
        (real[-1], fake[-1]),
    ):
        assert _keys(a) == _keys(b)
        if a["choices"]:
            assert _keys(a["choices"][0]) == _keys(b["choices"][0])
            assert _keys(a["choices"][0]["delta"]) == _keys(b["choices"][0]["delta"])
        assert _keys(a.get("usage") or {}) == _keys(b.get("usage") or {})
