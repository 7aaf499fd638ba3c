"""Telemetry core on a fake NVML (several GPUs, processes, Not Supported, missing library,
a lost GPU), server stats from real llama.cpp /metrics and from vLLM-shaped text, process
attribution, and the trace points."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from fake_nvml import FakeGpu, FakeNvml, NVMLError_LibraryNotFound

from quantlab.records import Endpoint
from quantlab.telemetry import nvml as nv
from quantlab.telemetry.processes import ProcessMapper
from quantlab.telemetry.sampler import GpuSampler, throttle_words
from quantlab.telemetry.server_stats import (
    ServerStatsScraper,
    StatsTracker,
    parse_metrics,
)
from quantlab.telemetry.trace import TraceRecorder, trace_point


@pytest.fixture
def fake() -> Iterator[FakeNvml]:
    f = FakeNvml(
        [
            FakeGpu(processes=[(os.getpid(), 1024)]),
            FakeGpu(name="NVIDIA L4", unsupported={"power", "power_limit"}, reasons=0x4 | 0x20),
        ]
    )
    nv.set_nvml(f)
    yield f
    nv.set_nvml(None)


def test_several_gpus_latest_values_and_history(fake: FakeNvml) -> None:
    s = GpuSampler(hz=4)
    for util in (10, 20, 30):
        fake.gpus[0].util = util
        s.sample_once()
    snap = s.snapshot()
    assert snap.unavailable is None and snap.driver == "580.159" and len(snap.gpus) == 2
    g0, _ = snap.gpus
    assert g0.name == "NVIDIA H100 80GB HBM3" and g0.latest["util_pct"] == 30
    assert list(g0.history["util_pct"]) == [10, 20, 30]
    assert g0.latest["mem_used_mib"] == 20_000 and g0.mem_reserved_mib == 480
    assert g0.mem_source.startswith("v2") and g0.mem_total_mib == 81_559
    assert g0.latest["power_w"] == 250 and g0.power_limit_w == 700
    assert g0.throttle == ["idle"] and g0.processes[0].gpu_mem_mib == 1024


def test_not_supported_is_per_metric_and_asked_once(fake: FakeNvml) -> None:
    s = GpuSampler()
    s.sample_once()
    g1 = s.snapshot().gpus[1]
    assert g1.latest["power_w"] is None and g1.power_limit_w is None
    assert g1.errors["power_w"] == "n/a (not supported on this GPU)"
    assert g1.latest["util_pct"] == 35 and g1.throttle == ["power cap", "thermal (sw)"]
    calls = fake.calls
    s.sample_once()
    per_sweep = fake.calls - calls
    s.sample_once()
    assert fake.calls - calls == 2 * per_sweep  # the unsupported getters are not retried


def test_a_gpu_lost_mid_run_is_marked_and_the_others_go_on(fake: FakeNvml) -> None:
    s = GpuSampler()
    s.sample_once()
    fake.gpus[0].lost = True
    fake.gpus[1].util = 77
    s.sample_once()
    g0, g1 = s.snapshot().gpus
    assert g0.lost and "fell off the bus" in g0.errors["device"]
    assert g1.latest["util_pct"] == 77


def test_missing_library_is_a_reason_not_a_crash() -> None:
    nv.set_nvml(FakeNvml(init_error=NVMLError_LibraryNotFound))
    try:
        s = GpuSampler().start()
        snap = s.snapshot()
        s.stop()
    finally:
        nv.set_nvml(None)
    assert snap.gpus == [] and "NVML library not found" in (snap.unavailable or "")


def test_sampler_thread_samples_at_its_rate(fake: FakeNvml) -> None:
    s = GpuSampler(hz=20).start()
    time.sleep(0.5)
    s.stop()
    assert 5 <= s.samples <= 15


def test_throttle_words() -> None:
    assert throttle_words(0) == []
    assert throttle_words(0x4 | 0x40) == ["power cap", "thermal (hw)"]


def test_processes_map_to_the_lane_that_started_them() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        eps = [
            Endpoint("bf16", "http://127.0.0.1:8000", pid=os.getpid()),
            Endpoint("awq", "http://127.0.0.1:8001"),
        ]
        mapper = ProcessMapper(eps)
        assert mapper.lane_of(child.pid) == "bf16"  # a child of the started pid
        assert mapper.lane_of(1) == "other"
    finally:
        child.kill()
        child.wait()


def test_processes_map_by_command_line_port() -> None:
    cmd = "import time; time.sleep(30)  # vllm serve model --port 8001"
    child = subprocess.Popen([sys.executable, "-c", cmd, "vllm", "serve", "m", "--port", "8001"])
    try:
        eps = [Endpoint("bf16", "http://h:8000"), Endpoint("awq", "http://h:8001")]
        assert ProcessMapper(eps).lane_of(child.pid) == "awq"
    finally:
        child.kill()
        child.wait()


VLLM_NEW = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen"} 1.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.25
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{engine="0",model_name="qwen"} 2.0
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{engine="0",model_name="qwen"} PROMPT
vllm:prompt_tokens_created{engine="0",model_name="qwen"} 1.7e9
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="qwen"} GEN
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="qwen"} 0.0
vllm:time_to_first_token_seconds_count{model_name="qwen"} 5.0
"""
VLLM_OLD = """# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.5
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 0.0
"""


