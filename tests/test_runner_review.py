"""Issue 12.6 and the word diff: a reopened session's suite exchanges are reviewed in the
Runner (table + compare view), a followed session ends with its real exchange count and
offers Annotate only once its writer has let go; ``w`` shows a candidate's words against
the reference's. Sessions are written by a real SessionStore."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from report_sessions import CAND, REF, endpoints, exchange, fail, result
from textual.app import App, ComposeResult
from textual.content import Content
from textual.widgets import DataTable, Static

from quantlab.records import Exchange, SamplingParams
from quantlab.session import SessionStore, writer_holds
from tui.follow import FollowApp
from tui.widgets.common.app_bar import AppBar
from tui.widgets.runner.compare import CompareView, diff_content
from tui.widgets.runner.runner_pane import RunnerPane


class PaneApp(App[None]):
    def __init__(self, pane: RunnerPane) -> None:
        super().__init__()
        self.pane = pane

    def compose(self) -> ComposeResult:
        yield self.pane


def _suite_exchanges() -> list[Exchange]:
    return [
        exchange(
            "sanity",
            "k0",
            {
                REF: result(REF, "The answer is 42."),
                CAND: result(
                    CAND, "The answer is 41.", findings=[fail("expected_answer", CAND, "42")]
                ),
            },
        ),
        exchange("sanity", "k1", {REF: result(REF, "yes"), CAND: result(CAND, "yes")}, at=1),
    ]


def _chat_exchange() -> Exchange:
    ex = Exchange(prompt="hello", params=SamplingParams(), source="chat")
    ex.results = {REF: result(REF, "hi"), CAND: result(CAND, "hi")}
    return ex


def _write_session(path: Path) -> Path:
    store = SessionStore.open(path, endpoints=endpoints(), durability="os")
    try:
        store.append_exchange(_chat_exchange())
        for ex in _suite_exchanges():
            store.append_exchange(ex)
    finally:
        store.close()
    return path


async def _wait(pilot: Any, cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await pilot.pause(0.05)


def _bodies(view: CompareView) -> list[Content]:
    return [body.visual for _head, body in view._lane_widgets]  # type: ignore[attr-defined]


async def test_a_reopened_session_lists_its_suite_exchanges_and_compares_them(
    tmp_path: Path,
) -> None:
    store = SessionStore.open(_write_session(tmp_path / "s.json"), durability="os")
    try:
        app = PaneApp(RunnerPane(store.session.endpoints, store=store))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            table = app.query_one("#runner-table", DataTable)
            assert table.row_count == 4  # two suite exchanges x two lanes; the chat is left out
            rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
            assert rows[1][:2] == ["sanity/k0", CAND]
            assert "expected_answer" in rows[1][3]
            status = str(app.query_one("#runner-status", Static).render())
            assert "2 suite exchanges" in status
            table.focus()
            table.move_cursor(row=1)
            await pilot.pause()
            view = app.query_one(CompareView)
            assert view.exchange is not None and view.exchange.case_id == "k0"
            assert view.reference == REF
            assert [f.detector for f in view._findings] == ["expected_answer"]
            await pilot.press("w")  # word diff: candidate against the reference
            await pilot.pause()
            assert view.word_diff
            cand_body = _bodies(view)[1]
            assert cand_body.plain == "The answer is 4241."
            styles = {cand_body.plain[s.start : s.end]: str(s.style) for s in cand_body.spans}
            assert "strike" in styles["42"] and "underline" in styles["41"]
            await pilot.press("w")
            await pilot.pause()
            assert not view.word_diff
            assert _bodies(view)[1].plain == "The answer is 41."
    finally:
        store.close()


def test_the_diff_shows_controls_and_markup_as_text() -> None:
    c = diff_content("ok [b]x[/b]", "ok [b]y[/b] \x1b]52;c;aGk=\x07")
    assert c.plain.startswith("ok [b]xy[/b] ") and "\\x1b" in c.plain and "\x1b" not in c.plain
    assert all(str(s.style).startswith("$text-") for s in c.spans)


async def test_follow_ends_with_the_count_and_offers_annotate_once_the_writer_let_go(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.json"
    writer = SessionStore.open(path, endpoints=endpoints(), durability="os")
    closed = False
    try:
        for ex in _suite_exchanges():
            writer.append_exchange(ex)
        assert writer_holds(path)
        app = FollowApp(path)
        async with app.run_test(size=(120, 36)) as pilot:
            pane = app.query_one(RunnerPane)
            await _wait(pilot, lambda: len(pane.exchanges) == 2)
            active = app.screen.active_bindings
            assert "a" not in active and "ctrl+r" not in active and "ctrl+x" not in active
            assert not app.query_one(CompareView).writable
            bar = app.query_one(AppBar)
            await _wait(pilot, lambda: "2 exchanges" in bar.plain)
            writer.close()
            closed = True
            await _wait(pilot, lambda: "a" in app.screen.active_bindings)
            assert not writer_holds(path)
            assert app.query_one(CompareView).writable
            assert "2 exchanges" in bar.plain and "0 exchanges" not in bar.plain
            assert "ctrl+r" not in app.screen.active_bindings
            table = app.query_one("#runner-table", DataTable)
            assert table.row_count == 4
    finally:
        if not closed:
            writer.close()
