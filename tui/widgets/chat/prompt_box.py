"""PromptBox: where the person types; Enter sends the prompt to every lane at once."""

from __future__ import annotations

from textual import events, on
from textual.message import Message
from textual.widgets import Input

from quantlab.textsafe import has_unsafe, safe_text


class PromptBox(Input):
    """A one-line prompt input that posts :class:`PromptBox.Send` on Enter."""

    DEFAULT_CSS = """
    PromptBox {
        border: round $panel-lighten-2;
        background: $surface;
        padding: 0 1;
        &:focus { border: round $primary; }
        &.-busy { border: round $warning 60%; }
    }
    """

    class Send(Message):
        """The person pressed Enter on a non-empty prompt."""

        def __init__(self, prompt: str) -> None:
            super().__init__()
            self.prompt = prompt

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            placeholder="Ask every lane at once…   Enter sends · Ctrl+N new conversation",
            id=id,
        )

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        prompt = event.value.strip()
        if prompt:
            self.post_message(self.Send(prompt))

    def _on_paste(self, event: events.Paste) -> None:
        """Keep the whole paste. Textual's Input keeps only its first line; this box is one
        line, so lines are joined with a space, and control characters (an escape sequence
        copied from a web page) are put in visibly, never raw into the terminal. Says so."""
        event.stop()
        event.prevent_default()  # Input's own handler would insert the first line again, raw
        text = event.text
        if not text:
            return
        lines = text.splitlines()
        joined = " ".join(line.strip() for line in lines if line.strip())
        safe = safe_text(joined)
        if self.selection.is_empty:
            self.insert_text_at_cursor(safe)
        else:
            self.replace(safe, *self.selection)
        notes = []
        if len(lines) > 1:
            notes.append(f"{len(lines)} lines joined into one (the prompt box is one line)")
        if has_unsafe(joined):
            notes.append("control characters shown as \\x.. escapes")
        if notes:
            self.notify("pasted: " + "; ".join(notes), timeout=6)

    def set_busy(self, busy: bool) -> None:
        """Show that an exchange is streaming (Enter then waits, Escape stops it)."""
        self.set_class(busy, "-busy")
        self.border_subtitle = "streaming… Esc stops" if busy else ""
