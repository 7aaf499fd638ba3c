"""Long-context case building with a stand-in token counter (the real tokenizer is used in
tests/test_runner_pair.py)."""

from __future__ import annotations

import re

import pytest

from quantlab.longctx import (
    CHARS_PER_TOKEN,
    FillerWriter,
    GeneratorSpec,
    LongContextError,
    build_length,
)
from quantlab.suites import find_suite


def _spec() -> GeneratorSpec:
    return GeneratorSpec.from_settings(find_suite("long-context").settings)


async def _chars_counter(messages: list[dict[str, str]]) -> int:
    """About a token per 3.7 characters plus a per-message template cost: not monotonic in
    words in a simple way, like a real BPE count."""
    return sum(4 + len(re.findall(r"\w+|[^\w\s]", m["content"])) for m in messages)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
async def test_every_length_is_built_exactly_with_facts_at_their_depths(index: int) -> None:
    spec = _spec()
    built = await build_length(spec, index, _chars_counter, "ctx")
    target = spec.lengths[index].tokens
    assert built.case is not None
    assert built.tokens == target == await _chars_counter(built.case.messages)
    assert built.note == "" and built.count_source == "server"
    msgs = built.case.messages
    assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
    roles = [m["role"] for m in msgs[1:-1]]
    assert roles == ["user", "assistant"] * (len(roles) // 2), "a real alternating history"
    text = " ".join(m["content"] for m in msgs)
    for fact in built.case.facts:
        assert text.count(fact.value) == 1, f"{fact.key} planted once"
    planned = {f.key: f.depth for f in spec.facts}
    for fact in built.case.facts:
        # Short conversations have few turns to put a fact in: allow a coarser depth there.
        slack = 0.2 if index == 0 else 0.06
        assert abs(fact.depth - planned[fact.key]) <= slack, (fact.key, fact.depth)
    for f in spec.facts:
        assert f.question in msgs[-1]["content"]


async def test_lengths_use_different_fact_values() -> None:
    spec = _spec()
    a = await build_length(spec, 0, _chars_counter, "a")
    b = await build_length(spec, 1, _chars_counter, "b")
    assert a.case and b.case
    assert {f.value for f in a.case.facts}.isdisjoint({f.value for f in b.case.facts})


async def test_filler_is_varied_not_repeated_paragraphs() -> None:
    spec = _spec()
    built = await build_length(spec, 2, _chars_counter, "x")
    assert built.case is not None
    users = [m["content"] for m in built.case.messages if m["role"] == "user"][:-1]
    assert len(users) > 50
    assert len(set(users)) == len(users), "no two notes are the same"
    sentences = [s for u in users for s in u.split(". ")]
    assert len(set(sentences)) / len(sentences) > 0.8
    assert "lorem" not in " ".join(users).lower()


async def test_the_same_spec_builds_the_same_case() -> None:
    spec = _spec()
    a = await build_length(spec, 1, _chars_counter, "x")
    b = await build_length(spec, 1, _chars_counter, "x")
    assert a.case and b.case and a.case.messages == b.case.messages


async def test_without_a_counter_the_length_is_estimated_and_says_so() -> None:
    spec = _spec()

    async def cannot(_m: list[dict[str, str]]) -> int | None:
        return None

    built = await build_length(spec, 1, cannot, "x")
    assert built.case is not None and built.count_source == "estimate"
    assert "estimated" in built.note and f"{CHARS_PER_TOKEN:g} characters" in built.note
    assert built.case.meta["count_source"] == "estimate"
    chars = sum(len(m["content"]) for m in built.case.messages)
    assert abs(chars / CHARS_PER_TOKEN - 4000) < 400


async def test_a_length_smaller_than_the_frame_is_not_built() -> None:
    spec = _spec()
    spec.lengths[0].tokens = 70  # the system message and the ask alone are longer
    built = await build_length(spec, 0, _chars_counter, "x")
    assert built.case is None and "longer" in built.note


def test_slots_are_filled_and_second_slots_differ() -> None:
    w = FillerWriter({"slots": {"person": ["Ann", "Bo"]}}, seed=1)
    for _ in range(20):
        text = w.fill("{person} and {person2} met about {ticket} at {pct}%")
        a, _, rest = text.partition(" and ")
        b = rest.split(" met")[0]
        assert a != b and "{" not in text
        assert re.search(r"HL-\d{3}", text)


def test_bad_generator_settings_are_named() -> None:
    settings = dict(find_suite("long-context").settings)
    settings["facts"] = [
        {"key": "k", "depth": 2, "plant": "no value", "question": "q?", "values": []}
    ]
    with pytest.raises(LongContextError, match="fact 'k' needs values"):
        GeneratorSpec.from_settings(settings, "mine")
    with pytest.raises(LongContextError, match="bad generator settings"):
        GeneratorSpec.from_settings({"lengths": "x"}, "mine")
