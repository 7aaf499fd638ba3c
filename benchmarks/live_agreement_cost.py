"""What live agreement (quantlab/agreement/live.py) costs the client, per token, at top-20.

A stand-in server (tests/standin.py, vLLM's chunk and logprobs format, its own process)
streams --tokens chunks twice, once per lane (the raw per-chunk logprobs the client keeps,
cut out by split_logprobs). Offline, on those chunks (CPU of this thread, median of
--repeats; the lanes never diverge: the worst case, every position is compared):

* final_only: the agreement computed once after the exchange, as before (parse both
  lanes + shared-prefix KL), per token;
* live_ticks_N: LiveExchange.update() called every N new chunks per lane (N=3 is ~100
  tok/s at the chat's 30 Hz flush clock), then the final scoring continuing it (parsing
  and per-position results reused, exchange.py); per token in all, and the event-loop
  time of one update (median and p99 us per tick);
* stream_k20: the client's own CPU per chunk for the stream itself (for scale).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quantlab.agreement.compare import shared_prefix  # noqa: E402
from quantlab.agreement.live import LiveExchange  # noqa: E402
from quantlab.agreement.logprobs import LazyDists  # noqa: E402
from quantlab.client import LaneClient  # noqa: E402
from quantlab.records import Endpoint, SamplingParams  # noqa: E402

MESSAGES = [{"role": "user", "content": "Write a long story about a dragon who bakes bread."}]


async def _chunks(url: str, n: int) -> tuple[list[Any], float]:
    client = LaneClient(Endpoint("bench", url, model="standin/Qwen2.5-0.5B-Instruct"))
    try:
        params = SamplingParams(max_tokens=n + 10, top_logprobs=20)
        await client.chat(MESSAGES, params)  # warm-up
        gc.collect()
        t0 = time.thread_time()
        r = await client.chat(MESSAGES, params)
        cpu = (time.thread_time() - t0) / n * 1e6
    finally:
        await client.aclose()
    assert r.error is None and r.logprobs is not None, r.error
    return list(r.logprobs.chunks), cpu


def _final_only(ref: list[Any], cand: list[Any]) -> float:
    t0 = time.thread_time()
    ag = shared_prefix(LazyDists(ref), LazyDists(cand), reference="ref", k=20)
    assert ag.positions == len(ref)
    return time.thread_time() - t0


def _live(ref: list[Any], cand: list[Any], every: int) -> tuple[float, list[float]]:
    live = LiveExchange(["ref", "cand"], reference="ref", k=20)
    ticks: list[float] = []
    t0 = time.thread_time()
    for i in range(0, len(ref), every):
        live.feeds["ref"].chunks.extend(ref[i : i + every])
        live.feeds["cand"].chunks.extend(cand[i : i + every])
        t1 = time.thread_time()
        live.update()
        ticks.append(time.thread_time() - t1)

    class Raw:  # what the client leaves on a result (RawLogprobs' list)
        def __init__(self, chunks: list[Any]) -> None:
            self.chunks = chunks

    r = live.dists("ref", Raw(live.feeds["ref"].chunks))
    c = live.dists("cand", Raw(live.feeds["cand"].chunks))
    assert r is not None and c is not None
    so_far = live.so_far("cand", reference="ref", k=20)
    ag = shared_prefix(r, c, reference="ref", k=20, so_far=so_far)  # as exchange.py does
    assert ag.kl == live.trackers["cand"].agreement.kl
    return time.thread_time() - t0, ticks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    cmd = [sys.executable, str(ROOT / "tests" / "standin.py"), "--tokens", str(a.tokens)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        ref, stream_us = asyncio.run(_chunks(url, a.tokens))
        cand, _ = asyncio.run(_chunks(url, a.tokens))
    finally:
        server.terminate()
        server.wait(timeout=10)
    n = len(ref)
    out: dict[str, Any] = {"tokens": n, "k": 20, "stream_k20_us_per_chunk": round(stream_us, 2)}
    final = [_final_only(ref, cand) for _ in range(a.repeats)]
    out["final_only_us_per_token"] = round(statistics.median(final) / n * 1e6, 2)
    for every in (1, 3, 10):
        runs = [_live(ref, cand, every) for _ in range(a.repeats)]
        total = statistics.median(t for t, _ in runs)
        per_tick = statistics.median(x for _, ticks in runs for x in ticks)
        every_tick = sorted(x for _, ticks in runs for x in ticks)
        p99 = every_tick[int(0.99 * (len(every_tick) - 1))]
        out[f"live_ticks_{every}"] = {
            "us_per_token_total": round(total / n * 1e6, 2),
            "us_per_tick_median": round(per_tick * 1e6, 1),
            "us_per_tick_p99": round(p99 * 1e6, 1),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
