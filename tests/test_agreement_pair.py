"""Shared-prefix agreement on the real local pair (llama.cpp BF16 reference, Q4_0)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest_asyncio

from quantlab.agreement.compare import SHARED_PREFIX, Agreement
from quantlab.agreement.exchange import score_exchange
from quantlab.agreement.logprobs import chunks_to_dists
from quantlab.client import LaneClient
from quantlab.fanout import fanout
from quantlab.records import Endpoint, Exchange, LaneResult, SamplingParams

PARAMS = SamplingParams(temperature=0.0, max_tokens=40, seed=0, top_logprobs=20)
PROMPT = "List three facts about the Moon."
MESSAGES = [{"role": "user", "content": PROMPT}]


@pytest_asyncio.fixture(loop_scope="function")
async def clients(local_pair: list[Endpoint]) -> AsyncIterator[list[LaneClient]]:
    cs = [LaneClient(Endpoint.from_dict(e.to_dict())) for e in local_pair]
    yield cs
    for c in cs:
        await c.aclose()


async def test_stream_logprobs_cover_every_token_of_the_answer(
    clients: list[LaneClient],
) -> None:
    for c in clients:
        r = await c.chat(MESSAGES, PARAMS)
        assert r.ok, r.error
        dists = chunks_to_dists(r.logprobs or [])
        assert r.usage is not None
        # every generated token but the end-of-turn one carries its logprobs
        assert len(dists) in (r.usage["completion_tokens"], r.usage["completion_tokens"] - 1)
        assert b"".join(d.key for d in dists).decode() == r.text  # type: ignore[misc]
        assert all(len(d.top) == 20 and d.key in d.top for d in dists)


async def test_fanout_fills_shared_prefix_agreement_on_the_candidate(
    clients: list[LaneClient],
) -> None:
    ref, cand = (c.name for c in clients)
    ex = await fanout(clients, {c.name: MESSAGES for c in clients}, PARAMS, prompt=PROMPT)
    assert ex.results[ref].agreement is None  # the reference is not compared with itself
    raw = ex.results[cand].agreement
    assert raw is not None and raw["method"] == SHARED_PREFIX and raw["k"] == 20
    a = Agreement.from_dict(raw)
    assert a.reference == ref and a.positions >= 1
    assert all(math.isfinite(x) and x >= 0 for x in a.kl)
    d = a.diverged_at
    if d is None:  # no divergence: every position of the shorter answer is compared
        assert not any(x is None for x in a.ref_rank)
    else:
        assert a.positions == d + 1
        # before the divergence both chose the same token, greedily: the argmax of both
        assert all(a.top1[:d]) and a.ref_rank[:d] == [1] * d
        assert a.ref_rank[d] != 1  # at it, the candidate preferred another token
    # Q4_0 of a 135M model is not the BF16 model: its distributions do move
    assert (a.mean_kl or 0) > 0
    assert all(r.logprobs is None for r in ex.results.values())  # raw lists dropped
    assert "KL " in a.line() and "top-1 " in a.line()
    back = LaneResult.from_dict(ex.results[cand].to_dict())
    assert back.agreement == raw


async def test_reference_against_itself_agrees(clients: list[LaneClient]) -> None:
    ref = clients[0]
    first = await ref.chat(MESSAGES, PARAMS)
    second = await ref.chat(MESSAGES, PARAMS)
    second.lane = "again"
    ex = Exchange(prompt=PROMPT, params=PARAMS, results={ref.name: first, "again": second})
    await score_exchange([ref], ex, reference=ref.name)
    a = Agreement.from_dict(ex.results["again"].agreement or {})
    assert a.positions >= 10
    assert a.mean_kl is not None and a.mean_kl < 1e-3
    assert a.top1_rate is not None and a.top1_rate > 0.9
