"""A fake NVML with pynvml's function names and error classes, injected at the module
boundary (``quantlab.telemetry.nvml.set_nvml``) so CI without a GPU covers several GPUs,
processes, Not Supported metrics, a missing library and a GPU that falls off the bus."""

from __future__ import annotations

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

    def _gpu(self, h: int, metric: str) -> FakeGpu:
        self.calls += 1
        g = self.gpus[h]
        if g.lost:
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
