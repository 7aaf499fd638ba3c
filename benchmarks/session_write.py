"""What it costs to save one exchange durably: a journal vs an atomic rewrite; one JSON object.

The design offered two crash-safe ways to keep a session file: (a) append each change to a
journal (one write + fdatasync) and fold it into an atomically replaced snapshot now and
then, or (b) rewrite the whole file per change (temp file + fsync + rename + fsync of the
folder). This script measures both on realistic exchanges: 2 lanes x 1,500 characters of
answer, 300 inter-token latencies per lane, messages, usage, timing and two findings.

For each session size N (10, 100, 1000 exchanges) it fills a session with N-k exchanges
untimed, then times k appends (k = min(N, 50)): the cost of saving an exchange *when the
session already holds about N*. Variants: "fsync" (each save reaches the disk before the
call returns: survives a power cut), "group" (each save reaches the kernel before the call
returns, a background thread fdatasyncs behind it: group commit) and "os" (reaches the
kernel only: survives kill -9 and a dropped SSH link, not a power cut). The rewrite
strategy is given its best case: each exchange's JSON is serialized once and reused
(orjson.Fragment), so it pays only for bytes written and syncs. The journal figures come
from the real SessionStore; its "amortized_us" is every append from an empty session to N,
compactions included, divided by N.

Also printed: the bare fdatasync of a small append (the floor of any durable save), the
time to load a session of N exchanges (snapshot alone, and snapshot + a journal holding all
of them), and the SessionFollower's poll cost (idle, and with one new exchange).

Run: .venv/bin/python benchmarks/session_write.py   (uses a temp folder on the same disk
as the current directory unless --dir is given; the disk matters most).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from quantlab.fsio import atomic_write
from quantlab.records import (
    Exchange,
    Finding,
    LaneResult,
    SamplingParams,
    Timing,
)
from quantlab.session import SessionFollower, SessionStore, load_session
from quantlab.session.store import dumps, exchange_json

SIZES = (10, 100, 1000)
_PARAGRAPH = (
    "To compute the total, first multiply the price per unit by the number of units, then "
    "add the shipping cost. The answer is 4,212 dollars. Note that quantized models often "
    "repeat a phrase or lose a planted fact deep in a long context; the reference answers "
    "def parse(line): return json.loads(line) # 3.14159 and 2.71828, café, naïve, 東京"
)
WORDS = _PARAGRAPH.split()


def make_exchange(rng: random.Random, i: int) -> Exchange:
    """A realistic exchange: 2 lanes x 1,500 characters, 300 ITL floats per lane."""
    prompt = f"Question {i}: " + " ".join(rng.choice(WORDS) for _ in range(30))
    params = SamplingParams(temperature=0.0, max_tokens=512, seed=0)
    ex = Exchange(prompt=prompt, params=params, source="suite:bench/case")
    for lane in ("bf16", "q4_0"):
        ex.messages[lane] = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": prompt},
        ]
        text = ""
        while len(text) < 1500:
            text += rng.choice(WORDS) + " "
        itl = [round(rng.uniform(5, 40), 3) for _ in range(300)]
        ex.results[lane] = LaneResult(
            lane=lane,
            model="SmolLM2-135M-Instruct",
            text=text[:1500],
            finish_reason="length",
            usage={"prompt_tokens": 52, "completion_tokens": 301, "total_tokens": 353},
            timing=Timing(
                ttft_ms=round(rng.uniform(20, 90), 3),
                itl_ms=itl,
                e2e_ms=round(sum(itl) + 50, 3),
                output_tokens=301,
                tokens_per_s=round(300 / (sum(itl) / 1000), 2),
            ),
            findings=[
                Finding("repetition", lane, "warn", 0.41, "'careful explanation' x4"),
                Finding("divergence", lane, "info", 0.87, "first divergence at char 412"),
            ],
            server_timings={"prompt_ms": 12.5, "predicted_ms": 2100.0},
        )
    ex.wall_ms = 2500.0
    return ex


class RewriteStore:
    """Strategy (b) at its best: the whole file rewritten atomically per exchange, with each
    exchange's JSON serialized only once."""

    def __init__(self, path: Path, fsync: bool) -> None:
        self.path = path
        self.fsync = fsync
        self.exchanges: list[bytes] = []

    def append_exchange(self, ex: Exchange, *, write: bool = True) -> None:
        self.exchanges.append(exchange_json(ex))
        if write:
            doc = {
                "schema": "quantlab.session/1",
                "endpoints": [],
                "exchanges": [orjson.Fragment(b) for b in self.exchanges],
            }
            atomic_write(self.path, dumps(doc), fsync=self.fsync)


def _stats(samples_ns: list[int]) -> dict[str, float]:
    us = [s / 1000 for s in samples_ns]
    return {
        "mean_us": round(statistics.fmean(us), 1),
        "p50_us": round(statistics.median(us), 1),
        "max_us": round(max(us), 1),
    }


