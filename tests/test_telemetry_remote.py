"""Remote GPUs from a dcgm-exporter page served on loopback: parsing the default counters,
the scraper's per-metric reasons (a field missing, DCGM's blank value, the exporter
unreachable or not an exporter at all), the endpoint's ``dcgm_url`` in quantlab.toml, and
the pane showing them beside the local GPUs, labelled by host."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from dcgm_exporter_page import ExporterGpu, ExporterPage, serve_exporter
from fake_nvml import FakeGpu, FakeNvml

from quantlab.config import ConfigError, load_config
from quantlab.records import Endpoint
from quantlab.telemetry import nvml as nv
from quantlab.telemetry.dcgm import BLANK_REASON, DcgmScraper, parse_dcgm
from tui.top import TopApp
from tui.widgets.telemetry.telemetry_pane import TelemetryPane


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_default_counters_page_parses_per_gpu_with_its_labels() -> None:
    page = ExporterPage(gpus=[ExporterGpu(util=87), ExporterGpu(util=12, mem_temp=58)])
    gpus = parse_dcgm(page.text())
    assert [g.index for g in gpus] == [0, 1]
    g0, g1 = gpus
    assert g0.hostname == "gpu-node-7" and g0.model == "NVIDIA H100 80GB HBM3"
    assert g0.uuid is not None and g0.uuid.startswith("GPU-") and g0.uuid != g1.uuid
    assert g0.values["DCGM_FI_DEV_GPU_UTIL"] == 87 and g1.values["DCGM_FI_DEV_GPU_UTIL"] == 12
    assert g0.values["DCGM_FI_DEV_POWER_USAGE"] == pytest.approx(612.345)
    assert g0.values["DCGM_FI_DEV_FB_USED"] + g0.values["DCGM_FI_DEV_FB_FREE"] == 81_043
    assert "DCGM_FI_DEV_MEMORY_TEMP" not in g0.values  # the wanted fields only


async def test_scraper_reads_each_gpu_and_says_why_per_metric() -> None:
    page = ExporterPage(without={"DCGM_FI_DEV_POWER_USAGE"})
    page.gpus[2].sm_mhz = 1410
    with serve_exporter(page) as (url, _):
        scraper = DcgmScraper([Endpoint("awq", "http://gpu-node-7:8000", dcgm_url=url)], timeout=20)
        try:
            await scraper.poll()
            page.gpus[0].util = 40
            await scraper.poll()
            gpus = scraper.gpus()
        finally:
            await scraper.aclose()
    assert len(gpus) == 4 and all(lanes == ["awq"] for _, lanes in gpus)
    g0 = gpus[0][0]
    assert g0.host == "gpu-node-7" and g0.name == "NVIDIA H100 80GB HBM3"
    assert g0.latest["util_pct"] == 40 and list(g0.history["util_pct"]) == [87, 40]
    assert g0.latest["mem_used_mib"] == 61_440 and g0.mem_total_mib == 81_043
    assert g0.latest["temp_c"] == 63 and gpus[2][0].latest["sm_mhz"] == 1410
    assert g0.latest["power_w"] is None
    assert g0.errors["power_w"] == "not on the exporter's page (DCGM_FI_DEV_POWER_USAGE)"
    assert "util_pct" not in g0.errors and "unreachable" not in g0.errors


async def test_dcgm_blank_values_are_a_reason_not_a_reading() -> None:
    page = ExporterPage(gpus=[ExporterGpu()])
    text = page.text().replace("} 63\n", "} 9223372036854775794\n")  # GPU_TEMP: blank
    assert text.count("9223372036854775794") == 2  # and MEMORY_TEMP, as the card has none
    with serve_exporter(page) as (url, httpd):
        httpd.page.text = lambda: text  # type: ignore[attr-defined,method-assign]
        scraper = DcgmScraper([Endpoint("awq", "http://h:1", dcgm_url=url)], timeout=20)
        try:
            await scraper.poll()
            ((g, _),) = scraper.gpus()
        finally:
            await scraper.aclose()
    assert g.latest["temp_c"] is None and g.errors["temp_c"] == BLANK_REASON


async def test_an_unreachable_exporter_keeps_its_gpus_listed_with_the_reason() -> None:
    gone = f"http://127.0.0.1:{_closed_port()}/metrics"
    page = ExporterPage(gpus=[ExporterGpu(), ExporterGpu()])
    with serve_exporter(page) as (url, httpd):
        eps = [
            Endpoint("awq", "http://a:1", dcgm_url=url),
            Endpoint("gptq", "http://b:1", dcgm_url=gone),
        ]
        scraper = DcgmScraper(eps, timeout=20)
        try:
            await scraper.poll()
            first_problems = scraper.problems()
            httpd.shutdown()
            httpd.server_close()
            await scraper.poll()
            gpus = scraper.gpus()
        finally:
            await scraper.aclose()
    assert first_problems == [f"gptq's host 127.0.0.1 ({gone}): unreachable: connection refused"]
    assert len(gpus) == 2
    g0 = gpus[0][0]
    assert g0.errors["unreachable"] == "unreachable: connection refused"
    assert g0.latest["util_pct"] is None and g0.errors["util_pct"].startswith("unreachable")


async def test_a_page_that_is_not_an_exporter_says_so() -> None:
    from vllm_metrics_page import vllm_metrics_page

    page = ExporterPage()
    with serve_exporter(page) as (url, httpd):
        httpd.page.text = lambda: vllm_metrics_page("v0.10")  # type: ignore[attr-defined,method-assign]
        scraper = DcgmScraper([Endpoint("awq", "http://a:1", dcgm_url=url)], timeout=20)
        try:
            await scraper.poll()
        finally:
            await scraper.aclose()
    (line,) = scraper.problems()
    assert "no DCGM_FI_* metrics on that page (is it a dcgm-exporter?)" in line


def test_dcgm_url_in_quantlab_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "quantlab.toml"
    cfg.write_text(
        '[[endpoints]]\nname = "bf16"\nurl = "http://127.0.0.1:8000"\n'
        '[[endpoints]]\nname = "awq"\nurl = "http://10.0.0.7:8001"\n'
        'dcgm_url = "http://10.0.0.7:9400"\n'
    )
    bf16, awq = load_config(cfg).endpoints
    assert bf16.dcgm_url is None and awq.dcgm_url == "http://10.0.0.7:9400/metrics"
    cfg.write_text(
        '[[endpoints]]\nname = "awq"\nurl = "http://10.0.0.7:8001"\ndcgm_url = "10.0.0.7:9400"\n'
    )
    with pytest.raises(ConfigError, match=r"dcgm_url: '10.0.0.7:9400' is not an http:// or"):
        load_config(cfg)


async def _once_scraped(pilot: object, pane: TelemetryPane, width: int) -> str:
    """The pane's text once the exporter has answered and both exporters have a reason (a
    loaded machine may make one scrape time out: the next one, a second later, counts)."""
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        await pilot.pause(0.5)  # type: ignore[attr-defined]
        text = pane.plain(width)
        if "gpu-node-7" in text and "connection refused" in text:
            break
    return text


async def test_remote_gpus_beside_local_ones_labelled_by_host() -> None:
    nv.set_nvml(FakeNvml([FakeGpu(), FakeGpu()]))
    page = ExporterPage(without={"DCGM_FI_DEV_POWER_USAGE"})
    gone = f"http://127.0.0.1:{_closed_port()}/metrics"
    try:
        with serve_exporter(page) as (url, _):
            eps = [
                Endpoint("bf16", "http://127.0.0.1:9"),
                Endpoint("awq", "http://127.0.0.1:9", dcgm_url=url),
                Endpoint("gptq", "http://127.0.0.1:9", dcgm_url=gone),
            ]
            app = TopApp(eps, hz=10)
            async with app.run_test(size=(160, 50)) as pilot:
                wide = await _once_scraped(pilot, app.query_one(TelemetryPane), 160)
            app = TopApp(eps, hz=10)
            async with app.run_test(size=(80, 24)) as pilot:
                pane = app.query_one(TelemetryPane)
                narrow = await _once_scraped(pilot, pane, pane.scrollable_content_region.width)
    finally:
        nv.set_nvml(None)
    assert "local GPU 0 NVIDIA H100 80GB HBM3" in wide  # the local ones first
    assert "gpu-node-7 GPU 3 NVIDIA H100 80GB HBM3  ▸ ~awq" in wide
    assert "not on the exporter's page (DCGM_FI_DEV_POWER_USAGE)" in wide
    assert f"gptq's host 127.0.0.1 ({gone}): unreachable: connection refused" in wide
    assert "graphs: last 2 min" in wide
    rows = [ln for ln in narrow.splitlines() if ln.startswith("gpu-node-7:")]
    assert len(rows) == 4 and all("~awq" in r and "60.0/79 GiB" in r for r in rows)
    assert sum(ln.startswith(("local:0 ", "local:1 ")) for ln in narrow.splitlines()) == 2


def test_the_line_parser_agrees_with_prometheus_client() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from quantlab.telemetry.dcgm import samples, wanted_lines

    page = ExporterPage(gpus=[ExporterGpu(util=i * 9) for i in range(8)]).text()
    page += 'DCGM_FI_DEV_GPU_UTIL{gpu="9",UUID="GPU-x",modelName="A \\"quoted\\" \\\\ name"} 5\n'
    ours = list(samples(page))
    theirs = [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(wanted_lines(page))
        for s in family.samples
    ]
    assert len(ours) == 8 * 7 + 1 and ours == theirs
    assert ours[-1][1]["modelName"] == 'A "quoted" \\ name'
