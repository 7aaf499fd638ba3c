"""``quantlab run SUITE…``: run suites headless, with a progress bar, into a session file.

Every exchange is written to the session the moment it completes, so the TUI can follow
the file live (``RunnerPane(follow=path)``) and an interrupted run keeps what finished.
Ctrl+C stops cleanly: exchanges in flight are dropped, finished ones and the aggregates of
what finished are saved, and the session's path is printed; a second Ctrl+C quits at once.

Exit status: 0 when every planned exchange was sent (failed lanes are results, not
errors) and no finding reached ``--fail-on`` (default ``fail``: a ``fail`` finding exits 1;
``warn``: a warn or fail one; ``never``), 130 when stopped by Ctrl+C, 1 when a finding
tripped that gate (said in one line on stderr), when nothing could be sent (no lane
answered, or every case was skipped) or the session could not be written (a full disk:
the run stops, what was saved stays loadable), 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from quantlab.config import ConfigError, client_limits, load_config, resolve_endpoints
from quantlab.gate import add_fail_on, counts_of, gate_message, tripped
from quantlab.progress_line import ProgressLine, format_seconds
from quantlab.run_summary import summarize
from quantlab.runner import RunEvent, Runner, RunOptions, RunSummary
from quantlab.suites import SuiteError, find_suite

if TYPE_CHECKING:
    from quantlab.session import SessionError, SessionStore

MAX_CONCURRENCY = 256


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suites", nargs="+", metavar="SUITE", help="suite names or .json paths")
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        metavar="N",
        help="exchanges in flight for case suites (default 1; the concurrency and capacity "
        "suites use their own levels)",
    )
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="send every case N times")
    p.add_argument(
        "--gpu-hour-price",
        type=float,
        metavar="USD",
        help="price of one GPU-hour, for the capacity suite's cost per 1M output tokens",
    )
    p.add_argument(
        "--quick", action="store_true", help="small versions of the suites (a first look)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds one answer may take before its lane fails (same as --total-timeout)",
    )
    add_fail_on(p)


def _check(args: argparse.Namespace) -> str | None:
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        return f"--concurrency must be between 1 and {MAX_CONCURRENCY}"
    if args.repeat < 1:
        return "--repeat must be 1 or more"
    if args.gpu_hour_price is not None and not args.gpu_hour_price >= 0:
        return "--gpu-hour-price must be 0 or more (US dollars per GPU-hour)"
    return None


class _Display:
    """Runner events -> the progress line on stderr."""

    def __init__(self, bar: ProgressLine) -> None:
        self.bar = bar

    def __call__(self, ev: RunEvent) -> None:
        p = ev.progress
        if ev.kind == "message":
            self.bar.message(f"quantlab run: {ev.message}")
        elif ev.kind == "row" and ev.row is not None and ev.row.status in ("done", "failed"):
            flags = sorted({f for lr in ev.row.lanes.values() for f in lr.flags})
            status = ev.row.label + (f"  flags: {', '.join(flags)}" if flags else "")
            self.bar.update(p.done, p.total, p.eta_s, status)
            return
        self.bar.update(p.done, p.total, p.eta_s)


def _progress(message: str, fraction: float | None = None) -> None:
    """The local pair's start-up, one line per report (the fraction is for bars only)."""
    print(f"quantlab run: {message}", file=sys.stderr, flush=True)


