"""Cost of GPU telemetry: one full fast-path sample of one GPU (all metrics + processes),
the sampler thread's CPU use at 4 Hz, and, in the same run where installed, nvitop's
``Device(0).as_snapshot()`` and gpustat's ``new_query()`` for comparison.

Prints one JSON object. With no GPU it says so and exits 0.
Goal: <= 0.1 ms per GPU per sample; sampler < 1 % of one core at 4 Hz.

Besides the fast path: ``gpm_sample_median_us``, one GPM sample and metrics request of one
GPU (the once-a-second slow path; null where the GPU has no GPM), and the sampler's CPU use
includes it.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quantlab.telemetry.sampler import GpuSampler


def _median_us(fn: object, n: int) -> float | None:
    try:
        fn()  # type: ignore[operator]
    except Exception as exc:  # a peer that fails here is reported, not timed
        print(f"{getattr(fn, '__qualname__', fn)} failed: {exc!r}", file=sys.stderr)
        return None
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter_ns() - t0) / 1000)
    return round(statistics.median(times), 1)


def main() -> int:
    sampler = GpuSampler(hz=4)
    snap = sampler.snapshot()
    if snap.unavailable:
        print(json.dumps({"gpus": 0, "note": snap.unavailable}))
        return 0
    gpus = len(snap.gpus)
    for _ in range(20):  # warm-up
        sampler.sample_once()
    costs = sorted(sampler.sample_once() / gpus for _ in range(2000))
    median = statistics.median(costs)
    p99 = costs[int(len(costs) * 0.99) - 1]

    gpm_us = None
    gpu0 = sampler._gpus[0]
    if gpu0.gpm is not None:
        times = []
        for _ in range(200):
            gpu0.gpm.last = 0.0  # due now
            t0 = time.perf_counter_ns()
            sampler.slow_once()
            times.append((time.perf_counter_ns() - t0) / 1000)
        gpm_us = round(statistics.median(times[1:]), 1)
    gpm_seen = sampler.snapshot().gpus[0].gpm

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    sampler.start()
    time.sleep(seconds)
    sampler.stop()
    cpu_pct = sampler.thread_cpu_s / seconds * 100

    nvitop_us = gpustat_us = None
    try:
        from nvitop import Device

        dev = Device(0)
        nvitop_us = _median_us(dev.as_snapshot, 50)
    except ImportError as exc:
        print(f"nvitop not importable: {exc}", file=sys.stderr)
    try:
        import gpustat

        gpustat_us = _median_us(gpustat.new_query, 30)
    except ImportError as exc:
        print(f"gpustat not importable: {exc}", file=sys.stderr)
    print(
        json.dumps(
            {
                "gpus": gpus,
                "gpu_name": snap.gpus[0].name,
                "sample_median_us": round(median, 1),
                "sample_p99_us": round(p99, 1),
                "sampler_cpu_pct_at_4hz": round(cpu_pct, 3),
                "nvitop_snapshot_median_us": nvitop_us,
                "gpustat_query_median_us": gpustat_us,
                "gpm_sample_median_us": gpm_us,
                "gpm_values": gpm_seen or None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
