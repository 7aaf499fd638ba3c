"""The live shared-prefix tracker: fed in pieces, it ends where shared_prefix does."""

from __future__ import annotations

import math
import random

import orjson
import pytest

from quantlab.agreement.compare import shared_prefix
from quantlab.agreement.live import LiveAgreement, LiveExchange
from quantlab.agreement.logprobs import chunks_to_dists

VOCAB = [f"w{i}" for i in range(12)]


def entry(rng: random.Random, chosen: str) -> dict[str, object]:
    """One chat logprobs entry: ``chosen`` first, then a few random alternatives."""
    others = rng.sample([w for w in VOCAB if w != chosen], 4)
    probs = sorted((rng.random() for _ in range(5)), reverse=True)
    scale = rng.uniform(0.5, 0.99) / sum(probs)
    top = [
        {"token": t, "logprob": math.log(p * scale), "bytes": list(t.encode())}
        for t, p in zip([chosen, *others], probs, strict=True)
    ]
    return {"token": chosen, "logprob": top[0]["logprob"], "bytes": list(chosen.encode()),
            "top_logprobs": top}  # fmt: skip


def lane(rng: random.Random, words: list[str]) -> list[bytes]:
    """Raw per-chunk logprobs as split_logprobs cuts them; some chunks hold 2 tokens."""
    chunks: list[bytes] = []
    i = 0
    while i < len(words):
        n = 2 if rng.random() < 0.2 else 1
        content = [entry(rng, w) for w in words[i : i + n]]
        chunks.append(orjson.dumps({"content": content}))
        i += n
    return chunks


def stream(live: LiveExchange, lanes: dict[str, list[bytes]], rng: random.Random) -> int:
    """Deliver the chunks in random interleaved bursts, updating between bursts (as the
    flush clock does); returns how many updates changed a line."""
    pos = dict.fromkeys(lanes, 0)
    changed = 0
    while any(pos[n] < len(c) for n, c in lanes.items()):
        for name, chunks in lanes.items():
            step = rng.randint(0, 4)
            live.feeds[name].chunks.extend(chunks[pos[name] : pos[name] + step])
            pos[name] = min(len(chunks), pos[name] + step)
        changed += bool(live.update())
    live.update()
    return changed


def words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(VOCAB) for _ in range(n)]


