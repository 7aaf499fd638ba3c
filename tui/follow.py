"""FollowApp: watch a session that another process (a headless ``quantlab run``) is still
writing — the runner pane in follow mode, read-only, updated live.

``quantlab --session PATH`` opens this when PATH is locked by a writer, instead of failing.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer

from tui.screenshot import ScreenshotMixin
from tui.theme import ThemeSet, apply_themes
from tui.widgets.common.app_bar import AppBar
from tui.widgets.runner.runner_pane import RunnerPane


class FollowApp(ScreenshotMixin, App[int]):
    """One pane: the live table of a session being written elsewhere."""

    CSS_PATH = str(Path(__file__).with_name("app.tcss"))
    TITLE = "quantlab"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(self, path: str | Path, *, themes: ThemeSet | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self._themes = apply_themes(self, themes)

    def compose(self) -> ComposeResult:
        yield AppBar(id="app-bar")
        yield RunnerPane(follow=self.path, id="runner")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(AppBar).update_state(
            what="following a session another process is writing (read-only)",
            session=str(self.path),
        )

    @on(RunnerPane.Followed)
    def _followed(self, event: RunnerPane.Followed) -> None:
        """The bar counts the exchanges read so far and says when the writer let go."""
        what = (
            "following a session another process is writing (read-only)"
            if event.writing
            else "a session no process writes now: annotate and confirm findings here"
        )
        self.query_one(AppBar).update_state(what=what, exchanges=event.exchanges)
