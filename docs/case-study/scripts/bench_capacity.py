"""``quantlab run`` with every capacity request sent with ``ignore_eos`` (as ``vllm bench
serve --ignore-eos`` does), so the capacity suite runs vLLM's fixed-length benchmark
workload: same prompt length, exactly ``max_tokens`` output tokens per request.

    python bench_capacity.py run capacity-bench.json --endpoint bf16=URL --session S.json

Everything else is quantlab's own code: the runner, the client and its timing, the table.
"""

from __future__ import annotations

import sys
from typing import Any

import quantlab.suites.kinds.capacity as capacity

from quantlab.cli import main

if not hasattr(capacity, "cold_case"):  # the suite moved on: say so rather than run unlike
    sys.exit("bench_capacity.py: quantlab.suites.kinds.capacity.cold_case is gone; update me")
_cold_case = capacity.cold_case


def _fixed_length(tmpl: Any, uid: str, ep: Any) -> tuple[Any, dict[str, Any], str]:
    case, extra, mode = _cold_case(tmpl, uid, ep)
    return case, {**(extra or {}), "ignore_eos": True}, mode + " + ignore_eos"


capacity.cold_case = _fixed_length

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
