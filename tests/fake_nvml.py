"""A fake NVML with pynvml's function names and error classes, injected at the module
boundary (``quantlab.telemetry.nvml.set_nvml``) so CI without a GPU covers several GPUs,
processes, Not Supported metrics, a missing library and a GPU that falls off the bus
(``lost``: every call; ``lost_on``: only the named calls answer NVML_ERROR_GPU_IS_LOST, as a
GPU going away mid-sweep does)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_GpuIsLost(NVMLError):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_DriverNotLoaded(NVMLError):
    pass


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    util: int = 35
    used_mib: int = 20_000
    reserved_mib: int = 480
    total_mib: int = 81_559
    power_mw: int = 250_000
    limit_mw: int = 700_000
    temp: int = 45
    sm_mhz: int = 1980
    mem_mhz: int = 2619
    reasons: int = 0x1
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, MiB)
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False
    #: Calls (the names ``_gpu`` is given: "util", "memory", "power", …) that raise GpuIsLost.
    lost_on: set[str] = field(default_factory=set)
    temp_slowdown: int = 90
    max_sm_mhz: int = 1980
    max_mem_mhz: int = 2619
    #: GPM figures (Hopper+): {"sm_active": %, "tensor_active": %, "dram_bw": %}; None: no GPM
    gpm: dict[str, float] | None = None


class FakeNvml:
    """Module-like: attribute access mirrors pynvml."""

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
    NVML_GPM_METRICS_GET_VERSION = 1
    NVML_GPM_METRIC_SM_UTIL = 2
    NVML_GPM_METRIC_ANY_TENSOR_UTIL = 5
    NVML_GPM_METRIC_DRAM_BW_UTIL = 10
    nvmlMemory_v2 = 0x02000028
    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded

    def __init__(self, gpus: list[FakeGpu] | None = None, init_error: type | None = None):
        self.gpus = gpus if gpus is not None else [FakeGpu()]
        self.init_error = init_error
        self.calls = 0
        self.calls_by_gpu: dict[int, int] = {}

    def _gpu(self, h: int, metric: str) -> FakeGpu:
        self.calls += 1
        self.calls_by_gpu[h] = self.calls_by_gpu.get(h, 0) + 1
        g = self.gpus[h]
        if g.lost or metric in g.lost_on:
            raise NVMLError_GpuIsLost()
        if metric in g.unsupported:
            raise NVMLError_NotSupported()
        return g

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error()

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return self.gpus[h].name.encode()

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=self._gpu(h, "util").util, memory=0)

    def nvmlDeviceGetMemoryInfo(self, h: int, version: int | None = None) -> Any:
        g = self._gpu(h, "memory")
        mib = 2**20
        if version is None:  # v1: used includes the driver's reserved memory
            used = (g.used_mib + g.reserved_mib) * mib
            return SimpleNamespace(total=g.total_mib * mib, used=used, free=0)
        return SimpleNamespace(
            total=g.total_mib * mib, used=g.used_mib * mib, reserved=g.reserved_mib * mib, free=0
        )

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._gpu(h, "power").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return self._gpu(h, "power_limit").limit_mw

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return self._gpu(h, "temp").temp

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        g = self._gpu(h, "clocks")
        return g.sm_mhz if clock == self.NVML_CLOCK_SM else g.mem_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return self._gpu(h, "throttle").reasons

    def nvmlDeviceGetTemperatureThreshold(self, h: int, which: int) -> int:
        return self._gpu(h, "temp_threshold").temp_slowdown

    def nvmlDeviceGetMaxClockInfo(self, h: int, clock: int) -> int:
        g = self._gpu(h, "max_clocks")
        return g.max_sm_mhz if clock == self.NVML_CLOCK_SM else g.max_mem_mhz

    # GPM: samples are opaque buffers; a metrics request over two of them gives the
    # activity in between (here: the GPU's ``gpm`` figures at the time of the request).
    class c_nvmlGpmMetricsGet_t:
        def __init__(self) -> None:
            self.version = 0
            self.numMetrics = 0
            self.sample1: Any = None
            self.sample2: Any = None
            self.metrics = [SimpleNamespace(metricId=0, nvmlReturn=0, value=0.0) for _ in range(8)]

    def nvmlGpmQueryDeviceSupport(self, h: int) -> Any:
        return SimpleNamespace(isSupportedDevice=int(self.gpus[h].gpm is not None))

    def nvmlGpmSampleAlloc(self) -> Any:
        return SimpleNamespace(handle=None)

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self.gpm_freed = getattr(self, "gpm_freed", 0) + 1

    def nvmlGpmSampleGet(self, h: int, sample: Any) -> Any:
        self._gpu(h, "gpm")
        sample.handle = h
        return sample

    def nvmlGpmMetricsGet(self, request: Any) -> Any:
        g = self.gpus[request.sample2.handle]
        names = {
            self.NVML_GPM_METRIC_SM_UTIL: "sm_active",
            self.NVML_GPM_METRIC_ANY_TENSOR_UTIL: "tensor_active",
            self.NVML_GPM_METRIC_DRAM_BW_UTIL: "dram_bw",
        }
        for metric in request.metrics[: request.numMetrics]:
            value = (g.gpm or {}).get(names.get(metric.metricId, ""))
            metric.nvmlReturn, metric.value = (0, value) if value is not None else (3, 0.0)
        return request

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        g = self._gpu(h, "processes")
        return [SimpleNamespace(pid=p, usedGpuMemory=m * 2**20) for p, m in g.processes]


# A vLLM-shaped process tree: ``vllm serve … --port N --tensor-parallel-size K`` (the API
# server) starts an engine process, which starts K GPU workers: the pids NVML lists are the
# workers', two levels below the server. Real processes, so the parent chain is real.
_WORKER = "import time; time.sleep(300)"
_ENGINE = f"""
import json, subprocess, sys
workers = [subprocess.Popen([sys.executable, "-c", {_WORKER!r}]) for _ in range(int(sys.argv[1]))]
print(json.dumps([w.pid for w in workers]), flush=True)
for w in workers:
    w.wait()
