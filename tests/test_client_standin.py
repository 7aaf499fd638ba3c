"""The lane client and the fan-out against the scripted stand-in (vLLM's wire format).

Only faults a real server can't produce on demand live here; the real local pair is
driven in test_client_pair.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from standin import Reply, StandIn

from quantlab.client import LaneClient
from quantlab.fanout import Conversation, fanout
from quantlab.records import Endpoint, SamplingParams

PARAMS = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=64, seed=7)
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn() as s:
        yield s


def free_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_for(s: StandIn, name: str = "lane", **kw: float) -> LaneClient:
    return LaneClient(Endpoint(name, s.url, model=s.model), **kw)


async def test_a_clean_stream_gives_text_usage_and_timing(standin: StandIn) -> None:
    standin.script = Reply(tokens=["Hel", "lo", " there"], tokens_per_s=50, first_token_s=0.2)
    seen: list[str] = []
    async with client_for(standin) as c:
        r = await c.chat(HELLO, PARAMS, on_text=seen.append)
    assert r.error is None
    assert r.text == "Hello there" == "".join(seen)
    assert seen == ["Hel", "lo", " there"]
    assert r.finish_reason == "stop"
    # vLLM counts the EOS token: usage says 4 where 3 content chunks came.
    assert r.usage == {"prompt_tokens": 6, "total_tokens": 10, "completion_tokens": 4}
    t = r.timing
    assert t.output_tokens == 4 and not t.tokens_counted
    assert t.ttft_ms is not None and t.e2e_ms is not None and t.tokens_per_s is not None
    assert 190 <= t.ttft_ms < 1000
    assert t.ttfc_ms is not None and t.ttfc_ms >= t.ttft_ms
    # vLLM's ITL: one gap per chunk with choices after the first (role, 3 content, finish),
    # so the two paced gaps between content chunks are the middle ones.
    # (Structure only: pacing under a loaded machine is no test of the client.)
    assert len(t.itl_ms) == 4 and all(g >= 0 for g in t.itl_ms)
    # vLLM's e2e: the last data line before [DONE], here the usage chunk after the finish.
    assert t.e2e_ms >= t.ttft_ms + sum(t.itl_ms) - 0.01
    assert t.last_byte_ms is not None and t.last_byte_ms >= t.e2e_ms
    assert t.tpot_ms == pytest.approx((t.e2e_ms - t.ttft_ms) / 3, rel=1e-3)
    # quantlab's decode rate spans the chunks with choices only: the usage chunk after the
    # finish never lowers it below vLLM's 1 / TPOT.
    assert t.tokens_per_s >= 1000 / t.tpot_ms * (1 - 1e-3)


async def test_every_sampling_field_is_sent_with_usage_and_the_system_prompt(
    standin: StandIn,
) -> None:
    params = SamplingParams(
        temperature=0.7, top_p=0.9, max_tokens=33, seed=5, system_prompt="Be terse.", stop=["#"]
    )
    async with client_for(standin) as c:
        await c.chat(HELLO, params, extra_body={"top_k": 20})
        await c.chat([{"role": "system", "content": "Mine."}, *HELLO], params)
    first, second = standin.requests
    assert first["model"] == standin.model
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    for key, value in params.request_fields().items():
        assert first[key] == value
    assert first["top_k"] == 20
    assert first["messages"] == [{"role": "system", "content": "Be terse."}, *HELLO]
    assert second["messages"][0] == {"role": "system", "content": "Mine."}
    assert len(second["messages"]) == 2


async def test_connection_is_kept_alive_between_requests(standin: StandIn) -> None:
    async with client_for(standin) as c:
        for _ in range(3):
            assert (await c.chat(HELLO, PARAMS)).ok
    assert standin.connections == 1


async def test_concurrent_streams_spread_over_small_pools_and_reuse_them(
    standin: StandIn,
) -> None:
    """20 streams at once take 20 connections across 3 shards of 8 (so no pool grows past
    8: httpcore's bookkeeping is quadratic in a pool's idle connections); a second wave
    reuses them all, and closing the client closes every shard."""
    standin.script = Reply(tokens=["a", "b", "c"], tokens_per_s=20)
    c = LaneClient(Endpoint("lane", standin.url, model=standin.model), max_connections=64)
    for _ in range(2):
        results = await asyncio.gather(*(c.chat(HELLO, PARAMS) for _ in range(20)))
        assert all(r.ok and r.text == "abc" for r in results)
        assert c._busy == [0] * 8
    assert standin.connections == 20
    made = [h for h in c._shards if h is not None]
    assert len(made) == 3
    await c.aclose()
    assert all(h.is_closed for h in made)


async def test_api_key_comes_from_the_named_environment_variable(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QL_TEST_KEY", "sekrit")
    ep = Endpoint("lane", standin.url, api_key_env="QL_TEST_KEY")
    async with LaneClient(ep) as c:
        await c.chat(HELLO, PARAMS)
    assert standin.headers[0]["authorization"] == "Bearer sekrit"
    assert "sekrit" not in str(ep.to_dict())


async def test_a_server_that_echoes_the_key_does_not_put_it_in_the_error_text(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Security: the key never reaches error text (the screen, ask's output, logs)."""
    monkeypatch.setenv("QL_TEST_KEY", "sk-echo-1234567")
    standin.script = Reply(fault="http500", status=401, message="invalid key sk-echo-1234567")
    ep = Endpoint("lane", standin.url, api_key_env="QL_TEST_KEY")
    async with LaneClient(ep) as c:
        r = await c.chat(HELLO, PARAMS)
    assert standin.headers[0]["authorization"] == "Bearer sk-echo-1234567"
    assert r.error is not None and r.error.status == 401
    assert r.error.message.endswith("invalid key [redacted]")
    assert "sk-echo" not in str(r.to_dict())


