"""Soak: a long sweep compressed into minutes, in the real TUI, against real and faulty servers.

The app (``tui.app.QuantlabApp``) runs headless (``App.run_test``, the screen encoded to
escape sequences on every update as on a real terminal) with a session file, and its
Runner tab (``RunnerPane.start``) runs one suite at 16 exchanges in flight on three lanes:
the local llama.cpp pair (``bf16`` reference, ``q4_0``; real servers, the models from
``~/.cache/quantlab``) and ``faulty``, the scripted stand-in (``tests/standin.py``) in its
own process, which answers each case with the fault its number picks from :data:`FAULTS`:
resets, FIN mid-body, error events (nested and flat), HTTP 500/502/503 with a JSON, HTML or
empty body, malformed SSE, no ``[DONE]``, CRLF and comment lines, events cut anywhere, a
non-streamed answer, a pause shorter than the stall timeout, a stall longer than it, a
runaway that ignores ``max_tokens``, invalid UTF-8, escape sequences and markup in the
text, an over-long prompt refusal, a hang-up before answering.

"30 minutes' worth of exchanges": a sweep at concurrency 1 against vLLM, three lanes of
~256 tokens, takes about 3 s an exchange, so 30 minutes is ~600 exchanges; here the
answers are short (``--max-tokens``) and 16 are in flight, so they take minutes.

Prints one JSON object:

- ``exchanges``: ``planned``, ``completed`` (shown by the TUI), ``saved`` (in the session
  file, loaded again after the app closed), ``lost`` (completed but not saved, or saved
  with a lane's text different from what the TUI got: must be 0), ``not_run`` (left when
  ``--seconds`` ran out and the run was cancelled; an exchange saved just as the cancel
  came can be in ``saved`` without reaching the table);
- ``lanes_by_outcome``: per lane, how its answers ended (``ok``, ``ok, protocol note``,
  ``cut off by quantlab``, ``error:<kind>``), from the reloaded session;
- ``faulty_lane_by_fault``: for each scripted fault, the faulty lane's outcomes;
- ``rss_mb``: this process (app, client, runner, session writer) at ``start`` (app up,
  before the run), ``end`` (run finished) and ``peak`` (sampled every 0.5 s);
- ``lag_ms``: event-loop delay while the run goes (how late a 10 ms timer fires: what a
  keypress would wait), p50 / p99 / max, and ``idle_p99`` for 2 s before the run (what
  this machine's other work costs by itself); ``lag_goal_p99_ms``: 50;
- ``load_avg_1m`` (before and after) and ``cpus``: the machine is shared, the lag depends
  on it.

Usage: ``python benchmarks/soak.py [--exchanges 600] [--seconds 300] [--max-tokens 8]
[--stall-timeout 20] [--concurrency 16] [--slots 16]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from spawn import spawn_url  # benchmarks/ is on sys.path as the script's folder

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

#: The faulty lane's script: case N gets FAULTS[N % len(FAULTS)].
FAULTS = (
    "ok",
    "reset",
    "truncate",
    "error_event",
    "error_event_flat",
    "http500_json",
    "http500_flat",
    "http502_html",
    "http503_empty",
    "malformed",
    "no_done",
    "crlf_pings",
    "split",
    "whole",
    "pause_short",
    "stall_long",
    "runaway",
    "bad_utf8",
    "escapes",
    "context",
    "hangup",
)
CASE_TAG = re.compile(r"\(case (\d+)\)")
WORDS = ("The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")
HOSTILE = ("Hi", " \x1b]52;c;aGkK\x07", " \x1b[2J", " [bold]loud[/bold]", " \x9b31m", " \x07.")


def fault_reply(name: str, stall_timeout: float) -> Any:
    """The stand-in's Reply for one fault (``tests/standin.py``)."""
    from standin import Reply

    base: dict[str, Any] = {"tokens": WORDS, "n_tokens": 6}
    html = "<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
    table: dict[str, dict[str, Any]] = {
        "ok": {},
        "reset": {"fault": "reset"},
        "truncate": {"fault": "truncate"},
        "error_event": {"fault": "error_event", "message": "engine dead"},
        "error_event_flat": {"fault": "error_event_flat", "message": "engine dead"},
        "http500_json": {"fault": "http500"},
        "http500_flat": {"fault": "http500_flat"},
        "http502_html": {"fault": "http500_text", "status": 502, "message": html},
        "http503_empty": {"fault": "http500_text", "status": 503, "message": ""},
        "malformed": {"fault": "malformed"},
        "no_done": {"fault": "no_done"},
        "crlf_pings": {"crlf": True, "tokens_per_s": 40.0, "ping_every_s": 0.02},
        "split": {"split_every": 7},
        "whole": {"whole": True},
        "pause_short": {"first_token_s": min(stall_timeout / 3, 2.0)},
        "stall_long": {"fault": "stall", "stall_s": stall_timeout * 3},
        "runaway": {"runaway": True},
        "bad_utf8": {"bad_utf8_at": 2},
        "escapes": {"tokens": HOSTILE, "n_tokens": len(HOSTILE)},
        "context": {"fault": "context"},
        "hangup": {"fault": "hangup"},
    }
    return Reply(**{**base, **table[name]})


