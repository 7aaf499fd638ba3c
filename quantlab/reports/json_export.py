"""The JSON report: the whole analysis as one object, for scripts (the md report's numbers).

Top-level keys: ``schema`` ("quantlab.report/1"), ``session``, ``lanes``, ``reference``,
``candidates``, ``machine``, ``definitions``, ``headline``, ``suites`` (per suite: rates
per lane with Wilson intervals, paired comparisons), ``overall`` (all quality cases),
``groups``, ``long_context``, ``concurrency``, ``capacity``, ``latency``, ``failures``,
``telemetry``. A section whose suite was not run is null. Rates are fractions (0–1), times
in milliseconds, throughput in tokens per second.
"""

from __future__ import annotations

import json
import math
from typing import Any

from quantlab.reports.shapes import Analysis
from quantlab.textsafe import json_safe


def clean(value: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite number (a decode rate over a zero-length
    interval, say) becomes null rather than invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def render(analysis: Analysis) -> str:
    """Pretty-printed JSON, UTF-8 characters kept as they are."""
    doc = clean(analysis)
    text = json.dumps(doc, ensure_ascii=False, indent=2, default=str, allow_nan=False)
    return json_safe(text) + "\n"  # same values; no raw C1/bidi control for a terminal