async def test_length_finish_carries_the_last_token(standin: StandIn) -> None:
    standin.script = Reply(tokens=["a", "b", "c", "d"])
    async with client_for(standin) as c:
        r = await c.chat(HELLO, SamplingParams(max_tokens=3))
    assert (r.text, r.finish_reason, r.timing.output_tokens) == ("abc", "length", 3)


async def test_crlf_stream_with_pings_drips_in_fine(standin: StandIn) -> None:
    standin.script = Reply(tokens=["x"] * 4, tokens_per_s=8, ping_every_s=0.05, crlf=True)
    async with client_for(standin) as c:
        r = await c.chat(HELLO, PARAMS)
    assert r.ok and r.text == "xxxx"
    assert len(r.timing.itl_ms) == 5  # role, 4 content, finish: 6 chunks with choices
    assert all(g > 60 for g in r.timing.itl_ms[1:4])


# Each fault the real server can't be made to produce, and the LaneError it must become.
FAULTS = [
    (Reply(fault="http500", message="engine died"), "http", 500, "engine died", ""),
    (Reply(fault="http500_flat", message="old engine died"), "http", 500, "old engine died", ""),
    (Reply(fault="http500_text", message="Bad Gateway", status=502), "http", 502,
     "Bad Gateway", ""),
    (Reply(fault="context"), "context", 400, "maximum context length is 4096", ""),
    (Reply(fault="error_event", message="Internal server error"), "stream", 500,
     "Internal server error", "Hello,"),
    (Reply(fault="error_event_flat", message="flat oops"), "stream", 500, "flat oops", "Hello,"),
    (Reply(fault="reset"), "stream", None, "connection broke", "Hello,"),
    (Reply(fault="truncate"), "stream", None, "connection broke", "Hello,"),
    (Reply(fault="no_done"), "stream", None, "ended before the answer was complete", "Hello,"),
    (Reply(fault="malformed"), "protocol", None, "malformed JSON", "Hello,"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "kind", "status", "phrase", "text"), FAULTS, ids=[f[0].fault for f in FAULTS]
)
async def test_each_fault_becomes_its_lane_error_and_the_other_lane_goes_on(
    reply: Reply, kind: str, status: int | None, phrase: str, text: str
) -> None:
    healthy_reply = Reply(tokens=["fine"] * 20, tokens_per_s=100)
    with StandIn(reply) as bad, StandIn(healthy_reply) as good:
        clients = [client_for(good, "good"), client_for(bad, "bad")]
        msgs = {"good": HELLO, "bad": HELLO}
        ex = await fanout(clients, msgs, PARAMS, prompt="Say hello")
        for c in clients:
            await c.aclose()
    r = ex.results["bad"]
    assert r.error is not None, r
    assert (r.error.kind, r.error.status) == (kind, status), r.error
    assert phrase in r.error.message
    assert r.text == text  # what arrived before the fault is kept
    ok = ex.results["good"]
    assert ok.error is None and ok.text == "fine" * 20 and ok.finish_reason == "stop"


