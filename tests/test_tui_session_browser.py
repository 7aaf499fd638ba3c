"""The session browser (Ctrl+O, and the palette): lists the sessions folder, narrows it by
prompt words, opens a session read-only in the Runner's table. Sessions written by a real
SessionStore; the app's lanes point at a port nobody answers (the chat stays idle)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from report_sessions import build_small, endpoints, exchange, result
from textual.widgets import DataTable

from quantlab.session import writer_holds
from tui.app import QuantlabApp
from tui.widgets.common.session_browser import SessionBrowser, SessionViewer
from tui.widgets.runner.compare import CompareView
from tui.widgets.runner.runner_pane import RunnerPane


async def _wait(pilot: Any, cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await pilot.pause(0.05)


async def test_ctrl_o_lists_searches_and_opens_a_session_read_only(tmp_path: Path) -> None:
    build_small(tmp_path / "a.json", [(True, False)] * 3)
    b = build_small(tmp_path / "b.json", [(True, True)])
    from quantlab.session import SessionStore

    store = SessionStore.open(b, durability="os")  # a prompt only b holds
    try:
        lanes = {lane: result(lane, "rust is red") for lane in store.session.lanes}
        store.append_exchange(exchange("sanity", "h1", lanes, prompt="a haiku about rust"))
    finally:
        store.close()
    eps = endpoints()
    for e in eps:
        e.base_url = "http://127.0.0.1:9"
    app = QuantlabApp(endpoints=eps, session_path=tmp_path / "current.json")
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+o")
        await _wait(pilot, lambda: isinstance(app.screen, SessionBrowser))
        browser = app.screen
        assert isinstance(browser, SessionBrowser)
        assert sorted(s.path.name for s in browser.shown) == ["a.json", "b.json"]
        await pilot.press(*"HAIKU")
        await pilot.pause()
        assert [s.path.name for s in browser.shown] == ["b.json"]
        table = browser.query_one("#browse-table", DataTable)
        assert table.row_count == 1
        await pilot.press("enter", "enter")  # to the table, then open the row
        await _wait(pilot, lambda: isinstance(app.screen, SessionViewer))
        pane = app.screen.query_one(RunnerPane)
        await _wait(pilot, lambda: len(pane.exchanges) == 2)
        assert pane.read_only and not app.screen.query_one(CompareView).writable
        active = app.screen.active_bindings
        assert "a" not in active and "ctrl+r" not in active
        assert not writer_holds(b)  # only read: no lock taken, nothing written
        await pilot.press("escape")
        await _wait(pilot, lambda: isinstance(app.screen, SessionBrowser))
