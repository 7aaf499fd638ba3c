"""SessionBrowser: the session files of the sessions folder (date, lanes, exchanges, a
prompt, file name), narrowed as the person types words of a prompt; Enter opens one
read-only in :class:`SessionViewer` (the Runner's table and compare view, no key that
writes).

The prompt column shows the first prompt, or while searching the first one that matches
(the one the person is looking for), cut with an ellipsis to what the screen leaves it
(at 80 columns too); the file name comes last, as the date already tells most sessions
apart.

The listing and the search are :mod:`quantlab.session.browse`; this module only draws.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.widgets.data_table import ColumnKey

from quantlab.session.browse import SessionSummary, list_sessions, search_sessions
from quantlab.textsafe import safe_line
from tui.widgets.runner.runner_pane import RunnerPane

COLUMNS = ("date", "lanes", "exchanges", "prompt", "file")
#: The prompt column's width bounds (cells).
PROMPT_MIN, PROMPT_MAX = 16, 80


def summary_cells(
    s: SessionSummary, query: str = "", width: int = PROMPT_MAX
) -> tuple[str, str, str, str, str]:
    """(date, lanes, exchanges, prompt, file) as the table shows them: the prompt is the
    first one matching ``query`` (the first prompt when it is empty), at most ``width``
    characters."""
    prompt = safe_line((s.first_match(query) or s.first_prompt).replace("\n", " "))
    if len(prompt) > width:
        prompt = prompt[: width - 1] + "…"
    return (
        time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started)),
        safe_line(", ".join(s.lanes)),
        str(s.exchanges),
        prompt or "–",
        safe_line(s.path.name),
    )


def prompt_width(screen_width: int, lanes_width: int, file_width: int) -> int:
    """What the prompt column gets: the box (at most 160 wide, border and padding off)
    less the date, lanes and exchanges columns (each with a cell of padding either side),
    and less the file column too when the prompt keeps 40 cells all the same (else the
    file name is off to the right: the table scrolls)."""
    inner = min(screen_width, 160) - 4
    others = (16 + 2) + (max(lanes_width, len("lanes")) + 2) + (len("exchanges") + 2)
    rest = inner - others - 2
    beside_file = rest - (max(file_width, len("file")) + 2)
    return max(PROMPT_MIN, min(PROMPT_MAX, beside_file if beside_file >= 40 else rest))


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
    SessionBrowser #browse-keys { height: 1; color: $text-muted; }
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
            yield Static(
                "type to search · Enter: the list, then open one read-only · Esc closes",
                id="browse-keys",
            )

    def on_mount(self) -> None:
        self.summaries, problems = list_sessions(self.folder)
        note = "\n".join(f"not listed: {p}" for p in problems[:3])
        if len(problems) > 3:
            note += f"\n… and {len(problems) - 3} more"
        self.query_one("#browse-problems", Static).update(Content(safe_line(note)))
        self._fill(self.summaries)

    def _fill(self, summaries: list[SessionSummary]) -> None:
        self.shown = summaries
        query = self.query_one("#browse-search", Input).value
        lanes = max((len(", ".join(s.lanes)) for s in summaries), default=0)
        files = max((len(s.path.name) for s in summaries), default=0)
        width = prompt_width(self.app.size.width, lanes, files)
        table = self.query_one("#browse-table", DataTable)
        table.clear()
        if not table.columns:
            for label in COLUMNS:
                table.add_column(label, key=label)
        label = "matching prompt" if query.strip() else "prompt"
        table.columns[ColumnKey("prompt")].label = Text(label)
        for i, s in enumerate(summaries):
            table.add_row(*summary_cells(s, query, width), key=str(i))
        n, total = len(summaries), len(self.summaries)
        what = f"{n} of {total}" if n != total else str(total)
        self.query_one("#browse-title", Static).update(
            Content(safe_line(f"sessions in {self.folder} · {what}"))
        )

    @on(Input.Changed, "#browse-search")
    def _search(self, event: Input.Changed) -> None:
        self._fill(search_sessions(self.summaries, event.value))

    def on_resize(self, event: events.Resize) -> None:
        if self.summaries:  # the prompt column's width follows the screen's
            cursor = self.query_one("#browse-table", DataTable).cursor_row
            self._fill(self.shown)
            self.query_one("#browse-table", DataTable).move_cursor(row=cursor)

    @on(Input.Submitted, "#browse-search")
    def _to_table(self) -> None:
        self.query_one("#browse-table", DataTable).focus()

    @on(DataTable.RowSelected, "#browse-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        i = int(event.row_key.value or 0)
        if 0 <= i < len(self.shown):
            self.app.push_screen(SessionViewer(self.shown[i].path))