async def test_a_server_that_is_down_is_a_connect_error() -> None:
    ep = Endpoint("down", f"http://127.0.0.1:{free_port()}")
    async with LaneClient(ep) as c:
        r = await c.chat(HELLO, PARAMS)
    assert r.error is not None and r.error.kind == "connect"
    assert "refused" in r.error.message


async def test_a_stalled_stream_is_a_timeout_and_keeps_its_text(standin: StandIn) -> None:
    standin.script = Reply(fault="stall", stall_s=5)
    async with client_for(standin, read_timeout=0.4) as c:
        r = await c.chat(HELLO, PARAMS)
    assert r.error is not None and r.error.kind == "timeout"
    assert r.text == "Hello,"


async def test_total_timeout_caps_a_slow_drip(standin: StandIn) -> None:
    standin.script = Reply(tokens=["z"] * 100, tokens_per_s=10)
    async with client_for(standin, total_timeout=0.5) as c:
        r = await c.chat(HELLO, PARAMS)
    assert r.error is not None and r.error.kind == "timeout"
    assert 0 < len(r.text) < 100


async def test_cancelling_a_lane_closes_the_stream_and_raises(standin: StandIn) -> None:
    standin.script = Reply(tokens=["z"] * 200, tokens_per_s=20)
    async with client_for(standin) as c:
        task = asyncio.create_task(c.chat(HELLO, PARAMS))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(50):  # the server notices the closed socket at its next write
            if standin.counters.running == 0:
                break
            await asyncio.sleep(0.05)
        assert standin.counters.running == 0


async def test_fanout_runs_lanes_at_once_and_reports_each_lane_as_it_finishes() -> None:
    fast, slow = Reply(tokens=["f"] * 5, tokens_per_s=50), Reply(tokens=["s"] * 20, tokens_per_s=40)
    finished: list[str] = []
    texts: dict[str, str] = {"fast": "", "slow": ""}

    def on_text(lane: str, delta: str) -> None:
        texts[lane] += delta

    async def on_lane_done(lane: str, result: object) -> None:
        finished.append(lane)

    with StandIn(fast) as a, StandIn(slow) as b:
        clients = [client_for(b, "slow"), client_for(a, "fast")]
        ex = await fanout(
            clients,
            {"slow": HELLO, "fast": HELLO},
            PARAMS,
            prompt="Say hello",
            on_text=on_text,
            on_lane_done=on_lane_done,
            source="ask",
        )
        for c in clients:
            await c.aclose()
    assert finished == ["fast", "slow"]
    assert list(ex.results) == ["slow", "fast"]  # lane order, not finishing order
    assert texts == {"fast": "f" * 5, "slow": "s" * 20}
    e2e = [r.timing.e2e_ms or 0 for r in ex.results.values()]
    assert ex.wall_ms is not None and ex.wall_ms < 0.9 * sum(e2e)
    assert ex.source == "ask" and ex.messages == {"slow": HELLO, "fast": HELLO}


