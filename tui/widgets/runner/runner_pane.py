"""RunnerPane: run suites against the lanes with a live table, or follow a session that a
headless ``quantlab run`` is writing.

Two modes:

* **run** (``RunnerPane(endpoints, store=…)``): choose suites, lanes, concurrency,
  repetitions (and quick, GPU-hour price); Run (ctrl+r) starts :class:`quantlab.runner.Runner`
  in a worker, Cancel (ctrl+x) stops it — what finished is in the session. A reopened
  session's suite exchanges fill the table at once, to review as after a live run.
* **follow** (``RunnerPane(follow=path)``): a :class:`quantlab.session.SessionFollower` is
  polled twice a second and the table grows as the other process writes exchanges.

Both show one table row per exchange and lane (case, lane, status, TTFT, tokens, tok/s,
detector flags), progress with an ETA, and under it the highlighted row's lanes side by side
(:class:`tui.widgets.runner.compare.CompareView`). ``a`` annotates the highlighted row's exchange
(:class:`tui.widgets.common.annotate.AnnotationForm`); findings are confirmed/dismissed in the
compare view (``c``/``d``); ``w`` toggles the compare view's word diff (candidate vs
reference). Annotations and verdicts are saved to the session at once: in follow mode that
is possible once the other process has let go of the session, and only then are those keys
offered.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.timer import Timer
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Input,
    Label,
    ProgressBar,
    SelectionList,
    Static,
)
from textual.widgets.data_table import ColumnKey

from quantlab.lanes import LaneRow, lane_row, reference_lane
from quantlab.progress_line import eta_seconds, format_seconds
from quantlab.records import Annotation, Endpoint, Exchange, LaneResult
from quantlab.run_summary import summarize
from quantlab.runner import Row, RunEvent, Runner, RunOptions
from quantlab.suites import Suite, SuiteError, catalog
from quantlab.textsafe import safe_line
from tui.widgets.common.annotate import open_annotation_form
from tui.widgets.runner.compare import CompareView
from tui.widgets.runner.runner_table import RunnerTable

if TYPE_CHECKING:
    from quantlab.session import SessionStore

COLUMNS = (
    ("case", "case"),
    ("lane", "lane"),
    ("at", "in flight"),
    ("status", "status"),
    ("ttft", "TTFT ms"),
    ("tokens", "tokens"),
    ("tps", "tok/s"),
    ("flags", "flags"),
)
#: Below WIDE_COLUMNS the table keeps these few, wider columns; the numbers of the chosen
#: row are in the compare view under the table.
NARROW = ("case", "lane", "status", "flags")
WIDE_COLUMNS = 120
POLL_SECONDS = 0.5
#: How long a changed row may wait for the table (changes are coalesced: _dirty_row).
DIRTY_SECONDS = 0.1


def _cell(value: str) -> Text:
    """A table cell as plain text: DataTable reads a str as markup, so a server's error
    ``[/INST]`` would crash the screen and ``[bold]`` would restyle it; controls are
    shown visibly (``\\x1b``)."""
    return Text(safe_line(value), end="")


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def flags_text(
    flags: Sequence[str],
    warnings: Sequence[str],
    error: str | None,
    verdicts: dict[str, str] | None = None,
) -> str:
    """``repetition (confirmed), loop (dismissed) (+1 warn)``: failing detectors with the
    person's verdict on each (``verdicts``: detector -> confirmed | dismissed)."""
    if error:
        return f"error: {error[:60]}"
    verdicts = verdicts or {}
    shown = [f + (f" ({verdicts[f]})" if f in verdicts else "") for f in flags]
    shown += [
        f"{d} (dismissed)" for d, v in verdicts.items() if v == "dismissed" and d not in flags
    ]
    text = ", ".join(shown)
    if warnings:
        text += (" " if text else "") + f"(+{len(warnings)} warn)"
    return text


def is_suite_exchange(ex: Exchange) -> bool:
    """An exchange a suite run made (not a chat turn or a ``quantlab ask``)."""
    return bool(ex.suite) or ex.source.startswith("suite:")


def verdicts_of(result: LaneResult) -> dict[str, str]:
    """The person's verdicts on a lane's failing findings (open ones are left out)."""
    return {
        f.detector: f.status
        for f in result.findings
        if f.severity == "fail" and f.status in ("confirmed", "dismissed")
    }


