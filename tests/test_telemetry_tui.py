"""Pilot tests of the telemetry pane, read as a person reads it: a fake NVML with two
GPUs (one with Not Supported power), processes attributed to lanes, a lost GPU, no NVML,
and the trace written into the session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_nvml import FakeGpu, FakeNvml, NVMLError_LibraryNotFound

from quantlab.records import Endpoint
from quantlab.session import SessionStore, load_session
from quantlab.telemetry import nvml as nv
from tui.top import TopApp
from tui.widgets.telemetry.telemetry_pane import TelemetryPane


@pytest.fixture(autouse=True)
def _reset_nvml() -> object:
    yield
    nv.set_nvml(None)


async def _settle(pilot: object, pane: TelemetryPane, seconds: float = 0.6) -> str:
    await pilot.pause(seconds)  # type: ignore[attr-defined]
    return pane.plain(140)


async def test_two_gpus_processes_and_not_supported() -> None:
    fake = FakeNvml(
        [
            FakeGpu(processes=[(os.getpid(), 3000)], reasons=0x4),
            FakeGpu(name="NVIDIA L4", unsupported={"power", "power_limit"}, total_mib=23_034),
        ]
    )
    nv.set_nvml(fake)
    eps = [Endpoint("bf16", "http://127.0.0.1:9", pid=os.getpid())]
    app = TopApp(eps, hz=20)
    async with app.run_test(size=(140, 45)) as pilot:
        pane = app.query_one(TelemetryPane)
        text = await _settle(pilot, pane)
    assert "GPU 0" in text and "NVIDIA H100 80GB HBM3" in text and "NVIDIA L4" in text
    assert "19.5/80 GiB" in text and "250/700 W" in text
    assert "clock limits: power cap" in text
    assert "n/a (not supported on this GPU)" in text  # the L4's power, said per metric
    assert f"{os.getpid()}" in text and "2.9 GiB" in text
    assert "GPU memory by lane: bf16 2.9 GiB" in text
    assert "bf16    unreachable: connection refused" in text  # why the numbers are missing
    assert "host  CPU" in text


async def test_a_lost_gpu_is_said_and_the_rest_goes_on() -> None:
    fake = FakeNvml([FakeGpu(), FakeGpu(name="NVIDIA A10G")])
    nv.set_nvml(fake)
    app = TopApp([], hz=20)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(TelemetryPane)
        await _settle(pilot, pane, 0.3)
        fake.gpus[0].lost = True
        fake.gpus[1].util = 88
        text = await _settle(pilot, pane, 0.4)
    assert "GPU lost (fell off the bus)" in text
    assert "88 %" in text


async def test_no_nvml_library_is_one_clear_line() -> None:
    nv.set_nvml(FakeNvml(init_error=NVMLError_LibraryNotFound))
    app = TopApp([], hz=10)
    async with app.run_test(size=(100, 30)) as pilot:
        text = await _settle(pilot, app.query_one(TelemetryPane), 0.3)
    assert "no GPU telemetry: NVML library not found" in text and "host  CPU" in text


async def test_trace_goes_into_the_session(tmp_path: Path) -> None:
    nv.set_nvml(FakeNvml([FakeGpu()]))
    store = SessionStore.open(tmp_path / "s.json")
    pane = TelemetryPane([], hz=20, store=store)
    pane.trace.every_s = 0.05
    pane.trace.batch = 2

    from textual.app import App, ComposeResult

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield pane

    async with Host().run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.6)
    store.close()
    trace = load_session(tmp_path / "s.json").telemetry
    assert len(trace) >= 2
    assert trace[0]["gpus"][0]["mem_used_mib"] == 20_000 and "host" in trace[0]


async def test_lanes_side_by_side_gpm_and_tall_graphs_with_peaks() -> None:
    """Two servers on one Hopper GPU: each process under its lane, memory by lane in one
    line, GPM's SM activity in the header, and with room the graphs grow taller with the
    peak and the mean beside them."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        fake = FakeNvml(
            [
                FakeGpu(
                    processes=[(os.getpid(), 30_000), (sleeper.pid, 12_500), (1, 500)],
                    gpm={"sm_active": 41.0, "tensor_active": 28.0, "dram_bw": 55.0},
                )
            ]
        )
        nv.set_nvml(fake)
        eps = [
            Endpoint("bf16", "http://127.0.0.1:9", pid=os.getpid()),
            Endpoint("awq", "http://127.0.0.1:8", pid=sleeper.pid),
        ]
        app = TopApp(eps, hz=20)
        async with app.run_test(size=(160, 50)) as pilot:
            pane = app.query_one(TelemetryPane)
            for util in (20, 90, 50, 60, 40):
                fake.gpus[0].util = util
                await pilot.pause(0.15)
            pane.sampler._gpus[0].gpm.last = 0  # type: ignore[union-attr]
            await pilot.pause(1.2)
            text = pane.plain(160)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert "GPU memory by lane: bf16 29.3 GiB · awq 12.2 GiB · other 0.5 GiB" in text
    assert "SM active 41 % · tensor 28 %" in text
    assert "peak 90 %" in text and "avg" in text
    lines = text.splitlines()
    util_row = next(i for i, ln in enumerate(lines) if ln.startswith("util "))
    above = lines[util_row - 1]
    assert any("peak 90 %" in ln for ln in lines[1:util_row])
    assert any(c in above for c in "▁▂▃▄▅▆▇█")  # the graph is taller than one row


async def test_many_gpus_in_little_room_take_one_line_each() -> None:
    nv.set_nvml(FakeNvml([FakeGpu(util=10 * i, name="NVIDIA H200") for i in range(8)]))
    app = TopApp([], hz=20)
    async with app.run_test(size=(100, 24)) as pilot:
        text = await _settle(pilot, app.query_one(TelemetryPane), 0.4)
    assert "8 × NVIDIA H200" in text  # the shared name said once, above the lines
    rows = [ln for ln in text.splitlines() if ln[:2].strip().isdigit() and "GiB" in ln]
    assert len(rows) == 8 and "70 %" in rows[7] and "19.5/80 GiB" in rows[7]


async def test_a_hidden_pane_asks_no_layout_and_is_current_when_shown() -> None:
    """Behind the Chat tab the pane keeps sampling (the trace) but does not update its
    sections: each update asks for a layout of the whole screen, which the streaming chat
    pays for. Shown again, it draws the latest sample at once."""
    from textual.widgets import Static

    from tui.app import QuantlabApp
    from tui.theme import load_app_themes

    nv.set_nvml(FakeNvml([FakeGpu()]))
    eps = [Endpoint("bf16", "http://127.0.0.1:9")]
    app = QuantlabApp(endpoints=eps, themes=load_app_themes(None), telemetry_hz=20)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.5)
        pane = app.query_one(TelemetryPane)
        assert app.active_tab == "tab-chat" and not pane.is_on_screen
        gpus = pane.query_one("#tele-gpus", Static)
        before = pane.last
        await pilot.pause(0.3)
        assert pane.last is not before  # still sampling
        assert "tele-gpus" in pane._stale
        assert gpus.content is not pane._shown["tele-gpus"]
        await pilot.press("f6")
        await pilot.pause(0.2)
        assert app.active_tab == "tab-telemetry" and pane.is_on_screen
        assert not pane._stale
        assert gpus.content is pane._shown["tele-gpus"]
        assert "NVIDIA H100" in pane.plain(100)