"""
_SERVER = f"""
import subprocess, sys
tp = sys.argv[sys.argv.index("--tensor-parallel-size") + 1]
subprocess.Popen([sys.executable, "-c", {_ENGINE!r}, tp]).wait()
"""


@dataclass
class ServerTree:
    """A started fake server: its pid (what ``quantlab up`` would record) and its workers'."""

    pid: int
    workers: list[int]


@contextmanager
def vllm_like_server(port: int, tp: int) -> Iterator[ServerTree]:
    """Start the tree in its own process group; the whole group is ended afterwards."""
    cmd = [sys.executable, "-c", _SERVER, "vllm", "serve", "m", "--port", str(port)]
    cmd += ["--tensor-parallel-size", str(tp)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        workers = json.loads(proc.stdout.readline())
        yield ServerTree(proc.pid, workers)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def eight_gpu_rig(tp4: list[int], tp2: list[int]) -> FakeNvml:
    """8 H100s: GPUs 0-3 hold a TP 4 server's workers, 4-5 a TP 2 server's, GPU 6 answers
    its first call then says NVML_ERROR_GPU_IS_LOST (it fell off the bus), GPU 7 is idle."""
    gpus = [
        FakeGpu(util=90 + i, used_mib=61_000, power_mw=610_000, processes=[(pid, 60_000)])
        for i, pid in enumerate(tp4)
    ]
    gpus += [
        FakeGpu(util=70, used_mib=31_000, power_mw=420_000, temp=52, processes=[(pid, 30_000)])
        for pid in tp2
    ]
    gpus.append(FakeGpu(lost_on={"memory", "power", "temp", "clocks", "processes"}))
    gpus.append(FakeGpu(util=0, used_mib=0, power_mw=70_000, temp=31))
    return FakeNvml(gpus)