CASES = {
    "same": lambda r: (w := words(r, 40), list(w)),
    "diverge": lambda r: (w := words(r, 40), [*w[:17], "zz", *words(r, 10)]),
    "diverge at 0": lambda r: (["a", *words(r, 9)], ["b", *words(r, 9)]),
    "candidate ends early": lambda r: (w := words(r, 40), w[:12]),
    "reference ends early": lambda r: (w := words(r, 40), [*w[:25]])[::-1],
    "candidate empty": lambda r: (words(r, 5), []),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", range(4))
def test_live_ends_equal_to_shared_prefix(case: str, seed: int) -> None:
    rng = random.Random(seed)
    ref_words, cand_words = CASES[case](rng)
    raw = {"ref": lane(rng, ref_words), "cand": lane(rng, cand_words)}
    live = LiveExchange(["ref", "cand"], reference="ref", k=5)
    stream(live, raw, rng)
    want = shared_prefix(
        chunks_to_dists(raw["ref"]), chunks_to_dists(raw["cand"]), reference="ref", k=5
    )
    tracker = live.trackers["cand"]
    got = tracker.agreement
    assert (got.kl, got.top1, got.ref_rank, got.diverged_at) == (
        want.kl,
        want.top1,
        want.ref_rank,
        want.diverged_at,
    )
    assert tracker.mean_kl == want.mean_kl  # running sums, same order: exactly equal
    assert tracker.top1_rate == want.top1_rate
    if want.positions:
        line = tracker.line()
        assert line is not None and line.startswith(f"live KL {want.mean_kl:.3f}")
        if want.diverged_at is None:
            assert line.endswith(f"{want.positions} tok so far")
        else:
            assert line.endswith(f"diverged at token {want.diverged_at}")
    else:
        assert tracker.line() is None


def test_partial_numbers_are_those_of_the_positions_both_have() -> None:
    rng = random.Random(7)
    w = words(rng, 30)
    raw_ref, raw_cand = lane(rng, w), lane(rng, w)
    live = LiveExchange(["ref", "cand"], reference="ref", k=5)
    live.feeds["ref"].chunks.extend(raw_ref)
    live.feeds["cand"].chunks.extend(raw_cand[:5])
    assert live.update() == ["cand"]
    n = len(chunks_to_dists(raw_cand[:5]))
    want = shared_prefix(
        chunks_to_dists(raw_ref), chunks_to_dists(raw_cand[:5]), reference="ref", k=5
    )
    assert live.trackers["cand"].positions == n == want.positions
    assert live.line("cand") == f"live KL {want.mean_kl:.3f} · top-1 100 % · {n} tok so far"
    assert live.update() == []  # nothing new: nothing changed


def test_nothing_is_parsed_after_every_candidate_diverged() -> None:
    rng = random.Random(3)
    ref = lane(rng, ["a", "b", "c", *words(rng, 20)])
    cand = lane(rng, ["a", "x", *words(rng, 20)])
    live = LiveExchange(["ref", "cand"], reference="ref", k=5)
    live.feeds["ref"].chunks.extend(ref[:3])
    live.feeds["cand"].chunks.extend(cand[:3])
    live.update()
    assert live.trackers["cand"].agreement.diverged_at == 1
    parsed = (live.feeds["ref"].parsed, live.feeds["cand"].parsed)
    live.feeds["ref"].chunks.extend(ref[3:])
    live.feeds["cand"].chunks.extend(cand[3:])
    assert live.update() == []
    assert (live.feeds["ref"].parsed, live.feeds["cand"].parsed) == parsed
    # the final scoring starts from the parsed positions and reads the rest itself
    assert len(live.dists("ref", _Raw(live.feeds["ref"].chunks)) or []) == len(chunks_to_dists(ref))


class _Raw:
    """What the client leaves on a result (RawLogprobs' ``chunks``)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks


def test_a_chunk_that_is_not_json_ends_the_lane_as_the_final_parse_does() -> None:
    rng = random.Random(1)
    w = words(rng, 10)
    ref, cand = lane(rng, w), lane(rng, w)
    cand[4] = b'{"content": [oops'
    live = LiveExchange(["ref", "cand"], reference="ref", k=5)
    live.feeds["ref"].chunks.extend(ref)
    live.feeds["cand"].chunks.extend(cand)
    live.update()
    want = shared_prefix(chunks_to_dists(ref), chunks_to_dists(cand), reference="ref", k=5)
    assert live.trackers["cand"].agreement.kl == want.kl and want.positions < len(w)
    rest = live.dists("cand", _Raw(live.feeds["cand"].chunks))
    assert rest is not None and len(rest) == want.positions
    assert live.dists("cand", _Raw(list(cand))) is None  # not this feed's list: not reused


def test_tracker_alone_takes_growing_lists() -> None:
    rng = random.Random(5)
    w = words(rng, 20)
    ref, cand = chunks_to_dists(lane(rng, w)), chunks_to_dists(lane(rng, w))
    t = LiveAgreement(reference="ref", k=5)
    assert t.extend(ref[:3], cand[:8]) == 3
    assert t.extend(ref[:3], cand) == 0
    assert t.extend(ref, cand) == len(w) - 3
    assert t.agreement.kl == shared_prefix(ref, cand, reference="ref", k=5).kl


def test_final_comparison_continues_the_live_one() -> None:
    rng = random.Random(11)
    w = words(rng, 30)
    raw_ref, raw_cand = lane(rng, w), lane(rng, [*w[:20], "zz", *w[21:]])
    live = LiveExchange(["ref", "cand"], reference="ref", k=5)
    live.feeds["ref"].chunks.extend(raw_ref[:8])
    live.feeds["cand"].chunks.extend(raw_cand[:6])
    live.update()
    live.feeds["ref"].chunks.extend(raw_ref[8:])
    live.feeds["cand"].chunks.extend(raw_cand[6:])
    ref = live.dists("ref", _Raw(live.feeds["ref"].chunks))
    cand = live.dists("cand", _Raw(live.feeds["cand"].chunks))
    so_far = live.so_far("cand", reference="ref", k=5)
    assert ref is not None and cand is not None and so_far is not None and so_far.positions
    got = shared_prefix(ref, cand, reference="ref", k=5, so_far=so_far)
    want = shared_prefix(chunks_to_dists(raw_ref), chunks_to_dists(raw_cand), reference="ref", k=5)
    assert got.to_dict() == want.to_dict() and want.diverged_at == 20
    assert live.so_far("cand", reference="other", k=5) is None
    assert live.so_far("cand", reference="ref", k=20) is None


async def test_fanout_with_a_live_tracker_saves_what_it_saves_without() -> None:
    from standin import Reply, StandIn

    from quantlab.client import LaneClient
    from quantlab.fanout import fanout
    from quantlab.records import Endpoint, SamplingParams

    answer = [f" w{i}" for i in range(40)]
    other = [*answer[:25], " zz", *answer[26:]]
    # k = 30: over the stand-in's max_logprobs for prompt scoring (no teacher forcing),
    # accepted in the stream: the final agreement is the shared prefix
    with (
        StandIn(Reply(tokens=answer, tokens_per_s=400), p_actual=0.7) as r,
        StandIn(Reply(tokens=other, tokens_per_s=400), p_actual=0.5) as c,
    ):
        results = []
        for with_live in (False, True):
            clients = [
                LaneClient(Endpoint("bf16", r.url, role="reference")),
                LaneClient(Endpoint("awq", c.url)),
            ]
            live = LiveExchange(["bf16", "awq"], reference="bf16", k=30) if with_live else None
            lines: list[str | None] = []

            def on_text(
                lane: str, delta: str, live: LiveExchange | None = live, lines: list = lines
            ) -> None:
                if live is not None and live.update():  # as a UI clock would
                    lines.append(live.line("awq"))

            try:
                ex = await fanout(
                    clients,
                    {n.name: [{"role": "user", "content": "x"}] for n in clients},
                    SamplingParams(max_tokens=64, top_logprobs=30),
                    prompt="x",
                    on_text=on_text,
                    live=live,
                )
            finally:
                for cl in clients:
                    await cl.aclose()
            results.append(ex.results["awq"].agreement)
            if live is not None:
                assert lines and live.trackers["awq"].agreement.diverged_at == 25
                assert lines[-1] is not None and "diverged at token 25" in lines[-1]
                assert live.feeds["awq"].parsed < len(live.feeds["awq"].chunks)  # stopped
    plain, with_tracker = results
    assert plain is not None and plain["method"] == "shared-prefix"
    assert with_tracker == plain and plain["diverged_at"] == 25 and plain["mean_kl"] > 0
