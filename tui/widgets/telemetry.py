"""TelemetryPane: live GPUs, the servers' own stats, host CPU/RAM — drawn from snapshots.

The NVML sampler runs on its own thread (quantlab.telemetry.sampler); this pane only reads
its snapshot on a timer (4 Hz by default) and scrapes each server's /metrics once a second
in an async worker. Nothing here blocks the event loop. With a session store, a 1 Hz
trace is written into the session in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from quantlab.records import Endpoint
from quantlab.telemetry.host import HostSampler, HostStats
from quantlab.telemetry.processes import ProcessMapper
from quantlab.telemetry.sampler import GpuSampler, GpuSnapshot, TelemetrySnapshot
from quantlab.telemetry.server_stats import ServerStats, ServerStatsScraper
from quantlab.telemetry.trace import TraceRecorder, trace_point

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: np.ndarray, width: int, top: float | None = None) -> str:
    """The last ``width`` samples as block characters (gaps for unknown samples)."""
    v = values[-width:] if len(values) else values
    if not len(v):
        return ""
    hi = top if top else (np.nanmax(v) if not np.all(np.isnan(v)) else 0.0)
    out = []
    for x in v:
        if math.isnan(x) or hi <= 0:
            out.append(" ")
        else:
            out.append(SPARK[min(len(SPARK) - 1, max(0, int(x / hi * (len(SPARK) - 1) + 0.5)))])
    return "".join(out)


def bar(frac: float | None, width: int) -> Text:
    """A filled bar; colour by level (green, yellow, red)."""
    if frac is None:
        return Text("·" * width, style="dim")
    frac = max(0.0, min(1.0, frac))
    full = round(frac * width)
    style = "green" if frac < 0.7 else ("yellow" if frac < 0.9 else "red")
    return Text("█" * full, style=style) + Text("░" * (width - full), style="dim")


def _fmt(v: float | None, unit: str = "", nd: int = 0) -> str:
    return "n/a" if v is None else f"{v:,.{nd}f}{unit}"


def gpu_panel(g: GpuSnapshot, lanes_of: dict[int, str], width: int) -> Group:
    """One GPU: name, bars with history for utilization / memory / power, clocks,
    temperature, throttle reasons in words, and its processes by lane."""
    title = Text.assemble((f"GPU {g.index}  ", "bold"), (g.name, "bold cyan"))
    if g.lost:
        return Group(title, Text("  " + g.errors.get("device", "lost"), style="bold red"))
    t = Table.grid(padding=(0, 1))
    t.add_column(width=6, style="bold")
    t.add_column(width=12)
    t.add_column(width=31, no_wrap=True)
    t.add_column(ratio=1, no_wrap=True, style="cyan")
    spark_w = max(8, width - 56)
    L, err = g.latest, g.errors
    util = L.get("util_pct")
    t.add_row(
        "util",
        bar(None if util is None else util / 100, 12),
        _fmt(util, " %") if util is not None else err.get("util_pct", "n/a"),
        sparkline(g.history["util_pct"], spark_w, 100),
    )
    used, total = L.get("mem_used_mib"), g.mem_total_mib
    mem_txt = err.get("mem_used_mib", "n/a")
    if used is not None and total:
        mem_txt = f"{used / 1024:,.1f}/{total / 1024:,.0f} GiB"
    t.add_row(
        "mem",
        bar(used / total if used is not None and total else None, 12),
        mem_txt,
        sparkline(g.history["mem_used_mib"], spark_w, total),
    )
    power, limit = L.get("power_w"), g.power_limit_w
    pw_txt = err.get("power_w", "n/a")
    if power is not None:
        pw_txt = f"{power:,.0f}/{limit:,.0f} W" if limit else f"{power:,.0f} W"
    t.add_row(
        "power",
        bar(power / limit if power is not None and limit else None, 12),
        pw_txt,
        sparkline(g.history["power_w"], spark_w, limit),
    )
    temp = L.get("temp_c")
    temp_txt = f"{temp:.0f} °C" if temp is not None else err.get("temp_c", "n/a")
    clocks = (
        f"SM {_fmt(L.get('sm_mhz'))} · mem {_fmt(L.get('mem_mhz'))} MHz"
        if L.get("sm_mhz") is not None
        else f"clocks {err.get('sm_mhz', 'n/a')}"
    )
    t.add_row("temp", temp_txt, clocks, "")
    lines: list[Any] = [title, t]
    throttle = ", ".join(g.throttle) if g.throttle else "none"
    extra = f"  clock limits: {throttle}"
    if g.mem_reserved_mib:
        extra += f" · +{g.mem_reserved_mib:,.0f} MiB driver-reserved (memory {g.mem_source})"
    lines.append(Text(extra, style="dim"))
    lines += [Text(f"  ⚠ {w}", style="yellow") for w in g.warnings]
    if g.processes:
        procs = Table(box=None, padding=(0, 1), header_style="bold dim", show_edge=False)
        for col in ("  pid", "lane", "GPU memory"):
            procs.add_column(col, justify="right" if col == "GPU memory" else "left")
        for p in sorted(g.processes, key=lambda p: -(p.gpu_mem_mib or 0)):
            mem = "n/a" if p.gpu_mem_mib is None else f"{p.gpu_mem_mib:,.0f} MiB"
            procs.add_row(f"  {p.pid}", Text(lanes_of.get(p.pid, "other"), style="bold"), mem)
        lines.append(procs)
    return Group(*lines)


def servers_table(stats: dict[str, ServerStats], endpoints: Sequence[Endpoint]) -> Table:
    t = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
    for col in ("server", "KV cache", "running", "waiting", "prompt tok/s", "gen tok/s", "preempt"):
        t.add_column(col, justify="left" if col == "server" else "right")
    for ep in endpoints:
        s = stats.get(ep.name)
        if s is None:
            t.add_row(ep.name, Text("scraping…", style="dim"), "", "", "", "", "")
        elif s.error:
            t.add_row(ep.name, Text(s.error, style="yellow"), "", "", "", "", "")
        else:
            t.add_row(
                Text(ep.name, style="bold"),
                _fmt(s.kv_pct, " %", 1),
                _fmt(s.running),
                _fmt(s.waiting),
                _fmt(s.prompt_tps, "", 0),
                _fmt(s.gen_tps, "", 0),
                _fmt(s.preemptions),
            )
    return t


def host_line(h: HostStats) -> Text:
    txt = Text.assemble(
        ("host ", "bold"),
        f"CPU {h.cpu_pct:.0f} % of {h.cores} cores · RAM {h.ram_used_gib:.1f}/"
        f"{h.ram_total_gib:.0f} GiB",
    )
    for lane, (cpu, rss) in h.servers.items():
        txt.append(f" · {lane} server CPU {cpu:.0f} % RSS {rss:,.0f} MiB", style="dim")
    return txt


class TelemetryPane(VerticalScroll):
    """GPUs + server stats + host, refreshed from snapshots. Owns its sampler (unless one
    is given), its /metrics scraper and its timers."""

    DEFAULT_CSS = """
    TelemetryPane { height: 1fr; padding: 0 1; background: $surface; }
    TelemetryPane > .tele-section { margin: 0 0 1 0; }
    TelemetryPane > #tele-note { color: $text-muted; }
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
        self._shown: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="tele-gpus", classes="tele-section")
        if self.endpoints:
            yield Static(id="tele-servers", classes="tele-section")
        yield Static(id="tele-host", classes="tele-section")
        yield Static(
            "GPU utilization is the share of time any kernel ran, not how full the SMs are.",
            id="tele-note",
        )

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
            await asyncio.sleep(1.0)

    def _lanes_of(self, snap: TelemetrySnapshot) -> dict[int, str]:
        return {p.pid: self.mapper.lane_of(p.pid) for g in snap.gpus for p in g.processes}

    def refresh_view(self) -> None:
        snap = self.sampler.snapshot()
        self.last = snap
        lanes_of = self._lanes_of(snap)
        width = max(40, self.size.width - 2)
        if snap.unavailable:
            self._show("tele-gpus", Text(snap.unavailable, style="yellow"))
        else:
            grid = Table.grid()
            for g in snap.gpus:
                grid.add_row(gpu_panel(g, lanes_of, width))
            self._show("tele-gpus", grid)
        if self.endpoints:
            self._show("tele-servers", servers_table(self.stats, self.endpoints))
        host = self.host.sample()
        self._show("tele-host", host_line(host))
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
