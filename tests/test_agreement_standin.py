"""Teacher-forced agreement through vLLM's prompt_logprobs, on two scripted stand-ins.

The stand-ins play toy models whose distributions are known (tests/standin.py): the
reference gives each token of a text 0.7 and the candidate 0.5, the rest halving down the
alternatives, so the KL at every position is known by hand.
"""

from __future__ import annotations

import math

from standin import Reply, StandIn

from quantlab.agreement.compare import SHARED_PREFIX, TEACHER_FORCED, Agreement
from quantlab.client import LaneClient
from quantlab.fanout import fanout
from quantlab.records import Endpoint, SamplingParams

ANSWER = ["The", " Moon", " is", " bright."]
MESSAGES = [{"role": "user", "content": "Tell me about the Moon"}]
# k = 2: reference (.7, .15 | other .15), candidate (.5, .25 | other .25), same two ids
KL_K2 = 0.7 * math.log(0.7 / 0.5) + 2 * 0.15 * math.log(0.15 / 0.25)


async def _run(ref: StandIn, cand: StandIn, k: int) -> tuple[dict[str, Agreement], list]:
    clients = [
        LaneClient(Endpoint("bf16", ref.url, role="reference")),
        LaneClient(Endpoint("awq", cand.url)),
    ]
    try:
        for c in clients:
            assert (await c.discover()).backend == "vllm"
        params = SamplingParams(max_tokens=16, top_logprobs=k)
        ex = await fanout(clients, {c.name: MESSAGES for c in clients}, params, prompt="x")
    finally:
        for c in clients:
            await c.aclose()
    out = {n: Agreement.from_dict(r.agreement) for n, r in ex.results.items() if r.agreement}
    return out, [r for r in ex.results.values()]


async def test_teacher_forced_scores_the_whole_reference_answer() -> None:
    with (
        StandIn(Reply(tokens=ANSWER), p_actual=0.7) as ref,
        StandIn(Reply(tokens=["Cheese."]), p_actual=0.5) as cand,
    ):
        ags, results = await _run(ref, cand, k=2)
        assert list(ags) == ["awq"] and results[0].agreement is None
        a = ags["awq"]
        assert a.method == TEACHER_FORCED and a.reference == "bf16" and a.k == 2
        assert abs(KL_K2 - 0.0822829) < 1e-7
        assert a.positions == len(ANSWER)  # the whole answer, though the texts differ
        assert all(abs(x - KL_K2) < 1e-6 for x in a.kl)
        assert a.top1 == [True] * 4 and a.ref_rank == [1] * 4
        assert "teacher-forced 4 tokens" in a.line()
        # both servers scored the same ids: the prompt, then the reference's answer
        (rb,) = ref.completions
        (cb,) = cand.completions
        assert rb["prompt"] == cb["prompt"] and rb["prompt_logprobs"] == 2
        assert rb["prompt"][-4:] == [ref.vocab[w.strip()] for w in ANSWER]


async def test_refused_prompt_logprobs_fall_back_to_the_shared_prefix() -> None:
    # k = 30 is over vLLM's default --max-logprobs 20: a 400, said in the note
    with StandIn(Reply(tokens=ANSWER)) as ref, StandIn(Reply(tokens=ANSWER)) as cand:
        ags, _ = await _run(ref, cand, k=30)
        a = ags["awq"]
        assert a.method == SHARED_PREFIX
        assert a.note and "greater than max allowed: 20" in a.note
        # the streamed top-k: same answer on both, same toy distribution -> KL 0
        assert a.positions == len(ANSWER) and a.diverged_at is None
        assert a.kl == [0.0] * 4 and a.top1 == [True] * 4


async def test_a_long_answer_is_teacher_forced_over_its_first_positions_only(
    monkeypatch: object,
) -> None:
    """vLLM computes full logits for every scored position, and its answer is parsed in
    one piece: quantlab scores at most teacher.MAX_POSITIONS and says so."""
    import pytest

    from quantlab.agreement import teacher

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(teacher, "MAX_POSITIONS", 3)
    with (
        StandIn(Reply(tokens=ANSWER), p_actual=0.7) as ref,
        StandIn(Reply(tokens=["Cheese."]), p_actual=0.5) as cand,
    ):
        ags, _ = await _run(ref, cand, k=2)
        a = ags["awq"]
        assert a.method == TEACHER_FORCED and a.positions == 3
        assert a.note == "teacher-forced over the first 3 of 4 tokens"
        (rb,) = ref.completions
        assert rb["prompt"][-3:] == [ref.vocab[w.strip()] for w in ANSWER[:3]]
