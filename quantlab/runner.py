"""The suite runner: suites × lanes × concurrency × repetitions, through the one fan-out.

:class:`Runner` asks each suite's kind (:mod:`quantlab.suites.kinds`) to plan the
exchanges it will send (a :class:`Row` each), then sends them through the one exchange
pipeline (:func:`quantlab.pipeline.send_exchange`) under a semaphore that keeps at most N
exchanges in flight. As each lane finishes, the detectors judge it and a ``lane`` event
goes to the caller (the TUI table, the CLI progress bar); when the exchange is complete
the detectors judge all lanes again with the reference lane's text (divergence) and the
exchange is written to the session, its suite's kind in ``meta["suite_kind"]``. The kind's
aggregate goes into the session's ``meta["results"][suite]``, the run itself (with each
suite's kind) into ``meta["runs"]``.

:meth:`Runner.cancel` stops the run: exchanges in flight are dropped (their requests are
closed), everything finished is already saved, and the aggregates of what finished are
written. The shapes written are documented in docs/suites.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from quantlab.client import LaneClient
from quantlab.lanes import LaneRow, fill_lane_row, reference_lane
from quantlab.limits import ClientLimits
from quantlab.pipeline import send_exchange
from quantlab.progress_line import eta_seconds
from quantlab.records import Case, Endpoint, Exchange, LaneResult, new_id
from quantlab.suites import Suite
from quantlab.suites.kinds import Job, kind_of

if TYPE_CHECKING:
    from quantlab.session import SessionStore

#: Row statuses, in the order a row goes through them.
STATUSES = ("queued", "running", "done", "failed", "skipped", "cancelled")


@dataclass
class Row:
    """One exchange of the run (or one that will not be sent, with why)."""

    key: str
    suite: str
    case_id: str
    lanes: dict[str, LaneRow]
    concurrency: int = 1
    repetition: int = 0
    group: str | None = None
    status: str = "queued"
    exchange_id: str | None = None
    note: str = ""

    def snapshot(self) -> Row:
        """A copy that later changes to this row do not alter (events carry these)."""
        lanes = {
            k: replace(v, flags=list(v.flags), warnings=list(v.warnings))
            for k, v in self.lanes.items()
        }
        return replace(self, lanes=lanes)

    @property
    def label(self) -> str:
        rep = f" #{self.repetition + 1}" if self.repetition else ""
        return f"{self.suite}/{self.case_id}{rep}"


@dataclass
class Progress:
    done: int = 0
    total: int = 0
    failed: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0
    eta_s: float | None = None


@dataclass
class RunEvent:
    """What the runner tells its caller. ``kind``: "planned" (rows added), "row" (a row's
    status changed), "lane" (one lane of a row finished), "message" (a line to show),
    "suite_done" (a suite's aggregate is ready, in ``data``), "finished"."""

    kind: str
    progress: Progress
    row: Row | None = None
    rows: list[Row] = field(default_factory=list)
    lane: str | None = None
    result: LaneResult | None = None
    exchange: Exchange | None = None
    message: str = ""
    data: dict[str, Any] | None = None


OnEvent = Callable[[RunEvent], None]


@dataclass
class RunOptions:
    """How to run. ``concurrency``: exchanges in flight for ``cases`` and ``long_context``
    suites (``concurrency`` and ``capacity`` suites use their own levels). ``timeout``: seconds
    one answer may take before its lane fails; ``limits``: all the client's limits (stall,
    connect, total, bytes), which win over ``timeout`` when given."""

    concurrency: int = 1
    repeat: int = 1
    quick: bool = False
    gpu_hour_price: float | None = None
    timeout: float = 600.0
    discover: bool = True
    limits: ClientLimits | None = None


@dataclass
class RunSummary:
    run_id: str
    cancelled: bool
    progress: Progress
    results: dict[str, Any]
    exchanges: list[Exchange]


class Runner:
    """Runs suites against endpoints. Use :meth:`run` once; :meth:`cancel` from anywhere on
    the same event loop (or :meth:`cancel_threadsafe` from another thread)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        suites: Sequence[Suite],
        *,
        store: SessionStore | None = None,
        options: RunOptions | None = None,
        on_event: OnEvent | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("a run needs at least one endpoint")
        if not suites:
            raise ValueError("a run needs at least one suite")
        self.endpoints = list(endpoints)
        self.options = options or RunOptions()
        if self.options.concurrency < 1 or self.options.repeat < 1:
            raise ValueError("concurrency and repeat must be at least 1")
        self.suites = [s.quickened() if self.options.quick else s for s in suites]
        self._suite_kinds = {s.name: s.kind for s in self.suites}
        self.store = store
        self.on_event = on_event
        self.run_id = new_id()
        self.rows: list[Row] = []
        self.results: dict[str, Any] = {}
        self.exchanges: list[Exchange] = []
        self.reference = reference_lane(self.endpoints) or self.endpoints[0].name
        self._progress = Progress()
        self._t0 = 0.0
        self._work: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel_requested = False
        self._store_lock = asyncio.Lock()
        self._completed: set[str] = set()
        self._started = time.time()

    # ------------------------------------------------------------------ control

    def cancel(self) -> None:
        """Stop the run: in-flight exchanges are dropped, finished ones are kept."""
        self._cancel_requested = True
        if self._work is not None and not self._work.done():
            self._work.cancel()

    def cancel_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.cancel)

    @property
    def cancelled(self) -> bool:
        return self._cancel_requested

    async def run(self) -> RunSummary:
        """Discover the lanes, plan and send every suite; returns when done or cancelled."""
        self._loop = asyncio.get_running_loop()
        self._t0 = time.monotonic()
        clients = [
            LaneClient(ep, limits=self.options.limits or ClientLimits(total_s=self.options.timeout))
            for ep in self.endpoints
        ]
        started = self._started = time.time()
        try:
            self._work = asyncio.create_task(self._execute(clients), name="quantlab-run")
            try:
                await asyncio.shield(self._work)
            except asyncio.CancelledError:
                if not self._cancel_requested:  # our caller was cancelled: stop the work too
                    self._work.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._work
                    raise
                with contextlib.suppress(asyncio.CancelledError):
                    await self._work
            if self._cancel_requested:
                for row in self.rows:
                    if row.status in ("queued", "running"):
                        self.set_row(row, "cancelled")
            await self._finish_all(started)
        finally:
            await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
        self._emit("finished", message="cancelled" if self._cancel_requested else "done")
        return RunSummary(
            self.run_id, self._cancel_requested, self._snapshot(), self.results, self.exchanges
        )

    # ------------------------------------------------------------------ events

    def _snapshot(self) -> Progress:
        p = self._progress
        p.elapsed_s = round(time.monotonic() - self._t0, 3) if self._t0 else 0.0
        p.eta_s = eta_seconds(p.elapsed_s, p.done - p.skipped, p.total - p.done)
        return replace(p)

    def _emit(self, kind: str, **kw: Any) -> None:
        if self.on_event is None:
            return
        if isinstance(kw.get("row"), Row):
            kw["row"] = kw["row"].snapshot()
        # A display bug must not stop a run that writes a session.
        with contextlib.suppress(Exception):
            self.on_event(RunEvent(kind=kind, progress=self._snapshot(), **kw))

    # The seam the suite kinds (quantlab.suites.kinds) plan and send through.

    def message(self, text: str) -> None:
        """A line for the caller to show (the run goes on)."""
        self._emit("message", message=text)

    def add_rows(self, rows: list[Row]) -> None:
        """Planned rows: they count towards the total from now on."""
        self.rows.extend(rows)
        self._progress.total += len(rows)
        self._emit("planned", rows=rows)

    def set_row(
        self, row: Row, status: str, note: str = "", exchange: Exchange | None = None
    ) -> None:
        """Move a row on; a final status counts it as done once."""
        final_before = row.status in ("done", "failed", "skipped", "cancelled")
        row.status = status
        if note:
            row.note = note
        if status in ("done", "failed", "skipped") and not final_before:
            self._progress.done += 1
            self._progress.failed += status == "failed"
            self._progress.skipped += status == "skipped"
        self._emit("row", row=row, exchange=exchange)

    # ------------------------------------------------------------------ main flow

    async def _execute(self, clients: list[LaneClient]) -> None:
        if self.options.discover:
            await asyncio.gather(*(c.discover() for c in clients))
            down = [c.endpoint for c in clients if c.endpoint.status == "down"]
            for ep in down:
                self.message(f"{ep.name}: {ep.status_detail}")
            if len(down) == len(clients):
                self.message("no lane answered; nothing was sent")
                return
        # Plan what can be planned without the servers, so the total is known early.
        plans = [(s, kind_of(s.kind).plan(self, s, clients)) for s in self.suites]
        if self.store is not None:
            await self._write(self.store.set_endpoints, self.endpoints)
            runs = list(self._store_meta().get("runs") or [])
            runs.append(self._run_record(self._started, None))
            await self._write(self.store.update_meta, {"runs": runs})
        for suite, planned in plans:
            if self._cancel_requested:
                break
            self.message(f"suite {suite.name} ({suite.kind})")
            await planned()
            self._completed.add(suite.name)
            await self.write_results(suite)

    def row(
        self, suite: Suite, case: Case, lanes: Sequence[str], conc: int, rep: int, tag: str = ""
    ) -> Row:
        """A queued row for one exchange of ``case`` to ``lanes``; ``tag`` keeps keys unique."""
        key = f"{suite.name}/{case.id}{tag}/c{conc}/r{rep}"
        return Row(
            key=key,
            suite=suite.name,
            case_id=case.id,
            lanes={n: LaneRow() for n in lanes},
            concurrency=conc,
            repetition=rep,
            group=case.group,
        )

    # ------------------------------------------------------------------ sending

    async def send_all(self, jobs: list[Job], concurrency: int) -> None:
        """Send the jobs with at most ``concurrency`` exchanges in flight."""
        if not jobs:
            return
        sem = asyncio.Semaphore(concurrency)

        async def one(job: Job) -> None:
            await sem.acquire()
            held = True

            def release() -> None:  # once the streams end: judging and saving hold no slot
                nonlocal held
                if held:
                    held = False
                    sem.release()

            try:
                if self._cancel_requested:
                    return
                await self._send(job, on_streams_ended=release)
            finally:
                release()

        tasks = [asyncio.create_task(one(j)) for j in jobs]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, job: Job, on_streams_ended: Callable[[], None] | None = None) -> None:
        row, case = job.row, job.case
        self.set_row(row, "running")
        for n in row.lanes:
            if row.lanes[n].status == "queued":
                row.lanes[n].status = "running"

        def lane_done(lane: str, result: LaneResult) -> None:
            fill_lane_row(row.lanes[lane], result)
            self._emit("lane", row=row, lane=lane, result=result)

        kind = self._suite_kinds.get(row.suite, "cases")
        meta = {**job.meta, "run_id": self.run_id, "group": case.group, "suite_kind": kind}
        checks = {
            k: v
            for k, v in (
                ("expect", case.expect),
                ("expect_regex", case.expect_regex),
                ("format", case.format),
            )
            if v
        }
        if case.expect is not None or checks:
            meta["checks"] = checks
        exchange = await send_exchange(
            job.clients,
            {c.name: case.messages for c in job.clients},
            job.params,
            prompt=case.prompt,
            source=f"suite:{row.suite}/{case.id}",
            reference=self.reference,
            case=case,
            suite=row.suite,
            meta=meta,
            on_lane_done=lane_done,
            extra_body=job.extra_body,
            store=self.store,
            write=self._write,
            on_streams_ended=on_streams_ended,
        )
        for lane, result in exchange.results.items():
            fill_lane_row(row.lanes[lane], result)
        row.exchange_id = exchange.id
        self.exchanges.append(exchange)
        if job.bucket is not None:
            job.bucket.append(exchange)
        failed = any(not r.ok for r in exchange.results.values())
        self.set_row(row, "failed" if failed else "done", exchange=exchange)

    # ------------------------------------------------------------------ session

    async def _write(self, fn: Callable[..., Any], *args: Any) -> None:
        """One session write off the event loop (an fsync must not stall the streams)."""
        async with self._store_lock:
            await asyncio.to_thread(fn, *args)

    def _store_meta(self) -> dict[str, Any]:
        session = getattr(self.store, "session", None)
        return dict(getattr(session, "meta", None) or {})

    def _run_record(self, started: float, finished: float | None) -> dict[str, Any]:
        o = self.options
        p = self._progress
        return {
            "run_id": self.run_id,
            "suites": [s.name for s in self.suites],
            "kinds": {s.name: s.kind for s in self.suites},
            "lanes": [e.name for e in self.endpoints],
            "reference": self.reference,
            "concurrency": o.concurrency,
            "repeat": o.repeat,
            "quick": o.quick,
            "gpu_hour_price": o.gpu_hour_price,
            "started_at": started,
            "finished_at": finished,
            "cancelled": self._cancel_requested,
            "done": p.done,
            "total": p.total,
            "failed": p.failed,
            "skipped": p.skipped,
        }

    async def write_results(self, suite: Suite, *, final: bool = True) -> None:
        """Merge the suite's aggregate into ``meta["results"]`` (other suites' stay)."""
        if suite.name not in self.results:
            return
        if self.store is not None:
            results = dict(self._store_meta().get("results") or {})
            results[suite.name] = self.results[suite.name]
            await self._write(self.store.update_meta, {"results": results})
        if final:
            self._emit("suite_done", message=suite.name, data=self.results[suite.name])

    async def _finish_all(self, started: float) -> None:
        """After the last suite or a cancel: aggregates of what finished, the run record."""
        for suite in self.suites:
            if suite.name in self._completed:
                continue
            mine = [ex for ex in self.exchanges if ex.suite == suite.name]
            if mine:
                self.results[suite.name] = kind_of(suite.kind).aggregate(self, suite, mine)
                self.results[suite.name]["partial"] = True
                await self.write_results(suite)
        if self.store is None:
            return
        runs = list(self._store_meta().get("runs") or [])
        record = self._run_record(started, time.time())
        runs = [r for r in runs if r.get("run_id") != self.run_id] + [record]
        await self._write(self.store.update_meta, {"runs": runs})


# ------------------------------------------------------------------ helpers
