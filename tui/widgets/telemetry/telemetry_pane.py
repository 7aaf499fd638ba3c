"""TelemetryPane: live GPUs, the servers' own stats, host CPU/RAM — drawn from snapshots.

The NVML sampler runs on its own thread (quantlab.telemetry.sampler); this pane only reads
its snapshot on a timer (4 Hz by default) and scrapes each server's /metrics once a second
in an async worker (parsing in a thread). Nothing here blocks the event loop. With a
session store, a 1 Hz trace is written into the session in batches.

Layout follows the room it gets: each GPU as a header and three metrics with history
graphs one to three rows high, or one line per GPU when many GPUs share little height;
then the GPU processes by lane, the servers, the host, and one line saying what the figures
mean. Drawing itself is in ``telemetry_draw``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from quantlab.records import Endpoint
from quantlab.telemetry.host import HostSampler
from quantlab.telemetry.processes import ProcessMapper
from quantlab.telemetry.sampler import GpuSampler, TelemetrySnapshot
from quantlab.telemetry.server_stats import ServerStats, ServerStatsScraper
from quantlab.telemetry.trace import TraceRecorder, trace_point
from tui.widgets.telemetry.telemetry_draw import (
    gpu_block,
    gpu_line,
    host_line,
    notes,
    process_lines,
    server_lines,
)

#: Seconds of generation tokens/s kept per server for its sparkline.
SERVER_HISTORY = 60


def gpu_rows_per_gpu(graph_rows: int) -> int:
    """Lines one GPU takes in the block layout: a header and three metrics."""
    return 1 + 3 * graph_rows


def choose_graph_rows(height: int, gpus: int, other_lines: int) -> int:
    """Graph height that lets everything fit (4 to 1 rows), or 0: one line per GPU."""
    for rows in (4, 3, 2, 1):
        if gpus * gpu_rows_per_gpu(rows) + other_lines <= height:
            return rows
    return 1 if gpus <= 2 else 0


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
        store: Any = None,
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
        self.stats: dict[str, ServerStats] = {}
        self.trace = TraceRecorder(every_s=1.0, batch=10)
        self.last: TelemetrySnapshot | None = None
        self.gen_history: dict[str, list[float | None]] = {e.name: [] for e in self.endpoints}
        self._shown: dict[str, Any] = {}

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
        self.set_interval(1 / self.hz, self.refresh_view)
        if self.scraper is not None:
            self._scrape()
        self.refresh_view()

    async def on_unmount(self) -> None:
        self.workers.cancel_group(self, "scrape")
        if self._own_sampler:
            self.sampler.stop()
        if self.scraper is not None:
            with contextlib.suppress(Exception):
                await self.scraper.aclose()
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

    def _lanes_of(self, snap: TelemetrySnapshot) -> dict[int, str]:
        return {p.pid: self.mapper.lane_of(p.pid) for g in snap.gpus for p in g.processes}

    def refresh_view(self) -> None:
        snap = self.sampler.snapshot()
        self.last = snap
        lanes_of = self._lanes_of(snap)
        names_of = {p: self.mapper.name_of(p) for p in lanes_of}
        region = self.scrollable_content_region
        width = max(40, region.width - 1)
        procs = process_lines(snap, lanes_of, names_of)
        servers = (
            server_lines(self.stats, self.endpoints, self.gen_history, width)
            if self.endpoints
            else []
        )
        # Lines besides the GPUs: each section, its blank line after, host, notes (2).
        other = (len(procs) + 1 if procs else 0) + (len(servers) + 1 if servers else 0) + 4
        if snap.unavailable:
            # The theme's warning text colour: plain yellow is unreadable on a light theme.
            warn = self.app.theme_variables.get("text-warning", "yellow")
            self._show("tele-gpus", Text(snap.unavailable, style=warn))
        else:
            rows = choose_graph_rows(region.height, len(snap.gpus), other)
            lines: list[Text] = []
            for g in snap.gpus:
                lines += gpu_block(g, width, rows) if rows else [gpu_line(g, width)]
            self._show("tele-gpus", Group(*lines))
        self.query_one("#tele-procs").set_class(not procs, "-empty")
        self._show("tele-procs", Group(*procs))
        if servers:
            self._show("tele-servers", Group(*servers))
        host = self.host.sample()
        self._show("tele-host", host_line(host, width))
        self._show("tele-note", notes(snap, 1 / self.sampler.period))
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
        self._shown[widget_id] = renderable
        self.query_one(f"#{widget_id}", Static).update(renderable)

    def plain(self, width: int = 120) -> str:
        """What the pane shows, as plain text (tests read it like a person would)."""
        console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
        for renderable in self._shown.values():
            console.print(renderable)
        return console.export_text()
