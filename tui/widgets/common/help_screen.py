"""HelpScreen: the app's own keys, tab by tab (F1 or ``?``).

:data:`KEY_SECTIONS` is the one list of them: the help screen shows it, the README's
"Keys" section repeats it (a test compares the two), and a test checks that every key the
footers offer is in it. Each entry is (keys as shown, what they do, the binding keys).
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KeyEntry = tuple[str, str, tuple[str, ...]]

KEY_SECTIONS: dict[str, list[KeyEntry]] = {
    "Everywhere": [
        ("F1 or ?", "this help (? where no text box has focus)", ("f1", "question_mark")),
        (
            "F4 F5 F6",
            "the Chat, Runner, Telemetry tab (1 2 3 where no text box has focus)",
            ("f4", "f5", "f6", "1", "2", "3"),
        ),
        ("Ctrl+PgDn Ctrl+PgUp", "next / previous tab", ("ctrl+pagedown", "ctrl+pageup")),
        ("Ctrl+P", "command palette: every action, themes, screenshot", ("ctrl+p",)),
        ("Ctrl+O", "sessions: list, search by prompt, open one read-only", ("ctrl+o",)),
        ("q", "quit, where no text box has focus", ("q",)),
        ("Ctrl+Q", "quit (servers quantlab started are stopped)", ("ctrl+q",)),
    ],
    "Chat": [
        ("Enter", "send the prompt to every lane at once", ("enter",)),
        ("Ctrl+J", "a new line in the prompt (a paste keeps its lines)", ("ctrl+j",)),
        ("Ctrl+R", "retry the last prompt (a finished answer is regenerated)", ("ctrl+r",)),
        ("F8", "copy the last answer (OSC 52); again: the next lane's", ("f8",)),
        ("F9", "copy the last exchange, every lane, as Markdown", ("f9",)),
        ("Ctrl+S", "export the last exchange as Markdown beside the session", ("ctrl+s",)),
        ("Esc", "stop the answers streaming", ("escape",)),
        ("Ctrl+N", "new conversation: every lane starts from a blank history", ("ctrl+n",)),
        ("F2", "sampling parameters: temperature, top_p, max tokens, seed, system", ("f2",)),
        ("F3", "annotate the last exchange (saved at once)", ("f3",)),
        ("Ctrl+L", "lanes side by side / stacked / automatic", ("ctrl+l",)),
        ("Tab", "from the prompt to the lanes (arrows scroll a lane)", ("tab",)),
        (
            "F7 or s",
            "lanes scroll together (the same exchange in view) / apart; "
            "s where no text box has focus",
            ("f7", "s"),
        ),
    ],
    "Runner": [
        ("Ctrl+R", "run the chosen suites on the chosen lanes", ("ctrl+r",)),
        ("Ctrl+X", "cancel the run (finished rows are kept)", ("ctrl+x",)),
        ("Up Down", "choose a row: its details and lanes show below the table", ("up", "down")),
        ("a", "annotate the chosen row's exchange", ("a",)),
        (
            "c d o",
            "in the findings list (Tab to it): confirm / dismiss / reopen a finding",
            ("c", "d", "o"),
        ),
        ("w", "word diff: the candidate's words against the reference's", ("w",)),
    ],
    "Telemetry": [
        ("Up Down PgUp PgDn", "scroll when the GPUs do not fit", ("up", "down")),
    ],
    "Dialogs (F2, F3)": [
        ("Tab Shift+Tab", "next / previous field", ("tab", "shift+tab")),
        ("Space", "tick a tag, choose a lane or severity", ("space",)),
        ("Ctrl+S", "save the annotation", ("ctrl+s",)),
        ("Enter", "apply the parameters; in the note, save the annotation", ("enter",)),
        ("Esc", "close without saving", ("escape",)),
    ],
}


def help_table(section: str, entries: list[KeyEntry]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(width=20, no_wrap=True, style="bold")
    table.add_column(ratio=1)
    for keys, what, _ in entries:
        table.add_row(keys, what)
    table.title = section
    table.title_justify = "left"
    table.title_style = "bold underline"
    return table


class HelpScreen(ModalScreen[None]):
    """Every key of the app, the current tab's section first."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 84;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        background: $panel;
        border: round $primary;
        border-title-style: bold;
        padding: 0 1;
    }
    HelpScreen VerticalScroll { height: 1fr; max-height: 48; }
    HelpScreen .help-section { margin-bottom: 1; }
    HelpScreen #help-foot { color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q,question_mark", "close", "Close", priority=True),
    ]

    def __init__(self, first: str | None = None) -> None:
        super().__init__()
        order = list(KEY_SECTIONS)
        if first in KEY_SECTIONS:
            order.remove(first)
            order.insert(1, first)  # after "Everywhere"
        self.order = order

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "quantlab keys"
            with VerticalScroll():
                for name in self.order:
                    yield Static(help_table(name, KEY_SECTIONS[name]), classes="help-section")
            yield Static(
                Text("Esc, F1 or q closes · the footer shows the keys that work now"),
                id="help-foot",
            )

    def on_mount(self) -> None:
        self.set_focus(self.query_one(VerticalScroll))

    @property
    def plain(self) -> str:
        """The sections as plain text, in the order shown (tests read it)."""
        lines = []
        for name in self.order:
            lines.append(name)
            lines += [f"  {keys}  {what}" for keys, what, _ in KEY_SECTIONS[name]]
        return "\n".join(lines)

    def action_close(self) -> None:
        self.dismiss(None)
