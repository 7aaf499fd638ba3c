"""The one percentile every aggregate and report uses, so their p50/p95 agree.

Definition: numpy's default ("linear", Hyndman & Fan type 7). Sort the n finite values
x[0] <= ... <= x[n-1]; the q-th percentile is at rank k = (n - 1) * q / 100, and between
two ranks it is the straight line between their values: x[lo] + (x[hi] - x[lo]) * (k - lo)
with lo = floor(k), hi = ceil(k). So p50 of [1, 2, 3, 4] is 2.5 and p95 of one value is
that value. None, NaN and infinite values are left out; no values at all gives None.
Rounding is the caller's (a stored aggregate keeps 3 decimals, a report its own).
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of ``values``, defined in the module docstring."""
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile is between 0 and 100, not {q}")
    xs = sorted(float(v) for v in values if v is not None and math.isfinite(v))
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    if lo == hi:
        return xs[lo]
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)
