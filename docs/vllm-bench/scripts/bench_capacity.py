"""``quantlab run`` with the capacity suite sent as ``vllm bench serve`` sends its workload.

Two changes to one function, nothing else: every request gets ``ignore_eos`` (as
``--ignore-eos``), and the prompt goes as written (quantlab's capacity suite otherwise puts
a request id in a system message so no prompt can hit a prefix cache: here the server runs
with prefix caching off, and the id would make quantlab's prompts longer than vLLM's). The
backend's own cache-busting field (vLLM's ``cache_salt``) stays. The runner, the client,
its timing and the capacity table are quantlab's own code.

    python bench_capacity.py run SUITE.json --endpoint big=URL --session S.json
"""

from __future__ import annotations

import sys
from typing import Any

import quantlab.suites.kinds.capacity as capacity
from quantlab.cli import main

if not hasattr(capacity, "cold_case"):  # the suite moved on: say so rather than run unlike
    sys.exit("bench_capacity.py: quantlab.suites.kinds.capacity.cold_case is gone; update me")
_cold_case = capacity.cold_case


def _as_vllm_bench(tmpl: Any, uid: str, ep: Any) -> tuple[Any, dict[str, Any], str]:
    _, extra, mode = _cold_case(tmpl, uid, ep)
    del mode  # not cold by a unique prefix here: by the server having no prefix cache
    return tmpl, {**(extra or {}), "ignore_eos": True}, "prefix caching off + ignore_eos"


capacity.cold_case = _as_vllm_bench

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
