"""The suite runner: suites × lanes × concurrency × repetitions, through the one fan-out.

:class:`Runner` plans every exchange a run will send (a :class:`Row` each), then sends them
with :func:`quantlab.fanout.fanout` under a semaphore that keeps at most N exchanges in
flight. As each lane finishes, the detectors judge it and a ``lane`` event goes to the
caller (the TUI table, the CLI progress bar); when the exchange is complete the detectors
judge all lanes again with the reference lane's text (divergence) and the exchange is
written to the session. Per-suite aggregates (:mod:`quantlab.suite_results`) go into the
session's ``meta["results"][suite]``, the run itself into ``meta["runs"]``.

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
from typing import Any

from quantlab import suite_results
from quantlab.client import LaneClient
from quantlab.detectors import detect, detect_exchange
from quantlab.fanout import fanout
from quantlab.longctx import GeneratorSpec, LongContextError, build_length
from quantlab.records import Case, Endpoint, Exchange, LaneResult, SamplingParams, new_id
from quantlab.suites import Suite

#: Row statuses, in the order a row goes through them.
STATUSES = ("queued", "running", "done", "failed", "skipped", "cancelled")


@dataclass
class LaneRow:
    """One lane's part of a row, as the table shows it."""

    status: str = "queued"  # queued | running | done | failed | skipped
    ttft_ms: float | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    flags: list[str] = field(default_factory=list)  # detectors that found a failure
    warnings: list[str] = field(default_factory=list)  # detectors that warned
    error: str | None = None
    note: str = ""


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
    one answer may take before its lane fails."""

    concurrency: int = 1
    repeat: int = 1
    quick: bool = False
    gpu_hour_price: float | None = None
    timeout: float = 600.0
    discover: bool = True


@dataclass
class RunSummary:
    run_id: str
    cancelled: bool
    progress: Progress
    results: dict[str, Any]
    exchanges: list[Exchange]


@dataclass
class _Job:
    """A planned exchange: a case, the lanes it goes to, and its row."""

    row: Row
    case: Case
    params: SamplingParams
    clients: list[LaneClient]
    meta: dict[str, Any]
    extra_body: dict[str, Any] | None = None
    bucket: list[Exchange] | None = None


class Runner:
    """Runs suites against endpoints. Use :meth:`run` once; :meth:`cancel` from anywhere on
    the same event loop (or :meth:`cancel_threadsafe` from another thread)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        suites: Sequence[Suite],
        *,
        store: Any = None,
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
        self.store = store
        self.on_event = on_event
        self.run_id = new_id()
        self.rows: list[Row] = []
        self.results: dict[str, Any] = {}
        self.exchanges: list[Exchange] = []
        self.reference = next(
            (e.name for e in self.endpoints if e.role == "reference"), self.endpoints[0].name
        )
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
            LaneClient(ep, read_timeout=self.options.timeout, total_timeout=self.options.timeout)
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
                        self._set_row(row, "cancelled")
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
        sent = p.done - p.skipped
        remaining = p.total - p.done
        if sent > 0 and remaining > 0:
            p.eta_s = round(p.elapsed_s / sent * remaining, 1)
        else:
            p.eta_s = 0.0 if remaining == 0 else None
        return replace(p)

    def _emit(self, kind: str, **kw: Any) -> None:
        if self.on_event is None:
            return
        if isinstance(kw.get("row"), Row):
            kw["row"] = kw["row"].snapshot()
        # A display bug must not stop a run that writes a session.
        with contextlib.suppress(Exception):
            self.on_event(RunEvent(kind=kind, progress=self._snapshot(), **kw))

    def _message(self, text: str) -> None:
        self._emit("message", message=text)

    def _add_rows(self, rows: list[Row]) -> None:
        self.rows.extend(rows)
        self._progress.total += len(rows)
        self._emit("planned", rows=rows)

    def _set_row(
        self, row: Row, status: str, note: str = "", exchange: Exchange | None = None
    ) -> None:
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
                self._message(f"{ep.name}: {ep.status_detail}")
            if len(down) == len(clients):
                self._message("no lane answered; nothing was sent")
                return
        # Plan what can be planned without the servers, so the total is known early.
        plans = []
        for suite in self.suites:
            plans.append((suite, self._plan(suite, clients)))
        if self.store is not None:
            await self._write(self.store.set_endpoints, self.endpoints)
            runs = list(self._store_meta().get("runs") or [])
            runs.append(self._run_record(self._started, None))
            await self._write(self.store.update_meta, {"runs": runs})
        for suite, planned in plans:
            if self._cancel_requested:
                break
            self._message(f"suite {suite.name} ({suite.kind})")
            await planned(suite)
            self._completed.add(suite.name)
            await self._write_results(suite)

    def _plan(self, suite: Suite, clients: list[LaneClient]) -> Callable[[Suite], Any]:
        """Add the suite's rows now; return the coroutine function that sends them."""
        if suite.kind == "long_context":
            return self._plan_long_context(suite, clients)
        if suite.kind == "concurrency":
            return self._plan_concurrency(suite, clients)
        if suite.kind == "capacity":
            return self._plan_capacity(suite, clients)
        return self._plan_cases(suite, clients)

    def _row(
        self, suite: Suite, case: Case, lanes: Sequence[str], conc: int, rep: int, tag: str = ""
    ) -> Row:
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

    # ------------------------------------------------------------------ cases

    def _plan_cases(self, suite: Suite, clients: list[LaneClient]) -> Callable[[Suite], Any]:
        names = [c.name for c in clients]
        conc = self.options.concurrency
        jobs = [
            _Job(
                row=self._row(suite, case, names, conc, rep),
                case=case,
                params=suite.case_params(case),
                clients=clients,
                meta={"concurrency": conc, "repetition": rep},
            )
            for rep in range(self.options.repeat)
            for case in suite.cases
        ]
        self._add_rows([j.row for j in jobs])
        bucket: list[Exchange] = []
        for j in jobs:
            j.bucket = bucket

        async def go(s: Suite) -> None:
            await self._send_all(jobs, conc)
            self.results[s.name] = {
                "kind": s.kind,
                "run_id": self.run_id,
                **suite_results.cases_summary(bucket),
            }

        return go

    # ------------------------------------------------------------------ concurrency

    def _plan_concurrency(self, suite: Suite, clients: list[LaneClient]) -> Callable[[Suite], Any]:
        levels = _levels(suite.settings.get("levels"), [1, 8])
        names = [c.name for c in clients]
        per_level: list[tuple[int, list[_Job]]] = []
        bucket: list[Exchange] = []
        for level in levels:
            jobs = [
                _Job(
                    row=self._row(suite, case, names, level, rep),
                    case=case,
                    params=suite.case_params(case),
                    clients=clients,
                    meta={"concurrency": level, "repetition": rep},
                    bucket=bucket,
                )
                for rep in range(self.options.repeat)
                for case in suite.cases
            ]
            per_level.append((level, jobs))
            self._add_rows([j.row for j in jobs])
        if self.options.concurrency != 1:
            self._message(f"{suite.name}: uses its own levels {levels}; --concurrency ignored")

        async def go(s: Suite) -> None:
            for level, jobs in per_level:
                if self._cancel_requested:
                    return
                self._message(f"{s.name}: {len(jobs)} exchanges at concurrency {level}")
                await self._send_all(jobs, level)
            cmp = suite_results.concurrency_comparison(bucket)
            self.results[s.name] = {"kind": s.kind, "run_id": self.run_id, **cmp}

        return go

    # ------------------------------------------------------------------ capacity

    def _plan_capacity(self, suite: Suite, clients: list[LaneClient]) -> Callable[[Suite], Any]:
        st = suite.settings
        levels = _levels(st.get("levels"), [1, 2, 4, 8, 16])
        rounds = int(st.get("rounds", 2))
        min_requests = int(st.get("min_requests", 4))
        plan: list[tuple[LaneClient, int, list[_Job]]] = []
        templates = suite.cases
        counter = 0
        for client in clients:
            for level in levels:
                n = max(level * rounds, min_requests)
                jobs = []
                for i in range(n):
                    tmpl = templates[counter % len(templates)]
                    counter += 1
                    uid = f"{self.run_id}-{client.name}-{level}-{i}"
                    case, extra, mode = _cold_case(tmpl, uid, client.endpoint)
                    jobs.append(
                        _Job(
                            row=self._row(suite, tmpl, [client.name], level, i, f"@{client.name}"),
                            case=case,
                            # one lane at a time: no agreement to compute, and
                            # logprobs would cost the servers time being measured
                            params=replace(suite.case_params(tmpl), top_logprobs=None),
                            clients=[client],
                            meta={
                                "concurrency": level,
                                "repetition": 0,
                                "request": i,
                                "lane": client.name,
                                "ttft_mode": mode,
                            },
                            extra_body=extra,
                        )
                    )
                plan.append((client, level, jobs))
                self._add_rows([j.row for j in jobs])
        if self.options.concurrency != 1:
            self._message(f"{suite.name}: uses its own levels {levels}; --concurrency ignored")

        async def go(s: Suite) -> None:
            table: dict[str, list[dict[str, Any]]] = {}
            modes: dict[str, str] = {}
            for client, level, jobs in plan:
                if self._cancel_requested:
                    break
                self._message(
                    f"{s.name}: {client.name} at {level} in flight ({len(jobs)} requests)"
                )
                bucket: list[Exchange] = []
                for j in jobs:
                    j.bucket = bucket
                t0 = time.perf_counter()
                await self._send_all(jobs, level)
                wall = time.perf_counter() - t0
                if not bucket:
                    continue
                results = [ex.results[client.name] for ex in bucket]
                row = suite_results.capacity_level(
                    results, wall, level, self.options.gpu_hour_price
                )
                table.setdefault(client.name, []).append(row)
                modes[client.name] = jobs[0].meta["ttft_mode"]
                self.results[s.name] = self._capacity_result(s, table, modes)
                # A long ramp shows up in the session level by level.
                await self._write_results(s, final=False)

        return go

    def _capacity_result(
        self, s: Suite, table: dict[str, list[dict[str, Any]]], modes: dict[str, str]
    ) -> dict[str, Any]:
        return {
            "kind": s.kind,
            "run_id": self.run_id,
            "gpu_hour_price": self.options.gpu_hour_price,
            "max_tokens": s.params.max_tokens,
            "ttft_mode": modes,
            "lanes": table,
        }

    # ------------------------------------------------------------------ long context

    def _plan_long_context(self, suite: Suite, clients: list[LaneClient]) -> Callable[[Suite], Any]:
        try:
            spec = GeneratorSpec.from_settings(suite.settings, suite.name)
        except LongContextError as exc:
            self._message(str(exc))
            spec = None
        names = [c.name for c in clients]
        placeholder = {
            i: Case(id=f"ctx-{ln.label}", messages=[], group=ln.label)
            for i, ln in enumerate(spec.lengths if spec else [])
        }
        rows = {
            (i, rep): self._row(suite, placeholder[i], names, self.options.concurrency, rep)
            for rep in range(self.options.repeat)
            for i in placeholder
        }
        self._add_rows(list(rows.values()))
        bucket: list[Exchange] = []

        async def go(s: Suite) -> None:
            if spec is None:
                return
            jobs: list[_Job] = []
            skipped_rows: list[dict[str, Any]] = []
            for i, length in enumerate(spec.lengths):
                if self._cancel_requested:
                    return
                params = s.params
                fits, skipped = _fitting(clients, length.tokens, params.max_tokens)
                lane_rows = [rows[(i, rep)] for rep in range(self.options.repeat)]
                if not fits:
                    why = "; ".join(skipped.values())
                    self._message(f"{s.name} {length.label}: skipped ({why})")
                    for row in lane_rows:
                        for lane, reason in skipped.items():
                            row.lanes[lane].status = "skipped"
                            row.lanes[lane].note = reason
                        self._set_row(row, "skipped", why)
                    skipped_rows.append(
                        {"label": length.label, "target_tokens": length.tokens, "skipped": skipped}
                    )
                    continue
                built = await build_length(spec, i, _counter(fits), f"ctx-{length.label}")
                if built.case is None:
                    for row in lane_rows:
                        self._set_row(row, "skipped", built.note)
                    skipped_rows.append(
                        {
                            "label": length.label,
                            "target_tokens": length.tokens,
                            "skipped": {"*": built.note},
                        }
                    )
                    continue
                case = built.case
                by_lane = await _verify_counts(fits, case, built)
                note = built.note
                self._message(
                    f"{s.name} {length.label}: {built.tokens} tokens "
                    f"({'counted by the server' if built.count_source == 'server' else note})"
                )
                for rep, row in enumerate(lane_rows):
                    for lane, reason in skipped.items():
                        row.lanes[lane].status = "skipped"
                        row.lanes[lane].note = reason
                    row.note = note
                    jobs.append(
                        _Job(
                            row=row,
                            case=case,
                            params=params,
                            clients=fits,
                            meta={
                                "concurrency": self.options.concurrency,
                                "repetition": rep,
                                "length_label": length.label,
                                "target_tokens": length.tokens,
                                "context_tokens": built.tokens,
                                "context_tokens_by_lane": by_lane,
                                "count_source": built.count_source,
                                "count_note": note,
                                "facts": [f.to_dict() for f in case.facts],
                                "skipped_lanes": skipped,
                            },
                            bucket=bucket,
                        )
                    )
            await self._send_all(jobs, self.options.concurrency)
            table = suite_results.recall_table(bucket)
            self.results[s.name] = {
                "kind": s.kind,
                "run_id": self.run_id,
                "rows": table,
                "skipped": skipped_rows,
                "summary": suite_results.recall_summary(table),
            }

        return go

    # ------------------------------------------------------------------ sending

    async def _send_all(self, jobs: list[_Job], concurrency: int) -> None:
        """Send the jobs with at most ``concurrency`` exchanges in flight."""
        if not jobs:
            return
        sem = asyncio.Semaphore(concurrency)

        async def one(job: _Job) -> None:
            async with sem:
                if self._cancel_requested:
                    return
                await self._send(job)

        tasks = [asyncio.create_task(one(j)) for j in jobs]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, job: _Job) -> None:
        row, case = job.row, job.case
        self._set_row(row, "running")
        for n in row.lanes:
            if row.lanes[n].status == "queued":
                row.lanes[n].status = "running"
        ref_text: dict[str, str] = {}

        def lane_done(lane: str, result: LaneResult) -> None:
            # A first verdict the moment the lane ends (divergence waits for the reference).
            ref = ref_text.get(self.reference) if lane != self.reference else None
            if result.ok:
                result.findings = detect(
                    result.text,
                    case=case,
                    reference=ref,
                    finish_reason=result.finish_reason,
                    lane=lane,
                    max_tokens=job.params.max_tokens,
                )
                if lane == self.reference:
                    ref_text[lane] = result.text
            _fill_lane(row.lanes[lane], result)
            self._emit("lane", row=row, lane=lane, result=result)

        exchange = await fanout(
            job.clients,
            {c.name: case.messages for c in job.clients},
            job.params,
            prompt=case.prompt,
            source=f"suite:{row.suite}/{case.id}",
            on_lane_done=lane_done,
            extra_body=job.extra_body,
        )
        exchange.suite = row.suite
        exchange.case_id = case.id
        exchange.meta.update(job.meta)
        exchange.meta.update({"run_id": self.run_id, "group": case.group})
        if case.expect is not None or case.expect_regex or case.format:
            exchange.meta["checks"] = {
                k: v
                for k, v in (
                    ("expect", case.expect),
                    ("expect_regex", case.expect_regex),
                    ("format", case.format),
                )
                if v
            }
        ref = self.reference if self.reference in exchange.results else None
        try:
            detect_exchange(exchange, case=case, reference_lane=ref)
        except Exception as exc:  # a detector bug must not lose the answers themselves
            exchange.meta["detector_error"] = repr(exc)
        for lane, result in exchange.results.items():
            _fill_lane(row.lanes[lane], result)
        row.exchange_id = exchange.id
        self.exchanges.append(exchange)
        if job.bucket is not None:
            job.bucket.append(exchange)
        if self.store is not None:
            await self._write(self.store.append_exchange, exchange)
        failed = any(not r.ok for r in exchange.results.values())
        self._set_row(row, "failed" if failed else "done", exchange=exchange)

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

    async def _write_results(self, suite: Suite, *, final: bool = True) -> None:
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
                self.results[suite.name] = _aggregate(suite, mine, self)
                self.results[suite.name]["partial"] = True
                await self._write_results(suite)
        if self.store is None:
            return
        runs = list(self._store_meta().get("runs") or [])
        record = self._run_record(started, time.time())
        runs = [r for r in runs if r.get("run_id") != self.run_id] + [record]
        await self._write(self.store.update_meta, {"runs": runs})


