"""Telemetry beyond one GPU: 8 fake GPUs held by two vLLM-shaped servers (TP 4 and TP 2,
real process trees whose workers are what NVML lists), one GPU lost part way through a
sweep, and the pane read at 80×24 (one line a GPU) and at 200×60 (graphs)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fake_nvml import FakeNvml, ServerTree, eight_gpu_rig, vllm_like_server

from quantlab.records import Endpoint
from quantlab.telemetry import nvml as nv
from quantlab.telemetry.processes import ProcessMapper, gpu_lanes
from quantlab.telemetry.sampler import GpuSampler
from tui.top import TopApp
from tui.widgets.telemetry.telemetry_pane import TelemetryPane, plan_layout

#: Ports only written on the fake servers' command lines; nothing listens on them.
TP4_PORT, TP2_PORT = 39_401, 39_402


@pytest.fixture
def servers() -> Iterator[tuple[ServerTree, ServerTree]]:
    with (
        vllm_like_server(TP4_PORT, 4) as tp4,
        vllm_like_server(TP2_PORT, 2) as tp2,
    ):
        yield tp4, tp2


@pytest.fixture
def rig(servers: tuple[ServerTree, ServerTree]) -> Iterator[FakeNvml]:
    tp4, tp2 = servers
    fake = eight_gpu_rig(tp4.workers, tp2.workers)
    nv.set_nvml(fake)
    yield fake
    nv.set_nvml(None)


def _endpoints(servers: tuple[ServerTree, ServerTree]) -> list[Endpoint]:
    """The TP 4 server found by its command line (``--port``), the TP 2 one by the pid
    quantlab started: both ways reach the workers through their parent chain."""
    _, tp2 = servers
    return [
        Endpoint("tp4", f"http://127.0.0.1:{TP4_PORT}"),
        Endpoint("tp2", f"http://127.0.0.1:{TP2_PORT}", pid=tp2.pid),
    ]


def test_workers_map_to_their_server_through_the_parent_chain(
    rig: FakeNvml, servers: tuple[ServerTree, ServerTree]
) -> None:
    s = GpuSampler()
    s.sample_once()
    snap = s.snapshot()
    mapper = ProcessMapper(_endpoints(servers))
    lane_of = {p.pid: mapper.lane_of(p.pid) for g in snap.gpus for p in g.processes}
    held = gpu_lanes([(g.index, [p.pid for p in g.processes]) for g in snap.gpus], lane_of)
    assert held == {
        0: ["tp4"],
        1: ["tp4"],
        2: ["tp4"],
        3: ["tp4"],
        4: ["tp2"],
        5: ["tp2"],
        6: [],
        7: [],
    }


def test_a_gpu_lost_mid_sweep_is_asked_nothing_more_and_the_others_go_on(
    rig: FakeNvml,
) -> None:
    s = GpuSampler()
    before = rig.calls_by_gpu[6]  # the card's limits, read once
    s.sample_once()
    lost_calls = rig.calls_by_gpu[6]
    assert lost_calls - before == 2  # utilization answered, memory said GPU_IS_LOST
    rig.gpus[7].util = 55
    s.sample_once()
    s.sample_once()
    snap = s.snapshot()
    g6, g7 = snap.gpus[6], snap.gpus[7]
    assert g6.lost and g6.errors["device"] == "GPU lost (fell off the bus)"
    assert g6.latest["util_pct"] is None  # half a sample is not shown as a sample
    assert rig.calls_by_gpu[6] == lost_calls
    assert g7.latest["util_pct"] == 55 and not g7.lost
    assert [g.lost for g in snap.gpus] == [False] * 6 + [True, False]


def test_layout_plan_prefers_graphs_then_one_line_a_gpu() -> None:
    assert plan_layout(60, 199, 8, 5, 12)[:2] == (2, 3)  # two columns of 3-row graphs
    assert plan_layout(22, 79, 8, 6, 10) == (1, 0, True)  # one line a GPU, table shrunk
    assert plan_layout(50, 159, 1, 6, 4) == (1, 4, False)  # one GPU: tall graphs


async def _settled(pilot: object, pane: TelemetryPane, width: int) -> str:
    """The pane's text once the servers' first scrape has said why they have no numbers
    (on a loaded machine that can take a while; the GPUs are drawn from the first tick)."""
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        await pilot.pause(0.3)  # type: ignore[attr-defined]
        text = pane.plain(width)
        if text.count("unreachable: connection refused") == 2:
            break
    return text


async def test_eight_gpus_in_80x24_one_line_each_with_their_lane(
    rig: FakeNvml, servers: tuple[ServerTree, ServerTree]
) -> None:
    app = TopApp(_endpoints(servers), hz=20)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(TelemetryPane)
        text = await _settled(pilot, pane, pane.scrollable_content_region.width)
        fits = pane.max_scroll_y == 0
    lines = text.splitlines()
    assert "8 × NVIDIA H100 80GB HBM3" in text
    start = lines.index("8 × NVIDIA H100 80GB HBM3") + 1
    rows = {ln.split()[0]: ln for ln in lines[start : start + 8]}
    assert sorted(rows) == [str(i) for i in range(8)]
    for i in range(4):
        assert rows[str(i)].split()[1] == "tp4" and f"{90 + i} %" in rows[str(i)]
    assert rows["4"].split()[1] == "tp2" and "30.3/80 GiB" in rows["4"]
    assert "GPU lost (fell off the bus)" in rows["6"]
    assert rows["7"].split()[1] == "–" and "70/700 W" in rows["7"]
    assert "GPU memory by lane: tp4 234.4 GiB · tp2 58.6 GiB" in text
    assert "unreachable: connection refused" in text  # the servers' stats say why not
    assert all(len(ln) <= 80 for ln in lines[: start + 8])
    assert fits  # everything in view: no scrolling to find a GPU


async def test_eight_gpus_in_200x60_keep_graphs_two_columns(
    rig: FakeNvml, servers: tuple[ServerTree, ServerTree]
) -> None:
    app = TopApp(_endpoints(servers), hz=20)
    async with app.run_test(size=(200, 60)) as pilot:
        pane = app.query_one(TelemetryPane)
        for util in (20, 95, 50, 80):
            rig.gpus[0].util = util
            seen = pane.sampler.samples
            while pane.sampler.samples < seen + 2:  # sampled, whatever the machine's load
                await pilot.pause(0.05)
        text = await _settled(pilot, pane, 200)
        fits = pane.max_scroll_y == 0
        rig.gpus[5].lost = True  # a GPU that held a worker falls off the bus
        seen = pane.sampler.samples
        while pane.sampler.samples < seen + 2:
            await pilot.pause(0.05)
        pane.refresh_view()
        after = pane.plain(200)
    assert "GPU 5 NVIDIA H100 80GB HBM3  GPU lost (fell off the bus)  was held by tp2" in after
    lines = text.splitlines()
    header = next(ln for ln in lines if ln.startswith("GPU 0 "))
    assert "▸ tp4" in header and "GPU 1 NVIDIA H100 80GB HBM3  ▸ tp4" in header  # side by side
    assert any("GPU 4 " in ln and "▸ tp2" in ln and "GPU 5 " in ln for ln in lines)
    lost = next(ln for ln in lines if "GPU 6 " in ln)
    assert "GPU lost (fell off the bus)" in lost
    util_rows = [ln for ln in lines if ln.startswith("util ")]
    above = lines[lines.index(util_rows[0]) - 1]
    assert any(c in above for c in "▁▂▃▄▅▆▇█")  # graphs taller than one row
    assert "peak 95 %" in text
    assert "GPU memory by lane: tp4 234.4 GiB · tp2 58.6 GiB" in text
    assert fits
