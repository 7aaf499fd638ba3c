"""TelemetryPane: live GPUs, the servers' own stats, host CPU/RAM — drawn from snapshots.

The NVML sampler runs on its own thread (quantlab.telemetry.sampler); this pane only reads
its snapshot on a timer (4 Hz by default) and scrapes each server's /metrics once a second
in an async worker (parsing in a thread), and each endpoint's dcgm-exporter (remote GPUs)
in another. Nothing here blocks the event loop. With a session store, a 1 Hz trace is
written into the session in batches.

Layout follows the room it gets: each GPU as a header (with the lane holding it) and three
metrics with history graphs one to four rows high, two GPUs side by side on a wide screen,
or one line a GPU when many GPUs share little height (the process table then shrinks to
its memory-by-lane line); then the servers, the host, and what the figures mean. Remote
GPUs follow the local ones, labelled by host. Drawing itself is in ``telemetry_draw``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from quantlab.records import Endpoint
from quantlab.telemetry.dcgm import DcgmScraper
from quantlab.telemetry.host import HostSampler
from quantlab.telemetry.processes import ProcessMapper, gpu_lanes
from quantlab.telemetry.sampler import HISTORY, GpuSampler, GpuSnapshot, TelemetrySnapshot
from quantlab.telemetry.server_stats import ServerStats, ServerStatsScraper
from quantlab.telemetry.trace import TraceRecorder, trace_point
from tui.widgets.telemetry.telemetry_draw import (
    common_name,
    gpu_block,
    gpu_line,
    host_line,
    line_label,
    notes,
    process_lines,
    server_lines,
    side_by_side,
)

if TYPE_CHECKING:
    from quantlab.session import SessionStore

#: Seconds of generation tokens/s kept per server for its sparkline.
SERVER_HISTORY = 60


#: The host label of this machine's GPUs when remote ones are shown beside them.
LOCAL = "local"
#: Narrowest GPU block worth putting beside another (bar, value and a 40-column graph).
MIN_COLUMN_W = 80


def gpu_rows_per_gpu(graph_rows: int) -> int:
    """Lines one GPU takes in the block layout: a header and three metrics."""
    return 1 + 3 * graph_rows


def plan_layout(
    height: int, width: int, gpus: int, fixed: int, procs: int
) -> tuple[int, int, bool]:
    """(columns, graph rows, compact processes) so that everything fits in ``height``.

    Graphs first: the tallest that fit, one column before two (two only when each gets
    ``MIN_COLUMN_W``); then one line a GPU. ``fixed`` counts the lines besides the GPUs and
    the process table (``procs`` lines with its gap); when room is short the table shrinks
    to its one "GPU memory by lane" line. Rows 0 means one line a GPU."""
    compact_len = 2 if procs else 0
    max_cols = 2 if gpus >= 2 and width >= 2 * MIN_COLUMN_W + 2 else 1
    for procs_len, compact in ((procs, False), (compact_len, True)):
        for rows in (4, 3, 2, 1):
            for cols in range(1, max_cols + 1):
                if -(-gpus // cols) * gpu_rows_per_gpu(rows) + fixed + procs_len <= height:
                    return cols, rows, compact
    for procs_len, compact in ((procs, False), (compact_len, True)):
        if gpus + 1 + fixed + procs_len <= height:
            return 1, 0, compact
    return (1, 1, True) if gpus <= 2 else (1, 0, True)


class TelemetryPane(VerticalScroll):
    """GPUs + server stats + host, refreshed from snapshots. Owns its sampler (unless one
    is given), its /metrics scraper and its timers."""

    DEFAULT_CSS = """
    TelemetryPane { height: 1fr; padding: 0 1; background: $surface; }
    TelemetryPane > .tele-section { margin: 0 0 1 0; }
    TelemetryPane > .-empty { display: none; }
    TelemetryPane > #tele-host { text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint] = (),
        *,
        sampler: GpuSampler | None = None,
        hz: float = 4.0,
        store: SessionStore | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.endpoints = list(endpoints)
        self._own_sampler = sampler is None
        self.sampler = sampler or GpuSampler(hz=hz)
        self.hz = hz
        self.store = store
        self.mapper = ProcessMapper(self.endpoints)
        self.host = HostSampler(self.endpoints)
        self.scraper = ServerStatsScraper(self.endpoints) if self.endpoints else None
        remote = [e for e in self.endpoints if e.dcgm_url]
        self.dcgm = DcgmScraper(remote, span_s=HISTORY / hz) if remote else None
        self.stats: dict[str, ServerStats] = {}
        self.trace = TraceRecorder(every_s=1.0, batch=10)
        self.last: TelemetrySnapshot | None = None
        self.gen_history: dict[str, list[float | None]] = {e.name: [] for e in self.endpoints}
        self._shown: dict[str, Any] = {}
        self._stale: set[str] = set()  # sections changed while the pane was hidden

    def compose(self) -> ComposeResult:
        yield Static(id="tele-gpus", classes="tele-section")
        yield Static(id="tele-procs", classes="tele-section -empty")
        if self.endpoints:
            yield Static(id="tele-servers", classes="tele-section")
        yield Static(id="tele-host", classes="tele-section")
        yield Static(id="tele-note")

    def on_mount(self) -> None:
        if self._own_sampler:
            self.sampler.start()
        self.host.start(1 / self.hz)
        self.set_interval(1 / self.hz, self.refresh_view)
        if self.scraper is not None:
            self._scrape()
        if self.dcgm is not None:
            self._scrape_dcgm()
        self.refresh_view()

    async def on_unmount(self) -> None:
        self.workers.cancel_group(self, "scrape")
        self.workers.cancel_group(self, "dcgm")
        if self._own_sampler:
            self.sampler.stop()
        self.host.stop()
        for client in (self.scraper, self.dcgm):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._write_trace(self.trace.flush())

    @work(exclusive=True, group="scrape", exit_on_error=False)
    async def _scrape(self) -> None:
        """Once a second; a failed scrape is shown per server by the scraper, and nothing
        here may take the app down (e.g. the client closing while the app quits)."""
        assert self.scraper is not None
        while self.is_mounted:
            try:
                self.stats = dict(await self.scraper.poll())
            except Exception:
                return
            for name, hist in self.gen_history.items():
                s = self.stats.get(name)
                hist.append(None if s is None or s.error else s.gen_tps)
                del hist[:-SERVER_HISTORY]
            await asyncio.sleep(1.0)

    @work(exclusive=True, group="dcgm", exit_on_error=False)
    async def _scrape_dcgm(self) -> None:
        """Remote GPUs from each named dcgm-exporter, once a second, apart from the servers'
        scrape so that a slow exporter never delays the servers' stats."""
        assert self.dcgm is not None
        while self.is_mounted:
            try:
                await self.dcgm.poll()
            except Exception:
                return
            await asyncio.sleep(1.0)

    def _lanes_of(self, snap: TelemetrySnapshot) -> dict[int, str]:
        return {p.pid: self.mapper.lane_of(p.pid) for g in snap.gpus for p in g.processes}

    def _gpus_shown(
        self, snap: TelemetrySnapshot, lanes_of: dict[int, str]
    ) -> tuple[list[GpuSnapshot], list[list[str]], list[str]]:
        """Local GPUs with the lanes holding them, then remote ones (labelled by host, with
        ``~lane`` for the lanes on that host), and a line for each exporter with no GPUs."""
        held = gpu_lanes([(g.index, [p.pid for p in g.processes]) for g in snap.gpus], lanes_of)
        gpus = list(snap.gpus)
        lanes = [held.get(g.index, []) for g in gpus]
        problems: list[str] = []
        if self.dcgm is not None:
            gpus = [dataclasses.replace(g, host=LOCAL) for g in gpus]  # beside remote hosts
            for g, on_host in self.dcgm.gpus():
                gpus.append(g)
                lanes.append([f"~{lane}" for lane in on_host])
            problems = self.dcgm.problems()
        return gpus, lanes, problems

    def refresh_view(self) -> None:
        snap = self.sampler.snapshot()
        self.last = snap
        lanes_of = self._lanes_of(snap)
        names_of = {p: self.mapper.name_of(p) for p in lanes_of}
        gpus, lanes, problems = self._gpus_shown(snap, lanes_of)
        region = self.scrollable_content_region
        width = max(40, region.width - 1)
        procs = process_lines(snap, lanes_of, names_of)
        servers = (
            server_lines(self.stats, self.endpoints, self.gen_history, width)
            if self.endpoints
            else []
        )
        note = notes(snap, 1 / self.sampler.period, remote=len(gpus) > len(snap.gpus))
        # Lines besides the GPU rows: the GPU section's own lines and gap, the servers and
        # their gap, host and its gap, the notes as wrapped.
        head = (1 if snap.unavailable else 0) + len(problems)
        fixed = head + 1 + (len(servers) + 1 if servers else 0) + 2 + -(-note.cell_len // width)
        cols, rows, compact = plan_layout(
            region.height, width, len(gpus), fixed, len(procs) + 1 if procs else 0
        )
        if compact:
            procs = procs[-1:]
        lines: list[Text] = []
        # The theme's warning text colour: plain yellow is unreadable on a light theme.
        warn = self.app.theme_variables.get("text-warning", "yellow")
        if snap.unavailable:
            lines.append(Text(snap.unavailable, style=warn))
        lines += [Text(p, style=warn, no_wrap=True, overflow="ellipsis") for p in problems]
        if gpus and rows == 0:
            name = common_name(gpus)
            if name:
                lines.append(Text(f"{len(gpus)} × {name}", style="bold cyan"))
            label_w = max(len(line_label(g)) for g in gpus)
            lane_w = min(11, max(4, *(len("+".join(held)) for held in lanes)))
            lines += [
                gpu_line(g, width, held, label_w=label_w, lane_w=lane_w, show_name=name is None)
                for g, held in zip(gpus, lanes, strict=True)
            ]
        elif cols == 1:
            for g, held in zip(gpus, lanes, strict=True):
                lines += gpu_block(g, width, rows, held)
        else:
            col_w = (width - 2 * (cols - 1)) // cols
            blocks = [gpu_block(g, col_w, rows, held) for g, held in zip(gpus, lanes, strict=True)]
            lines += side_by_side(blocks, cols, col_w)
        self._show("tele-gpus", Group(*lines))
        self.query_one("#tele-procs").set_class(not procs, "-empty")
        self._show("tele-procs", Group(*procs))
        if servers:
            self._show("tele-servers", Group(*servers))
        host = self.host.latest()
        self._show("tele-host", host_line(host, width))
        self._show("tele-note", note)
        batch = self.trace.offer(lambda: trace_point(snap, self.stats, host, lanes_of))
        if batch:
            self._write_trace(batch)

    def _write_trace(self, points: list[dict[str, Any]]) -> None:
        if self.store is None or not points:
            return
        try:
            self.store.add_telemetry(points)
        except Exception as exc:  # a trace is never worth a crash
            self.notify(f"could not save telemetry: {exc}", severity="warning")

    def _show(self, widget_id: str, renderable: Any) -> None:
        """Keep what the section shows; draw it only while the pane is on screen.

        ``Static.update`` asks for a layout of the whole screen, and in a hidden tab that
        cost the chat ~15 ms four times a second while answers streamed; the pane is
        brought up to date when it is shown again (:meth:`on_show`)."""
        self._shown[widget_id] = renderable
        if self.is_on_screen:
            self.query_one(f"#{widget_id}", Static).update(renderable)
        else:
            self._stale.add(widget_id)

    def on_show(self) -> None:
        for widget_id in self._stale:
            self.query_one(f"#{widget_id}", Static).update(self._shown[widget_id])
        self._stale.clear()

    def plain(self, width: int = 120) -> str:
        """What the pane shows, as plain text (tests read it like a person would)."""
        console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
        for renderable in self._shown.values():
            console.print(renderable)
        return console.export_text()
