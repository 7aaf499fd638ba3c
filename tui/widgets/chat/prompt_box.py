"""PromptBox: where the person types; Enter sends the prompt to every lane at once."""

from __future__ import annotations

from textual import on
from textual.message import Message
from textual.widgets import Input


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

    def set_busy(self, busy: bool) -> None:
        """Show that an exchange is streaming (Enter then waits, Escape stops it)."""
        self.set_class(busy, "-busy")
        self.border_subtitle = "streaming… Esc stops" if busy else ""