def bench_journal(root: Path, exchanges: list[Exchange], n: int, durability: str) -> dict:
    k = min(n, 50)
    d = Path(tempfile.mkdtemp(dir=root))
    store = SessionStore.open(d / "s.json", durability=durability)  # type: ignore[arg-type]
    total = 0
    for ex in exchanges[: n - k]:
        t = time.perf_counter_ns()
        store.append_exchange(ex)
        total += time.perf_counter_ns() - t
    samples = []
    for ex in exchanges[n - k : n]:
        t = time.perf_counter_ns()
        store.append_exchange(ex)
        samples.append(time.perf_counter_ns() - t)
    total += sum(samples)
    compactions = store.compactions - 1  # the first one is the empty session at open
    t = time.perf_counter_ns()
    store.close()
    close_ns = time.perf_counter_ns() - t
    size = (d / "s.json").stat().st_size
    shutil.rmtree(d)
    out = _stats(samples)
    out["amortized_us"] = round(total / n / 1000, 1)
    out["compactions"] = compactions
    out["close_ms"] = round(close_ns / 1e6, 2)
    out["file_kib"] = round(size / 1024)
    return out


def bench_rewrite(root: Path, exchanges: list[Exchange], n: int, fsync: bool) -> dict:
    k = min(n, 50)
    d = Path(tempfile.mkdtemp(dir=root))
    store = RewriteStore(d / "s.json", fsync)
    for ex in exchanges[: n - k]:
        store.append_exchange(ex, write=False)
    samples = []
    for ex in exchanges[n - k : n]:
        t = time.perf_counter_ns()
        store.append_exchange(ex)
        samples.append(time.perf_counter_ns() - t)
    shutil.rmtree(d)
    return _stats(samples)


def bench_fsync_floor(root: Path, record: bytes, repeat: int = 200) -> float:
    path = root / "floor.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    samples = []
    for _ in range(repeat):
        t = time.perf_counter_ns()
        os.write(fd, record)
        os.fdatasync(fd)
        samples.append(time.perf_counter_ns() - t)
    os.close(fd)
    path.unlink()
    return round(statistics.median(samples) / 1000, 1)


def bench_load(root: Path, exchanges: list[Exchange], n: int) -> dict[str, float]:
    d = Path(tempfile.mkdtemp(dir=root))
    path = d / "s.json"
    store = SessionStore.open(path, durability="os", compact_min_bytes=1 << 40)
    for ex in exchanges[:n]:
        store.append_exchange(ex)
    # Now: snapshot empty, journal holds all n (as after a crash).
    t = time.perf_counter_ns()
    s = load_session(path)
    journal_ms = (time.perf_counter_ns() - t) / 1e6
    assert len(s.exchanges) == n
    store.close()
    t = time.perf_counter_ns()
    s = load_session(path)
    snap_ms = (time.perf_counter_ns() - t) / 1e6
    assert len(s.exchanges) == n
    shutil.rmtree(d)
    return {"snapshot_ms": round(snap_ms, 2), "journal_replay_ms": round(journal_ms, 2)}


def bench_follow(root: Path, exchanges: list[Exchange]) -> dict[str, float]:
    d = Path(tempfile.mkdtemp(dir=root))
    path = d / "s.json"
    store = SessionStore.open(path, durability="os")
    for ex in exchanges[:100]:
        store.append_exchange(ex)
    follower = SessionFollower(path)
    follower.poll()
    idle = []
    for _ in range(500):
        t = time.perf_counter_ns()
        follower.poll()
        idle.append(time.perf_counter_ns() - t)
    one = []
    for ex in exchanges[100:150]:
        store.append_exchange(ex)
        t = time.perf_counter_ns()
        u = follower.poll()
        one.append(time.perf_counter_ns() - t)
        assert [e.id for e in u.exchanges] == [ex.id]
    store.close()
    follower.close()
    shutil.rmtree(d)
    return {
        "poll_idle_us": round(statistics.median(idle) / 1000, 1),
        "poll_one_exchange_us": round(statistics.median(one) / 1000, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path.cwd(), help="where to write temp files")
    args = ap.parse_args()
    rng = random.Random(7)
    exchanges = [make_exchange(rng, i) for i in range(max(SIZES) + 50)]
    root = Path(tempfile.mkdtemp(prefix=".session-bench-", dir=args.dir))
    try:
        record = dumps(exchanges[0].to_dict())
        result: dict[str, Any] = {
            "exchange_bytes": len(record),
            "fdatasync_floor_us": bench_fsync_floor(root, record),
            "per_exchange": {},
        }
        for n in SIZES:
            result["per_exchange"][str(n)] = {
                "journal_fsync": bench_journal(root, exchanges, n, "fsync"),
                "journal_group": bench_journal(root, exchanges, n, "group"),
                "journal_os": bench_journal(root, exchanges, n, "os"),
                "rewrite_fsync": bench_rewrite(root, exchanges, n, True),
                "rewrite_os": bench_rewrite(root, exchanges, n, False),
            }
        result["load"] = {str(n): bench_load(root, exchanges, n) for n in SIZES}
        result["follower"] = bench_follow(root, exchanges)
        at = result["per_exchange"][str(max(SIZES))]
        result["choice"] = (
            "journal"
            if at["journal_fsync"]["mean_us"] < at["rewrite_fsync"]["mean_us"]
            else "rewrite"
        )
        result["machine"] = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
