"""How the chat screen keeps up with fast streams: two lanes × 1000 tokens/s for 20 s.

The real app (``tui.app.QuantlabApp``) runs headless (``App.run_test``) against two lanes
of the scripted vLLM stand-in (``tests/standin.py``), served from a separate process so
the server's pacing does not share our interpreter. The screen is also encoded to
terminal escape sequences on every update, as on a real terminal (headless mode alone
skips that step; the bytes go nowhere). Prints one JSON object:

- ``lag_p50_ms`` / ``lag_p99_ms``: event-loop delay, measured by how late a 10 ms timer
  fires while the answers stream (what a keypress would wait);
- ``lag_p99_first_quarter_ms`` / ``..._last_quarter_ms``: the same in the first and the
  last quarter of the stream: equal when the cost does not grow with the answer's length;
- ``lost_chars``: per lane, the edit distance between the text the lane displays at the
  end and the text the server sent (0: nothing lost or garbled);
- ``display_trail_p50_ms`` / ``display_trail_p99_ms``: from a delta's arrival to the end
  of the screen refresh that shows it (taken for the oldest delta of each flush, so the
  worst case of each batch);
- ``repaints_per_s``: per lane, how often its text was painted while streaming (the
  flush clock caps it near 30/s); ``flushes_per_s`` likewise;
- ``tokens_per_s_received``: the delivered rate per lane (to check the load was real);
- ``idle_lag_p99_ms``: the same probe for 2 s before the prompt, nothing streaming: the
  delay this machine's other work causes by itself;
- ``ui_process_cpu_percent``: CPU time of this process (client, app, rendering) over the
  streaming time, in % of one core: the cost, whatever else the machine does;
- ``load_avg_1m`` and ``cpus``: how busy this machine was, since the numbers depend on it;
- ``server_cpu_percent``: the stand-in server's CPU over the run, in % of one core: on a
  machine with few cores it competes with the UI for them.

- ``last_delta_s`` / ``lag_max_at_s``: when the last delta arrived and when the worst lag
  came (after the last delta: the exchange's judging and scoring held the loop).

Every lane is asked top-20 log-probabilities, as the app asks by default (the live
agreement row parses them while streaming); ``--top-logprobs 0`` measures without.

Usage: ``python benchmarks/ui_lag.py [--lanes 2] [--rate 1000] [--seconds 20]
[--size 160x48] [--top-logprobs 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from rapidfuzz.distance import Levenshtein  # noqa: E402
from spawn import spawn_url  # noqa: E402  (benchmarks/ is on sys.path as the script's folder)

from quantlab.limits import ClientLimits  # noqa: E402
from quantlab.records import Endpoint, SamplingParams  # noqa: E402
from tui.app import QuantlabApp  # noqa: E402

#: What ``tests/standin.py`` streams from a shell: these words, cycled.
WORDS = ("The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")


def expected_text(tokens: int) -> str:
    return "".join(WORDS[i % len(WORDS)] for i in range(tokens))


def start_standin(tokens: int, rate: float) -> tuple[subprocess.Popen[str], str]:
    """The stand-in in its own process; returns it and its URL."""
    script = str(ROOT / "tests" / "standin.py")
    argv = [sys.executable, script, "--port", "0", "--tokens", str(tokens), "--rate", str(rate)]
    return spawn_url(argv, "the stand-in")


class TerminalApp(QuantlabApp):
    """The app, but encoding every screen update to escape sequences like a real
    terminal session would (headless mode otherwise skips that work)."""

    @property
    def is_headless(self) -> bool:
        return False


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


async def measure(
    url: str, tokens: int, size: tuple[int, int], lanes: int, top_logprobs: int | None = 20
) -> dict[str, object]:
    endpoints = [
        Endpoint(f"lane{i}", url, role="reference" if i == 0 else "candidate") for i in range(lanes)
    ]
    # max_tokens above the answer's length: the stand-in then sends every token, finish "stop".
    # The runaway byte cap (8 MiB by default, ~35,000 tokens of vLLM-shaped chunks) is
    # raised to fit the answer, as a user expecting answers this long would
    # (--max-answer-bytes); the chunk cap still applies.
    app = TerminalApp(
        endpoints=endpoints,
        params=SamplingParams(max_tokens=tokens + 1, top_logprobs=top_logprobs),
        freeze_gc=True,  # as `quantlab` itself runs it (tui/launch.py)
        limits=ClientLimits(max_answer_bytes=max(8 * 2**20, tokens * 1024)),
    )
    loop = asyncio.get_running_loop()
    async with app.run_test(size=size) as pilot:
        chat = app.chat
        assert chat is not None
        for _ in range(100):  # wait for discovery
            await pilot.pause(0.05)
            if all(p.header.status == "ready" for p in chat.panes):
                break
        trails: list[float] = []

        def probe_trail(view: object, since: int) -> None:
            def painted() -> None:
                trails.append((time.perf_counter_ns() - since) / 1e6)

            view.call_after_refresh(painted)  # type: ignore[attr-defined]

        for pane in chat.panes:
            pane.view.on_flush = lambda since, v=pane.view: probe_trail(v, since)

        lags: list[float] = []
        running = True

        stamps: list[float] = []

        async def lag_probe(into: list[float], seconds: float | None = None) -> None:
            interval = 0.010
            end = time.perf_counter() + seconds if seconds else None
            while running and (end is None or time.perf_counter() < end):
                t = time.perf_counter()
                await asyncio.sleep(interval)
                into.append((time.perf_counter() - t - interval) * 1000)
                if into is lags:
                    stamps.append(t)

        # The same probe with nothing streaming: what this machine's load alone costs.
        idle_lags: list[float] = []
        await lag_probe(idle_lags, 2.0)

        first_delta: dict[str, float] = {}
        last_delta: dict[str, float] = {}
        originals = {}
        for pane in chat.panes:
            original = pane.on_text
            originals[pane.lane] = original

            def on_text(delta: str, _orig=original, _lane=pane.lane) -> None:
                now = time.perf_counter()
                if _lane not in first_delta:
                    first_delta[_lane] = now
                last_delta[_lane] = now
                _orig(delta)

            pane.on_text = on_text  # type: ignore[method-assign]

        probe = loop.create_task(lag_probe(lags))
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        paints0 = {p.lane: p.view.paints for p in chat.panes}
        chat.send("Stream as fast as you can.")
        while chat.busy:
            await asyncio.sleep(0.05)
        t_end = time.perf_counter()
        cpu = time.process_time() - cpu0
        running = False
        await probe
        await pilot.pause(0.2)

        expected = expected_text(tokens)
        exchange = chat.exchanges[-1]
        lost: dict[str, int] = {}
        repaints: dict[str, float] = {}
        flushes: dict[str, float] = {}
        received: dict[str, float] = {}
        errors: dict[str, str] = {}
        for pane in chat.panes:
            shown = pane.view.answer_text()
            lost[pane.lane] = Levenshtein.distance(shown, expected)
            span = t_end - first_delta.get(pane.lane, t0)
            repaints[pane.lane] = round((pane.view.paints - paints0[pane.lane]) / span, 1)
            flushes[pane.lane] = round(pane.view.flushes / span, 1)
            result = exchange.results[pane.lane]
            received[pane.lane] = round(result.timing.tokens_per_s or 0.0, 1)
            if result.error:
                errors[pane.lane] = str(result.error)
    # The cost must not grow with the answer: compare the first and the last quarter.
    span = t_end - t0
    first_q = [lag for lag, t in zip(lags, stamps, strict=True) if t - t0 < span / 4]
    last_q = [lag for lag, t in zip(lags, stamps, strict=True) if t - t0 > span * 3 / 4]
    return {
        "lag_p50_ms": round(percentile(lags, 0.50), 2),
        "lag_p99_first_quarter_ms": round(percentile(first_q, 0.99), 2),
        "lag_p99_last_quarter_ms": round(percentile(last_q, 0.99), 2),
        "lag_p99_ms": round(percentile(lags, 0.99), 2),
        "lag_max_ms": round(max(lags), 2) if lags else None,
        "idle_lag_p99_ms": round(percentile(idle_lags, 0.99), 2),
        "ui_process_cpu_percent": round(100 * cpu / (t_end - t0), 1),
        "lost_chars": lost,
        "repaints_per_s": repaints,
        "flushes_per_s": flushes,
        "display_trail_p50_ms": round(percentile(trails, 0.50), 2),
        "display_trail_p99_ms": round(percentile(trails, 0.99), 2),
        "tokens_per_s_received": received,
        "stream_s": round(t_end - t0, 2),
        # from the prompt to the last delta shown; after it, until the exchange is done
        # (judged, scored, saved) and the app free again
        "last_delta_s": round(max(last_delta.values(), default=t0) - t0, 2),
        "lag_max_at_s": round(stamps[lags.index(max(lags))] - t0, 2) if lags else None,
        "lag_samples": len(lags),
        "errors": errors,
        "mean_lag_ms": round(statistics.fmean(lags), 2) if lags else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="tokens per second per lane")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each answer")
    ap.add_argument("--lanes", type=int, default=2)
    ap.add_argument(
        "--top-logprobs",
        type=int,
        default=20,
        help="asked of every lane, as the app does by default (0: none; the live agreement "
        "row then has nothing to show)",
    )
    ap.add_argument("--size", default="160x48", help="terminal COLSxROWS (default 160x48)")
    a = ap.parse_args(argv)
    cols, rows = (int(x) for x in a.size.lower().split("x"))
    tokens = int(a.rate * a.seconds)
    proc, url = start_standin(tokens, a.rate)
    try:
        load_before = os.getloadavg()[0]
        server = psutil.Process(proc.pid)
        server_cpu0, t0 = sum(server.cpu_times()[:2]), time.perf_counter()
        out = asyncio.run(measure(url, tokens, (cols, rows), a.lanes, a.top_logprobs or None))
        # The stand-in's own CPU over the same time: on a small machine it competes with
        # the UI for the cores (a real server's work is on its GPU and its own cores).
        server_cpu = sum(server.cpu_times()[:2]) - server_cpu0
        out["server_cpu_percent"] = round(100 * server_cpu / (time.perf_counter() - t0), 1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    out |= {
        "rate_per_lane": a.rate,
        "lanes": a.lanes,
        "top_logprobs": a.top_logprobs,
        "tokens_per_lane": tokens,
        "size": f"{cols}x{rows}",
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