async def _run(runner: Runner) -> RunSummary:
    """Run with Ctrl+C wired to a clean stop (a second Ctrl+C cancels at once)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    presses = 0

    def on_sigint() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            print(
                "\nquantlab run: stopping; finished exchanges are kept (Ctrl+C again to quit)",
                file=sys.stderr,
                flush=True,
            )
            runner.cancel()
        elif task is not None:
            task.cancel()

    installed = False
    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        installed = True
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
        pass
    try:
        return await runner.run()
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


def _close(store: SessionStore) -> SessionError | None:
    """Close the session; a close that cannot write (a full disk) is returned, not raised:
    the journal it leaves holds every saved exchange, and the user gets one sentence."""
    from quantlab.session import SessionError

    try:
        store.close()
    except SessionError as exc:
        return exc
    return None


def _write_failed(exc: SessionError, saved: int, path: Path) -> str:
    """One sentence: ``disk full: 12 exchanges saved in PATH; the rest was not run/saved``."""
    reason = getattr(exc, "reason", None) or str(exc)
    what = "exchange" if saved == 1 else "exchanges"
    return f"{reason}: {saved} {what} saved in {path}; the rest was not run/saved"


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem:
        print(f"quantlab run: {problem}", file=sys.stderr)
        return 2
    try:
        suites = [find_suite(s) for s in args.suites]
    except SuiteError as exc:
        print(f"quantlab run: {exc}", file=sys.stderr)
        return 2
    names = [s.name for s in suites]
    if len(set(names)) != len(names):
        print(f"quantlab run: a suite is named twice: {' '.join(names)}", file=sys.stderr)
        return 2
    try:
        from quantlab.machine import machine_facts
        from quantlab.session import (
            SessionError,
            SessionStore,
            SessionWriteError,
            default_session_path,
        )
        from quantlab.telemetry.trace import TraceWriter
    except ImportError as exc:  # pragma: no cover - the session store is part of the core
        print(f"quantlab run: session files are not available ({exc})", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        limits = client_limits(args, config, total_flag="timeout")
    except ConfigError as exc:
        print(f"quantlab run: {exc}", file=sys.stderr)
        return 2
    path = Path(args.session) if args.session else default_session_path(config.sessions_dir)
    options = RunOptions(
        concurrency=args.concurrency,
        repeat=args.repeat,
        quick=args.quick,
        gpu_hour_price=args.gpu_hour_price,
        timeout=limits.total_s or 600.0,
        limits=limits,
    )
    bar = ProgressLine(sys.stderr)
    summary: RunSummary | None = None
    try:
        with resolve_endpoints(args, config, progress=_progress) as setup:
            try:
                store = SessionStore.open(path, endpoints=setup.endpoints, machine=machine_facts())
            except SessionError as exc:
                print(f"quantlab run: {exc}", file=sys.stderr)
                return 2
            trace = TraceWriter(store.add_telemetry, setup.endpoints).start()
            write_error: SessionError | None = None
            try:
                runner = Runner(
                    setup.endpoints, suites, store=store, options=options, on_event=_Display(bar)
                )
                summary = asyncio.run(_run(runner))
            except (KeyboardInterrupt, asyncio.CancelledError):
                bar.close()
                print(f"quantlab run: interrupted; session: {path}", file=sys.stderr)
                return 130
            except SessionWriteError as exc:  # the run stopped at the save that failed
                write_error = exc
            finally:
                bar.close()
                trace.stop()
                close_error = _close(store)
                write_error = write_error or close_error
            if write_error is not None:
                print(
                    f"quantlab run: {_write_failed(write_error, store.saved, path)}",
                    file=sys.stderr,
                )
                return 1
    except ConfigError as exc:
        print(f"quantlab run: {exc}", file=sys.stderr)
        return 2
    assert summary is not None  # every path that did not finish the run has returned
    p = summary.progress
    sys.stdout.write(summarize(summary.results))
    state = "stopped" if summary.cancelled else "finished"
    if not summary.exchanges and not summary.cancelled:
        print(f"quantlab run: nothing was sent; session: {path}", file=sys.stderr)
        return 1
    print(
        f"quantlab run: {state}: {p.done}/{p.total} exchanges ({p.failed} with a failed lane, "
        f"{p.skipped} skipped) in {format_seconds(p.elapsed_s)}; session: {path}",
        file=sys.stderr,
    )
    if summary.cancelled:
        return 130
    hits = tripped(counts_of(summary.exchanges), args.fail_on)
    if hits:
        print(gate_message("quantlab run", hits, args.fail_on), file=sys.stderr)
        return 1
    return 0
