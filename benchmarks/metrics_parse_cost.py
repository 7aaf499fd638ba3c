"""Cost of reading one server's ``/metrics`` per scrape: prometheus_client's maintained
parser over a whole realistic vLLM page (built like vLLM builds it, see
``tests/vllm_metrics_page.py``) versus over only the sample lines quantlab wants (what
``quantlab.telemetry.server_stats.parse_metrics`` does), and the real llama.cpp page of the
local pair when ``--llamacpp URL`` is given.

Prints one JSON object. Why it matters: the scrape runs once a second per server, and a
parse that takes milliseconds of pure Python competes with the UI for the GIL.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from vllm_metrics_page import vllm_metrics_page  # noqa: E402

from quantlab.telemetry.server_stats import parse_metrics, wanted_lines  # noqa: E402


def _timed(fn: object, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter_ns() - t0) / 1000)
    times.sort()
    return round(statistics.median(times), 1), round(times[int(n * 0.99) - 1], 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="parses per figure")
    ap.add_argument("--llamacpp", help="a llama.cpp server's base URL (metrics on)")
    args = ap.parse_args()
    page = vllm_metrics_page("v0.12", requests=500)
    samples = sum(len(f.samples) for f in text_string_to_metric_families(page))
    full = _timed(lambda: list(text_string_to_metric_families(page)), args.n)
    filtered = _timed(lambda: parse_metrics(page), args.n)
    filter_only = _timed(lambda: wanted_lines(page), args.n)
    out: dict[str, object] = {
        "vllm_page_bytes": len(page),
        "vllm_page_samples": samples,
        "full_parse_median_us": full[0],
        "full_parse_p99_us": full[1],
        "quantlab_parse_median_us": filtered[0],
        "quantlab_parse_p99_us": filtered[1],
        "line_filter_median_us": filter_only[0],
    }
    if args.llamacpp:
        import httpx

        text = httpx.get(args.llamacpp.rstrip("/") + "/metrics", trust_env=False).text
        out["llamacpp_page_bytes"] = len(text)
        out["llamacpp_full_parse_median_us"] = _timed(
            lambda: list(text_string_to_metric_families(text)), args.n
        )[0]
        out["llamacpp_quantlab_parse_median_us"] = _timed(lambda: parse_metrics(text), args.n)[0]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
