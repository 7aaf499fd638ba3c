"""KL(reference ‖ candidate) from top-k log-probabilities, and the exact full-vocabulary one.

Servers return only the k most likely tokens at each position, so the true KL over the
whole vocabulary cannot be computed from a stream. The estimate used everywhere in
quantlab, :func:`kl_topk` ("union + other"):

1. The categories are the union U of the tokens either side returned, plus one "other"
   bucket for the rest of the vocabulary.
2. Each side's tail mass is ``1 − Σ(returned probabilities)`` (0 when rounding makes the
   sum exceed 1).
3. A token of U that one side did not return must rank below all of that side's k
   tokens, so it is given ``min(that side's smallest returned probability,
   tail / (m + 1))``, m being how many of U that side lacks: the tail shared evenly
   between those tokens and "other", never more than the k-th probability.
4. What is left of the tail is that side's "other" mass. Both sides are now proper
   distributions over U ∪ {other}, and KL is taken between them; a candidate probability
   of 0 where the reference has mass is floored at :data:`FLOOR` so the value stays finite.

With both full vocabularies returned the estimate is the exact KL. How far it is from the
exact value at k = 5, 20, 100 on the local pair: docs/metrics.md (benchmarks/
kl_topk_error.py). :func:`kl_lower_bound` is the other honest number: the KL of the
coarsened distributions (tokens both sides returned, everything else in one bucket), which
by the data-processing inequality never exceeds the true KL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from quantlab.agreement.logprobs import Key

#: Smallest probability a category may have on the candidate side (keeps KL finite).
FLOOR = 1e-12
APPROXIMATION = "union of returned top-k tokens + one 'other' bucket for the tail"


def _filled(side: Mapping[Key, float], union: Sequence[Key]) -> tuple[list[float], float]:
    """Probabilities of ``union`` on one side (missing ones imputed) and its "other"."""
    probs = {k: math.exp(lp) for k, lp in side.items()}
    tail = max(0.0, 1.0 - sum(probs.values()))
    missing = sum(1 for k in union if k not in probs)
    share = 0.0
    if missing:
        smallest = min(probs.values()) if probs else 1.0
        share = min(smallest, tail / (missing + 1))
    other = max(0.0, tail - share * missing)
    return [probs.get(k, share) for k in union], other


def kl_topk(reference: Mapping[Key, float], candidate: Mapping[Key, float]) -> float:
    """KL(reference ‖ candidate) in nats from two top-k maps key -> logprob, by the
    "union + other" estimate (module docstring). 0 when both are the same map."""
    union = list(dict.fromkeys([*reference, *candidate]))
    p, p_other = _filled(reference, union)
    q, q_other = _filled(candidate, union)
    total = 0.0
    for pi, qi in zip([*p, p_other], [*q, q_other], strict=True):
        if pi > 0.0:
            total += pi * (math.log(pi) - math.log(max(qi, FLOOR)))
    return max(0.0, total)


def kl_lower_bound(reference: Mapping[Key, float], candidate: Mapping[Key, float]) -> float:
    """KL of the coarsened distributions: each token both sides returned is a category,
    the rest of the vocabulary one more. Never above the true KL (data processing)."""
    both = [k for k in reference if k in candidate]
    p = [math.exp(reference[k]) for k in both]
    q = [math.exp(candidate[k]) for k in both]
    p.append(max(0.0, 1.0 - sum(p)))
    q.append(max(0.0, 1.0 - sum(q)))
    total = 0.0
    for pi, qi in zip(p, q, strict=True):
        if pi > 0.0:
            total += pi * (math.log(pi) - math.log(max(qi, FLOOR)))
    return max(0.0, total)


def kl_full(reference: Sequence[float], candidate: Sequence[float]) -> float:
    """Exact KL over a whole vocabulary from two aligned arrays of logprobs (index = token
    id). Each side is renormalized first (servers round logprobs to float32, so the
    probabilities sum to 1 ± 1e-4). numpy is imported here, not at the top: the client
    imports this module on every start, and only this check needs whole arrays."""
    import numpy as np

    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(candidate, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError("full-vocabulary KL needs both distributions over the same vocabulary")
    lp = p - np.logaddexp.reduce(p)
    lq = np.maximum(q - np.logaddexp.reduce(q), math.log(FLOOR))
    mass = np.exp(lp)
    keep = mass > 0
    return max(0.0, float(np.sum(mass[keep] * (lp[keep] - lq[keep]))))


def rank_of(key: Key, top: Mapping[Key, float]) -> int | None:
    """1-based rank of ``key`` among the returned tokens (by logprob), None when absent."""
    if key not in top:
        return None
    mine = top[key]
    return 1 + sum(1 for lp in top.values() if lp > mine)


def top1(top: Mapping[Key, float]) -> Key | None:
    """The most likely returned key."""
    return max(top.items(), key=lambda kv: kv[1])[0] if top else None
