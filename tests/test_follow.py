"""A session another process is writing opens read-only and is followed live."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantlab.records import Exchange, LaneResult, SamplingParams
from quantlab.session import SessionBusy, SessionStore
from tui.follow import FollowApp
from tui.widgets.runner.runner_pane import RunnerPane


def _exchange(text: str) -> Exchange:
    ex = Exchange(prompt="p", params=SamplingParams(), source="suite:sanity/c1")
    ex.suite, ex.case_id = "sanity", "c1"
    ex.results = {"bf16": LaneResult(lane="bf16", text=text, finish_reason="stop")}
    return ex


def test_a_second_writer_gets_session_busy(tmp_path: Path) -> None:
    writer = SessionStore.open(tmp_path / "s.json")
    try:
        with pytest.raises(SessionBusy, match="is writing this session"):
            SessionStore.open(tmp_path / "s.json")
    finally:
        writer.close()


async def test_follow_app_shows_exchanges_as_the_writer_adds_them(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    writer = SessionStore.open(path)
    try:
        writer.append_exchange(_exchange("first"))
        app = FollowApp(path)
        async with app.run_test(size=(120, 36)) as pilot:
            pane = app.query_one(RunnerPane)
            for _ in range(100):
                if len(pane.exchanges) == 1:
                    break
                await pilot.pause(0.05)
            assert len(pane.exchanges) == 1
            writer.append_exchange(_exchange("second"))
            for _ in range(100):
                if len(pane.exchanges) == 2:
                    break
                await pilot.pause(0.05)
            assert len(pane.exchanges) == 2
    finally:
        writer.close()