async def test_a_failing_callback_does_not_stop_the_other_lanes(standin: StandIn) -> None:
    def on_lane_done(lane: str, result: object) -> None:
        if lane == "a":
            raise RuntimeError("disk full")

    clients = [client_for(standin, "a"), client_for(standin, "b")]
    ex = await fanout(
        clients, {"a": HELLO, "b": HELLO}, PARAMS, prompt="x", on_lane_done=on_lane_done
    )
    for c in clients:
        await c.aclose()
    assert all(r.ok for r in ex.results.values())
    assert ex.meta["on_lane_done_errors"] == ["a: RuntimeError('disk full')"]


async def test_conversation_keeps_each_lanes_own_history() -> None:
    with (
        StandIn(Reply(tokens=["A1"])) as a,
        StandIn([Reply(tokens=["B1"]), Reply(fault="http500"), Reply(tokens=["B3"])]) as b,
    ):
        clients = [client_for(a, "a"), client_for(b, "b")]
        conv = Conversation(clients)
        params = SamplingParams(system_prompt="sys")
        exchanges = []
        for prompt in ("one", "two", "three"):
            ex = await fanout(clients, conv.messages_for(prompt, params), params, prompt=prompt)
            conv.record(ex)
            exchanges.append(ex)
        for c in clients:
            await c.aclose()
    sys_msg = {"role": "system", "content": "sys"}
    # Lane b failed on "two": its history skips that turn and stays well-formed.
    assert b.requests[2]["messages"] == [
        sys_msg,
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "B1"},
        {"role": "user", "content": "three"},
    ]
    assert a.requests[2]["messages"][-3:] == [
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "three"},
    ]
    assert conv.turns == {"a": 3, "b": 2}
    # A reopened session rebuilds the same histories from its exchanges.
    assert Conversation.from_exchanges(["a", "b"], exchanges).histories == conv.histories
    conv.reset()
    assert conv.messages_for("new", SamplingParams()) == {
        "a": [{"role": "user", "content": "new"}],
        "b": [{"role": "user", "content": "new"}],
    }


async def test_discover_reads_vllm_facts(standin: StandIn) -> None:
    ep = Endpoint("v", standin.url + "/")
    async with LaneClient(ep) as c:
        got = await c.discover()
        # The stand-in's toy chat template: [1, role, 3, *words, 2] a message, and the
        # generation prompt [1, 5, 3] that the vLLM path asks for.
        assert await c.count_tokens(messages=HELLO) == 6 + 3
        assert await c.count_tokens(text="three word text") == 3
    assert got is ep
    assert (ep.backend, ep.server_version, ep.max_context) == ("vllm", "0.26.0", 4096)
    assert (ep.model, ep.status, ep.status_detail) == (standin.model, "ok", None)


async def test_token_counting_sends_json_as_vllm_requires(standin: StandIn) -> None:
    """vLLM 0.26 answers a /tokenize body without ``Content-Type: application/json`` with
    a 400 (its validate_json_request), and so does the stand-in: the long-context suite's
    "no server could count tokens" on real vLLM was this header missing."""
    import httpx

    raw = httpx.post(standin.url + "/tokenize", content=b'{"prompt": "a b"}', trust_env=False)
    assert raw.status_code == 400 and "Unsupported Media Type" in raw.json()["error"]["message"]
    ok = httpx.post(standin.url + "/tokenize", json={"prompt": "a b"}, trust_env=False)
    body = ok.json()
    assert (body["count"], body["max_model_len"], body["token_strs"]) == (2, 4096, None)
    assert len(body["tokens"]) == 2  # the toy vocabulary's ids
    standin.refused_media.clear()
    async with LaneClient(Endpoint("v", standin.url)) as c:
        # The stand-in's toy chat template: [1, role, 3, *words, 2] a message, and the
        # generation prompt [1, 5, 3] that the vLLM path asks for.
        assert await c.count_tokens(messages=HELLO) == 6 + 3
        assert await c.count_tokens(text="three word text") == 3
    assert standin.refused_media == []


