"""Remote GPUs from a host's NVIDIA dcgm-exporter (Prometheus text), for endpoints on hosts
NVML here cannot reach: an endpoint's ``dcgm_url`` in ``quantlab.toml`` names it.

Read per GPU (keyed by its ``UUID`` label, else ``gpu``; ``Hostname`` and ``modelName``
labels name it): ``DCGM_FI_DEV_GPU_UTIL`` (%), ``DCGM_FI_DEV_FB_USED`` and ``_FB_FREE`` (MiB;
total = used + free + ``_FB_RESERVED`` where exported), ``DCGM_FI_DEV_POWER_USAGE`` (W),
``DCGM_FI_DEV_GPU_TEMP`` (°C), ``DCGM_FI_DEV_SM_CLOCK`` / ``_MEM_CLOCK`` (MHz), and where the
exporter's counters list has them ``DCGM_FI_DEV_POWER_MGMT_LIMIT`` (W) and the profiling
``DCGM_FI_PROF_SM_ACTIVE`` / ``_PIPE_TENSOR_ACTIVE`` (ratios). Each figure that is not on
the page, or that DCGM reports as its "blank" value (e.g. memory temperature on a card
without the sensor: 9223372036854775794), gets its own reason; an exporter that cannot be
reached keeps its GPUs listed with the reason. Scraped about once a second; the page (a
few KB per GPU) is filtered to the wanted sample lines and parsed off the event loop by a
line regex (the exporter's format is regular; prometheus_client's general parser costs
~5x more: 6.6 against 1.3 ms for 8 GPUs) that the tests hold to agree with it.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import numpy as np

from quantlab.client import tls_verify
from quantlab.records import Endpoint
from quantlab.telemetry.sampler import METRICS, GpuSnapshot
from quantlab.telemetry.server_stats import why_unreachable

#: Default ring size: 5 minutes at the 1 Hz scrape, as the local rings hold at 4 Hz.
REMOTE_HISTORY = 300

#: dcgm-exporter field -> the sampler's metric it fills.
FIELDS: dict[str, str] = {
    "DCGM_FI_DEV_GPU_UTIL": "util_pct",
    "DCGM_FI_DEV_FB_USED": "mem_used_mib",
    "DCGM_FI_DEV_POWER_USAGE": "power_w",
    "DCGM_FI_DEV_GPU_TEMP": "temp_c",
    "DCGM_FI_DEV_SM_CLOCK": "sm_mhz",
    "DCGM_FI_DEV_MEM_CLOCK": "mem_mhz",
}
FB_FREE, FB_RESERVED = "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED"
POWER_LIMIT = "DCGM_FI_DEV_POWER_MGMT_LIMIT"
SM_ACTIVE, TENSOR_ACTIVE = "DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"
WANTED = (*FIELDS, FB_FREE, FB_RESERVED, POWER_LIMIT, SM_ACTIVE, TENSOR_ACTIVE)
_LINE_PREFIXES = tuple(p for n in WANTED for p in (n + "{", n + " "))
#: DCGM's "no value" markers start here: DCGM_FP64_BLANK (2**47) for floats, and
#: DCGM_INT64_BLANK (0x7ffffffffffffff0) for integers, which is far above it.
DCGM_BLANK = 140737488355328.0
BLANK_REASON = "n/a (DCGM has no value: not supported on this GPU?)"


@dataclass(slots=True)
class DcgmReading:
    """One GPU on one exporter page: its labels and the wanted fields' values."""

    key: str
    index: int
    uuid: str | None
    model: str | None
    hostname: str | None
    values: dict[str, float] = field(default_factory=dict)
    blank: set[str] = field(default_factory=set)


def wanted_lines(text: str) -> str:
    """Only the sample lines of the wanted DCGM fields (no comments, no other fields)."""
    return "\n".join(ln for ln in text.splitlines() if ln.startswith(_LINE_PREFIXES)) + "\n"


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], value)


def samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of the wanted sample lines. The exporter writes Go's Prometheus
    text format, one sample a line, so a line regex reads it at a fraction of the cost of
    prometheus_client's general parser (1.3 against 6.6 ms for an 8-GPU page, under the GIL the UI
    also needs); the test suite checks the two agree. Lines that do not parse are skipped."""
    for line in wanted_lines(text).splitlines():
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, labels, raw = m.groups()
        try:
            value = float(raw)
        except ValueError:
            continue
        yield name, {k: _unescape(v) for k, v in _LABEL.findall(labels or "")}, value


def parse_dcgm(text: str) -> list[DcgmReading]:
    """The GPUs on an exporter page, in the page's order. When several series carry one GPU
    (Kubernetes pod labels), the first one's value stands."""
    gpus: dict[str, DcgmReading] = {}
    for name, labels, value in samples(text):
        key = labels.get("UUID") or labels.get("uuid") or labels.get("gpu")
        if key is None:
            continue
        g = gpus.get(key)
        if g is None:
            try:
                index = int(labels.get("gpu", len(gpus)))
            except ValueError:
                index = len(gpus)
            g = gpus[key] = DcgmReading(
                key=key,
                index=index,
                uuid=labels.get("UUID") or labels.get("uuid"),
                model=labels.get("modelName") or None,
                hostname=labels.get("Hostname") or None,
            )
        if name in g.values or name in g.blank:
            continue
        if value >= DCGM_BLANK:
            g.blank.add(name)
        else:
            g.values[name] = value
    return list(gpus.values())


def has_dcgm_metrics(text: str) -> bool:
    return "DCGM_FI_" in text


class _RemoteGpu:
    """History and latest facts of one remote GPU."""

    def __init__(self, reading: DcgmReading, history: int = REMOTE_HISTORY) -> None:
        self.size = history
        self.key = reading.key
        self.index = reading.index
        self.uuid = reading.uuid
        self.name = reading.model or f"GPU {reading.index}"
        self.hostname = reading.hostname
        self.ring = np.full((history, len(METRICS)), np.nan)
        self.pos = 0
        self.count = 0
        self.errors: dict[str, str] = {}
        self.mem_total: float | None = None
        self.mem_reserved: float | None = None
        self.power_limit: float | None = None
        self.gpm: dict[str, float] = {}

    def update(self, r: DcgmReading) -> None:
        row = self.ring[self.pos]
        row[:] = np.nan
        self.errors = {}
        for fname, metric in FIELDS.items():
            if fname in r.values:
                row[METRICS.index(metric)] = r.values[fname]
            else:
                self.errors[metric] = _missing(fname, r)
        used, free = r.values.get("DCGM_FI_DEV_FB_USED"), r.values.get(FB_FREE)
        self.mem_reserved = r.values.get(FB_RESERVED)
        self.mem_total = (
            used + free + (self.mem_reserved or 0.0)
            if used is not None and free is not None
            else None
        )
        self.power_limit = r.values.get(POWER_LIMIT)
        self.gpm = {}
        if SM_ACTIVE in r.values:
            self.gpm["sm_active"] = r.values[SM_ACTIVE] * 100
            row[METRICS.index("sm_active_pct")] = self.gpm["sm_active"]
        if TENSOR_ACTIVE in r.values:
            self.gpm["tensor_active"] = r.values[TENSOR_ACTIVE] * 100
        if r.hostname:
            self.hostname = r.hostname
        if r.model:
            self.name = r.model
        self._advance()

    def unreachable(self, reason: str) -> None:
        """The exporter did not answer: the GPU stays listed, every figure says why."""
        self.ring[self.pos] = np.nan
        self.errors = {metric: reason for metric in FIELDS.values()}
        self.errors["unreachable"] = reason
        self._advance()

    def _advance(self) -> None:
        self.pos = (self.pos + 1) % self.size
        self.count += 1

    def snapshot(self, host: str) -> GpuSnapshot:
        n = min(self.count, self.size)
        hist = self.ring[np.arange(self.pos - n, self.pos) % self.size]
        last = self.ring[(self.pos - 1) % self.size]
        latest = {
            k: (None if np.isnan(v) else float(v)) for k, v in zip(METRICS, last, strict=True)
        }
        return GpuSnapshot(
            index=self.index,
            name=self.name,
            lost=False,
            latest=latest,
            mem_total_mib=self.mem_total,
            mem_reserved_mib=self.mem_reserved,
            mem_source="dcgm-exporter" if self.mem_total is not None else "",
            power_limit_w=self.power_limit,
            throttle=[],
            processes=[],
            errors=dict(self.errors),
            history={k: hist[:, i].copy() for i, k in enumerate(METRICS)},
            gpm=dict(self.gpm),
            host=host,
            uuid=self.uuid,
            history_span=self.size,
        )


