"""SessionBrowser: the session files of the sessions folder (date, lanes, exchanges, first
prompt), narrowed as the person types words of a prompt; Enter opens one read-only in
:class:`SessionViewer` (the Runner's table and compare view, no key that writes).

The listing and the search are :mod:`quantlab.session.browse`; this module only draws.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from quantlab.session.browse import SessionSummary, list_sessions, search_sessions
from quantlab.textsafe import safe_line
from tui.widgets.runner.runner_pane import RunnerPane


def summary_cells(s: SessionSummary) -> tuple[str, str, str, str, str]:
    """(date, file, lanes, exchanges, first prompt) as the table shows them."""
    prompt = safe_line(s.first_prompt.replace("\n", " "))
    if len(prompt) > 80:
        prompt = prompt[:79] + "…"
    return (
        time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started)),
        safe_line(s.path.name),
        safe_line(", ".join(s.lanes)),
        str(s.exchanges),
        prompt or "–",
    )


class SessionViewer(Screen[None]):
    """One session, read-only: every exchange in the Runner's table, compared below."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        yield Static(Content(safe_line(f"{self.path} (read-only) · Esc: back")), id="viewer-title")
        yield RunnerPane(follow=self.path, read_only=True, id="viewer-runner")
        yield Footer(compact=True)


class SessionBrowser(ModalScreen[None]):
    """See the module docstring. ``folder``: the sessions folder to list."""

    DEFAULT_CSS = """
    SessionBrowser { align: center middle; }
    SessionBrowser > Vertical {
        width: 100%;
        max-width: 160;
        height: 100%;
        background: $panel;
        border: round $primary;
        padding: 0 1;
    }
    SessionBrowser #browse-title { height: 1; text-style: bold; }
    SessionBrowser #browse-table { height: 1fr; }
    SessionBrowser #browse-problems { height: auto; max-height: 4; color: $text-warning; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss", "Close")]

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.summaries: list[SessionSummary] = []
        self.shown: list[SessionSummary] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Content(safe_line(f"sessions in {self.folder}")), id="browse-title")
            yield Input(placeholder="search the prompts (words, any case)", id="browse-search")
            table: DataTable[str] = DataTable(id="browse-table", cursor_type="row")
            yield table
            yield Static("", id="browse-problems")

    def on_mount(self) -> None:
        table = self.query_one("#browse-table", DataTable)
        for label in ("date", "file", "lanes", "exchanges", "first prompt"):
            table.add_column(label, key=label)
        self.summaries, problems = list_sessions(self.folder)
        note = "\n".join(f"not listed: {p}" for p in problems[:3])
        if len(problems) > 3:
            note += f"\n… and {len(problems) - 3} more"
        self.query_one("#browse-problems", Static).update(Content(safe_line(note)))
        self._fill(self.summaries)

    def _fill(self, summaries: list[SessionSummary]) -> None:
        self.shown = summaries
        table = self.query_one("#browse-table", DataTable)
        table.clear()
        for i, s in enumerate(summaries):
            table.add_row(*summary_cells(s), key=str(i))
        n, total = len(summaries), len(self.summaries)
        what = f"{n} of {total}" if n != total else str(total)
        self.query_one("#browse-title", Static).update(
            Content(safe_line(f"sessions in {self.folder} · {what}"))
        )

    @on(Input.Changed, "#browse-search")
    def _search(self, event: Input.Changed) -> None:
        self._fill(search_sessions(self.summaries, event.value))

    @on(Input.Submitted, "#browse-search")
    def _to_table(self) -> None:
        self.query_one("#browse-table", DataTable).focus()

    @on(DataTable.RowSelected, "#browse-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        i = int(event.row_key.value or 0)
        if 0 <= i < len(self.shown):
            self.app.push_screen(SessionViewer(self.shown[i].path))
