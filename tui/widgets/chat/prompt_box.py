"""PromptBox: where the person types; Enter sends the prompt to every lane at once.

A multi-line box (a :class:`TextArea`): prompts worth comparing are often a pasted
paragraph or code, so a paste keeps its newlines and Ctrl+J (or Shift+Enter / Alt+Enter,
where the terminal tells them apart from Enter) starts a new line. It grows with its text
up to a few lines, then scrolls.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea

from quantlab.textsafe import has_unsafe, safe_text

#: Keys that insert a newline instead of sending. Most terminals send Shift+Enter as a
#: plain Enter; Ctrl+J (a line feed) reaches the app everywhere, tmux and SSH included.
NEWLINE_KEYS = frozenset({"ctrl+j", "shift+enter", "alt+enter"})

PLACEHOLDER = "Ask every lane at once…   Enter sends · Ctrl+J new line · Ctrl+R retry"


class PromptBox(TextArea, inherit_bindings=False):
    """The prompt input: posts :class:`PromptBox.Send` on Enter with a non-empty text.

    TextArea's keys but F6 / F7 (select line / all): those are the app's (a tab key), and
    an inherited binding of the same key would reorder the footer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        b
        for b in TextArea.BINDINGS
        if isinstance(b, Binding) and not set(b.key.split(",")) & {"f6", "f7"}
    ]

    DEFAULT_CSS = """
    PromptBox {
        height: auto;
        min-height: 3;
        max-height: 8;
        border: round $panel-lighten-2;
        background: $surface;
        padding: 0 1;
        &:focus { border: round $primary; }
        &.-busy { border: round $warning 60%; }
        & .text-area--cursor-line { background: $surface; }
    }
    """

    class Send(Message):
        """The person pressed Enter on a non-empty prompt."""

        def __init__(self, prompt: str) -> None:
            super().__init__()
            self.prompt = prompt

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            id=id,
            soft_wrap=True,
            tab_behavior="focus",
            show_line_numbers=False,
            highlight_cursor_line=False,
            placeholder=PLACEHOLDER,
        )

    @property
    def value(self) -> str:
        """The prompt as typed (the same name as an Input's, for callers and tests)."""
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()  # TextArea's own handler would insert a newline
            prompt = self.text.strip()
            if prompt:
                self.post_message(self.Send(prompt))
        elif event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")

    async def _on_paste(self, event: events.Paste) -> None:
        """Keep the whole paste, newlines and all; control characters (an escape sequence
        copied from a web page) go in visibly, never raw into the terminal, and a notice
        says so. Stopped here so the app does not pass the same paste on again."""
        event.stop()
        event.prevent_default()  # TextArea's own handler would insert the raw text
        if not event.text:
            return
        self.replace(safe_text(event.text), *self.selection)
        if has_unsafe(event.text):
            self.notify("pasted: control characters shown as \\x.. escapes", timeout=6)

    def set_busy(self, busy: bool) -> None:
        """Show that an exchange is streaming (Enter then waits, Escape stops it)."""
        self.set_class(busy, "-busy")
        self.border_subtitle = "streaming… Esc stops" if busy else ""
