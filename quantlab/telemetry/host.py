"""Host CPU and RAM, and the CPU/RSS of lane servers running on this machine (the local
pair runs on CPU; so does the client): psutil, cheap enough for every UI tick.

Cheap, but it reads /proc, and each read lets go of the GIL: on an event loop while a
scoring thread computes, every read waits for the GIL to come back (up to the 5 ms switch
interval), and one sample took 30-60 ms of the loop (benchmarks/ui_lag.py, at the end of
an exchange). :meth:`HostSampler.start` samples in a thread of its own instead; the UI
reads :meth:`HostSampler.latest`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import psutil

from quantlab.records import Endpoint


@dataclass(slots=True)
class HostStats:
    cpu_pct: float
    cores: int
    ram_used_gib: float
    ram_total_gib: float
    servers: dict[str, tuple[float, float]] = field(default_factory=dict)  # lane: (cpu%, MiB)


class HostSampler:
    """``sample()`` gives CPU % since the previous call (psutil's non-blocking mode)."""

    def __init__(self, endpoints: Sequence[Endpoint] = ()) -> None:
        self._procs: dict[str, psutil.Process] = {}
        for ep in endpoints:
            if ep.pid:
                try:
                    self._procs[ep.name] = psutil.Process(ep.pid)
                    self._procs[ep.name].cpu_percent(None)
                except psutil.Error:
                    pass
        psutil.cpu_percent(None)
        self._last: HostStats | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, period_s: float) -> None:
        """Sample every ``period_s`` in a background thread (see the module docstring)."""
        if self._thread is not None:
            return
        self._last = self.sample()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(period_s,), name="quantlab-host", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _run(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            self._last = self.sample()

    def latest(self) -> HostStats:
        """The last background sample (a fresh one when not started)."""
        last = self._last
        return last if last is not None and self._thread is not None else self.sample()

    def sample(self) -> HostStats:
        vm = psutil.virtual_memory()
        servers: dict[str, tuple[float, float]] = {}
        for lane, proc in list(self._procs.items()):
            try:
                servers[lane] = (proc.cpu_percent(None), proc.memory_info().rss / 2**20)
            except psutil.Error:
                del self._procs[lane]
        return HostStats(
            cpu_pct=psutil.cpu_percent(None),
            cores=psutil.cpu_count() or 1,
            ram_used_gib=(vm.total - vm.available) / 2**30,
            ram_total_gib=vm.total / 2**30,
            servers=servers,
        )
