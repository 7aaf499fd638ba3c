"""GPU sampler: one thread calls NVML (blocking C calls; ctypes releases the GIL) at a fixed
rate and writes into preallocated ring buffers; the UI only reads snapshots.

Fast path every tick, per GPU (measured on an H100: 1-8 µs per getter, tens of µs in all):
utilization, memory (v2 where the driver has it: ``used`` then excludes the driver's
``reserved`` memory, shown apart), temperature, power draw and enforced limit, SM and memory
clocks, clock-event (throttle) reasons, running compute processes. Slow path, once a second
on the same thread and never inside the fast sample: on Hopper and newer, GPM's SM activity,
tensor-pipe activity and DRAM bandwidth use (what plain "utilization" is not: how full the
GPU is); other cards are skipped quietly. PCIe throughput (~20 ms a call) and total energy
(~3 ms) are left out. A metric that fails once with Not Supported is not asked again and
shows its reason; a lost GPU is marked lost and the others go on. Values outside the card's
own limits (power above its limit, temperature at its slowdown threshold, clocks above
their maximum, memory above the total) are flagged: some cards report nonsense.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantlab.telemetry import nvml as nv

#: Ring size: 5 minutes at 4 Hz.
HISTORY = 1200
#: Ring values are float32: 7 significant digits are more than any reading has, and half
#: the bytes halve the UI snapshot's copy (measured in benchmarks/telemetry_cost.py).
RING_DTYPE = np.float32
#: Ring buffer columns: the fast-path metrics, then the GPM figure (held between its
#: once-a-second samples so that every row has it).
METRICS = ("util_pct", "mem_used_mib", "power_w", "temp_c", "sm_mhz", "mem_mhz", "sm_active_pct")
#: Seconds between GPM samples (each pair of samples gives the activity between them).
GPM_EVERY_S = 1.0

#: NVML clock-event (throttle) reason bits, in words. Values from nvml.h.
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "idle"),
    (0x2, "app clocks setting"),
    (0x4, "power cap"),
    (0x8, "hw slowdown"),
    (0x10, "sync boost"),
    (0x20, "thermal (sw)"),
    (0x40, "thermal (hw)"),
    (0x80, "power brake (hw)"),
    (0x100, "display clocks"),
)


def throttle_words(mask: int) -> list[str]:
    """Clock-event reasons as words; none set means the clocks are where they can be."""
    return [word for bit, word in THROTTLE_REASONS if mask & bit]


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    gpu_mem_mib: float | None


@dataclass(frozen=True, slots=True)
class GpuSnapshot:
    """One GPU as the UI sees it: latest values (None where unknown, with ``errors`` saying
    why), the history of each fast metric, and its processes."""

    index: int
    name: str
    lost: bool
    latest: dict[str, float | None]
    mem_total_mib: float | None
    mem_reserved_mib: float | None
    mem_source: str  # "v2 (used excludes reserved)" | "v1 (used includes reserved)" | ""
    power_limit_w: float | None
    throttle: list[str]
    processes: list[GpuProcess]
    errors: dict[str, str]
    history: dict[str, np.ndarray]
    warnings: list[str] = field(default_factory=list)
    #: Hopper+ GPM figures (percent): "sm_active", "tensor_active", "dram_bw"; empty elsewhere.
    gpm: dict[str, float] = field(default_factory=dict)
    temp_slowdown_c: float | None = None
    #: Where the figures come from: None for this host's NVML, else the remote host's name
    #: (its dcgm-exporter's ``Hostname`` label, or the exporter URL's host).
    host: str | None = None
    uuid: str | None = None
    #: How many samples the graphs span (the history's full length at its own rate), so
    #: that a 1 Hz remote history and a 4 Hz local one cover the same minutes.
    history_span: int = HISTORY


@dataclass(frozen=True, slots=True)
class TelemetrySnapshot:
    """Everything the sampler knows now. ``unavailable`` says why there are no GPUs."""

    gpus: list[GpuSnapshot]
    unavailable: str | None
    driver: str | None
    samples: int
    last_sample_us: float | None


class _Gpu:
    """Per-GPU state owned by the sampler thread."""

    def __init__(self, index: int, handle: Any, name: str) -> None:
        self.index = index
        self.handle = handle
        self.name = name
        self.lost = False
        self.ring = np.full((HISTORY, len(METRICS)), np.nan, dtype=RING_DTYPE)
        self.pos = 0
        self.count = 0
        self.errors: dict[str, str] = {}
        self.skip: set[str] = set()
        self.mem_total: float | None = None
        self.mem_reserved: float | None = None
        self.mem_source = ""
        self.power_limit: float | None = None
        self.throttle: list[str] = []
        self.processes: list[GpuProcess] = []
        # The card's own limits, read once: values beyond them are flagged, not hidden.
        self.temp_slowdown: float | None = None
        self.max_sm_mhz: float | None = None
        self.max_mem_mhz: float | None = None
        self.gpm: _Gpm | None = None
        self.gpm_values: dict[str, float] = {}


class _Gpm:
    """GPM sampling state of one GPU: two sample buffers used in turn and one reusable
    metrics request (NVML fills values for the span between the two samples)."""

    WANT = (
        ("sm_active", "NVML_GPM_METRIC_SM_UTIL"),
        ("tensor_active", "NVML_GPM_METRIC_ANY_TENSOR_UTIL"),
        ("dram_bw", "NVML_GPM_METRIC_DRAM_BW_UTIL"),
    )

    def __init__(self, m: Any) -> None:
        self.samples = [m.nvmlGpmSampleAlloc(), m.nvmlGpmSampleAlloc()]
        self.cur = 0
        self.have_prev = False
        self.last = 0.0
        self.request = m.c_nvmlGpmMetricsGet_t()
        self.request.version = m.NVML_GPM_METRICS_GET_VERSION
        self.request.numMetrics = len(self.WANT)
        for i, (_, const) in enumerate(self.WANT):
            self.request.metrics[i].metricId = getattr(m, const)

    def free(self, m: Any) -> None:
        for sample in self.samples:
            with contextlib.suppress(Exception):
                m.nvmlGpmSampleFree(sample)


class GpuSampler:
    """Samples every GPU at ``hz`` on a daemon thread. ``start()``/``stop()``;
    ``snapshot()`` is cheap and safe from any thread."""

    def __init__(self, hz: float = 4.0) -> None:
        self.period = 1.0 / max(hz, 0.1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gpus: list[_Gpu] = []
        self._nvml: Any = None
        self.unavailable: str | None = None
        self.driver: str | None = None
        self.samples = 0
        self.last_sample_us: float | None = None
        self.thread_cpu_s = 0.0
        self._init()

    # -------------------------------------------------------------- set-up

    def _init(self) -> None:
        m = nv.nvml()
        if m is None:
            self.unavailable = "no GPU telemetry: nvidia-ml-py (pynvml) is not installed"
            return
        try:
            m.nvmlInit()
        except Exception as exc:
            self.unavailable = f"no GPU telemetry: {nv.reason(exc)}"
            return
        self._nvml = m
        try:
            self.driver = nv.text(m.nvmlSystemGetDriverVersion())
        except Exception:
            self.driver = None
        try:
            count = m.nvmlDeviceGetCount()
        except Exception as exc:
            self.unavailable = f"no GPU telemetry: {nv.reason(exc)}"
            return
        for i in range(count):
            try:
                h = m.nvmlDeviceGetHandleByIndex(i)
                name = nv.text(m.nvmlDeviceGetName(h))
            except Exception as exc:
                gpu = _Gpu(i, None, f"GPU {i}")
                gpu.lost = nv.is_lost(exc)
                gpu.errors["device"] = nv.reason(exc)
                self._gpus.append(gpu)
                continue
            gpu = _Gpu(i, h, name)
            self._read_limits(gpu)
            self._gpus.append(gpu)
        if not self._gpus:
            self.unavailable = "no NVIDIA GPU found by NVML"

    def _read_limits(self, gpu: _Gpu) -> None:
        """The card's slowdown temperature and maximum clocks (for flags), and whether it
        has GPM (Hopper and newer). Any failure here only means no flag / no GPM."""
        m, h = self._nvml, gpu.handle
        with contextlib.suppress(Exception):
            gpu.temp_slowdown = float(
                m.nvmlDeviceGetTemperatureThreshold(h, m.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)
            )
        with contextlib.suppress(Exception):
            gpu.max_sm_mhz = float(m.nvmlDeviceGetMaxClockInfo(h, m.NVML_CLOCK_SM))
        with contextlib.suppress(Exception):
            gpu.max_mem_mhz = float(m.nvmlDeviceGetMaxClockInfo(h, m.NVML_CLOCK_MEM))
        try:
            if m.nvmlGpmQueryDeviceSupport(h).isSupportedDevice:
                gpu.gpm = _Gpm(m)
        except Exception:  # older card, older driver or binding: no GPM, quietly
            gpu.gpm = None

    # -------------------------------------------------------------- sampling

    def _get(self, gpu: _Gpu, metric: str, fn: Any, *args: Any) -> Any:
        """One getter; failures are remembered per metric (Not Supported: never again). Once
        the GPU is lost, nothing more is asked of it."""
        if gpu.lost or metric in gpu.skip:
            return None
        try:
            value = fn(gpu.handle, *args)
        except Exception as exc:
            if nv.is_lost(exc):
                gpu.lost = True
                gpu.errors["device"] = nv.reason(exc)
            elif nv.is_not_supported(exc):
                gpu.skip.add(metric)
            gpu.errors[metric] = nv.reason(exc)
            return None
        gpu.errors.pop(metric, None)
        return value

    def _memory(self, gpu: _Gpu) -> float | None:
        m = self._nvml
        if "mem_v2" not in gpu.skip and hasattr(m, "nvmlMemory_v2"):
            info = self._get(gpu, "mem_v2", m.nvmlDeviceGetMemoryInfo, m.nvmlMemory_v2)
            if info is not None and getattr(info, "reserved", None) is not None:
                gpu.mem_source = "v2 (used excludes reserved)"
                gpu.mem_reserved = info.reserved / 2**20
                gpu.mem_total = info.total / 2**20
                return info.used / 2**20
            gpu.skip.add("mem_v2")
            gpu.errors.pop("mem_v2", None)
        info = self._get(gpu, "mem_used_mib", m.nvmlDeviceGetMemoryInfo)
        if info is None:
            return None
        gpu.mem_source = "v1 (used includes reserved)"
        gpu.mem_total = info.total / 2**20
        return info.used / 2**20

    def _sample_gpu(self, gpu: _Gpu) -> None:
        """One GPU's fast path into the next ring row (written once, as a list: per-item
        numpy writes cost more than the NVML calls). A GPU lost part way through leaves
        no row: half a sample is no sample."""
        m, nan = self._nvml, math.nan
        util = self._get(gpu, "util_pct", m.nvmlDeviceGetUtilizationRates)
        if gpu.lost:
            return
        mem = self._memory(gpu)
        power = self._get(gpu, "power_w", m.nvmlDeviceGetPowerUsage)
        temp = self._get(gpu, "temp_c", m.nvmlDeviceGetTemperature, m.NVML_TEMPERATURE_GPU)
        sm = self._get(gpu, "sm_mhz", m.nvmlDeviceGetClockInfo, m.NVML_CLOCK_SM)
        mc = self._get(gpu, "mem_mhz", m.nvmlDeviceGetClockInfo, m.NVML_CLOCK_MEM)
        limit = self._get(gpu, "power_limit_w", m.nvmlDeviceGetEnforcedPowerLimit)
        gpu.power_limit = None if limit is None else limit / 1000
        reasons_fn = getattr(m, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            m, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        mask = self._get(gpu, "throttle", reasons_fn) if reasons_fn else None
        gpu.throttle = throttle_words(int(mask)) if mask is not None else []
        procs = self._get(gpu, "processes", m.nvmlDeviceGetComputeRunningProcesses)
        if procs is not None:
            gpu.processes = [
                GpuProcess(
                    int(p.pid),
                    None if p.usedGpuMemory is None else p.usedGpuMemory / 2**20,
                )
                for p in procs
            ]
        if gpu.lost:
            return
        gpu.ring[gpu.pos] = (
            nan if util is None else util.gpu,
            nan if mem is None else mem,
            nan if power is None else power / 1000,
            nan if temp is None else temp,
            nan if sm is None else sm,
            nan if mc is None else mc,
            gpu.gpm_values.get("sm_active", nan),
        )
        gpu.pos = (gpu.pos + 1) % HISTORY
        gpu.count += 1

    def sample_once(self) -> float:
        """One sweep of every GPU; returns its cost in µs (the benchmark's figure)."""
        t0 = time.perf_counter_ns()
        with self._lock:
            for gpu in self._gpus:
                if not gpu.lost and gpu.handle is not None:
                    self._sample_gpu(gpu)
            self.samples += 1
        us = (time.perf_counter_ns() - t0) / 1000
        self.last_sample_us = us
        return us

    def _sample_gpm(self, gpu: _Gpu, now: float) -> None:
        """One GPM sample; with the previous one it gives the activity in between."""
        g, m = gpu.gpm, self._nvml
        assert g is not None
        try:
            m.nvmlGpmSampleGet(gpu.handle, g.samples[g.cur])
            if g.have_prev:
                req = g.request
                req.sample1, req.sample2 = g.samples[1 - g.cur], g.samples[g.cur]
                m.nvmlGpmMetricsGet(req)
                values = {}
                for i, (key, _) in enumerate(g.WANT):
                    value = float(req.metrics[i].value)
                    if req.metrics[i].nvmlReturn == 0 and math.isfinite(value):
                        values[key] = value  # (an idle H100 gave NaN DRAM bandwidth)
                gpu.gpm_values = values
        except Exception as exc:
            if nv.is_lost(exc):
                gpu.lost = True
                gpu.errors["device"] = nv.reason(exc)
            g.free(m)  # GPM stops; the fast path goes on
            gpu.gpm, gpu.gpm_values = None, {}
            return
        g.have_prev = True
        g.cur = 1 - g.cur
        g.last = now

    def slow_once(self) -> None:
        """The once-a-second path (GPM), kept out of the fast sample."""
        now = time.monotonic()
        with self._lock:
            for gpu in self._gpus:
                if gpu.gpm is not None and not gpu.lost and now - gpu.gpm.last >= GPM_EVERY_S:
                    self._sample_gpm(gpu, now)

    def _run(self) -> None:
        next_t = time.monotonic()
        cpu0 = time.thread_time()
        while not self._stop.is_set():
            self.sample_once()
            self.slow_once()
            self.thread_cpu_s = time.thread_time() - cpu0
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay < 0:  # fell behind (machine suspended?): don't burst to catch up
                next_t = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def start(self) -> GpuSampler:
        if self._thread is None and self._gpus and self.unavailable is None:
            self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._nvml is not None:
            with self._lock:
                for gpu in self._gpus:
                    if gpu.gpm is not None:
                        gpu.gpm.free(self._nvml)
                        gpu.gpm = None
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None

    # -------------------------------------------------------------- reading

    def snapshot(self) -> TelemetrySnapshot:
        with self._lock:
            gpus = [self._snap(g) for g in self._gpus]
            return TelemetrySnapshot(
                gpus=gpus,
                unavailable=self.unavailable,
                driver=self.driver,
                samples=self.samples,
                last_sample_us=self.last_sample_us,
            )

    @staticmethod
    def _snap(g: _Gpu) -> GpuSnapshot:
        # Oldest first, by two slices (fancy indexing cost ~10x more, under the lock); the
        # columns below are views of this fresh copy, so the sampler never writes into them.
        hist = g.ring[: g.pos].copy() if g.count < HISTORY else ring_order(g.ring, g.pos)
        latest_row = g.ring[(g.pos - 1) % HISTORY] if g.count else np.full(len(METRICS), np.nan)
        latest = {
            k: (None if v != v else v)  # NaN is the one value not equal to itself
            for k, v in zip(METRICS, latest_row.tolist(), strict=True)
        }
        warnings = _beyond_limits(g, latest)
        return GpuSnapshot(
            index=g.index,
            name=g.name,
            lost=g.lost,
            latest=latest,
            mem_total_mib=g.mem_total,
            mem_reserved_mib=g.mem_reserved,
            mem_source=g.mem_source,
            power_limit_w=g.power_limit,
            throttle=list(g.throttle),
            processes=list(g.processes),
            errors=dict(g.errors),
            history={k: hist[:, i] for i, k in enumerate(METRICS)},
            warnings=warnings,
            gpm=dict(g.gpm_values),
            temp_slowdown_c=g.temp_slowdown,
        )


def ring_order(ring: np.ndarray, pos: int) -> np.ndarray:
    """A full ring's rows oldest first (``pos`` is the next row to write), as a new array."""
    return np.concatenate((ring[pos:], ring[:pos]))


def _beyond_limits(g: _Gpu, latest: dict[str, float | None]) -> list[str]:
    """Readings outside the card's own limits, in words. Brief power overshoot of a few
    percent is normal (the limit is enforced on an average), so power gets 10 % slack."""
    out = []
    power, temp = latest.get("power_w"), latest.get("temp_c")
    sm, used, util = latest.get("sm_mhz"), latest.get("mem_used_mib"), latest.get("util_pct")
    if power is not None and g.power_limit and power > g.power_limit * 1.1:
        out.append(f"power {power:.0f} W reads above the card's limit {g.power_limit:.0f} W")
    if temp is not None and g.temp_slowdown and temp >= g.temp_slowdown:
        out.append(f"{temp:.0f} °C: at the card's slowdown temperature ({g.temp_slowdown:.0f} °C)")
    if sm is not None and g.max_sm_mhz and sm > g.max_sm_mhz * 1.05:
        out.append(f"SM clock {sm:.0f} MHz reads above the card's maximum {g.max_sm_mhz:.0f} MHz")
    if used is not None and g.mem_total and used > g.mem_total:
        out.append(f"memory used {used:.0f} MiB reads above the total {g.mem_total:.0f} MiB")
    if util is not None and not 0 <= util <= 100:
        out.append(f"utilization reads {util:.0f} %")
    return out
