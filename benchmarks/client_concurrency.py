"""Client CPU per chunk with many streams at once: one connection pool vs shards of 8.

httpcore's connection pool walks all its connections (and polls each idle socket) at
every request start and end, quadratically in its idle connections; at 64 in flight on
real vLLM that took about a third of quantlab's CPU (docs/vllm-bench/README.md). The
LaneClient therefore spreads streams over pools of ``SHARD_CONNECTIONS``. This streams
--waves waves of --streams answers at once from the stand-in (tests/standin.py, its own
process, vLLM's wire format) and prints the client's CPU time (``time.process_time``,
so other load on the machine does not count) per content chunk, both ways, interleaved.

Usage: ``python benchmarks/client_concurrency.py [--streams 64] [--tokens 128]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import quantlab.client as client_mod  # noqa: E402
from quantlab.client import LaneClient  # noqa: E402
from quantlab.records import Endpoint, SamplingParams  # noqa: E402

MESSAGES = [{"role": "user", "content": "Count."}]


async def _waves(url: str, streams: int, waves: int, shard: int) -> tuple[float, int]:
    """(client CPU seconds, content chunks) for ``waves`` waves of ``streams`` at once."""
    client_mod.SHARD_CONNECTIONS = shard
    params = SamplingParams(temperature=0.0, max_tokens=100_000)
    client = LaneClient(Endpoint("bench", url, model="standin/Qwen2.5-0.5B-Instruct"))
    chunks = 0
    try:
        await client.chat(MESSAGES, params)  # connect once before the clock starts
        t0 = time.process_time()
        for _ in range(waves):
            rs = await asyncio.gather(*(client.chat(MESSAGES, params) for _ in range(streams)))
            bad = [r.error for r in rs if not r.ok]
            if bad:
                raise RuntimeError(f"stream failed: {bad[0]}")
            chunks += sum(r.timing.output_tokens or 0 for r in rs)
        return time.process_time() - t0, chunks
    finally:
        await client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=128, help="content chunks per answer")
    ap.add_argument("--rate", type=float, default=100.0, help="tokens/s per stream")
    ap.add_argument("--waves", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    cmd = [sys.executable, str(ROOT / "tests" / "standin.py"), "--tokens", str(a.tokens)]
    server = subprocess.Popen([*cmd, "--rate", str(a.rate)], stdout=subprocess.PIPE, text=True)
    shards = {"one_pool": 1 << 20, "shards_of_8": 8}
    us: dict[str, list[float]] = {k: [] for k in shards}
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        for _ in range(a.repeats):
            for name, size in shards.items():
                cpu, n = asyncio.run(_waves(url, a.streams, a.waves, size))
                us[name].append(1e6 * cpu / max(n, 1))
    finally:
        server.terminate()
        server.wait(timeout=10)
    out: dict[str, Any] = {k: round(statistics.median(v), 1) for k, v in us.items()}
    out["unit"] = "client CPU us per content chunk (median of repeats)"
    out["runs"] = {k: [round(x, 1) for x in v] for k, v in us.items()}
    out |= {"streams": a.streams, "tokens": a.tokens, "rate_per_stream": a.rate}
    out["ratio_one_pool_over_shards"] = round(out["one_pool"] / out["shards_of_8"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