def test_vllm_metrics_new_names_and_counter_rates() -> None:
    tr = StatsTracker("awq")
    first = tr.update(parse_metrics(VLLM_NEW.replace("PROMPT", "100").replace("GEN", "50")), 10.0)
    assert first.kv_pct == 25 and first.running == 3 and first.waiting == 1
    assert first.preemptions == 2 and first.gen_tps is None and first.error is None
    second = tr.update(parse_metrics(VLLM_NEW.replace("PROMPT", "300").replace("GEN", "250")), 12.0)
    assert second.prompt_tps == 100 and second.gen_tps == 100


def test_vllm_metrics_old_names() -> None:
    s = StatsTracker("bf16").update(parse_metrics(VLLM_OLD), 1.0)
    assert s.kv_pct == 50 and s.running == 0 and s.waiting is None


def test_a_page_without_server_metrics_says_so() -> None:
    s = StatsTracker("x").update(parse_metrics("# TYPE up gauge\nup 1\n"), 1.0)
    assert s.error and "no vLLM or llama.cpp metrics" in s.error


async def test_real_llamacpp_metrics_of_the_local_pair(local_pair: list[Endpoint]) -> None:
    scraper = ServerStatsScraper(local_pair)
    try:
        await scraper.poll()
        body = {
            "messages": [{"role": "user", "content": "Count to five."}],
            "max_tokens": 16,
            "temperature": 0,
        }
        async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
            await http.post(local_pair[1].base_url + "/v1/chat/completions", json=body)
        time.sleep(0.05)
        stats = await scraper.poll()
    finally:
        await scraper.aclose()
    q4 = stats["q4_0"]
    assert q4.error is None and q4.running is not None and q4.waiting is not None
    assert q4.gen_tps is not None and q4.gen_tps > 0


async def test_a_down_server_is_a_reason() -> None:
    scraper = ServerStatsScraper([Endpoint("gone", "http://127.0.0.1:9")])
    try:
        stats = await scraper.poll()
    finally:
        await scraper.aclose()
    assert stats["gone"].error == "unreachable: connection refused"


def test_trace_points_are_small_and_batched(fake: FakeNvml) -> None:
    s = GpuSampler()
    s.sample_once()
    p = trace_point(s.snapshot(), lanes_of={os.getpid(): "bf16"})
    g0 = p["gpus"][0]
    assert g0["mem_used_mib"] == 20_000 and g0["power_w"] == 250 and g0["procs"] == {"bf16": 1024}
    rec = TraceRecorder(every_s=0.0, batch=3)
    out = [rec.offer(lambda: {"t": 1}) for _ in range(3)]
    assert out[:2] == [None, None] and out[2] == [{"t": 1}] * 3


