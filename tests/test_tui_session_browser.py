"""The session browser (Ctrl+O, and the palette): lists the sessions folder, narrows it by
prompt words, opens a session read-only in the Runner's table. Sessions written by a real
SessionStore; the app's lanes point at a port nobody answers (the chat stays idle)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from report_sessions import build_small, endpoints, exchange, result
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static

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
        # Nor the chat's keys: the chat is not in sight behind the opened session.
        assert not {"f2", "f3", "f7", "ctrl+n"} & set(active)
        assert not writer_holds(b)  # only read: no lock taken, nothing written
        await pilot.press("escape")
        await _wait(pilot, lambda: isinstance(app.screen, SessionBrowser))


DATE = r"\b\d{4}-\d\d-\d\d \d\d:\d\d  bf16"  # the whole date, then the lanes


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_the_prompt_column_fits_and_shows_the_matching_prompt(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    from quantlab.session import SessionStore

    path = build_small(tmp_path / "2026-12-02T05-10-05_b059d8.json", [(True, False)] * 2)
    store = SessionStore.open(path, durability="os")
    try:
        lanes = {lane: result(lane, "rust is red") for lane in store.session.lanes}
        long = "a haiku about rust and the slow patience of iron in the rain " * 3
        store.append_exchange(exchange("sanity", "h1", lanes, prompt=long))
    finally:
        store.close()
    eps = endpoints()
    for e in eps:
        e.base_url = "http://127.0.0.1:9"
    app = QuantlabApp(endpoints=eps, session_path=tmp_path / "current.json")
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+o")
        await _wait(pilot, lambda: isinstance(app.screen, SessionBrowser))
        browser = app.screen
        table = browser.query_one("#browse-table", DataTable)
        await pilot.pause()
        assert re.search(DATE, table.render_line(1).text)  # columns as wide as their cells
        await pilot.press(*"patience")
        await pilot.pause()
        assert table.row_count == 1
        labels = [c.label.plain for c in table.columns.values()]
        assert labels[:4] == ["date", "lanes", "exchanges", "matching prompt"]
        prompt = str(table.get_cell_at(Coordinate(0, 3)))
        assert prompt.startswith("a haiku about rust")  # the match, not the first prompt
        assert prompt.endswith("…") or prompt == long.strip()
        # The whole prompt column is on the screen, inside the box; so is the file name
        # where there is room for it beside a readable prompt.
        x = sum(c.get_render_width(table) for c in list(table.columns.values())[:4])
        assert table.region.x + x <= browser.query_one("Vertical").region.right
        header, row = table.render_line(0).text, table.render_line(1).text
        assert "matching prompt" in header
        assert re.search(DATE, row), row
        assert prompt in row
        assert (path.name in row) == (size[0] >= 120), row
        keys = browser.query_one("#browse-keys", Static)
        assert keys.region.height == 1 and "Esc closes" in str(keys.content)
        await pilot.press(*["backspace"] * len("patience"))
        await pilot.pause()
        assert [c.label.plain for c in table.columns.values()][3] == "prompt"
