"""Agreement math on a tiny synthetic vocabulary, checked against hand-computed values,
and the log-probability parsers on each wire format (shapes copied from real servers)."""

from __future__ import annotations

import math

import pytest

from quantlab.agreement.compare import Agreement, shared_prefix, teacher_forced
from quantlab.agreement.kl import kl_full, kl_lower_bound, kl_topk, rank_of
from quantlab.agreement.logprobs import (
    LazyDists,
    TokenDist,
    chunks_to_dists,
    iter_dists,
    parse_chat,
    parse_completion,
    parse_llama_probs,
    parse_prompt_logprobs,
    split_logprobs,
)

L = math.log
# A 4-token vocabulary. Full distributions, and what a server returns at k = 2.
P_FULL = [0.5, 0.3, 0.15, 0.05]
Q_FULL = [0.4, 0.05, 0.4, 0.15]
P2 = {0: L(0.5), 1: L(0.3)}
Q2 = {0: L(0.4), 2: L(0.4)}


def test_full_vocabulary_kl_by_hand() -> None:
    # 0.5 ln(.5/.4) + 0.3 ln(.3/.05) + 0.15 ln(.15/.4) + 0.05 ln(.05/.15)
    want = 0.111571776 + 0.537527841 - 0.147124388 - 0.054930614
    assert kl_full([L(x) for x in P_FULL], [L(x) for x in Q_FULL]) == pytest.approx(want, abs=1e-8)
    assert kl_full([L(x) for x in P_FULL], [L(x) for x in P_FULL]) == pytest.approx(0, abs=1e-12)


def test_topk_union_other_by_hand() -> None:
    # U = {0, 1, 2}. Reference lacks 2: tail 0.2 shared by 1 missing + other: 0.1 each,
    # under its smallest 0.3. Candidate lacks 1: tail 0.2 -> 0.1 and other 0.1.
    # p = (.5, .3, .1 | .1), q = (.4, .1, .4 | .1)
    want = 0.5 * L(0.5 / 0.4) + 0.3 * L(0.3 / 0.1) + 0.1 * L(0.1 / 0.4)
    assert want == pytest.approx(0.302526027, abs=1e-9)
    assert kl_topk(P2, Q2) == pytest.approx(want, abs=1e-12)


def test_lower_bound_by_hand_and_below_truth() -> None:
    # Only token 0 returned by both: p = (.5 | .5), q = (.4 | .6)
    want = 0.5 * L(0.5 / 0.4) + 0.5 * L(0.5 / 0.6)
    assert kl_lower_bound(P2, Q2) == pytest.approx(want, abs=1e-12)
    assert kl_lower_bound(P2, Q2) <= kl_full([L(x) for x in P_FULL], [L(x) for x in Q_FULL])


def test_imputed_share_never_above_the_kth_probability() -> None:
    # Reference returns .5 and .05 (tail .45); the candidate's token 2 is missing from
    # it: tail/2 = .225 would exceed .05, so it gets .05 and "other" keeps .40.
    ref = {0: L(0.5), 1: L(0.05)}
    cand = {0: L(0.5), 1: L(0.05), 2: L(0.2)}  # tail .25, nothing missing
    p = (0.5, 0.05, 0.05, 0.40)
    q = (0.5, 0.05, 0.2, 0.25)
    want = sum(a * L(a / b) for a, b in zip(p, q, strict=True))
    assert kl_topk(ref, cand) == pytest.approx(want, abs=1e-12)


def test_topk_is_exact_when_whole_vocabulary_returned() -> None:
    p = {i: L(x) for i, x in enumerate(P_FULL)}
    q = {i: L(x) for i, x in enumerate(Q_FULL)}
    full = kl_full([L(x) for x in P_FULL], [L(x) for x in Q_FULL])
    assert kl_topk(p, q) == pytest.approx(full, abs=1e-12)
    assert kl_topk(p, p) == pytest.approx(0.0, abs=1e-12)


def test_rank() -> None:
    assert rank_of(2, Q2) == 1 and rank_of(0, Q2) == 1  # ties share the rank
    assert rank_of(1, P2) == 2
    assert rank_of(3, P2) is None


def _dist(key: int, top: dict[int, float]) -> TokenDist:
    return TokenDist(key, str(key), top.get(key, -9.0), dict(top))


