"""Drawing for the telemetry pane: bars, history graphs, GPU blocks, the process table,
the servers table and the host line, as Rich Text built from snapshots. Pure functions of
their inputs (no widget state), so the pane only decides the layout.

Lines are built by hand (not Rich tables) so that every row has a known width: a graph can
then run to the right edge, a reason ("n/a (not supported on this GPU)") can take the place
of a bar, and nothing ever wraps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from rich.text import Text

from quantlab.records import Endpoint
from quantlab.telemetry.host import HostStats
from quantlab.telemetry.sampler import HISTORY, GpuSnapshot, TelemetrySnapshot
from quantlab.telemetry.server_stats import ServerStats

BLOCKS = " ▁▂▃▄▅▆▇█"
LABEL_W = 6
BAR_W = 12
VALUE_W = 14
#: Columns left of a GPU row's graph: label, bar, value and the spaces between.
LEFT_W = LABEL_W + 1 + BAR_W + 1 + VALUE_W + 1
#: Colours of the three history graphs (and their bars).
UTIL_STYLE, MEM_STYLE, POWER_STYLE = "green", "dodger_blue2", "dark_orange"
KV_STYLE = "orchid"


def binned(values: np.ndarray, columns: int, span: int = HISTORY) -> np.ndarray:
    """The last ``span`` samples as ``columns`` bin means, newest on the right; a graph
    therefore always covers the same time whatever the width. Bins before the first sample
    are NaN (drawn empty), so a young history grows in from the right."""
    if columns <= 0:
        return np.empty(0)
    per = max(1, math.ceil(span / columns))
    v = values[-per * columns :]
    pad = per * columns - len(v)
    if pad:
        v = np.concatenate([np.full(pad, np.nan), v])
    bins = v.reshape(columns, per)
    out = np.full(columns, np.nan)
    filled = ~np.all(np.isnan(bins), axis=1)
    if filled.any():
        out[filled] = np.nanmean(bins[filled], axis=1)
    return out


def graph(
    values: np.ndarray,
    columns: int,
    rows: int,
    top: float | None,
    style: str,
    span: int = HISTORY,
) -> list[Text]:
    """A filled area graph ``rows`` high (eighth-block resolution), top row first. ``top``
    is the full scale (the card's limit, 100 %), else the largest value shown; ``span`` is
    how many samples the full width covers."""
    v = binned(values, columns, span)
    finite = v[~np.isnan(v)]
    scale = top if top else (float(finite.max()) if finite.size else 0.0)
    eighths = np.zeros(columns, dtype=int)
    if scale > 0:
        ok = ~np.isnan(v)
        eighths[ok] = np.clip(np.rint(v[ok] / scale * rows * 8), 0, rows * 8)
        eighths[ok & (v > 0) & (eighths == 0)] = 1  # a little is not nothing
    lines = []
    for r in range(rows - 1, -1, -1):
        level = np.clip(eighths - r * 8, 0, 8)
        lines.append(Text("".join(BLOCKS[i] for i in level), style=style, no_wrap=True))
    return lines


def sparkline(values: Iterable[float | None], style: str = "") -> Text:
    """One row of blocks for a short series (e.g. a server's tokens/s, one value a second)."""
    vals = [math.nan if x is None else float(x) for x in values]
    finite = [x for x in vals if not math.isnan(x)]
    hi = max(finite) if finite else 0.0
    chars = []
    for x in vals:
        if math.isnan(x) or hi <= 0:
            chars.append(" ")
        else:
            chars.append(BLOCKS[max(1, min(8, round(x / hi * 8)))] if x > 0 else BLOCKS[0])
    return Text("".join(chars), style=style, no_wrap=True)


def bar(frac: float | None, width: int, style: str) -> Text:
    """A horizontal bar; ``None`` (unknown) is a dotted track."""
    if frac is None or math.isnan(frac):
        return Text("·" * width, style="dim")
    frac = max(0.0, min(1.0, frac))
    eighths = round(frac * width * 8)
    full, part = divmod(eighths, 8)
    partial = "▏▎▍▌▋▊▉"[part - 1] if part and full < width else ""
    rest = width - full - len(partial)
    return Text("█" * full + partial, style=style) + Text("░" * rest, style="dim")


def power_style(frac: float | None) -> str:
    if frac is None:
        return POWER_STYLE
    return "red" if frac >= 0.97 else ("yellow" if frac >= 0.85 else POWER_STYLE)


def gib(mib: float | None, nd: int = 1) -> str:
    return "n/a" if mib is None else f"{mib / 1024:,.{nd}f}"


@dataclass(frozen=True, slots=True)
class _Metric:
    label: str
    frac: float | None
    value: str | None  # None: ``reason`` instead of bar and value
    reason: str
    history: np.ndarray
    top: float | None
    style: str


def _metrics(g: GpuSnapshot) -> list[_Metric]:
    latest, err = g.latest, g.errors
    util = latest.get("util_pct")
    used, total = latest.get("mem_used_mib"), g.mem_total_mib
    power, limit = latest.get("power_w"), g.power_limit_w
    pfrac = power / limit if power is not None and limit else None
    pval = None
    if power is not None:
        pval = f"{power:,.0f}/{limit:,.0f} W" if limit else f"{power:,.0f} W"
    return [
        _Metric(
            "util",
            None if util is None else util / 100,
            None if util is None else f"{util:.0f} %",
            err.get("util_pct", "n/a"),
            g.history["util_pct"],
            100.0,
            UTIL_STYLE,
        ),
        _Metric(
            "mem",
            used / total if used is not None and total else None,
            None if used is None else f"{gib(used)}/{gib(total, 0)} GiB",
            err.get("mem_used_mib", "n/a"),
            g.history["mem_used_mib"],
            total,
            MEM_STYLE,
        ),
        _Metric(
            "power",
            pfrac,
            pval,
            err.get("power_w", "n/a"),
            g.history["power_w"],
            limit,
            power_style(pfrac),
        ),
    ]


def short_host(host: str, width: int = 12) -> str:
    """A host name short enough for a label: its first DNS label, cut to ``width``."""
    first = host.split(".")[0] if not host.replace(".", "").isdigit() else host
    return first if len(first) <= width else first[: width - 1] + "…"


def gpu_label(g: GpuSnapshot) -> str:
    """``GPU 3`` here, ``node-7 GPU 3`` on a remote host (its dcgm-exporter)."""
    return f"GPU {g.index}" if g.host is None else f"{short_host(g.host)} GPU {g.index}"


def _append_lanes(t: Text, lanes: Sequence[str], lost: bool = False) -> None:
    if not lanes:
        return
    t.append("  was held by " if lost else "  ▸ ", style="dim")
    for i, lane in enumerate(lanes):
        if i:
            t.append(", ", style="dim")
        t.append(lane, style="dim" if lane == "other" else "bold magenta")


def gpu_header(g: GpuSnapshot, width: int, lanes: Sequence[str] = ()) -> Text:
    """``GPU 0 NVIDIA H100 80GB HBM3  ▸ bf16  45 °C  clock limits: power cap  SM active 43 %
    SM 1,980 · mem 2,619 MHz``: the lane holding the GPU, then what limits the GPU, before
    the clocks, which crop first."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{gpu_label(g)} ", style="bold")
    t.append(g.name, style="bold cyan")
    if g.lost:
        t.append("  " + g.errors.get("device", "GPU lost"), style="bold red")
        _append_lanes(t, lanes, lost=True)
        return t
    _append_lanes(t, lanes)
    if g.host is not None and "unreachable" in g.errors:
        t.append("  " + g.errors["unreachable"], style="bold yellow")
        return t
    latest, err = g.latest, g.errors
    temp = latest.get("temp_c")
    hot = temp is not None and g.temp_slowdown_c is not None and temp >= g.temp_slowdown_c - 5
    t.append("  ")
    if temp is None:
        t.append(f"temp {err.get('temp_c', 'n/a')}", style="dim")
    else:
        t.append(f"{temp:.0f} °C", style="bold red" if hot else "")
    if "throttle" in err:
        t.append(f"  clock limits {err['throttle']}", style="dim")
    else:
        limits = [w for w in g.throttle if w != "idle"]
        if limits:
            t.append("  clock limits: ", style="dim")
            t.append(", ".join(limits), style="yellow")
        elif "idle" in g.throttle:
            t.append("  clock limits: idle", style="dim")
    if g.gpm:
        t.append("  SM active ", style="dim")
        t.append(f"{g.gpm.get('sm_active', 0):.0f} %", style="bold")
        if "tensor_active" in g.gpm:
            t.append(f" · tensor {g.gpm['tensor_active']:.0f} %", style="dim")
    sm, mem = latest.get("sm_mhz"), latest.get("mem_mhz")
    t.append("  ")
    if sm is None:
        t.append(f"clocks {err.get('sm_mhz', 'n/a')}", style="dim")
    else:
        t.append(f"SM {sm:,.0f} · mem {mem or 0:,.0f} MHz", style="dim")
    return t


def _summary_cell(m: _Metric, row: int, rows: int) -> str:
    """Left of a tall graph, above the metric's label: its peak and mean over the graph's
    span (peak memory and power are what a sweep is judged by), padded to ``LEFT_W``."""
    h = m.history[~np.isnan(m.history)] if len(m.history) else m.history
    text = ""
    if len(h):
        peak, mean = float(h.max()), float(h.mean())
        num = {
            "util": lambda v: f"{v:.0f}",
            "mem": lambda v: f"{v / 1024:,.1f}",
            "power": lambda v: f"{v:,.0f}",
        }[m.label]
        unit = {"util": " %", "mem": " GiB", "power": " W"}[m.label]
        if rows == 2:
            text = f"peak {num(peak)} · avg {num(mean)}{unit}"
        elif row == rows - 3:
            text = f"peak {num(peak)}{unit}"
        elif row == rows - 2:
            text = f"avg  {num(mean)}{unit}"
    cell = " " * (LABEL_W + 1) + text
    return f"{cell[: LEFT_W - 1]:<{LEFT_W}}"


def gpu_block(g: GpuSnapshot, width: int, rows: int, lanes: Sequence[str] = ()) -> list[Text]:
    """A GPU as a header and three metrics (utilization, memory, power), each with a bar,
    its value and a ``rows``-high history graph to the right edge."""
    lines = [gpu_header(g, width, lanes)]
    if g.lost:
        return lines
    graph_w = max(0, width - LEFT_W)
    for m in _metrics(g):
        rows_m = rows if m.value is not None and graph_w >= 8 else 1
        plot = (
            graph(m.history, graph_w, rows_m, m.top, m.style, g.history_span)
            if m.value is not None
            else []
        )
        for r in range(rows_m):
            line = Text(no_wrap=True, overflow="crop")
            if r == rows_m - 1:  # label, bar and value on the bottom row, by the baseline
                line.append(f"{m.label:<{LABEL_W}} ", style="bold")
                if m.value is None:
                    line.append(m.reason, style="dim")
                    lines.append(line)
                    continue
                line.append_text(bar(m.frac, BAR_W, m.style))
                line.append(f" {m.value:<{VALUE_W}} ")
            else:
                line.append(_summary_cell(m, r, rows_m), style="dim")
            if plot:
                line.append_text(plot[r])
            lines.append(line)
    lines += [Text(f"  ⚠ {w}", style="yellow", no_wrap=True) for w in g.warnings]
    return lines


def common_name(gpus: Sequence[GpuSnapshot]) -> str | None:
    """The model name when every GPU shown has the same one (said once, above the lines)."""
    names = {g.name for g in gpus}
    return names.pop() if len(names) == 1 and len(gpus) > 1 else None


def line_label(g: GpuSnapshot) -> str:
    """The index column of one-line rows: ``3`` here, ``node-7:3`` on a remote host."""
    return str(g.index) if g.host is None else f"{short_host(g.host, 10)}:{g.index}"


def gpu_line(
    g: GpuSnapshot,
    width: int,
    lanes: Sequence[str] = (),
    *,
    label_w: int = 1,
    lane_w: int = 0,
    show_name: bool = True,
) -> Text:
    """A GPU in one line, for many GPUs in little height: index (host:index when remote),
    the lane holding it, utilization, memory, power, temperature, then a utilization
    sparkline and clock limits with what room is left. Fits 80 columns without the name."""
    t = Text(no_wrap=True, overflow="crop")
    t.append(f"{line_label(g):<{label_w}} ", style="bold")
    if show_name:
        short = g.name.replace("NVIDIA ", "").replace("GeForce ", "")
        t.append(f"{short[:14]:<14} ", style="cyan")
    if lane_w:
        held = "+".join(lanes) if lanes else "–"
        held = held if len(held) <= lane_w else held[: lane_w - 1] + "…"
        t.append(f"{held:<{lane_w}} ", style="dim" if held in ("–", "other") else "bold magenta")
    if g.lost:
        t.append(g.errors.get("device", "GPU lost"), style="bold red")
        return t
    if g.host is not None and "unreachable" in g.errors:
        t.append(g.errors["unreachable"], style="yellow")
        return t
    util, mem, power = _metrics(g)
    for m, w in ((util, 6), (mem, 6)):
        t.append_text(bar(m.frac, w, m.style))
        t.append(f" {(m.value or 'n/a'):<{13 if m is mem else 5}} ")
    t.append(f"{(power.value or 'n/a'):<11} ")
    temp = g.latest.get("temp_c")
    t.append(f"{'n/a' if temp is None else f'{temp:.0f}°C':<5} ")
    room = width - t.cell_len - 1
    limits = ", ".join(w for w in g.throttle if w != "idle")
    if room > 12:
        spark_w = max(0, min(60, room - (len(limits) + 1 if limits else 0)))
        if spark_w >= 6:
            spark = graph(util.history, spark_w, 1, 100.0, UTIL_STYLE, g.history_span)[0]
            t.append_text(spark)
            t.append(" ")
    if limits:
        t.append(limits, style="yellow")
    if g.warnings:
        t.append(f" ⚠ {g.warnings[0]}", style="yellow")
    return t


def side_by_side(blocks: Sequence[Sequence[Text]], columns: int, col_w: int) -> list[Text]:
    """GPU blocks laid out ``columns`` across (each ``col_w`` wide, two spaces between),
    row by row: 8 GPUs on a wide screen keep graphs without scrolling."""
    out: list[Text] = []
    for start in range(0, len(blocks), columns):
        group = blocks[start : start + columns]
        height = max(len(b) for b in group)
        for r in range(height):
            line = Text(no_wrap=True, overflow="crop")
            for c, block in enumerate(group):
                cell = block[r].copy() if r < len(block) else Text("")
                cell.no_wrap = True
                cell.truncate(col_w, overflow="ellipsis", pad=c < len(group) - 1)
                if c:
                    line.append("  ")
                line.append_text(cell)
            out.append(line)
    return out


def process_lines(
    snap: TelemetrySnapshot, lane_of: dict[int, str], name_of: dict[int, str], limit: int = 8
) -> list[Text]:
    """Every GPU process with its lane and memory, largest first, and one line of GPU
    memory by lane: how much the AWQ server really takes next to BF16."""
    rows = [(g, p) for g in snap.gpus if not g.lost for p in g.processes]
    if not rows:
        return []
    rows.sort(key=lambda gp: (gp[0].index, -(gp[1].gpu_mem_mib or 0)))
    out = [Text(f"{'GPU':<4}{'pid':>8}  {'lane':<12}{'process':<18}{'GPU memory':>11}", "bold")]
    for g, p in rows[:limit]:
        lane = lane_of.get(p.pid, "other")
        t = Text(no_wrap=True, overflow="crop")
        t.append(f"{g.index:<4}{p.pid:>8}  ")
        t.append(f"{lane[:11]:<12}", style="dim" if lane == "other" else "bold")
        t.append(f"{name_of.get(p.pid, '?')[:17]:<18}")
        mem = "n/a" if p.gpu_mem_mib is None else f"{gib(p.gpu_mem_mib)} GiB"
        t.append(f"{mem:>11} ")
        frac = (p.gpu_mem_mib or 0) / g.mem_total_mib if g.mem_total_mib else None
        t.append_text(bar(frac, 10, MEM_STYLE))
        out.append(t)
    if len(rows) > limit:
        out.append(Text(f"… {len(rows) - limit} more processes", style="dim"))
    by_lane: dict[str, float] = {}
    for _, p in rows:
        lane = lane_of.get(p.pid, "other")
        by_lane[lane] = by_lane.get(lane, 0.0) + (p.gpu_mem_mib or 0.0)
    summary = Text("GPU memory by lane: ", style="dim", no_wrap=True, overflow="ellipsis")
    for i, (lane, mib) in enumerate(
        sorted(by_lane.items(), key=lambda kv: (kv[0] == "other", -kv[1]))
    ):
        if i:
            summary.append(" · ", style="dim")
        summary.append(lane, style="dim" if lane == "other" else "bold")
        summary.append(f" {gib(mib)} GiB")
    out.append(summary)
    return out


def server_lines(
    stats: dict[str, ServerStats],
    endpoints: Sequence[Endpoint],
    gen_history: dict[str, list[float | None]],
    width: int,
) -> list[Text]:
    """Per server: KV cache, running, waiting, prompt and generation tokens/s (with the
    last minute of generation as a sparkline), preemptions; a server without numbers says
    why in their place."""
    name_w = max([6, *(len(e.name) for e in endpoints)]) + 2
    head = Text(no_wrap=True, overflow="crop", style="bold")
    head.append(f"{'server':<{name_w}}{'KV cache':<17}{'run':>5}{'wait':>6}")
    head.append(f"{'prompt t/s':>12}{'gen t/s':>10}{'preempt':>9}  ")
    spark_w = max(0, min(60, width - head.cell_len))
    if spark_w >= 16:
        head.append("gen, last minute", style="dim")
    out = [head]
    for ep in endpoints:
        s = stats.get(ep.name)
        t = Text(no_wrap=True, overflow="crop")
        t.append(f"{ep.name:<{name_w}}", style="bold")
        if s is None:
            t.append("waiting for the first scrape…", style="dim")
        elif s.error:
            t.append(s.error, style="yellow")
        else:
            kv = s.kv_pct
            t.append_text(bar(None if kv is None else kv / 100, 8, KV_STYLE))
            t.append(f" {'n/a' if kv is None else f'{kv:.1f} %':<8}")

            def n(v: float | None, w: int) -> str:
                return f"{'–' if v is None else f'{v:,.0f}':>{w}}"

            t.append(n(s.running, 5) + n(s.waiting, 6) + n(s.prompt_tps, 12) + n(s.gen_tps, 10))
            t.append(n(s.preemptions, 9) + "  ")
            hist = gen_history.get(ep.name, [])
            if spark_w >= 16 and hist:
                t.append_text(sparkline(hist[-spark_w:], "green"))
        out.append(t)
    return out


def host_line(h: HostStats, width: int) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("host  ", style="bold")
    t.append("CPU ")
    t.append_text(bar(h.cpu_pct / 100, 8, UTIL_STYLE))
    t.append(f" {h.cpu_pct:3.0f} % of {h.cores} cores · RAM ")
    t.append_text(bar(h.ram_used_gib / h.ram_total_gib if h.ram_total_gib else None, 8, MEM_STYLE))
    t.append(f" {h.ram_used_gib:.1f}/{h.ram_total_gib:.0f} GiB")
    for lane, (cpu, rss) in h.servers.items():
        t.append(f" · {lane} server CPU {cpu:.0f} % RSS {rss:,.0f} MiB", style="dim")
    return t


def notes(snap: TelemetrySnapshot, hz: float, *, remote: bool = False) -> Text:
    """What the figures mean, said once under them."""
    t = Text(style="dim", overflow="fold")
    if remote:
        t.append("remote GPUs: their host's dcgm-exporter, 1 Hz; ~lane: a lane on that host · ")
    if snap.unavailable:
        return t
    t.append("util = share of time any kernel ran, not how full the SMs are")
    if any(g.gpm for g in snap.gpus):
        t.append(" (SM active, from GPM, is)")
    sources = {g.mem_source for g in snap.gpus if g.mem_source}
    reserved = {round(g.mem_reserved_mib or 0) for g in snap.gpus}
    if sources == {"v2 (used excludes reserved)"}:
        extra = f" {reserved.pop():,} MiB" if len(reserved) == 1 else ""
        t.append(f" · memory: NVML v2, used excludes the driver's reserved{extra}")
    elif sources:
        t.append(" · memory: NVML v1, used includes the driver's reserved memory")
    span = HISTORY / hz
    t.append(
        f" · graphs: last {span / 60:.0f} min" if span >= 90 else f" · graphs: last {span:.0f} s"
    )
    if snap.driver:
        t.append(f" · driver {snap.driver}")
    return t