# ------------------------------------------------------------------ helpers


def _levels(raw: Any, default: list[int]) -> list[int]:
    if not isinstance(raw, list) or not raw:
        return default
    out = sorted({int(x) for x in raw if isinstance(x, int) and x >= 1})
    return out or default


def _fill_lane(lr: LaneRow, result: LaneResult) -> None:
    lr.status = "done" if result.ok else "failed"
    lr.ttft_ms = result.timing.ttft_ms
    lr.tokens = result.timing.output_tokens
    lr.tokens_per_s = result.timing.tokens_per_s
    lr.flags = sorted({f.detector for f in result.findings if f.severity == "fail"})
    lr.warnings = sorted({f.detector for f in result.findings if f.severity == "warn"})
    lr.error = None if result.error is None else str(result.error)


def _cold_case(tmpl: Case, uid: str, ep: Endpoint) -> tuple[Case, dict[str, Any] | None, str]:
    """A copy of ``tmpl`` no server can answer from its prefix cache, and what made it so.

    The request id goes first in the first message, so not even the system prompt's
    tokens are shared between requests; vLLM also gets a per-request ``cache_salt`` and
    llama.cpp ``cache_prompt: false``.
    """
    msgs = [dict(m) for m in tmpl.messages]
    tag = f"Request {uid}."
    if msgs[0]["role"] == "system":
        msgs[0]["content"] = f"{tag} {msgs[0]['content']}"
    else:
        msgs.insert(0, {"role": "system", "content": tag})
    case = replace(tmpl, messages=msgs)
    mode = "cold: unique prefix per request"
    extra: dict[str, Any] | None = None
    if ep.backend == "vllm":
        extra = {"cache_salt": uid}
        mode += " + cache_salt"
    elif ep.backend == "llama.cpp":
        extra = {"cache_prompt": False}
        mode += " + cache_prompt=false"
    return case, extra, mode


