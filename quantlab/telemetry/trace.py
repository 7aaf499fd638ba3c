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


class TraceWriter:
    """For headless runs: a thread that samples GPUs and host once a second and writes the
    trace into a session (``sink`` = ``SessionStore.add_telemetry``) in batches. With no
    GPU the points hold the host only. ``stop()`` writes what is pending."""

    def __init__(self, sink: Any, endpoints: Any = (), every_s: float = 1.0) -> None:
        import threading

        from quantlab.telemetry.host import HostSampler
        from quantlab.telemetry.processes import ProcessMapper
        from quantlab.telemetry.sampler import GpuSampler

        self.sink = sink
        self.every_s = every_s
        self.sampler = GpuSampler(hz=1.0 / every_s)
        self.host = HostSampler(endpoints)
        self.mapper = ProcessMapper(endpoints)
        self.recorder = TraceRecorder(every_s=0.0, batch=10)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trace-writer", daemon=True)
        self.error: str | None = None

    def _point(self) -> dict[str, Any]:
        if self.sampler.unavailable is None:
            self.sampler.sample_once()
        snap = self.sampler.snapshot()
        lanes_of = {p.pid: self.mapper.lane_of(p.pid) for g in snap.gpus for p in g.processes}
        return trace_point(snap if snap.gpus else None, None, self.host.sample(), lanes_of)

    def _write(self, points: list[dict[str, Any]]) -> None:
        if not points:
            return
        try:
            self.sink(points)
        except Exception as exc:  # the run matters more than its trace
            self.error = str(exc)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            batch = self.recorder.offer(self._point)
            if batch:
                self._write(batch)

    def start(self) -> TraceWriter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)
        self._write(self.recorder.flush())
        self.sampler.stop()
