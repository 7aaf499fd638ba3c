"""The report statistics against values computed by hand or published."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantlab.quantiles import percentile
from quantlab.reports.stats import (
    compare_paired,
    mcnemar_exact,
    mcnemar_power,
    min_detectable_difference,
    min_discordant_for_significance,
    paired_bootstrap,
    paired_sample_size,
    proportion,
    wilson_interval,
)


def test_wilson_8_of_10() -> None:
    # Known value (e.g. Newcombe 1998, Table I style; statsmodels proportion_confint wilson).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_edges_stay_inside_unit_interval() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert high == 1.0
    assert low == pytest.approx(0.7225, abs=1e-4)
    # 99 % is wider than 95 %.
    assert wilson_interval(5, 10, 0.99)[0] < wilson_interval(5, 10)[0]


def test_wilson_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        wilson_interval(3, 0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_proportion_with_no_trials_has_no_numbers() -> None:
    p = proportion(0, 0)
    assert p.rate is None and p.low is None and p.high is None


def test_mcnemar_b10_c2() -> None:
    # 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    t = mcnemar_exact(10, 2)
    assert t.p_value == pytest.approx(2 * 79 / 4096)
    assert t.p_value == pytest.approx(0.0386, abs=1e-4)
    assert t.discordant == 12
    assert mcnemar_exact(2, 10).p_value == t.p_value  # symmetric


def test_mcnemar_edge_cases() -> None:
    assert mcnemar_exact(0, 0).p_value == 1.0
    assert mcnemar_exact(3, 3).p_value == 1.0  # capped at 1
    assert mcnemar_exact(5, 0).p_value == pytest.approx(0.0625)
    assert mcnemar_exact(6, 0).p_value == pytest.approx(0.03125)
    assert min_discordant_for_significance() == 6


def test_sample_size_matches_the_research_note() -> None:
    # "to detect a 10-point drop ... on the order of 120-160 cases"
    assert 100 < paired_sample_size(0.10, 0.14) < 120
    assert 140 < paired_sample_size(0.10, 0.20) < 170


def test_power_and_mdd_behave() -> None:
    # More pairs, more power; larger difference, more power.
    assert mcnemar_power(40, 0.2, 0.3) < mcnemar_power(160, 0.2, 0.3)
    assert mcnemar_power(60, 0.05, 0.2) < mcnemar_power(60, 0.25, 0.3)
    # Fewer than 6 pairs: the exact test can never reject.
    assert mcnemar_power(5, 1.0, 1.0) == 0.0
    assert min_detectable_difference(5, 0.0) == 1.0
    assert min_detectable_difference(0, 0.0) is None
    mdd20 = min_detectable_difference(20, 0.2)
    mdd160 = min_detectable_difference(160, 0.2)
    assert mdd20 is not None and mdd160 is not None
    assert mdd20 > 0.3  # 20 prompts tell only of very large drops
    assert 0.08 < mdd160 < 0.12
    # Above the exact limit the normal approximation takes over, continuously.
    a = min_detectable_difference(400, 0.2)
    b = min_detectable_difference(401, 0.2)
    assert a is not None and b is not None and abs(a - b) < 0.005


def test_compare_too_few_says_so() -> None:
    # 10 cases, candidate fails 3 the reference passes: p = 0.25, cannot claim anything.
    pairs = [(True, True)] * 6 + [(True, False)] * 3 + [(False, False)]
    cmp = compare_paired(pairs, reference="bf16", candidate="q4_0")
    assert cmp.verdict == "too_few"
    assert cmp.ref_only == 3 and cmp.cand_only == 0 and cmp.n_pairs == 10
    assert cmp.test.p_value == pytest.approx(0.25)
    assert cmp.sentence.startswith("Not enough cases to tell whether q4_0 differs from bf16")
    assert "3 discordant pairs" in cmp.sentence and "at least 6" in cmp.sentence
    assert cmp.difference == pytest.approx(-0.3)


def test_compare_significant_drop() -> None:
    pairs = [(True, True)] * 20 + [(True, False)] * 10 + [(False, True)] * 2 + [(False, False)]
    cmp = compare_paired(pairs, reference="bf16", candidate="awq")
    assert cmp.verdict == "candidate_worse"
    assert cmp.test.p_value == pytest.approx(0.0386, abs=1e-4)
    assert "lower" in cmp.sentence and "24 points" in cmp.sentence


def test_compare_no_difference_needs_many_cases() -> None:
    pairs = [(True, True)] * 380 + [(True, False)] * 10 + [(False, True)] * 9 + [(False, False)]
    cmp = compare_paired(pairs)
    assert cmp.verdict == "no_difference"
    assert cmp.mdd is not None and cmp.mdd <= 0.10
    assert cmp.sentence.startswith("No difference detected")


def test_compare_no_pairs() -> None:
    cmp = compare_paired([])
    assert cmp.verdict == "no_pairs" and cmp.ref_rate is None


def test_bootstrap_is_deterministic_and_sane() -> None:
    ref = [1.0, 1.0, 0.67, 1.0, 0.33, 1.0, 1.0, 0.67]
    cand = [0.67, 0.33, 0.33, 1.0, 0.0, 0.67, 1.0, 0.33]
    a = paired_bootstrap(ref, cand, seed=7)
    b = paired_bootstrap(ref, cand, seed=7)
    assert a == b
    assert a.mean_difference == pytest.approx(
        sum(c - r for r, c in zip(ref, cand, strict=True)) / 8
    )
    assert a.low <= a.mean_difference <= a.high
    assert a.high < 0  # every pair is equal or worse: the interval stays below zero
    assert a.p_value < 0.05
    c = paired_bootstrap(ref, cand, seed=8)
    assert c.low != a.low or c.high != a.high  # the seed matters


def test_bootstrap_identical_scores() -> None:
    r = paired_bootstrap([0.5, 1.0], [0.5, 1.0])
    assert r.mean_difference == 0 and r.low == 0 and r.high == 0 and r.p_value == 1.0
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 0.0])


def test_percentile_matches_numpy_linear() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10.0], 95) == 10.0
    assert percentile([], 50) is None
    assert percentile([1.0, math.nan, 3.0], 50) == 2.0
    rng = np.random.default_rng(3)
    for n in (2, 7, 40):
        xs = rng.exponential(100.0, n).tolist()
        for q in (0, 5, 50, 90, 95, 99, 100):
            assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-12)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
