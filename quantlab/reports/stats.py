"""The statistics behind every report, so that no report claims more than it measured.

Outcomes in quantlab are *paired*: the same prompt goes to the reference and to each
candidate. So a single lane's pass rate gets a Wilson score interval, the reference-vs-
candidate difference in pass/fail gets an exact McNemar test (which only looks at the
discordant pairs: cases one lane passed and the other failed), a difference in a graded
score (fact recall, similarity) gets a seeded paired bootstrap, and every comparison gets a
minimum detectable difference, from which the "not enough cases to tell" sentence follows.
References: Wilson (1927); McNemar (1947), exact binomial form; Connor (1987) for the
paired sample size; Miller (2024, arXiv 2411.00640) for error bars on evals.

Pure Python except the bootstrap, which uses numpy for its resampling (seeded: the same
inputs always give the same interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

#: Two-sided significance level used by every test in the reports.
ALPHA = 0.05
#: Power used for the minimum detectable difference.
POWER = 0.80
#: A comparison whose minimum detectable difference is above this (in pass-rate points,
#: as a fraction) cannot rule out a drop that matters: the report says "not enough cases to
#: tell" instead of "no difference".
MEANINGFUL_DIFFERENCE = 0.10
#: Up to this many pairs the minimum detectable difference uses the exact power of the
#: exact test; above it, the normal approximation.
EXACT_POWER_MAX_PAIRS = 400


def _z(two_sided_confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + two_sided_confidence / 2)


# ------------------------------------------------------------------ one proportion


@dataclass(frozen=True, slots=True)
class Proportion:
    """``k`` successes out of ``n`` with its Wilson interval (``low``/``high`` are None when
    n is 0: nothing was measured)."""

    k: int
    n: int
    rate: float | None
    low: float | None
    high: float | None
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials.

    Chosen over the normal ("Wald") interval because it stays inside [0, 1] and keeps its
    coverage at the small n and extreme rates (10/10, 0/10) that suites produce.
    """
    if n <= 0:
        raise ValueError("a proportion needs at least one trial")
    if not 0 <= k <= n:
        raise ValueError(f"successes {k} must lie between 0 and {n}")
    z = _z(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp float noise at the edges (k = 0 or k = n give exactly 0 or 1 in theory).
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def proportion(k: int, n: int, confidence: float = 0.95) -> Proportion:
    """k/n with its Wilson interval; n = 0 gives a Proportion with no numbers."""
    if n == 0:
        return Proportion(k=0, n=0, rate=None, low=None, high=None, confidence=confidence)
    low, high = wilson_interval(k, n, confidence)
    return Proportion(k=k, n=n, rate=k / n, low=low, high=high, confidence=confidence)


# ------------------------------------------------------------------ paired pass/fail


@dataclass(frozen=True, slots=True)
class McNemar:
    """Exact McNemar test on paired pass/fail outcomes.

    ``b``: pairs the reference passed and the candidate failed; ``c``: the reverse.
    ``p_value`` is two-sided: 2 × P(X ≤ min(b, c)) for X ~ Binomial(b + c, ½), capped at 1
    (1.0 when there is no discordant pair).
    """

    b: int
    c: int
    p_value: float

    @property
    def discordant(self) -> int:
        return self.b + self.c

    def to_dict(self) -> dict[str, Any]:
        return {"b": self.b, "c": self.c, "discordant": self.discordant, "p_value": self.p_value}


def mcnemar_exact(b: int, c: int) -> McNemar:
    """Exact (binomial) McNemar test. Exact rather than chi-squared because suites give a
    handful of discordant pairs, where the chi-squared approximation is poor."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts cannot be negative")
    n = b + c
    if n == 0:
        return McNemar(b=b, c=c, p_value=1.0)
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    p = min(1.0, 2 * tail / 2**n)
    return McNemar(b=b, c=c, p_value=p)


def min_discordant_for_significance(alpha: float = ALPHA) -> int:
    """The fewest discordant pairs with which the exact test can reach ``alpha`` at all
    (all of them going one way): 6 at α = 0.05 (2/2⁶ = 0.031; 5 pairs give 0.0625)."""
    n = 1
    while 2 / 2**n >= alpha:
        n += 1
    return n


def _log_binom_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


@lru_cache(maxsize=4096)
def _critical_count(d: int, alpha: float) -> int:
    """Largest k such that the exact test rejects when min(b, c) <= k among d discordant
    pairs; -1 when no split of d pairs can be significant."""
    k = -1
    tail = 0
    total = 2**d
    for i in range(d // 2 + 1):
        tail += math.comb(d, i)
        if 2 * tail / total < alpha:
            k = i
        else:
            break
    return k


def mcnemar_power(
    n_pairs: int, difference: float, discordant_rate: float, *, alpha: float = ALPHA
) -> float:
    """Exact power of the two-sided exact McNemar test with ``n_pairs`` pairs when a share
    ``discordant_rate`` of pairs is discordant and the pass rates differ by ``difference``.

    The number of discordant pairs D is Binomial(n, ψ); given D, the pairs one way are
    Binomial(D, (ψ + δ) / 2ψ). Summed exactly over the likely range of D (± 9 sd), so small
    samples are judged by the test actually used, not by a normal approximation.
    """
    delta = abs(difference)
    psi = min(1.0, max(discordant_rate, delta))
    if n_pairs <= 0 or psi <= 0.0:
        return 0.0
    q = (psi + delta) / (2 * psi)
    mean = n_pairs * psi
    sd = math.sqrt(n_pairs * psi * (1 - psi))
    d_lo = max(0, math.floor(mean - 9 * sd - 1))
    d_hi = min(n_pairs, math.ceil(mean + 9 * sd + 1))
    power = 0.0
    for d in range(max(d_lo, 1), d_hi + 1):
        k = _critical_count(d, alpha)
        if k < 0:
            continue
        w = math.exp(_log_binom_pmf(d, n_pairs, psi))
        if w < 1e-15:
            continue
        # P(min(B, d - B) <= k) for B ~ Binomial(d, q); the two tails do not overlap.
        reject = 0.0
        for i in range(k + 1):
            reject += math.exp(_log_binom_pmf(i, d, q)) + math.exp(_log_binom_pmf(d - i, d, q))
        power += w * min(1.0, reject)
    return min(1.0, power)


def min_detectable_difference(
    n_pairs: int, discordant_rate: float, *, alpha: float = ALPHA, power: float = POWER
) -> float | None:
    """Smallest difference in pass rate (a fraction) that ``n_pairs`` paired cases would
    detect with probability ``power`` (exact McNemar, two-sided ``alpha``), assuming a share
    ``discordant_rate`` of discordant pairs (use the observed share; it is never taken below
    the difference itself). None when there is no pair; 1.0 when even a 100-point
    difference would likely go unseen (fewer than about 8 pairs at α = 0.05).

    Power grows with the difference, so bisection finds it. Exact up to
    :data:`EXACT_POWER_MAX_PAIRS` pairs; above, Connor's normal approximation (close there,
    and the exact sum grows with n²).
    """
    if n_pairs <= 0:
        return None
    if n_pairs > EXACT_POWER_MAX_PAIRS:
        return _connor_mdd(n_pairs, discordant_rate, alpha=alpha, power=power)
    if mcnemar_power(n_pairs, 1.0, 1.0, alpha=alpha) < power:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(24):
        mid = (lo + hi) / 2
        if mcnemar_power(n_pairs, mid, discordant_rate, alpha=alpha) < power:
            lo = mid
        else:
            hi = mid
    return hi


def paired_sample_size(
    delta: float, discordant_rate: float, *, alpha: float = ALPHA, power: float = POWER
) -> float:
    """Pairs needed to detect a difference ``delta`` in pass rate with McNemar's test when a
    share ``discordant_rate`` of pairs is discordant (Connor 1987, normal approximation)."""
    delta = abs(delta)
    if delta <= 0:
        return math.inf
    psi = min(1.0, max(discordant_rate, delta))
    za = _z(1 - alpha)
    zb = NormalDist().inv_cdf(power)
    root = za * math.sqrt(psi) + zb * math.sqrt(max(psi - delta * delta, 0.0))
    return root * root / (delta * delta)


def _connor_mdd(n_pairs: int, discordant_rate: float, *, alpha: float, power: float) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if paired_sample_size(mid, discordant_rate, alpha=alpha, power=power) > n_pairs:
            lo = mid
        else:
            hi = mid
    return hi


Verdict = Literal["candidate_worse", "candidate_better", "no_difference", "too_few", "no_pairs"]


@dataclass(frozen=True, slots=True)
class PairedComparison:
    """Reference vs candidate on the same cases: the counts, the test and what may be said.

    ``verdict``:
    - ``candidate_worse`` / ``candidate_better``: McNemar p < α;
    - ``no_difference``: p ≥ α and the cases could have detected a drop of
      :data:`MEANINGFUL_DIFFERENCE` (the minimum detectable difference is at most that);
    - ``too_few``: p ≥ α but the cases could not have detected such a drop (not enough
      cases to tell), including when there are fewer discordant pairs than the exact test
      ever needs;
    - ``no_pairs``: no case was judged on both lanes.
    """

    reference: str
    candidate: str
    n_pairs: int
    both_pass: int
    ref_only: int  # reference passed, candidate failed (b)
    cand_only: int  # candidate passed, reference failed (c)
    both_fail: int
    test: McNemar
    ref_rate: float | None
    cand_rate: float | None
    difference: float | None  # candidate rate - reference rate
    mdd: float | None
    verdict: Verdict
    sentence: str
    #: Holm-adjusted p over the report's ``family_size`` comparisons (None: uncorrected).
    p_holm: float | None = None
    family_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "test"}
        d["mcnemar"] = self.test.to_dict()
        return d


def _pts(x: float) -> str:
    return f"{abs(x) * 100:.0f} points" if round(abs(x) * 100) != 1 else "1 point"


def compare_paired(
    pairs: Sequence[tuple[bool, bool]],
    *,
    reference: str = "reference",
    candidate: str = "candidate",
    alpha: float = ALPHA,
) -> PairedComparison:
    """Compare paired outcomes ``(reference passed, candidate passed)`` and phrase the
    result in one sentence that never claims more than the test allows."""
    both = sum(1 for r, c in pairs if r and c)
    b = sum(1 for r, c in pairs if r and not c)
    c_ = sum(1 for r, c in pairs if c and not r)
    return compare_counts(
        both,
        b,
        c_,
        len(pairs) - both - b - c_,
        reference=reference,
        candidate=candidate,
        alpha=alpha,
    )


def compare_counts(
    both: int,
    b: int,
    c_: int,
    neither: int,
    *,
    reference: str = "reference",
    candidate: str = "candidate",
    alpha: float = ALPHA,
    p_holm: float | None = None,
    family_size: int = 1,
) -> PairedComparison:
    """:func:`compare_paired` from the four counts (both passed, only the reference, only
    the candidate, neither). With ``p_holm`` (the Holm-adjusted p of this comparison among
    ``family_size``) the decision "more than chance" is taken on it instead of the raw p,
    and the sentence gives both."""
    n = both + b + c_ + neither
    test = mcnemar_exact(b, c_)
    if n == 0:
        return PairedComparison(
            reference,
            candidate,
            0,
            0,
            0,
            0,
            0,
            test,
            None,
            None,
            None,
            None,
            "no_pairs",
            f"No case was judged on both {reference} and {candidate}: nothing to compare.",
        )
    ref_rate = (both + b) / n
    cand_rate = (both + c_) / n
    diff = cand_rate - ref_rate
    mdd = min_detectable_difference(n, (b + c_) / n, alpha=alpha)
    counts = (
        f"{candidate} failed {b} case{'s' if b != 1 else ''} that {reference} passed, and "
        f"passed {c_} that {reference} failed (McNemar exact p = {test.p_value:.3g}, "
        f"{n} paired cases"
        + (
            f"; Holm-adjusted over {family_size} comparisons p = {p_holm:.3g})"
            if p_holm is not None and family_size > 1
            else ")"
        )
    )
    need = min_discordant_for_significance(alpha)
    decisive = test.p_value if p_holm is None else p_holm
    if decisive < alpha:
        verdict: Verdict = "candidate_worse" if b > c_ else "candidate_better"
        word = "lower" if b > c_ else "higher"
        sentence = (
            f"{candidate}'s pass rate is {word} than {reference}'s by {_pts(diff)}, more than "
            f"chance explains: {counts}."
        )
    elif test.p_value < alpha:  # raw p below α, the Holm-adjusted one not
        verdict = "no_difference" if mdd is not None and mdd <= MEANINGFUL_DIFFERENCE else "too_few"
        sign = "+" if diff >= 0 else "−"
        sentence = (
            f"{candidate}'s pass rate differs from {reference}'s by {sign}{_pts(diff)}, but not "
            f"by more than chance explains once the report's {family_size} comparisons are "
            f"corrected for (Holm): {counts}."
        )
    elif mdd is not None and mdd <= MEANINGFUL_DIFFERENCE:
        verdict = "no_difference"
        sentence = (
            f"No difference detected between {candidate} and {reference}: {counts}. With "
            f"{n} cases a difference of about {_pts(mdd)} or more would likely have shown."
        )
    else:
        verdict = "too_few"
        if b + c_ < need:
            why = (
                f"with {b + c_} discordant pair{'s' if b + c_ != 1 else ''} the exact test "
                f"cannot reach p < {alpha:g} whichever way they go (it needs at least {need})"
            )
        else:
            why = (
                f"with {n} paired cases only a difference of about {_pts(mdd or 1.0)} or more "
                f"in pass rate would likely be detected"
            )
        sentence = (
            f"Not enough cases to tell whether {candidate} differs from {reference}: {counts}; "
            f"{why}. The observed difference ({'+' if diff >= 0 else '−'}{_pts(diff)}) may be "
            "noise."
        )
    return PairedComparison(
        reference=reference,
        candidate=candidate,
        n_pairs=n,
        both_pass=both,
        ref_only=b,
        cand_only=c_,
        both_fail=neither,
        test=test,
        ref_rate=ref_rate,
        cand_rate=cand_rate,
        difference=diff,
        mdd=mdd,
        verdict=verdict,
        sentence=sentence,
        p_holm=p_holm,
        family_size=family_size,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: sort ascending, multiply
    the i-th smallest (from 0) by (m - i), keep them non-decreasing, cap at 1. A test is
    significant at family-wise level α when its adjusted p < α; valid whatever the
    dependence between the tests (the overall set contains every suite's cases)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


# ------------------------------------------------------------------ paired scores


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """Paired bootstrap of the mean difference ``candidate - reference`` in a score.

    ``low``/``high``: percentile interval; ``p_value``: two-sided share of resampled means
    on the other side of zero (doubled, capped at 1); ``n``: pairs; ``resamples`` and
    ``seed`` make it reproducible.
    """

    n: int
    mean_reference: float
    mean_candidate: float
    mean_difference: float
    low: float
    high: float
    p_value: float
    resamples: int
    seed: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_bootstrap(
    reference: Sequence[float],
    candidate: Sequence[float],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Bootstrap:
    """Resample the *pairs* (case indices) with replacement and take the mean difference
    each time. Resampling pairs, not each lane on its own, keeps the pairing: a hard case
    stays hard for both lanes, which narrows the interval honestly."""
    if len(reference) != len(candidate):
        raise ValueError("paired scores need the same number of reference and candidate values")
    n = len(reference)
    if n == 0:
        raise ValueError("a bootstrap needs at least one pair")
    ref = np.asarray(reference, dtype=float)
    cand = np.asarray(candidate, dtype=float)
    diffs = cand - ref
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)  # bound the index matrix at ~16 MB
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diffs[idx].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    observed = float(diffs.mean())
    if np.all(diffs == 0):
        p = 1.0
    else:
        below = float(np.mean(means <= 0))
        above = float(np.mean(means >= 0))
        p = min(1.0, 2 * min(below, above))
    return Bootstrap(
        n=n,
        mean_reference=float(ref.mean()),
        mean_candidate=float(cand.mean()),
        mean_difference=observed,
        low=float(low),
        high=float(high),
        p_value=p,
        resamples=resamples,
        seed=seed,
        confidence=confidence,
    )


# ------------------------------------------------------------------ latency summaries
