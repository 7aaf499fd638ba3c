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
from typing import Any


def render(analysis: dict[str, Any]) -> str:
    """Pretty-printed JSON, UTF-8 characters kept as they are."""
    return json.dumps(analysis, ensure_ascii=False, indent=2, default=str, allow_nan=False) + "\n"