def _missing(fname: str, r: DcgmReading) -> str:
    if fname in r.blank:
        return BLANK_REASON
    return f"not on the exporter's page ({fname})"


class _Exporter:
    """One exporter URL, the lanes whose config names it, and its GPUs."""

    def __init__(self, url: str, lanes: list[str]) -> None:
        self.url = url
        self.lanes = lanes
        self.url_host = urlsplit(url).hostname or url
        self.gpus: dict[str, _RemoteGpu] = {}
        self.error: str | None = None
        self.t = 0.0

    def host(self, g: _RemoteGpu) -> str:
        return g.hostname or self.url_host


class DcgmScraper:
    """Scrapes every distinct ``dcgm_url`` of ``endpoints`` concurrently; ``poll()`` about
    once a second, ``gpus()`` and ``problems()`` from any code on the event loop."""

    def __init__(
        self, endpoints: Sequence[Endpoint], timeout: float = 2.0, span_s: float = 300.0
    ) -> None:
        """``span_s``: the seconds the local graphs cover, so remote ones cover the same."""
        self.history = max(2, math.ceil(span_s))  # one row a second
        by_url: dict[str, list[str]] = {}
        for ep in endpoints:
            if ep.dcgm_url:
                by_url.setdefault(ep.dcgm_url, []).append(ep.name)
        self.exporters = [_Exporter(url, lanes) for url, lanes in by_url.items()]
        self._http = httpx.AsyncClient(
            timeout=timeout, trust_env=False, verify=tls_verify(None, trust_env=False)
        )

    async def _fetch(self, ex: _Exporter) -> tuple[str | None, list[DcgmReading]]:
        """(why there are no readings, readings)."""
        try:
            r = await self._http.get(ex.url)
        except httpx.HTTPError as exc:
            return why_unreachable(exc), []
        except RuntimeError as exc:  # the client was closed under us (shutting down)
            return f"not scraped: {exc}", []
        if r.status_code >= 400:
            return f"{ex.url} answered HTTP {r.status_code}", []
        text = r.text
        if not has_dcgm_metrics(text):
            return "no DCGM_FI_* metrics on that page (is it a dcgm-exporter?)", []
        try:
            readings = await asyncio.to_thread(parse_dcgm, text)
        except Exception as exc:  # whatever the parser makes of a broken page
            return f"unreadable exporter page: {exc}"[:120], []
        if not readings:
            return "the exporter lists no GPUs", []
        return None, readings

    async def _one(self, ex: _Exporter) -> None:
        error, readings = await self._fetch(ex)
        ex.t = time.monotonic()
        ex.error = error
        if error is not None:
            for g in ex.gpus.values():
                g.unreachable(error)
            return
        for r in readings:
            known = ex.gpus.get(r.key)
            if known is None:
                known = ex.gpus[r.key] = _RemoteGpu(r, self.history)
            known.update(r)

    async def poll(self) -> None:
        await asyncio.gather(*(self._one(ex) for ex in self.exporters))

    def gpus(self) -> list[tuple[GpuSnapshot, list[str]]]:
        """Every remote GPU seen so far, by exporter then index, with the lanes on its host."""
        out = []
        for ex in self.exporters:
            for g in sorted(ex.gpus.values(), key=lambda g: g.index):
                out.append((g.snapshot(ex.host(g)), list(ex.lanes)))
        return out

    def problems(self) -> list[str]:
        """One line for each exporter that has not given any GPU yet, saying why."""
        out = []
        for ex in self.exporters:
            if not ex.gpus:
                why = ex.error or "waiting for the first scrape…"
                out.append(f"{', '.join(ex.lanes)}'s host {ex.url_host} ({ex.url}): {why}")
        return out

    async def aclose(self) -> None:
        await self._http.aclose()