def test_shared_prefix_stops_at_first_divergence_inclusive() -> None:
    same = {0: L(0.6), 1: L(0.4)}
    ref = [_dist(0, same), _dist(0, same), _dist(0, {0: L(0.7), 1: L(0.3)}), _dist(0, same)]
    cand = [_dist(0, same), _dist(0, same), _dist(1, {1: L(0.6), 0: L(0.4)}), _dist(1, same)]
    a = shared_prefix(ref, cand, reference="bf16", k=2)
    assert a.diverged_at == 2
    assert a.positions == 3  # 0, 1 and the divergence itself
    assert a.kl[:2] == [0.0, 0.0] and a.kl[2] > 0
    assert a.top1 == [True, True, False]
    assert a.ref_rank == [1, 1, 2]
    assert a.line() == f"KL {a.mean_kl:.3f} · top-1 67 % · diverged at token 2"
    back = Agreement.from_dict(a.to_dict())
    assert back.kl == pytest.approx(a.kl, abs=1e-6) and back.diverged_at == 2
    assert back.top1 == a.top1 and back.ref_rank == a.ref_rank


def test_shared_prefix_without_divergence() -> None:
    d = [_dist(0, {0: L(0.9)})] * 3
    a = shared_prefix(d, d[:2], reference="r", k=1)
    assert a.diverged_at is None and a.positions == 2
    assert "same 2 tokens" in a.line()
    assert "no log-probabilities" in (shared_prefix([], d, reference="r", k=1).note or "")


# A real llama.cpp chat chunk's logprobs (partial UTF-8 token with empty text included).
LLAMA_CHUNK = {
    "content": [
        {
            "id": 19556,
            "token": "Hello",
            "bytes": [72, 101, 108, 108, 111],
            "logprob": -2.333919048309326,
            "top_logprobs": [
                {
                    "id": 19556,
                    "token": "Hello",
                    "bytes": [72, 101, 108, 108, 111],
                    "logprob": -2.33,
                },
                {"id": 57, "token": "I", "bytes": [73], "logprob": -2.3755545616149902},
                {"id": 10813, "token": "", "bytes": [240, 159], "logprob": -3.251969814300537},
            ],
        }
    ]
}


def test_parse_chat_keys_by_bytes() -> None:
    (d,) = parse_chat(LLAMA_CHUNK)
    assert d.key == b"Hello" and d.text == "Hello" and d.logprob == pytest.approx(-2.3339, abs=1e-4)
    assert list(d.top) == [b"Hello", b"I", b"\xf0\x9f"]
    assert parse_chat(None) == [] and parse_chat({"content": None}) == []
    # vLLM shape: no id; a malformed entry is skipped, the rest kept
    vllm = {"content": [{"token": " a", "logprob": -0.1, "bytes": [32, 97], "top_logprobs": []},
                        {"token": 5}]}  # fmt: skip
    assert [x.key for x in parse_chat(vllm)] == [b" a"]
    assert len(chunks_to_dists([LLAMA_CHUNK, None, vllm])) == 2


def test_parse_completion_and_llama_native() -> None:
    legacy = {"tokens": ["a", "b"], "token_logprobs": [-0.5, None],
              "top_logprobs": [{"a": -0.5, "c": -1.5}, None]}  # fmt: skip
    (d,) = parse_completion(legacy)
    assert d.key == "a" and d.top == {"a": -0.5, "c": -1.5}
    native = [{"id": 29, "token": "-", "prob": 1.0, "top_probs": [{"id": 29, "prob": 1.0}]},
              {"id": 3, "token": "x", "logprob": -0.2, "top_logprobs": [{"id": 3, "logprob": -0.2},
               {"id": 4, "logprob": -2.0}]}]  # fmt: skip
    a, b = parse_llama_probs(native)
    assert a.key == 29 and a.logprob == 0.0 and a.top == {29: 0.0}
    assert b.top == {3: -0.2, 4: -2.0}


def test_parse_vllm_prompt_logprobs() -> None:
    # vLLM: first entry null; keys are token ids as JSON strings; the prompt token is in
    # each dict with its true rank even when it is outside the top-k.
    ids = [1, 7, 9]
    pl = [
        None,
        {
            "7": {"logprob": -0.1, "rank": 1, "decoded_token": "x"},
            "8": {"logprob": -2.5, "rank": 2, "decoded_token": "y"},
        },
        {
            "4": {"logprob": -0.3, "rank": 1, "decoded_token": "z"},
            "9": {"logprob": -6.0, "rank": 31, "decoded_token": "w"},
        },
    ]
    a, b = parse_prompt_logprobs(pl, ids, start=1)
    assert (a.key, a.rank, a.text, a.top) == (7, 1, "x", {7: -0.1, 8: -2.5})
    assert (b.key, b.rank) == (9, 31)
    assert parse_prompt_logprobs(pl, ids, start=2) == [b]
    ag = teacher_forced([a, b], [a, b], reference="r", k=1)
    assert ag.kl == [0.0, 0.0] and ag.ref_rank == [1, 31] and "teacher-forced 2" in ag.line()


