"""Per-server stats from each server's Prometheus ``/metrics``, scraped about once a second.

Parsed with prometheus_client's maintained text parser. Names differ by server and by vLLM
version, so each figure has a list of candidate names (first found wins; each backend's
``metrics`` in ``quantlab/backends/`` holds its own) and a missing one is simply unknown,
never an error: vLLM ``vllm:kv_cache_usage_perc`` (older
``vllm:gpu_cache_usage_perc``), ``vllm:num_requests_running`` / ``_waiting``, the
``vllm:prompt_tokens_total`` / ``vllm:generation_tokens_total`` counters turned into rates
between scrapes, ``vllm:num_preemptions_total``; llama.cpp ``llamacpp:requests_processing``
/ ``requests_deferred`` / ``prompt_tokens_total`` / ``tokens_predicted_total``
(``--metrics`` / ``endpoint_metrics`` must be on, else the stats say so).

Cost: a realistic vLLM page is ~50 KB, ~430 samples, most of them histogram buckets, and
the maintained parser takes milliseconds over all of it (``benchmarks/metrics_parse_cost.py``).
So only the sample lines of the names wanted here go to the parser (a ``startswith`` filter,
C speed), and the parse runs off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from quantlab.backends import WITH_METRICS
from quantlab.client import tls_verify
from quantlab.records import Endpoint

_KINDS = WITH_METRICS  # vLLM first, then llama.cpp: first name found wins
KV = tuple(n for b in _KINDS for n in b.metrics.kv_cache)
RUNNING = tuple(n for b in _KINDS for n in b.metrics.running)
WAITING = tuple(n for b in _KINDS for n in b.metrics.waiting)
PROMPT_TOKENS = tuple(n for b in _KINDS for n in b.metrics.prompt_tokens)
GEN_TOKENS = tuple(n for b in _KINDS for n in b.metrics.generation_tokens)
PREEMPTIONS = tuple(n for b in _KINDS for n in b.metrics.preemptions)
_PREFIXES = tuple(b.metric_prefix for b in _KINDS)
WANTED = (*KV, *RUNNING, *WAITING, *PROMPT_TOKENS, *GEN_TOKENS, *PREEMPTIONS)
#: Sample lines of these names (with labels or without) are all that is parsed.
_LINE_PREFIXES = tuple(p for n in WANTED for p in (n + "{", n + " "))
#: Gauges that are ratios: averaged over label sets (data-parallel engines), not summed.
_RATIOS = frozenset(KV)


def wanted_lines(text: str) -> str:
    """The sample lines of the wanted metric names, nothing else (no comments, no buckets)."""
    return "\n".join(ln for ln in text.splitlines() if ln.startswith(_LINE_PREFIXES)) + "\n"


def parse_metrics(text: str, *, everything: bool = False) -> dict[str, float]:
    """Sample name -> value over label sets (e.g. several ``model_name``s or engines):
    counts summed, ratios averaged. Only the wanted names unless ``everything``; then
    ``_created`` timestamps and histogram buckets are still left out."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text if everything else wanted_lines(text)):
        for s in family.samples:
            if s.name.endswith(("_created", "_bucket")):
                continue
            sums[s.name] = sums.get(s.name, 0.0) + float(s.value)
            counts[s.name] = counts.get(s.name, 0) + 1
    return {n: (v / counts[n] if n in _RATIOS else v) for n, v in sums.items()}


def has_server_metrics(text: str) -> bool:
    """Whether a page is a vLLM or llama.cpp one at all (else: some other exporter)."""
    return any(p in text for p in _PREFIXES)


def _first(values: dict[str, float], names: Sequence[str]) -> float | None:
    for n in names:
        if n in values:
            return values[n]
    return None


def why_unreachable(exc: BaseException) -> str:
    """A person's words for a failed scrape."""
    if isinstance(exc, httpx.TimeoutException):
        return "unreachable: timed out"
    chain: list[BaseException] = []
    e: BaseException | None = exc  # the OS error sits a few causes down (anyio: "All connection…")
    while e is not None and len(chain) < 6:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(isinstance(c, ConnectionRefusedError) for c in chain):
        return "unreachable: connection refused"
    text = " ".join(str(c) for c in chain).lower()
    if "refused" in text:
        return "unreachable: connection refused"
    if "name or service" in text or "nodename" in text or "resolution" in text:
        return "unreachable: unknown host"
    return f"unreachable: {type(exc).__name__}"


