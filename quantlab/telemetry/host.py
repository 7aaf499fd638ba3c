"""Host CPU and RAM, and the CPU/RSS of lane servers running on this machine (the local
pair runs on CPU; so does the client): psutil, cheap enough for every UI tick."""

from __future__ import annotations

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