def _fitting(
    clients: Sequence[LaneClient], tokens: int, max_tokens: int
) -> tuple[list[LaneClient], dict[str, str]]:
    """Lanes whose context holds ``tokens`` of prompt plus ``max_tokens`` of answer, and why
    the others are skipped. A lane that did not say its context length is tried."""
    fits: list[LaneClient] = []
    skipped: dict[str, str] = {}
    for c in clients:
        ep = c.endpoint
        if ep.status == "down":
            skipped[c.name] = f"{c.name} is down ({ep.status_detail})"
        elif ep.max_context is not None and tokens + max_tokens > ep.max_context:
            per_slot = " per slot" if ep.backend == "llama.cpp" and (ep.slots or 1) > 1 else ""
            skipped[c.name] = (
                f"{c.name}: {tokens} prompt + {max_tokens} answer tokens do not fit its "
                f"{ep.max_context}-token context{per_slot}"
            )
        else:
            fits.append(c)
    return fits, skipped


def _counter(clients: Sequence[LaneClient]) -> Callable[[list[dict[str, str]]], Any]:
    """Count with the first lane that can; remember which one answered."""

    async def count(messages: list[dict[str, str]]) -> int | None:
        for c in clients:
            n = await c.count_tokens(messages=messages)
            if n is not None:
                return n
        return None

    return count