@dataclass(slots=True)
class ServerStats:
    """One server's latest stats; ``error`` says why there are none."""

    lane: str
    kv_pct: float | None = None
    running: float | None = None
    waiting: float | None = None
    prompt_tps: float | None = None
    gen_tps: float | None = None
    preemptions: float | None = None
    error: str | None = None
    t: float = 0.0


class StatsTracker:
    """Turns successive scrapes of one server into stats (counters become rates)."""

    def __init__(self, lane: str) -> None:
        self.lane = lane
        self._prev: tuple[float, float | None, float | None] | None = None

    def update(self, values: dict[str, float], t: float, *, is_server: bool = True) -> ServerStats:
        """``values`` from :func:`parse_metrics`; ``is_server`` False when the page has no
        vLLM/llama.cpp metrics at all (another exporter on that port)."""
        kv = _first(values, KV)
        prompt = _first(values, PROMPT_TOKENS)
        gen = _first(values, GEN_TOKENS)
        stats = ServerStats(
            lane=self.lane,
            kv_pct=None if kv is None else kv * 100,
            running=_first(values, RUNNING),
            waiting=_first(values, WAITING),
            preemptions=_first(values, PREEMPTIONS),
            t=t,
        )
        if self._prev is not None:
            t0, p0, g0 = self._prev
            dt = t - t0
            if dt > 0:
                if prompt is not None and p0 is not None and prompt >= p0:
                    stats.prompt_tps = (prompt - p0) / dt
                if gen is not None and g0 is not None and gen >= g0:
                    stats.gen_tps = (gen - g0) / dt
        self._prev = (t, prompt, gen)
        if not is_server or not values:
            stats.error = "no vLLM or llama.cpp metrics on /metrics"
        return stats


class ServerStatsScraper:
    """Scrapes every endpoint's ``/metrics`` concurrently; ``poll()`` once a second."""

    def __init__(self, endpoints: Sequence[Endpoint], timeout: float = 2.0) -> None:
        self.endpoints = list(endpoints)
        self._http = httpx.AsyncClient(
            timeout=timeout, trust_env=False, verify=tls_verify(None, trust_env=False)
        )
        self._trackers = {ep.name: StatsTracker(ep.name) for ep in self.endpoints}
        self.latest: dict[str, ServerStats] = {}

    async def _one(self, ep: Endpoint) -> ServerStats:
        url = ep.base_url.rstrip("/")
        if url.endswith("/v1"):
            url = url[:-3]
        try:
            r = await self._http.get(url + "/metrics")
        except httpx.HTTPError as exc:
            return ServerStats(lane=ep.name, error=why_unreachable(exc))
        except RuntimeError as exc:  # the client was closed under us (shutting down)
            return ServerStats(lane=ep.name, error=f"not scraped: {exc}")
        if r.status_code == 404:
            return ServerStats(lane=ep.name, error="no /metrics on this server")
        if r.status_code == 501:  # llama.cpp started without --metrics
            return ServerStats(lane=ep.name, error="metrics disabled on this server")
        if r.status_code >= 400:
            return ServerStats(lane=ep.name, error=f"/metrics answered HTTP {r.status_code}")
        text, t = r.text, time.monotonic()
        try:
            values = await asyncio.to_thread(parse_metrics, text)
        except Exception as exc:  # whatever the parser makes of a broken page
            return ServerStats(lane=ep.name, error=f"unreadable /metrics: {exc}"[:120])
        return self._trackers[ep.name].update(values, t, is_server=has_server_metrics(text))

    async def poll(self) -> dict[str, ServerStats]:
        results = await asyncio.gather(*(self._one(ep) for ep in self.endpoints))
        self.latest = {s.lane: s for s in results}
        return self.latest

    async def aclose(self) -> None:
        await self._http.aclose()