def serve_faults(stall_timeout: float) -> None:
    """The faulty server (run in its own process): prints its URL, serves until killed."""
    from standin import StandIn

    def script(body: dict[str, Any]) -> Any:
        last = str((body.get("messages") or [{}])[-1].get("content", ""))
        m = CASE_TAG.search(last)
        name = FAULTS[int(m.group(1)) % len(FAULTS)] if m else "ok"
        return fault_reply(name, stall_timeout)

    s = StandIn(script, model="standin/faulty", max_model_len=32768)
    # A client that resets an idle keep-alive connection is no news: no traceback on stderr.
    s._server.handle_error = lambda *_: None  # type: ignore[method-assign]
    print(s.url, flush=True)
    try:
        s._server.serve_forever()
    finally:
        s._server.server_close()


def start_faulty(stall_timeout: float) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, __file__, "--serve-faults", "--stall-timeout", str(stall_timeout)]
    return spawn_url(argv, "the faulty stand-in")


PROMPTS = (
    ("What is {a} + {b}? Answer with the number only.", "{sum}"),
    ("Name one colour of the rainbow.", None),
    ("Say the word 'lantern' and nothing else.", "lantern"),
    ("Write one short sentence about the sea.", None),
    ("Is {a} larger than {b}? Answer yes or no.", None),
)


def soak_suite(n: int, max_tokens: int) -> Any:
    from quantlab.records import Case, SamplingParams
    from quantlab.suites import Suite

    cases = []
    for i in range(n):
        template, expect = PROMPTS[i % len(PROMPTS)]
        a, b = 3 + i % 17, 5 + i % 11
        text = template.format(a=a, b=b) + f" (case {i})"
        cases.append(
            Case(
                id=f"c{i:04d}",
                messages=[{"role": "user", "content": text}],
                expect=expect.format(sum=a + b) if expect else None,
                group=FAULTS[i % len(FAULTS)],
            )
        )
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=0)
    return Suite(name="soak", kind="cases", params=params, cases=cases, origin="user")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))], 2)


def outcome(result: Any) -> str:
    if result.error is not None:
        return f"error:{result.error.kind}" + (
            f" {result.error.status}" if result.error.status else ""
        )
    if result.cut_off:
        return "cut off by quantlab"
    if result.notes:
        return "ok, protocol note"
    return "ok"