def test_trace_writer_fills_a_session_during_a_headless_run(fake: FakeNvml, tmp_path) -> None:
    from quantlab.session import SessionStore, load_session
    from quantlab.telemetry.trace import TraceWriter

    store = SessionStore.open(tmp_path / "s.json")
    writer = TraceWriter(store.add_telemetry, [], every_s=0.05).start()
    time.sleep(0.5)
    writer.stop()
    store.close()
    trace = load_session(tmp_path / "s.json").telemetry
    assert len(trace) >= 4 and writer.error is None
    assert trace[-1]["gpus"][1]["power_w"] is None  # the L4's power is Not Supported
    assert trace[-1]["gpus"][0]["procs"] == {"other": 1024.0} and "host" in trace[-1]


def test_readings_beyond_the_cards_own_limits_are_flagged() -> None:
    gpu = FakeGpu(power_mw=900_000, temp=93, sm_mhz=2600, used_mib=90_000)
    nv.set_nvml(FakeNvml([gpu, FakeGpu()]))
    try:
        s = GpuSampler()
        s.sample_once()
        odd, fine = s.snapshot().gpus
    finally:
        nv.set_nvml(None)
    words = " | ".join(odd.warnings)
    assert "power 900 W reads above the card's limit 700 W" in words
    assert "93 °C: at the card's slowdown temperature (90 °C)" in words
    assert "SM clock 2600 MHz reads above the card's maximum 1980 MHz" in words
    assert "memory used 90000 MiB reads above the total 81559 MiB" in words
    assert odd.latest["power_w"] == 900  # shown as read, only flagged
    assert fine.warnings == [] and fine.temp_slowdown_c == 90


def test_gpm_activity_on_the_slow_path_and_quiet_without_it() -> None:
    hopper = FakeGpu(gpm={"sm_active": 42.5, "tensor_active": 30.0, "dram_bw": 12.0})
    fake = FakeNvml([hopper, FakeGpu(name="NVIDIA L4")])
    nv.set_nvml(fake)
    try:
        s = GpuSampler()
        s.sample_once()
        s.slow_once()  # first GPM sample: nothing to compare with yet
        assert s.snapshot().gpus[0].gpm == {}
        s.slow_once()  # within the second: not sampled again
        import quantlab.telemetry.sampler as sampler_mod

        s._gpus[0].gpm.last -= sampler_mod.GPM_EVERY_S  # type: ignore[union-attr]
        s.slow_once()
        s.sample_once()
        g0, g1 = s.snapshot().gpus
        assert g0.gpm == {"sm_active": 42.5, "tensor_active": 30.0, "dram_bw": 12.0}
        assert g0.latest["sm_active_pct"] == 42.5
        assert g1.gpm == {} and g1.latest["sm_active_pct"] is None and not g1.errors
        fake.gpus[0].lost = True  # GPM failing takes the GPU's GPM away, nothing else
        s._gpus[0].gpm.last -= sampler_mod.GPM_EVERY_S  # type: ignore[union-attr]
        s.slow_once()
        assert s.snapshot().gpus[0].lost and s.snapshot().gpus[0].gpm == {}
        s.stop()
        assert fake.gpm_freed == 2
    finally:
        nv.set_nvml(None)


@pytest.mark.parametrize("version", ["v0.6", "v0.10", "v0.12"])
def test_realistic_vllm_pages_old_and_new_names(version: str) -> None:
    from vllm_metrics_page import vllm_metrics_page

    tr = StatsTracker("awq")
    page = vllm_metrics_page(version, running=5, waiting=2, kv_usage=0.375, preemptions=4)
    first = tr.update(parse_metrics(page), 10.0)
    assert first.error is None and first.kv_pct == 37.5
    assert (first.running, first.waiting, first.preemptions) == (5, 2, 4)
    later = vllm_metrics_page(version, prompt_tokens=12_000 + 2_000, generation_tokens=48_000 + 500)
    second = tr.update(parse_metrics(later), 12.0)
    assert second.prompt_tps == 1_000 and second.gen_tps == 250


