"""Snapshots of the screens a person reaches over SSH at 80x24: the annotate form, the help
screen, and the Runner with a reviewed run (fixed exchanges from report_sessions, lanes on
dead ports so nothing changes between runs). Update with ``pytest
tests/test_tui_snapshot_screens.py --snapshot-update`` after a deliberate change of the
look, and look at the SVGs."""

from __future__ import annotations

from typing import Any

import report_sessions as rs
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable

from tui.app import QuantlabApp
from tui.theme import apply_themes, load_app_themes
from tui.widgets.common.annotate import AnnotationForm
from tui.widgets.runner.runner_pane import RunnerPane

PROMPT = "Explain in two sentences why the sky is blue, for a ten-year-old who likes science"


class FormApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        apply_themes(self, load_app_themes(None))

    def on_mount(self) -> None:
        self.push_screen(AnnotationForm("ex-0003", ["bf16", "q4_0"], prompt=PROMPT))


def runner_app() -> QuantlabApp:
    eps = rs.endpoints()
    for e in eps:
        e.base_url = "http://127.0.0.1:9"  # nobody answers: the chat tab stays as it is
    return QuantlabApp(endpoints=eps, themes=load_app_themes(None))


async def reviewed_run(pilot: Pilot[Any]) -> None:
    app = pilot.app
    await pilot.pause()
    await pilot.press("f5")
    await pilot.pause()
    assert isinstance(app, QuantlabApp) and app.active_tab == "tab-runner"
    pane = app.query_one(RunnerPane)
    exchanges = rs.sanity_exchanges()[:4]
    exchanges[0].results["awq"].findings[0].status = "confirmed"
    for ex in exchanges:
        pane._show_exchange_rows(ex)
    table = pane.query_one("#runner-table", DataTable)
    table.focus()
    table.move_cursor(row=1)
    await pilot.pause(0.3)


def test_annotate_form_80x24_note_focused(snap_compare: Any) -> None:
    assert snap_compare(FormApp(), terminal_size=(80, 24), press=["tab", "tab", *"loops"])


def test_help_screen_80x24(snap_compare: Any) -> None:
    assert snap_compare(runner_app(), terminal_size=(80, 24), press=["f5", "f1"])


def test_runner_reviewed_80x24(snap_compare: Any) -> None:
    assert snap_compare(runner_app(), terminal_size=(80, 24), run_before=reviewed_run)