async def test_token_counting_names_the_served_model() -> None:
    """vLLM 404s a /tokenize for a model it does not serve: the count goes by the
    discovered (served) name."""
    with StandIn(model="served-name") as s:
        async with LaneClient(Endpoint("v", s.url)) as c:
            assert await c.count_tokens(text="one two") == 2
        async with LaneClient(Endpoint("v", s.url, model="other")) as c:
            assert await c.count_tokens(text="one two") is None


async def test_discover_names_a_model_the_server_does_not_serve(standin: StandIn) -> None:
    ep = Endpoint("v", standin.url, model="someone/else")
    async with LaneClient(ep) as c:
        await c.discover()
    assert ep.model == "someone/else" and ep.status == "ok"
    assert ep.status_detail is not None and standin.model in ep.status_detail


async def test_discover_never_raises_on_a_down_server() -> None:
    ep = Endpoint("down", f"http://127.0.0.1:{free_port()}", model="m")
    async with LaneClient(ep) as c:
        got = await c.discover(timeout=2)
        assert await c.count_tokens(text="hi") is None
    assert got.status == "down" and "refused" in (got.status_detail or "")
    assert got.backend is None and got.model == "m"


async def test_exchange_records_messages_as_sent_and_a_raising_on_text_is_a_value(
    standin: StandIn,
) -> None:
    def on_text(lane: str, delta: str) -> None:
        if lane == "a":
            raise ValueError("widget gone")

    params = SamplingParams(system_prompt="sys")
    clients = [client_for(standin, "a"), client_for(standin, "b")]
    ex = await fanout(clients, {"a": HELLO, "b": HELLO}, params, prompt="x", on_text=on_text)
    for c in clients:
        await c.aclose()
    assert ex.messages["a"] == [{"role": "system", "content": "sys"}, *HELLO]
    assert all(req["messages"] == ex.messages["a"] for req in standin.requests)
    a, b = ex.results["a"], ex.results["b"]
    assert a.error is not None and a.error.kind == "protocol" and "widget gone" in a.error.message
    assert b.ok and b.text == "Hello, world!"


async def test_a_proxy_in_the_environment_does_not_capture_a_loopback_server(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, dead)
    async with client_for(standin) as c:
        r = await c.chat(HELLO, PARAMS)
    assert r.ok, r.error


async def test_a_server_that_ignores_stream_true_still_gives_an_answer(standin: StandIn) -> None:
    standin.script = Reply(tokens=["All", " at", " once"], whole=True)
    seen: list[str] = []
    async with client_for(standin) as c:
        r = await c.chat(HELLO, PARAMS, on_text=seen.append)
    assert r.ok, r.error
    assert (r.text, r.finish_reason, r.timing.output_tokens) == ("All at once", "stop", 4)
    assert seen == ["All at once"] and r.timing.ttft_ms == r.timing.e2e_ms


async def test_a_connection_closed_without_an_answer_is_tried_once_more(standin: StandIn) -> None:
    # llama.cpp's server closes idle keep-alive connections: a request can meet one.
    standin.script = [Reply(fault="hangup"), Reply(tokens=["again"])]
    async with client_for(standin) as c:
        r = await c.chat(HELLO, PARAMS)
    assert r.ok and r.text == "again"
    assert len(standin.requests) == 2 and standin.connections == 2


async def test_a_server_that_always_hangs_up_is_a_connect_error(standin: StandIn) -> None:
    standin.script = Reply(fault="hangup")
    async with client_for(standin) as c:
        r = await c.chat(HELLO, PARAMS)
        got = await c.discover()
    assert r.error is not None and r.error.kind == "connect"
    assert "without answering" in r.error.message
    assert len(standin.requests) == 2  # tried twice, not more
    assert got.status == "ok"  # GETs are answered; only chat hangs up here