async def soak(args: argparse.Namespace, endpoints: list[Any], folder: Path) -> dict[str, Any]:
    import psutil
    from textual.widgets import TabbedContent

    from quantlab.limits import ClientLimits
    from quantlab.runner import RunOptions
    from quantlab.session import SessionStore, load_session
    from tui.app import QuantlabApp
    from tui.widgets.runner.runner_pane import RunnerPane

    class TerminalApp(QuantlabApp):
        """Encodes every screen update like a real terminal session (see ui_lag.py)."""

        @property
        def is_headless(self) -> bool:
            return False

    path = folder / "soak.json"
    store = SessionStore.open(path, endpoints=endpoints)  # as tui/launch.py opens it
    limits = ClientLimits(
        connect_s=5.0,
        stall_s=args.stall_timeout,
        total_s=args.total_timeout,
        max_answer_bytes=1 << 20,
    )
    app = TerminalApp(
        endpoints=endpoints,
        store=store,
        session_path=path,
        limits=limits,
        freeze_gc=True,  # as `quantlab` runs it
        state_path=folder / "state.json",
    )
    me = psutil.Process()
    suite = soak_suite(args.exchanges, args.max_tokens)
    out: dict[str, Any] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(1.0)
        app.action_show_tab("tab-runner")
        pane = app.query_one(RunnerPane)
        await pilot.pause(0.5)
        running = True
        lags: list[float] = []
        idle: list[float] = []
        rss_peak = 0

        async def probe(into: list[float], seconds: float | None = None) -> None:
            end = time.perf_counter() + seconds if seconds else None
            while running and (end is None or time.perf_counter() < end):
                t = time.perf_counter()
                await asyncio.sleep(0.010)
                into.append((time.perf_counter() - t - 0.010) * 1000)

        async def rss_sampler() -> None:
            nonlocal rss_peak
            while running:
                rss_peak = max(rss_peak, me.memory_info().rss)
                await asyncio.sleep(0.5)

        await probe(idle, 2.0)
        rss_start = me.memory_info().rss
        tasks = [asyncio.create_task(probe(lags)), asyncio.create_task(rss_sampler())]
        t0 = time.monotonic()
        pane.start([suite], RunOptions(concurrency=args.concurrency, limits=limits))
        while pane.runner is None and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.05)
        cancelled = False
        while pane.runner is not None:
            if not cancelled and time.monotonic() - t0 > args.seconds:
                pane.action_cancel_run()  # what Ctrl+X does: finished exchanges are kept
                cancelled = True
            await asyncio.sleep(0.1)
        run_s = time.monotonic() - t0
        running = False
        await asyncio.gather(*tasks)
        await pilot.pause(0.3)
        rss_end = me.memory_info().rss
        shown = dict(pane.exchanges)  # every exchange the TUI received, by id
        table_rows = pane.query_one("#runner-table").row_count
        out["tab"] = app.query_one(TabbedContent).active
    store.close()
    session = load_session(path)
    saved = {ex.id: ex for ex in session.exchanges}
    garbled = 0
    for ex_id, ex in shown.items():
        kept = saved.get(ex_id)
        if kept is None:
            continue
        for lane, result in ex.results.items():
            other = kept.results.get(lane)
            if other is None or other.text != result.text or other.error != result.error:
                garbled += 1
    missing = [i for i in shown if i not in saved]
    by_lane: dict[str, Counter[str]] = {}
    by_fault: dict[str, Counter[str]] = {}
    for ex in session.exchanges:
        for lane, result in ex.results.items():
            by_lane.setdefault(lane, Counter())[outcome(result)] += 1
        faulty = ex.results.get("faulty")
        if faulty is not None and ex.case_id:
            name = FAULTS[int(ex.case_id[1:]) % len(FAULTS)]
            by_fault.setdefault(name, Counter())[outcome(faulty)] += 1
    mb = 1024 * 1024
    out |= {
        "exchanges": {
            "planned": args.exchanges,
            "completed": len(shown),
            "saved": len(saved),
            "lost": len(missing) + garbled,
            "not_run": args.exchanges - len(shown),
            "lanes_each": len(endpoints),
        },
        "run_s": round(run_s, 1),
        "exchanges_per_s": round(len(shown) / run_s, 2) if run_s else None,
        "cancelled_at_seconds_cap": cancelled,
        "table_rows": table_rows,
        "lanes_by_outcome": {k: dict(sorted(v.items())) for k, v in by_lane.items()},
        "faulty_lane_by_fault": {k: dict(v) for k, v in sorted(by_fault.items())},
        "rss_mb": {
            "start": round(rss_start / mb, 1),
            "end": round(rss_end / mb, 1),
            "peak": round(max(rss_peak, rss_end) / mb, 1),
        },
        "lag_ms": {
            "p50": percentile(lags, 0.50),
            "p99": percentile(lags, 0.99),
            "max": round(max(lags), 2) if lags else None,
            "idle_p99": percentile(idle, 0.99),
            "samples": len(lags),
        },
        "lag_goal_p99_ms": 50,
        "session": {
            "bytes": path.stat().st_size,
            "mode": oct(path.stat().st_mode & 0o777),
            "notes": session.notes,
        },
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exchanges", type=int, default=600, help="cases in the suite (default 600)")
    ap.add_argument("--seconds", type=float, default=300.0, help="cancel the run after this")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--stall-timeout", type=float, default=20.0)
    ap.add_argument(
        "--slots",
        type=int,
        default=16,
        help="llama.cpp slots per local server (16: every request in flight decodes, as vLLM "
        "batches them; fewer queue inside the server, silent, and can trip the stall timeout)",
    )
    ap.add_argument("--total-timeout", type=float, default=60.0)
    ap.add_argument("--keep", action="store_true", help="keep the session file (path printed)")
    ap.add_argument("--serve-faults", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve_faults:
        serve_faults(a.stall_timeout)
        return 0

    from quantlab.localpair import LocalPair
    from quantlab.records import Endpoint

    load_before = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="quantlab-soak-"))
    faulty, url = start_faulty(a.stall_timeout)
    pair = LocalPair(parallel=a.slots)
    try:
        t = time.monotonic()
        endpoints = [*pair.start(), Endpoint("faulty", url, role="candidate")]
        pair_start_s = time.monotonic() - t
        out = asyncio.run(soak(a, endpoints, folder))
    finally:
        pair.stop()
        faulty.terminate()
        faulty.wait(timeout=10)
    out |= {
        "settings": {
            "concurrency": a.concurrency,
            "max_tokens": a.max_tokens,
            "stall_timeout_s": a.stall_timeout,
            "total_timeout_s": a.total_timeout,
            "faults": len(FAULTS),
            "pair_slots_each": pair.parallel,
            "pair_threads_each": pair.threads,
        },
        "pair_start_s": round(pair_start_s, 2),
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if a.keep:
        out["session"]["path"] = str(folder / "soak.json")
    else:
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