class RunnerPane(Vertical):
    """See the module docstring. ``store``: the session writer runs and annotations go to
    (None: nothing is saved, and the pane says so)."""

    DEFAULT_CSS = """
    RunnerPane {
        height: 1fr;
    }
    /* Compact controls (one row per field): at 80x24 the table and the compare view
       get the room. */
    RunnerPane #runner-controls {
        height: 5;
        padding: 0 1;
    }
    RunnerPane #runner-controls SelectionList {
        width: 1fr;
        height: 100%;
        margin-right: 1;
    }
    RunnerPane #runner-options {
        width: 24;
        height: 100%;
    }
    RunnerPane #runner-options Horizontal {
        height: 1;
        margin-bottom: 1;
    }
    RunnerPane #runner-options Label {
        width: 13;
    }
    RunnerPane #runner-options Input {
        width: 1fr;
    }
    RunnerPane #runner-buttons {
        width: 12;
        height: 100%;
    }
    RunnerPane #runner-buttons Button {
        width: 100%;
        margin-bottom: 1;
    }
    RunnerPane #runner-follow {
        height: auto;
        padding: 0 1;
        color: $text-muted;
    }
    RunnerPane #runner-progress-line {
        height: 1;
        padding: 0 1;
    }
    RunnerPane #runner-progress {
        width: 30;
    }
    RunnerPane #runner-status {
        width: 1fr;
        padding: 0 0 0 2;
    }
    RunnerPane #runner-summary {
        height: auto;
        max-height: 4;
        padding: 0 1;
        color: $text-muted;
    }
    RunnerPane #runner-table {
        height: 1fr;
    }
    RunnerPane #runner-compare {
        height: 1fr;
        border-top: solid $primary 40%;
    }
    """

    class Followed(Message):
        """Follow mode read the session again: how many exchanges it holds, and whether
        another process still writes it (for the app bar)."""

        def __init__(self, exchanges: int, writing: bool) -> None:
            super().__init__()
            self.exchanges = exchanges
            self.writing = writing

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "start", "Run"),
        Binding("ctrl+x", "cancel_run", "Cancel"),
        Binding("a", "annotate", "Annotate"),
        Binding(
            "w",
            "word_diff",
            "Word diff",
            show=False,  # in the help (F1); the 80x24 footer keeps its room
            tooltip="Candidate vs reference, word by word",
        ),
    ]

    def __init__(
        self,
        endpoints: Sequence[Endpoint] = (),
        *,
        store: SessionStore | None = None,
        follow: str | Path | None = None,
        read_only: bool = False,
        suites: Sequence[Suite] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        #: Follow mode that never writes (the session browser's view): no annotate or
        #: verdict key, whoever writes the file.
        self.read_only = read_only and follow is not None
        if follow is None and not endpoints:
            raise ValueError("RunnerPane needs endpoints to run, or follow=PATH")
        self.endpoints = list(endpoints)
        self.store = store
        self.follow_path = Path(follow) if follow is not None else None
        self._suites = list(suites) if suites is not None else None
        self._suite_errors: list[str] = []
        self.runner: Runner | None = None
        self.exchanges: dict[str, Exchange] = {}
        self.annotations: list[Annotation] = []
        self.reference: str | None = reference_lane(self.endpoints)
        self._rows: dict[str, tuple[str, str]] = {}  # table key -> (exchange id or row key, lane)
        #: table key -> (row, lane) changed since the table was last updated (see _dirty_row)
        self._dirty: dict[str, tuple[Row, str]] = {}
        self._dirty_timer: Timer | None = None
        self._texts: dict[str, list[str]] = {}  # table key -> every column's text (COLUMNS)
        self._columns: list[tuple[str, str]] = list(COLUMNS)  # the ones shown now
        self._wide: bool | None = None
        self._row_exchange: dict[str, str] = {}  # runner row key -> exchange id
        self._follower: Any = None
        self._own_store = False  # a store this pane opened itself (follow mode), closed on unmount
        self._last_message = ""
        self._run_started: float | None = None
        self._follow_run: dict[str, Any] | None = None
        self._writer_busy = follow is not None  # follow mode: until a probe says otherwise

    # ------------------------------------------------------------------ layout

    @property
    def following(self) -> bool:
        return self.follow_path is not None

    def compose(self) -> ComposeResult:
        if self.following:
            what = "read-only" if self.read_only else "following"
            yield Static(Content(f"{what} {self.follow_path}"), id="runner-follow")
        else:
            if self._suites is None:
                try:
                    cat = catalog()
                    self._suites = list(cat.suites.values())
                    self._suite_errors = cat.errors
                except SuiteError as exc:
                    self._suites = []
                    self._suite_errors = [str(exc)]
            with Horizontal(id="runner-controls"):
                yield SelectionList[str](
                    *(
                        (f"{s.name} ({s.case_count})", s.name, s.name == "sanity")
                        for s in self._suites
                    ),
                    id="runner-suites",
                    compact=True,
                )
                yield SelectionList[str](
                    *(
                        (f"{e.name}{' (reference)' if e.role == 'reference' else ''}", e.name, True)
                        for e in self.endpoints
                    ),
                    id="runner-lanes",
                    compact=True,
                )
                with Vertical(id="runner-options"):
                    with Horizontal():
                        yield Label("concurrency")
                        yield Input("1", id="runner-concurrency", type="integer", compact=True)
                    with Horizontal():
                        yield Label("repetitions")
                        yield Input("1", id="runner-repeat", type="integer", compact=True)
                    yield Checkbox("quick versions", id="runner-quick", compact=True)
                with Vertical(id="runner-buttons"):
                    yield Button("Run", variant="primary", id="runner-start", compact=True)
                    yield Button(
                        "Cancel", variant="error", id="runner-cancel", disabled=True, compact=True
                    )
        with Horizontal(id="runner-progress-line"):
            yield ProgressBar(total=None, show_eta=False, id="runner-progress")
            yield Static("", id="runner-status")
        yield Static("", id="runner-summary")
        table = RunnerTable(id="runner-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield CompareView(id="runner-compare")

    def on_mount(self) -> None:
        if self._pruning or not self.is_attached:
            return  # the app quit while this pane mounted: its children are gone already
        self._set_columns(self.app.size.width >= WIDE_COLUMNS)
        self.query_one("#runner-progress", ProgressBar).update(total=1, progress=0)
        if self.following:
            from quantlab.session import SessionFollower

            self.query_one(CompareView).writable = False

            self._follower = SessionFollower(self.follow_path)  # type: ignore[arg-type]
            self._poll()
            self.set_interval(POLL_SECONDS, self._poll)
        else:
            for err in self._suite_errors:
                self.notify(f"suite not loaded: {err}", severity="warning", timeout=10)
            if self.store is None:
                self._set_status("not saved: no session file (runs are shown here only)")
            else:
                self._load_saved()

    def on_unmount(self) -> None:
        if self._follower is not None:
            self._follower.close()
        if self._own_store and self.store is not None:
            self.store.close()

    # ------------------------------------------------------------------ table

    def on_resize(self, event: events.Resize) -> None:
        wide = event.size.width >= WIDE_COLUMNS
        if wide != self._wide:
            self._set_columns(wide)

    def _set_columns(self, wide: bool) -> None:
        """All columns when wide; else the few of NARROW (rows are kept, the cursor too)."""
        self._wide = wide
        table = self.query_one("#runner-table", DataTable)
        cursor = table.cursor_row if table.row_count else 0
        table.clear(columns=True)
        self._columns = [(k, label) for k, label in COLUMNS if wide or k in NARROW]
        for key, label in self._columns:
            width = None if key != "flags" else (36 if wide else None)
            table.add_column(label, key=key, width=width)
        for key, cells in self._texts.items():
            table.add_row(*self._shown(cells), key=key)
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))

    def _shown(self, cells: list[str]) -> list[Text]:
        by_key = dict(zip((k for k, _ in COLUMNS), cells, strict=True))
        return [_cell(by_key[k]) for k, _ in self._columns]

    def _set_status(self, text: str) -> None:
        self._last_message = text
        self.query_one("#runner-status", Static).update(text)

    def _progress(
        self, done: int, total: int, eta: float | None, note: str = "", *, running: bool = True
    ) -> None:
        bar = self.query_one("#runner-progress", ProgressBar)
        bar.update(total=max(total, 1), progress=done)
        text = f"{done}/{total}" if total else ""
        if running and total and done < total:
            text += f"  ETA {format_seconds(eta)}"
        if note:
            text += f"  {note}"
        self.query_one("#runner-status", Static).update(text)

    def _cells(
        self, case: str, lane: str, at: int, lr: LaneRow, verdicts: dict[str, str] | None = None
    ) -> list[str]:
        return [
            case,
            lane,
            str(at),
            lr.status,
            _ms(lr.ttft_ms),
            "–" if lr.tokens is None else str(lr.tokens),
            "–" if lr.tokens_per_s is None else f"{lr.tokens_per_s:.1f}",
            flags_text(lr.flags, lr.warnings, lr.error, verdicts),
        ]

    def _put_row(self, key: str, cells: list[str], ref: tuple[str, str]) -> None:
        table = self.query_one("#runner-table", DataTable)
        if key in self._rows:
            old = self._texts.get(key)
            for i, (col, value) in enumerate(zip((k for k, _ in COLUMNS), cells, strict=True)):
                if old is None or old[i] != value:  # most cells of a row do not change
                    self._set_cell(key, col, value)
        else:
            self._texts[key] = list(cells)
            table.add_row(*self._shown(cells), key=key)
        self._rows[key] = ref

    def _set_cell(self, key: str, col: str, value: str) -> None:
        """One cell, kept for a change of columns and shown when its column is. A column
        only grows: Textual re-measures every cell of a column when a cell gets narrower,
        which made a run of thousands of rows stall the screen for seconds."""
        cells = self._texts.get(key)
        if cells is not None:
            cells[[k for k, _ in COLUMNS].index(col)] = value
        if any(k == col for k, _ in self._columns):
            table = self.query_one("#runner-table", DataTable)
            shown = _cell(value)
            grow = shown.cell_len > table.columns[ColumnKey(col)].content_width
            table.update_cell(key, col, shown, update_width=grow)

    # ------------------------------------------------------------------ run mode

    def _selected(self, list_id: str) -> list[str]:
        return list(self.query_one(f"#{list_id}", SelectionList).selected)

    def _int_field(self, field_id: str, what: str, low: int, high: int) -> int:
        raw = self.query_one(f"#{field_id}", Input).value.strip()
        try:
            v = int(raw)
        except ValueError:
            raise ValueError(f"{what}: {raw!r} is not a whole number") from None
        if not low <= v <= high:
            raise ValueError(f"{what} must be between {low} and {high}")
        return v

    def action_start(self) -> None:
        if self.following:
            self.notify("this pane follows a session; it does not run suites", severity="warning")
            return
        if self.runner is not None:
            self.notify("a run is going; cancel it first (ctrl+x)", severity="warning")
            return
        names = self._selected("runner-suites")
        lanes = self._selected("runner-lanes")
        if not names or not lanes:
            self.notify("choose at least one suite and one lane", severity="warning")
            return
        try:
            options = RunOptions(
                concurrency=self._int_field("runner-concurrency", "concurrency", 1, 256),
                repeat=self._int_field("runner-repeat", "repetitions", 1, 100),
                quick=self.query_one("#runner-quick", Checkbox).value,
                limits=getattr(self.app, "limits", None),  # [client] and the limit flags
            )
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        by_name = {s.name: s for s in self._suites or []}
        suites = [by_name[n] for n in names if n in by_name]
        endpoints = [e for e in self.endpoints if e.name in lanes]
        self._clear()
        self._start_run(endpoints, suites, options)

    def _clear(self) -> None:
        self.query_one("#runner-table", DataTable).clear()
        self._dirty.clear()
        self._rows.clear()
        self._texts.clear()
        self._row_exchange.clear()
        self.query_one("#runner-summary", Static).update("")
        self.query_one(CompareView).show(None)

    def start(self, suites: Sequence[Suite], options: RunOptions | None = None) -> None:
        """Start a run from code (tests, a command palette entry) on every lane."""
        self._clear()
        self._start_run(self.endpoints, list(suites), options or RunOptions())

    @work(exclusive=True, group="runner", exit_on_error=False)
    async def _start_run(
        self, endpoints: list[Endpoint], suites: list[Suite], options: RunOptions
    ) -> None:
        runner = Runner(endpoints, suites, store=self.store, options=options, on_event=self._event)
        self.runner = runner
        self.reference = runner.reference
        self._run_started = time.monotonic()
        self._buttons(running=True)
        try:
            summary = await runner.run()
        except Exception as exc:
            self.notify(f"the run failed: {exc}", severity="error", timeout=15)
            self._set_status(f"failed: {exc}")
            return
        finally:
            self.runner = None
            self._flush_dirty()
            self._buttons(running=False)
        p = summary.progress
        state = "stopped" if summary.cancelled else "finished"
        note = f"{state} in {format_seconds(p.elapsed_s)}"
        self._progress(p.done, p.total, None, note, running=False)
        self.query_one("#runner-summary", Static).update(summarize(summary.results).rstrip())
        where = "saved in the session" if self.store is not None else "not saved"
        self.notify(f"run {state}: {len(summary.exchanges)} exchanges ({where})")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer Run when it can start and Cancel while a run goes (follow mode: neither);
        in follow mode Annotate once the writing process has let go of the session."""
        if action == "start":
            return not self.following and self.runner is None
        if action == "cancel_run":
            return self.runner is not None
        if action == "annotate":
            return not self._writer_busy
        return True

    def _buttons(self, *, running: bool) -> None:
        self.refresh_bindings()
        if self.following:
            return
        self.query_one("#runner-start", Button).disabled = running
        self.query_one("#runner-cancel", Button).disabled = not running

    def action_cancel_run(self) -> None:
        if self.runner is None:
            return
        self.runner.cancel()
        self._set_status("stopping… finished exchanges are kept")

    @on(Button.Pressed, "#runner-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#runner-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel_run()

    def _row_cells(self, row: Row, lane: str) -> list[str]:
        return self._cells(row.label, lane, row.concurrency, row.lanes[lane])

    def _event(self, ev: RunEvent) -> None:
        """Runner events arrive on this loop: update the table and the progress line."""
        if ev.kind == "planned":
            for row in ev.rows:
                for lane in row.lanes:
                    self._put_row(f"{row.key}|{lane}", self._row_cells(row, lane), (row.key, lane))
        elif ev.kind in ("row", "lane") and ev.row is not None:
            row = ev.row
            if ev.exchange is not None:
                self.exchanges[ev.exchange.id] = ev.exchange
                self._row_exchange[row.key] = ev.exchange.id
            lanes = [ev.lane] if ev.kind == "lane" and ev.lane else list(row.lanes)
            for lane in lanes:
                key = f"{row.key}|{lane}"
                if key in self._rows:
                    self._dirty_row(key, row, lane)
            if ev.exchange is not None:
                self._flush_dirty()  # the compare view reads the table's row
                self._refresh_compare_if(ev.exchange.id)
        elif ev.kind == "message":
            self._last_message = ev.message
        p = ev.progress
        self._progress(p.done, p.total, p.eta_s, self._last_message)

    def _dirty_row(self, key: str, row: Row, lane: str) -> None:
        """Note a changed row; the table gets every change at most 10 times a second.

        At 16 in flight on three lanes, rows change dozens of times a second, and every
        change makes the DataTable drop its render caches and redraw the visible rows:
        coalesced, a row that changed five times is drawn once (benchmarks/soak.py)."""
        self._dirty[key] = (row, lane)
        if self._dirty_timer is None:
            self._dirty_timer = self.set_timer(DIRTY_SECONDS, self._flush_dirty)

    def _flush_dirty(self) -> None:
        if self._dirty_timer is not None:
            self._dirty_timer.stop()
            self._dirty_timer = None
        dirty, self._dirty = self._dirty, {}
        if not dirty:
            return
        with self.app.batch_update():
            for key, (row, lane) in dirty.items():
                if key not in self._rows:  # cleared meanwhile (a new run)
                    continue
                self._put_row(key, self._row_cells(row, lane), (row.key, lane))
                if row.status in ("skipped", "cancelled") and row.lanes[lane].status in (
                    "queued",
                    "running",
                ):
                    self._set_cell(key, "status", row.status)

    def _load_saved(self) -> None:
        """A reopened session: its suite exchanges fill the table, to review as after a
        live run (a new run clears them from the table, never from the session)."""
        session = getattr(self.store, "session", None)
        if session is None:
            return
        saved = [ex for ex in session.exchanges if is_suite_exchange(ex)]
        if not saved:
            return
        self.reference = reference_lane(
            session.endpoints or self.endpoints, session.lanes, session.meta.get("runs")
        )
        for ex in saved:
            self._show_exchange_rows(ex)
        runs = len([r for r in session.meta.get("runs") or [] if isinstance(r, dict)])
        from_runs = f" of {runs} run{'s' if runs != 1 else ''}" if runs else ""
        self._progress(0, 0, None, f"{len(saved)} suite exchanges{from_runs} from the session")

    # ------------------------------------------------------------------ follow mode

    def _poll(self) -> None:
        from quantlab.session import SessionError

        try:
            update = self._follower.poll()
        except SessionError as exc:
            self._set_status(f"cannot read the session: {exc}")
            return
        self._probe_writer()
        if not update:
            self._follow_progress()
            return
        session = self._follower.session
        if update.reset:
            self.query_one("#runner-table", DataTable).clear()
            self._rows.clear()
            self._texts.clear()
            self.exchanges.clear()
            self.annotations = list(session.annotations)
        else:
            by_id = {a.id: a for a in self.annotations}
            for a in update.annotations:
                by_id[a.id] = a
            for gone in update.removed_annotations:
                by_id.pop(gone, None)
            self.annotations = list(by_id.values())
        runs = [r for r in session.meta.get("runs") or [] if isinstance(r, dict)]
        self._follow_run = runs[-1] if runs else None
        if self._follow_run and self._follow_run.get("reference"):
            self.reference = self._follow_run["reference"]
        elif self.reference is None:
            self.reference = reference_lane(session.endpoints, session.lanes)
        for ex in update.exchanges:
            self._show_exchange_rows(ex)
        self._follow_progress()
        self.post_message(self.Followed(len(self.exchanges), self._writer_busy))
        current = self.query_one(CompareView).exchange
        if current is not None:
            self._refresh_compare_if(current.id)

    def _probe_writer(self) -> None:
        """Follow mode: is the session still written elsewhere? Annotating and verdicts
        are offered once it is not (or once this pane holds the session itself)."""
        if self.read_only:
            busy = True
        elif self.store is not None:
            busy = False
        else:
            from quantlab.session import writer_holds

            busy = writer_holds(self.follow_path)  # type: ignore[arg-type]
        if busy != self._writer_busy:
            self._writer_busy = busy
            self.query_one(CompareView).writable = not busy
            self.refresh_bindings()
            self.post_message(self.Followed(len(self.exchanges), busy))

    def _show_exchange_rows(self, ex: Exchange) -> None:
        self.exchanges[ex.id] = ex
        rep = int(ex.meta.get("repetition") or 0)
        case = f"{ex.suite}/{ex.case_id}" if ex.suite else ex.source
        if rep:
            case += f" #{rep + 1}"
        at = int(ex.meta.get("concurrency") or 1)
        for lane, result in ex.results.items():
            cells = self._cells(case, lane, at, lane_row(result), verdicts_of(result))
            self._put_row(f"{ex.id}|{lane}", cells, (ex.id, lane))

    def _follow_progress(self) -> None:
        run = self._follow_run
        if run is None:
            self._progress(0, 0, None, f"{len(self.exchanges)} exchanges")
            return
        rid = run.get("run_id")
        done = sum(1 for ex in self.exchanges.values() if ex.meta.get("run_id") == rid)
        total = int(run.get("total") or 0)
        if run.get("finished_at"):
            state = "stopped" if run.get("cancelled") else "finished"
            done = int(run.get("done") or done)
            self._progress(done, total, None, f"run {state}", running=False)
            return
        started = run.get("started_at")
        eta = eta_seconds(time.time() - float(started), done, total - done) if started else None
        self._progress(done, total, eta, "running (another process writes it)")

    # ------------------------------------------------------------------ compare, annotate

    def _exchange_for_key(self, key: str) -> tuple[Exchange | None, str | None]:
        ref = self._rows.get(key)
        if ref is None:
            return None, None
        first, lane = ref
        ex_id = first if first in self.exchanges else self._row_exchange.get(first)
        return (self.exchanges.get(ex_id) if ex_id else None), lane

    def _annotations_for(self, exchange_id: str) -> list[Annotation]:
        if self.store is not None and not self.following:
            session = getattr(self.store, "session", None)
            if session is not None:
                return session.annotations_for(exchange_id)
        return [a for a in self.annotations if a.exchange_id == exchange_id]

    def _refresh_compare_if(self, exchange_id: str) -> None:
        view = self.query_one(CompareView)
        table = self.query_one("#runner-table", DataTable)
        if table.row_count == 0:
            return
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return
        ex, lane = self._exchange_for_key(key or "")
        if ex is not None and ex.id == exchange_id:
            view.show(ex, self.reference, self._annotations_for(ex.id), lane=lane)

    @on(DataTable.RowHighlighted, "#runner-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        ex, lane = self._exchange_for_key(event.row_key.value or "")
        view = self.query_one(CompareView)
        if ex is None:
            view.show(None)
            return
        view.show(ex, self.reference, self._annotations_for(ex.id), lane=lane)

    def selected(self) -> tuple[Exchange | None, str | None]:
        """The highlighted row's exchange (None while it is not finished) and lane."""
        table = self.query_one("#runner-table", DataTable)
        if table.row_count == 0:
            return None, None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self._exchange_for_key(key or "")

    def _writer(self) -> Any:
        """The store to save a person's judgement to; in follow mode the session is opened
        for writing once its writer has let go of it."""
        if self.store is not None:
            return self.store
        if self.read_only:
            self.notify("opened read-only: nothing is saved here", severity="warning")
            return None
        if self.following:
            from quantlab.session import SessionError, SessionStore

            try:
                self.store = SessionStore.open(self.follow_path)  # type: ignore[arg-type]
            except SessionError as exc:
                self.notify(
                    f"cannot save yet: {exc} (annotate when the run has finished)",
                    severity="warning",
                    timeout=10,
                )
                return None
            self._own_store = True
            return self.store
        return None

    def action_word_diff(self) -> None:
        on = self.query_one(CompareView).toggle_word_diff()
        self.notify("word diff against the reference" if on else "first difference highlighted")

    def action_annotate(self) -> None:
        ex, lane = self.selected()
        if ex is None:
            self.notify("highlight a finished row first", severity="warning")
            return
        if self.read_only:
            self.notify("opened read-only: nothing is saved here", severity="warning")
            return
        store = self._writer()
        if store is None and self.following:
            return

        def saved(annotation: Annotation) -> None:
            self.annotations.append(annotation)
            self._refresh_compare_if(ex.id)

        open_annotation_form(
            self.app,
            ex.id,
            list(ex.results),
            store.add_annotation if store is not None else None,
            lane=lane,
            prompt=ex.prompt,
            on_saved=saved,
        )

    @on(CompareView.FindingVerdict)
    def _verdict(self, event: CompareView.FindingVerdict) -> None:
        ex = self.exchanges.get(event.exchange_id)
        store = self._writer()
        if store is None:
            if not self.following:
                self.notify("not saved: this view has no session file", severity="warning")
            return
        try:
            store.set_finding_status(event.exchange_id, event.lane, event.detector, event.status)
        except ValueError as exc:
            self.notify(f"not saved: {exc}", severity="error")
            return
        if ex is not None:
            for f in ex.results[event.lane].findings:
                if f.detector == event.detector:
                    f.status = event.status  # type: ignore[assignment]
            result = ex.results[event.lane]
            lr = lane_row(result)
            flags = flags_text(lr.flags, lr.warnings, lr.error, verdicts_of(result))
            for key, (first, lane) in self._rows.items():
                same = first == ex.id or self._row_exchange.get(first) == ex.id
                if same and lane == event.lane:
                    self._set_cell(key, "flags", flags)
            self._refresh_compare_if(ex.id)
        self.notify(f"{event.lane} {event.detector}: {event.status}")
