"""``quantlab top``: the telemetry pane alone — GPUs, the servers' stats, host — for
watching a sweep that another tool drives. Endpoints are optional: without any it shows
the GPUs and the host."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer

from quantlab.config import ConfigError, load_config, resolve_endpoints
from quantlab.records import Endpoint
from tui.screenshot import ScreenshotMixin
from tui.state import load_state
from tui.theme import ThemeSet, UnknownTheme, apply_themes, choose_themes
from tui.widgets.common.app_bar import AppBar
from tui.widgets.telemetry.telemetry_pane import TelemetryPane


class TopApp(ScreenshotMixin, App[int]):
    CSS_PATH = str(Path(__file__).with_name("app.tcss"))
    TITLE = "quantlab top"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q,q", "quit", "Quit", priority=True)]

    def __init__(
        self, endpoints: list[Endpoint], *, hz: float = 4.0, themes: ThemeSet | None = None
    ) -> None:
        super().__init__()
        self.endpoints = endpoints
        self.hz = hz
        self._themes = apply_themes(self, themes)

    def compose(self) -> ComposeResult:
        yield AppBar(id="app-bar")
        yield TelemetryPane(self.endpoints, hz=self.hz, id="telemetry")
        yield Footer()

    def on_mount(self) -> None:
        what = " · ".join(e.name for e in self.endpoints) or "GPUs and host"
        self.query_one(AppBar).update_state(what=f"top: {what}", session="")


def top(args: argparse.Namespace) -> int:
    """Telemetry only. ``--endpoint``/``--config``/``--demo`` add the servers' stats."""
    try:
        config = load_config(getattr(args, "config", None))
        themes = choose_themes(getattr(args, "theme", None), load_state().theme, config.theme)
    except (ConfigError, UnknownTheme) as exc:
        print(f"quantlab: {exc}", file=sys.stderr)
        return 2
    want = bool(getattr(args, "endpoint", None)) or bool(getattr(args, "demo", False))
    setup = None
    try:
        if want or config.endpoints:
            setup = resolve_endpoints(args, config)
        endpoints = list(setup.endpoints) if setup is not None else []
        hz = float(getattr(config, "telemetry_hz", None) or 4.0)
        app = TopApp(endpoints, hz=hz, themes=themes)
        app.run()
        return int(app.return_code or 0)
    except ConfigError as exc:
        print(f"quantlab: {exc}", file=sys.stderr)
        return 2
    finally:
        if setup is not None:
            setup.close()
