"""LaneHeader: what a lane's server is (as discovered) and what it is doing now.

Two lines: the lane's name chip, role, model, "⇅ linked" while the lanes scroll together
(F7), and live status; then backend and version, max context, quantization and the
endpoint's address. When the server is down or failed,
the second line says why instead. Narrow terminals get the first line only.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from quantlab.records import Endpoint

#: status -> (glyph, label)
STATUS: dict[str, tuple[str, str]] = {
    "connecting": ("◌", "connecting"),
    "ready": ("●", "ready"),
    "streaming": ("◉", "streaming"),
    "error": ("✗", "error"),
    "down": ("✗", "down"),
    "stopped": ("■", "stopped"),
}


def describe_server(ep: Endpoint) -> str:
    """``llama.cpp b6140 · ctx 8,192 · Q4_0 · 127.0.0.1:8001`` from the discovered facts."""
    parts: list[str] = []
    backend = ep.backend or "?"
    parts.append(f"{backend} {ep.server_version}" if ep.server_version else backend)
    if ep.max_context:
        parts.append(f"ctx {ep.max_context:,}")
    if ep.quantization:
        parts.append(ep.quantization)
    url = urlsplit(ep.base_url)
    parts.append(url.netloc + (url.path if url.path not in ("", "/") else ""))
    return " · ".join(parts)


class LaneHeader(Widget):
    """The header above one lane."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "lane-header--name",
        "lane-header--role",
        "lane-header--model",
        "lane-header--facts",
        "lane-header--detail",
        "lane-header--linked",
        "lane-header--connecting",
        "lane-header--ready",
        "lane-header--streaming",
        "lane-header--error",
    }
    DEFAULT_CSS = """
    LaneHeader {
        height: 2;
        padding: 0 1;
        background: $panel;
        &.-compact { height: 1; }
    }
    LaneHeader > .lane-header--name { background: $primary; color: $background; text-style: bold; }
    LaneHeader > .lane-header--role { color: $text-muted; }
    LaneHeader > .lane-header--model { color: $foreground; text-style: bold; }
    LaneHeader > .lane-header--facts { color: $text-muted; }
    LaneHeader > .lane-header--detail { color: $text-error; }
    LaneHeader > .lane-header--linked { color: $text-accent; }
    LaneHeader > .lane-header--connecting { color: $text-warning; }
    LaneHeader > .lane-header--ready { color: $text-success; }
    LaneHeader > .lane-header--streaming { color: $text-primary; text-style: bold; }
    LaneHeader > .lane-header--error { color: $text-error; text-style: bold; }
    """

    status: reactive[str] = reactive("connecting")
    detail: reactive[str | None] = reactive(None)
    #: The lanes scroll together (shown before the status).
    linked: reactive[bool] = reactive(False)

    def __init__(self, endpoint: Endpoint, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.endpoint = endpoint

    def set_status(self, status: str, detail: str | None = None) -> None:
        """``connecting`` | ``ready`` | ``streaming`` | ``error`` | ``down`` | ``stopped``."""
        self.status = status
        self.detail = detail
        self.refresh()

    def update_endpoint(self, endpoint: Endpoint) -> None:
        """New discovered facts (after discovery)."""
        self.endpoint = endpoint
        self.refresh()

    @property
    def plain(self) -> str:
        """Both lines as plain text (tests read it)."""
        name, state, facts = self._parts()
        return f"{name.plain}  {state.plain}\n{facts.plain}"

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"lane-header--{name}")

    def _parts(self) -> tuple[Text, Text, Text]:
        """(name, role and model), (status), (server facts, or why it failed)."""
        ep = self.endpoint
        glyph, label = STATUS.get(self.status, ("?", self.status))
        state_class = {"down": "error", "stopped": "error"}.get(self.status, self.status)
        name = Text.assemble(
            (f" {ep.name} ", self._style("name")),
            " ",
            (ep.role, self._style("role")),
            "  ",
            (ep.model or "model unknown", self._style("model")),
        )
        state = Text(f"{glyph} {label}", style=self._style(state_class))
        if self.linked:
            state = Text.assemble(("⇅ linked", self._style("linked")), "  ", state)
        if self.detail and self.status in ("error", "down"):
            facts = Text(self.detail, style=self._style("detail"))
        else:
            facts = Text(describe_server(ep), style=self._style("facts"))
        return name, state, facts

    def render(self) -> Group:
        name, state, facts = self._parts()
        grid = Table.grid(expand=True)
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(justify="right", no_wrap=True)
        grid.add_row(name, state)
        if self.has_class("-compact"):
            return Group(grid)
        # The facts line on its own, the whole width: in the grid it would lose the status
        # column's width too (most of its address when "⇅ linked" is shown).
        facts.no_wrap = True
        facts.overflow = "ellipsis"
        return Group(grid, facts)
