"""Verdicts never claim more than the data (issue 10): one test per rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from report_sessions import build_full

from quantlab.reports import stats
from quantlab.reports.analysis import analyze
from quantlab.reports.md import render
from quantlab.reports.verdict import NOT_ENOUGH, NOT_SAFE, SAFE, assess, detects_meaningful_drop
from quantlab.session import load_session


def _analysis(cmp: dict[str, Any], *, groups: list[dict[str, Any]] | None = None) -> dict:
    """The smallest analysis the verdict reads: one candidate, long context without loss."""
    no_loss = {
        "candidate": "q",
        "mean_difference": 0.0,
        "mean_candidate": 0.9,
        "mean_reference": 0.9,
        "low": -0.0,
        "high": 0.05,
        "n": 30,
    }
    return {
        "reference": "r",
        "candidates": ["q"],
        "suites": [],
        "groups": groups or [],
        "overall": {"comparisons": [cmp], "lanes": {}, "cases": cmp["n_pairs"]},
        "long_context": {"recall_difference": [no_loss], "by_length": []},
        "failures": {"detectors": {}, "annotation_count": 0},
        "concurrency": None,
        "capacity": None,
        "latency": None,
        "telemetry": None,
        "machine": {},
        "lanes": [],
    }


def _cmp(both: int, b: int, c: int, neither: int, **kw: Any) -> dict[str, Any]:
    return stats.compare_counts(both, b, c, neither, reference="r", candidate="q", **kw).to_dict()


def test_a_significant_improvement_on_few_pairs_is_not_enough_evidence() -> None:
    # 20 pairs, the candidate wins all 7 discordant ones: p = 0.016, yet the MDD is far
    # above the 10 points "Safe default here" needs.
    cmp = _cmp(10, 0, 7, 3)
    assert cmp["verdict"] == "candidate_better" and cmp["mcnemar"]["p_value"] < 0.05
    assert cmp["mdd"] > 0.3
    assert not detects_meaningful_drop(cmp)
    v = assess(_analysis(cmp))["q"]
    assert v["verdict"] == NOT_ENOUGH and "can only reveal a drop of about" in v["why"]


def test_safe_default_needs_an_mdd_of_at_most_10_points() -> None:
    cmp = _cmp(380, 6, 6, 8)  # 400 pairs, 3 % discordant: a 10-point drop would show
    assert cmp["verdict"] == "no_difference" and cmp["mdd"] <= 0.10
    assert detects_meaningful_drop(cmp)
    assert assess(_analysis(cmp))["q"]["verdict"] == SAFE


def test_a_significant_drop_in_a_case_group_is_not_safe() -> None:
    overall = _cmp(380, 6, 6, 8)
    drop = _cmp(20, 12, 0, 0)  # p = 0.0005: survives any small family
    groups = [{"suite": "dist", "groups": {"ood:code": {"comparisons": [drop]}}}]
    assert assess(_analysis(overall, groups=groups))["q"]["verdict"] == NOT_SAFE


def test_holm_adjusted_p_values() -> None:
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.5]) == [1.0, 1.0]
    assert stats.holm([]) == []
    # Significant alone, not after correction: re-judged, and the sentence says why.
    cmp = _cmp(10, 8, 1, 2, p_holm=0.12, family_size=6)
    assert cmp["mcnemar"]["p_value"] < 0.05 and cmp["verdict"] != "candidate_worse"
    assert "Holm" in cmp["sentence"] and "not by more than chance" in cmp["sentence"]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return analyze(load_session(build_full(tmp_path_factory.mktemp("v") / "full.json")))


def test_the_report_says_it_corrects_across_its_groups(full: dict) -> None:
    sizes = {
        c["family_size"]
        for b in [full["overall"], *full["suites"]]
        for c in b["comparisons"]
        if c["n_pairs"]
    }
    assert sizes == {12}
    text = render(full)
    assert "Holm" in full["definitions"]["multiplicity"] and "Holm" in text


def test_raw_gaps_are_worded_as_descriptive(full: dict) -> None:
    # Nothing in the sample session's groups is significant after correction.
    assert "loses most" not in full["headline"]
    assert "largest raw gap is on ood:code" in full["headline"]
    assert "not significant" in full["headline"]
    text = render(full)
    assert "falls behind" not in text
    assert "largest raw gaps against bf16, largest first (descriptive: none is significant)" in (
        text
    )


def test_the_slow_tail_of_the_decode_rate_is_named_as_such(full: dict) -> None:
    for v in full["latency"]["lanes"].values():
        assert "tokens_per_s_p95" not in v
        if v["tokens_per_s_p5"] is not None:
            assert v["tokens_per_s_p5"] <= v["tokens_per_s_p50"]
    assert "tok/s p5 (slow tail)" in render(full)


def test_the_mdd_assumption_is_stated_once(full: dict) -> None:
    text = render(full)
    assert text.count("When no discordant pair was seen") == 1


def test_brief_ticks_the_same_rule(tmp_path: Path) -> None:
    from quantlab.reports.brief import _checks

    a = _analysis(_cmp(10, 0, 7, 3))
    a["long_context"] = None
    first = _checks(a, "q")[0]
    assert first.startswith("- [ ]")  # a significant improvement on 20 pairs is not enough
