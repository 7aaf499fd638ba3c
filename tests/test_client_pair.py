"""The lane client and the fan-out against the real local pair (llama.cpp, BF16 + Q4_0)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from quantlab.client import LaneClient
from quantlab.fanout import Conversation, fanout
from quantlab.records import Endpoint, SamplingParams

PARAMS = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=48, seed=0)
PROMPT = "List three facts about the Moon."


@pytest_asyncio.fixture(loop_scope="function")  # the tests' own loop, not the session's
async def clients(local_pair: list[Endpoint]) -> AsyncIterator[list[LaneClient]]:
    # Copies: discovery fills fields, and the fixture's endpoints are shared.
    cs = [LaneClient(Endpoint.from_dict(e.to_dict())) for e in local_pair]
    yield cs
    for c in cs:
        await c.aclose()


async def scrape(base_url: str) -> str:
    async with httpx.AsyncClient(base_url=base_url) as h:
        return (await h.get("/metrics")).text


def metric(text: str, name: str) -> float:
    """The value of an unlabelled Prometheus sample."""
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


async def test_discover_fills_backend_model_and_context(
    clients: list[LaneClient], local_pair: list[Endpoint]
) -> None:
    for c, quant, given in zip(clients, ("BF16", "Q4_0"), local_pair, strict=True):
        c.endpoint.model = None
        ep = await c.discover()
        assert (ep.status, ep.backend, ep.quantization) == ("ok", "llama.cpp", quant)
        assert ep.model == given.model
        assert ep.max_context is not None and ep.max_context >= 512
        # xllamacpp's build reports "b0-unknown": no version is shown rather than that one.
        assert ep.server_version is None or not ep.server_version.startswith("b0-")
        assert ep.slots is not None and ep.slots >= 1


async def test_temperature_zero_answers_are_the_same_on_two_runs(
    clients: list[LaneClient],
) -> None:
    messages = {c.name: [{"role": "user", "content": PROMPT}] for c in clients}
    first = await fanout(clients, messages, PARAMS, prompt=PROMPT)
    second = await fanout(clients, messages, PARAMS, prompt=PROMPT)
    for c in clients:
        a, b = first.results[c.name], second.results[c.name]
        assert a.ok and b.ok, (a.error, b.error)
        assert a.text and a.text == b.text


async def test_usage_tokens_equal_what_the_server_metrics_count(
    clients: list[LaneClient],
) -> None:
    for c in clients:
        before = await scrape(c.endpoint.base_url)
        r = await c.chat([{"role": "user", "content": "Describe a sunrise."}], PARAMS)
        after = await scrape(c.endpoint.base_url)
        assert r.ok and r.usage is not None, r.error
        predicted = metric(after, "llamacpp:tokens_predicted_total") - metric(
            before, "llamacpp:tokens_predicted_total"
        )
        assert r.usage["completion_tokens"] == predicted == r.timing.output_tokens
        assert not r.timing.tokens_counted
        # The prompt tokens the server processed are those not served from its cache.
        processed = metric(after, "llamacpp:prompt_tokens_total") - metric(
            before, "llamacpp:prompt_tokens_total"
        )
        cached = (r.usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        assert r.usage["prompt_tokens"] - cached == processed
        # llama.cpp's own timings agree, and fit inside our end-to-end time.
        st = r.server_timings
        assert st is not None and st["predicted_n"] == r.usage["completion_tokens"]
        assert r.timing.e2e_ms is not None and r.timing.ttft_ms is not None
        assert r.timing.e2e_ms + 1 >= st["prompt_ms"] + st["predicted_ms"]
        assert 0 < r.timing.ttft_ms < r.timing.e2e_ms


async def test_lanes_really_run_at_the_same_time(clients: list[LaneClient]) -> None:
    params = SamplingParams(temperature=0.0, max_tokens=96, seed=0)
    prompt = "Write a short story about a lighthouse keeper."
    messages = {c.name: [{"role": "user", "content": prompt}] for c in clients}
    ex = await fanout(clients, messages, params, prompt=prompt)
    e2e = [r.timing.e2e_ms for r in ex.results.values()]
    assert all(r.ok for r in ex.results.values())
    assert all(v is not None for v in e2e)
    assert ex.wall_ms is not None
    assert max(e2e) <= ex.wall_ms < 0.8 * sum(e2e)  # type: ignore[arg-type]


async def test_each_lane_keeps_its_own_multi_turn_history(clients: list[LaneClient]) -> None:
    conv = Conversation([c.name for c in clients])
    params = SamplingParams(temperature=0.0, max_tokens=40, seed=0, system_prompt="Be brief.")
    first = await fanout(clients, conv.messages_for("Name a color.", params), params, prompt="c")
    conv.record(first)
    follow_up = conv.messages_for("Why that one?", params)
    second = await fanout(clients, follow_up, params, prompt="Why that one?")
    for c in clients:
        sent = follow_up[c.name]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
        assert sent[2]["content"] == first.results[c.name].text  # its own answer, not the other's
        r = second.results[c.name]
        assert r.ok and r.usage is not None
        # The server's template over exactly these messages gives the prompt it reports.
        assert await c.count_tokens(messages=sent) == r.usage["prompt_tokens"]


async def test_a_context_overflow_on_the_real_server_is_a_context_error(
    clients: list[LaneClient],
) -> None:
    c = clients[1]
    await c.discover()
    assert c.endpoint.max_context is not None
    long = "word " * (c.endpoint.max_context + 100)
    r = await c.chat([{"role": "user", "content": long}], PARAMS)
    assert r.error is not None and r.error.kind == "context" and r.error.status == 400
    assert "context" in r.error.message


async def test_count_tokens_uses_the_servers_tokenizer(clients: list[LaneClient]) -> None:
    c = clients[0]
    async with httpx.AsyncClient(base_url=c.endpoint.base_url) as h:
        tokens = (await h.post("/tokenize", json={"content": "hello world"})).json()["tokens"]
    assert await c.count_tokens(text="hello world") == len(tokens) > 0
