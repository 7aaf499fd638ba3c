"""The telemetry trace kept in session files: one small point a second (GPU memory, power,
utilization, temperature per GPU; KV cache and queue per server; host CPU/RAM), so a report
can put GPU memory and power next to the results without storing 4 Hz samples."""

from __future__ import annotations

import time
from typing import Any

from quantlab.telemetry.host import HostStats
from quantlab.telemetry.sampler import TelemetrySnapshot
from quantlab.telemetry.server_stats import ServerStats


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


def trace_point(
    snap: TelemetrySnapshot | None,
    servers: dict[str, ServerStats] | None = None,
    host: HostStats | None = None,
    lanes_of: dict[int, str] | None = None,
) -> dict[str, Any]:
    """One point: ``{"t", "gpus": [{"index", "util_pct", "mem_used_mib", "mem_total_mib",
    "power_w", "power_limit_w", "temp_c", "procs": {lane: MiB}}], "servers": {lane: {…}},
    "host": {…}}``."""
    point: dict[str, Any] = {"t": round(time.time(), 3)}
    if snap is not None:
        gpus = []
        for g in snap.gpus:
            procs: dict[str, float] = {}
            for p in g.processes:
                lane = (lanes_of or {}).get(p.pid, "other")
                procs[lane] = round(procs.get(lane, 0.0) + (p.gpu_mem_mib or 0.0), 1)
            gpus.append(
                {
                    "index": g.index,
                    "util_pct": _r(g.latest.get("util_pct")),
                    "mem_used_mib": _r(g.latest.get("mem_used_mib")),
                    "mem_total_mib": _r(g.mem_total_mib),
                    "power_w": _r(g.latest.get("power_w")),
                    "power_limit_w": _r(g.power_limit_w),
                    "temp_c": _r(g.latest.get("temp_c")),
                    "procs": procs,
                    **({"lost": True} if g.lost else {}),
                }
            )
        point["gpus"] = gpus
    if servers:
        point["servers"] = {
            lane: {
                "kv_pct": _r(s.kv_pct),
                "running": s.running,
                "waiting": s.waiting,
                "gen_tps": _r(s.gen_tps),
            }
            for lane, s in servers.items()
            if s.error is None
        }
    if host is not None:
        point["host"] = {"cpu_pct": _r(host.cpu_pct), "ram_used_gib": _r(host.ram_used_gib, 2)}
    return point


class TraceRecorder:
    """Keeps at most one point per ``every_s`` and hands batches to a sink (e.g.
    ``SessionStore.add_telemetry``) so the session is written every few seconds, not at
    every UI tick."""

    def __init__(self, every_s: float = 1.0, batch: int = 10) -> None:
        self.every_s = every_s
        self.batch = batch
        self._last = 0.0
        self.pending: list[dict[str, Any]] = []

    def offer(self, point_fn: Any) -> list[dict[str, Any]] | None:
        """Call with a zero-argument function building a point; returns a batch to write
        when one is full, else None."""
        now = time.monotonic()
        if now - self._last < self.every_s:
            return None
        self._last = now
        self.pending.append(point_fn())
        if len(self.pending) >= self.batch:
            return self.flush()
        return None

    def flush(self) -> list[dict[str, Any]]:
        out, self.pending = self.pending, []
        return out
