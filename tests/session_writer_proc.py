"""A session writer run as a separate process by tests/test_session_crash.py.

It saves exchanges (and annotations, finding statuses, telemetry) in a loop and prints a
line *after* each save returns, so the test knows what must survive a kill -9:
``ex <id>`` (every lane saved), ``ann <id>``, ``fs <exchange id>`` (finding confirmed),
``tel <t>``. Ids are ``<tag>-<n>`` so the test can tell the one save in flight at the kill.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from quantlab.records import Annotation, Exchange, Finding, LaneResult, SamplingParams, Timing
from quantlab.session import SessionStore


def exchange(rng: random.Random, ex_id: str) -> Exchange:
    """About the size of a real one: 2 lanes x 1,500 characters, 300 ITLs each."""
    ex = Exchange(prompt=f"prompt {ex_id}", params=SamplingParams(), id=ex_id, source="suite:x")
    for lane in ("bf16", "q4_0"):
        ex.messages[lane] = [{"role": "user", "content": ex.prompt}]
        ex.results[lane] = LaneResult(
            lane=lane,
            text="".join(rng.choice("abcdefgh ") for _ in range(1500)),
            finish_reason="stop",
            timing=Timing(ttft_ms=10.0, itl_ms=[rng.random() * 30 for _ in range(300)]),
            findings=[Finding("repetition", lane, "warn", 0.5, "x")],
        )
    return ex


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--tag", default="w")
    ap.add_argument("--durability", default="fsync")
    ap.add_argument("--compact-bytes", type=int, default=64 * 1024)
    ap.add_argument("--count", type=int, default=0, help="0: until killed")
    ap.add_argument("--mode", choices=("mixed", "append"), default="mixed")
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    rng = random.Random(args.tag)
    out = sys.stdout
    store = SessionStore.open(
        args.path,
        durability=args.durability,
        compact_min_bytes=args.compact_bytes,
        meta={"writer": args.tag},
    )
    print("ready", file=out, flush=True)
    i = 0
    while args.count == 0 or i < args.count:
        ex = exchange(rng, f"{args.tag}-{i}")
        kind = i % 3 if args.mode == "mixed" else 1
        if kind == 0:  # lane by lane, as the chat saves them
            store.save_lane(ex, "bf16")
            store.save_lane(ex, "q4_0")
        elif kind == 1:
            store.append_exchange(ex)
        else:  # one lane first, then the whole exchange with its wall time
            store.save_lane(ex, "bf16")
            ex.wall_ms = 123.0
            store.update_exchange(ex)
        print(f"ex {ex.id}", file=out, flush=True)
        if args.mode == "mixed":
            if i % 4 == 0:
                store.add_annotation(Annotation(ex.id, "q4_0", ["other"], id=f"{ex.id}-a"))
                print(f"ann {ex.id}-a", file=out, flush=True)
            if i % 5 == 0:
                store.set_finding_status(ex.id, "q4_0", "repetition", "confirmed")
                print(f"fs {ex.id}", file=out, flush=True)
            if i % 2 == 0:
                store.add_telemetry([{"t": f"{args.tag}-{i}", "util": 50}])
                print(f"tel {args.tag}-{i}", file=out, flush=True)
        if args.delay:
            time.sleep(args.delay)
        i += 1
    store.close()
    print(f"closed compactions={store.compactions}", file=out, flush=True)


if __name__ == "__main__":
    main()