def test_only_wanted_lines_reach_the_parser_and_agree_with_a_full_parse() -> None:
    from vllm_metrics_page import vllm_metrics_page

    page = vllm_metrics_page("v0.10")
    kept = [ln for ln in parse_metrics.__globals__["wanted_lines"](page).splitlines() if ln]
    assert 5 <= len(kept) <= 12 and not any("_bucket" in ln for ln in kept)
    full = parse_metrics(page, everything=True)
    assert {k: full[k] for k in parse_metrics(page)} == parse_metrics(page)


def test_kv_usage_of_several_engines_is_averaged_and_counts_summed() -> None:
    page = "\n".join(
        [
            'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2',
            'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6',
            'vllm:num_requests_running{engine="0",model_name="m"} 3.0',
            'vllm:num_requests_running{engine="1",model_name="m"} 4.0',
        ]
    )
    s = StatsTracker("dp").update(parse_metrics(page), 1.0)
    assert s.kv_pct == pytest.approx(40.0) and s.running == 7


async def test_scraping_the_vllm_standin_gives_rates_from_its_counters() -> None:
    from standin import Reply, StandIn

    with StandIn(Reply(tokens=["a"] * 40)) as server:
        scraper = ServerStatsScraper([Endpoint("awq", server.url)])
        try:
            first = (await scraper.poll())["awq"]
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            async with httpx.AsyncClient(trust_env=False) as http:
                await http.post(server.url + "/v1/chat/completions", json=body)
            second = (await scraper.poll())["awq"]
        finally:
            await scraper.aclose()
    assert first.error is None and first.running == 0 and first.gen_tps is None
    assert second.gen_tps is not None and second.gen_tps > 0


async def test_llamacpp_with_metrics_off_says_so() -> None:
    """The status and body a real llama.cpp server (xllamacpp, ``endpoint_metrics`` off)
    answered here, replayed."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = (
        b'{"error":{"code":501,"message":"This server does not support metrics endpoint. '
        b'Start it with `--metrics`","type":"not_supported_error"}}'
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(501)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    scraper = ServerStatsScraper([Endpoint("q4", f"http://127.0.0.1:{httpd.server_port}/v1")])
    try:
        stats = await scraper.poll()
    finally:
        await scraper.aclose()
        httpd.shutdown()
    assert stats["q4"].error == "metrics disabled on this server"


def test_gpm_values_that_are_not_numbers_are_left_out() -> None:
    """An idle H100 answered NaN for DRAM bandwidth: it must not reach the screen or JSON."""
    nv.set_nvml(FakeNvml([FakeGpu(gpm={"sm_active": 0.0, "dram_bw": float("nan")})]))
    try:
        s = GpuSampler()
        s.slow_once()
        s._gpus[0].gpm.last = 0.0  # type: ignore[union-attr]
        s.slow_once()
        assert s.snapshot().gpus[0].gpm == {"sm_active": 0.0}
    finally:
        nv.set_nvml(None)


def test_host_sampler_samples_in_its_own_thread() -> None:
    """Started, the host sampler reads /proc in a thread and ``latest`` only returns what
    it read (no I/O on the caller's event loop); stopped, the thread is gone."""
    import threading
    import time

    from quantlab.telemetry.host import HostSampler

    host = HostSampler()
    assert host.latest().cores >= 1  # not started: a fresh sample
    host.start(0.01)
    try:
        first = host.latest()
        assert any(t.name == "quantlab-host" for t in threading.enumerate())
        deadline = time.monotonic() + 5
        while host.latest() is first:
            assert time.monotonic() < deadline, "no new sample from the thread"
            time.sleep(0.01)
        got = host.latest()
        assert got.ram_total_gib > 0 and 0 <= got.cpu_pct <= 100
        assert host.latest() is host.latest()  # a read, not a new sample
    finally:
        host.stop()
    assert not any(t.name == "quantlab-host" for t in threading.enumerate())