def test_split_logprobs_cuts_the_value_out_for_both_key_orders() -> None:
    import orjson

    lp = {"content": [{"token": '}]"x', "logprob": -0.1, "bytes": [125], "top_logprobs": []}]}
    vllm = {"id": "c", "choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": lp,
            "finish_reason": None}], "model": "m"}  # fmt: skip
    llama = {"choices": [{"finish_reason": None, "index": 0, "delta": {"content": "x"},
             "logprobs": lp}], "created": 1, "model": "m}]"}  # fmt: skip
    for obj in (vllm, {**llama, "model": "m"}):
        small, raw = split_logprobs(orjson.dumps(obj))
        assert raw is not None and orjson.loads(raw) == lp
        assert orjson.loads(small) == {**obj, "choices": [{**obj["choices"][0], "logprobs": None}]}
    # a "}]" after the choice would mislead the cut; the value does not end as a
    # logprobs object there, so the chunk comes back whole (the client parses it all)
    whole = orjson.dumps(llama)
    assert split_logprobs(whole) == (whole, None)
    # as does a key after the value (another order): it would ride along in the raw part
    after = {"choices": [{"delta": {"content": "x"}, "finish_reason": None, "logprobs": lp,
             "index": 0}]}  # fmt: skip
    assert split_logprobs(orjson.dumps(after)) == (orjson.dumps(after), None)
    plain = orjson.dumps({"choices": [{"delta": {"content": "x"}, "logprobs": None}]})
    assert split_logprobs(plain) == (plain, None)
    # raw parts are parsed lazily; one that is not JSON ends the positions there
    good = orjson.dumps(LLAMA_CHUNK)
    assert len(list(iter_dists([good, b"{broken", good]))) == 1


def test_lazy_positions_stop_reading_at_the_divergence() -> None:
    read: list[int] = []

    def chunks(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            read.append(i)
            tok = "a" if i < 3 else "b"
            yield {"content": [{"token": tok, "logprob": -0.1, "top_logprobs": []}]}

    ref = LazyDists(chunks(100))
    other = [TokenDist(b"a", "a", -0.1)] * 3 + [TokenDist(b"c", "c", -0.1)] * 97
    a = shared_prefix(ref, other, reference="r", k=1)
    assert a.diverged_at == 3 and len(read) == 4


def test_raw_logprobs_are_never_written_to_a_session() -> None:
    import orjson

    from quantlab.agreement.logprobs import RawLogprobs
    from quantlab.records import Exchange, LaneResult, SamplingParams
    from quantlab.session.store import exchange_json

    r = LaneResult("q4", text="x", logprobs=RawLogprobs([b'{"content": []}', {"content": []}]))
    ex = Exchange(prompt="p", params=SamplingParams(), results={"q4": r})
    doc = orjson.loads(exchange_json(ex))
    assert doc["results"]["q4"]["logprobs"] is None
    assert doc == ex.to_dict()
    assert LaneResult.from_dict(doc["results"]["q4"]).logprobs is None
    old = {"lane": "q4", "text": "x"}  # a session written before agreement existed
    assert LaneResult.from_dict(old).agreement is None


def test_ask_prints_the_agreement_line() -> None:
    from quantlab.commands.ask import lane_block
    from quantlab.records import LaneResult

    ag = Agreement("shared-prefix", "bf16", 20, kl=[0.02, 0.01], top1=[True, False])
    ag.ref_rank, ag.diverged_at = [1, 3], 1
    r = LaneResult("q4", text="hi", agreement=ag.to_dict())
    assert "KL 0.015 · top-1 50 % · diverged at token 1" in lane_block(r, None, 80)


def test_agreement_line_of_a_hand_edited_value_is_none() -> None:
    from quantlab.agreement.compare import agreement_line

    assert agreement_line(None) is None
    assert agreement_line({"kl": "lots"}) is None
    assert agreement_line({"kl": 5}) is None
    assert agreement_line({"kl": [0.5], "top1": [1]}) == "KL 0.500 · top-1 100 % · same 1 token"