async def _verify_counts(clients: Sequence[LaneClient], case: Case, built: Any) -> dict[str, Any]:
    """Each lane's own count of the final prompt (lanes may use different tokenizers)."""
    if built.count_source != "server":
        return {}
    counts = await asyncio.gather(*(c.count_tokens(messages=case.messages) for c in clients))
    return {c.name: n for c, n in zip(clients, counts, strict=True)}


def _aggregate(suite: Suite, exchanges: list[Exchange], runner: Runner) -> dict[str, Any]:
    """The aggregate of a suite from its exchanges (used for a cancelled run's partial
    results)."""
    base = {"kind": suite.kind, "run_id": runner.run_id}
    if suite.kind == "long_context":
        table = suite_results.recall_table(exchanges)
        return {
            **base,
            "rows": table,
            "skipped": [],
            "summary": suite_results.recall_summary(table),
        }
    if suite.kind == "concurrency":
        return {**base, **suite_results.concurrency_comparison(exchanges)}
    if suite.kind == "capacity":
        table = suite_results.capacity_table(exchanges, runner.options.gpu_hour_price)
        modes = {ex.meta.get("lane", ""): ex.meta.get("ttft_mode", "") for ex in exchanges}
        return runner._capacity_result(suite, table, modes)
    return {**base, **suite_results.cases_summary(exchanges)}
