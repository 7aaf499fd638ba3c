"""AnnotationForm: a modal where a person judges one exchange — a lane or all lanes, tags
from the fixed failure taxonomy, severity 1–3, a free note.

The form only builds the :class:`~quantlab.records.Annotation`; whoever opens it saves it
(``push_screen(form, callback)``), or uses :func:`open_annotation_form`, which saves it to a
session store the moment the form closes and says so. Keys: ctrl+s (or Enter in the note)
saves, escape cancels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, SelectionList, Static

from quantlab.records import FAILURE_TAGS, Annotation
from quantlab.textsafe import safe_line

ALL_LANES = "*"


class AnnotationForm(ModalScreen[Annotation | None]):
    """Returns the Annotation on save, None on cancel."""

    DEFAULT_CSS = """
    AnnotationForm {
        align: center middle;
    }
    AnnotationForm > #annotate-box {
        width: 80;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $primary;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    AnnotationForm #annotate-prompt {
        color: $text-muted;
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    /* The fields scroll when the terminal is short (24 rows); the buttons stay in view. */
    AnnotationForm #annotate-fields {
        height: 1fr;
        max-height: 18;
    }
    AnnotationForm .annotate-row {
        height: auto;
    }
    AnnotationForm .annotate-label {
        width: 10;
        padding: 1 1 0 0;
        text-style: bold;
    }
    AnnotationForm RadioSet {
        layout: horizontal;
        width: 1fr;
        height: auto;
    }
    AnnotationForm #annotate-tags {
        width: 1fr;
        height: 8;
    }
    AnnotationForm #annotate-note {
        width: 1fr;
    }
    AnnotationForm #annotate-error {
        color: $error;
        height: auto;
    }
    AnnotationForm #annotate-buttons {
        height: 3;
        align-horizontal: right;
    }
    AnnotationForm #annotate-buttons Static {
        width: 1fr;
        padding: 1 0 0 0;
        color: $text-muted;
    }
    AnnotationForm #annotate-buttons Button {
        margin-left: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        # Not priority: it must wait for the keys before it (a Space that ticks a tag).
        Binding("ctrl+s", "save", "Save"),
        # Priority: focus moves before the next key is read (see ParamsDialog).
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    ]

    def __init__(
        self,
        exchange_id: str,
        lanes: Sequence[str],
        *,
        lane: str | None = None,
        prompt: str = "",
        tags: Sequence[str] = (),
        severity: int = 1,
        note: str = "",
    ) -> None:
        super().__init__()
        if not lanes:
            raise ValueError("an annotation needs at least one lane")
        self.exchange_id = exchange_id
        self.lanes = list(lanes)
        self.lane = lane if lane in self.lanes or lane == ALL_LANES else self.lanes[0]
        self.prompt = prompt
        self.preset_tags = [t for t in tags if t in FAILURE_TAGS]
        self.severity = severity if severity in (1, 2, 3) else 1
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="annotate-box") as box:
            box.border_title = f"Annotate exchange {self.exchange_id}"
            shown = self.prompt.replace("\n", " ")
            shown = safe_line(shown[:150] + ("…" if len(shown) > 150 else ""))
            yield Static(Content(shown), id="annotate-prompt")  # a prompt is never markup
            with VerticalScroll(id="annotate-fields"):
                with Horizontal(classes="annotate-row"):
                    yield Label("Lane", classes="annotate-label")
                    with RadioSet(id="annotate-lane"):
                        for name in self.lanes:
                            yield RadioButton(name, value=name == self.lane, name=name)
                        yield RadioButton("all lanes", value=self.lane == ALL_LANES, name=ALL_LANES)
                with Horizontal(classes="annotate-row"):
                    yield Label("Tags", classes="annotate-label")
                    yield SelectionList[str](
                        *((t, t, t in self.preset_tags) for t in FAILURE_TAGS), id="annotate-tags"
                    )
                with Horizontal(classes="annotate-row"):
                    yield Label("Severity", classes="annotate-label")
                    with RadioSet(id="annotate-severity"):
                        for s, what in ((1, "minor"), (2, "clear"), (3, "severe")):
                            yield RadioButton(
                                f"{s} {what}",
                                value=s == self.severity,
                                name=str(s),
                                id=f"annotate-sev-{s}",
                            )
                with Horizontal(classes="annotate-row"):
                    yield Label("Note", classes="annotate-label")
                    yield Input(
                        self.note, placeholder="what you saw (optional)", id="annotate-note"
                    )
            yield Static("", id="annotate-error")
            with Horizontal(id="annotate-buttons"):
                yield Static("ctrl+s saves · Esc cancels")
                yield Button("Cancel", id="annotate-cancel")
                yield Button("Save", variant="primary", id="annotate-save")

    def on_mount(self) -> None:
        # At once, not on the next refresh: keys typed right after F3 must land here.
        tags = self.query_one("#annotate-tags", SelectionList)
        tags.highlighted = 0  # so a Space typed at once ticks the first tag
        self.set_focus(tags)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """Keep the focused field in view when the fields scroll (a 24-row terminal)."""
        fields = self.query_one("#annotate-fields", VerticalScroll)
        if fields in event.widget.ancestors:
            fields.scroll_to_widget(event.widget, animate=False)

    # ------------------------------------------------------------------ reading the form

    def _radio(self, set_id: str) -> str | None:
        pressed = self.query_one(f"#{set_id}", RadioSet).pressed_button
        return pressed.name if pressed is not None else None

    def build(self) -> Annotation:
        """The annotation the form holds now; ValueError says what is missing."""
        tags = list(self.query_one("#annotate-tags", SelectionList).selected)
        note = self.query_one("#annotate-note", Input).value.strip()
        if not tags:
            raise ValueError('choose at least one tag ("other" with a note if none fits)')
        if tags == ["other"] and not note:
            raise ValueError('"other" needs a note that says what it is')
        lane = self._radio("annotate-lane") or self.lane
        severity = int(self._radio("annotate-severity") or self.severity)
        ordered = [t for t in FAILURE_TAGS if t in tags]
        return Annotation(
            exchange_id=self.exchange_id,
            lane=lane,
            tags=ordered,
            severity=severity,
            note=note,
        )

    # ------------------------------------------------------------------ actions

    def action_save(self) -> None:
        try:
            annotation = self.build()
        except ValueError as exc:
            self.query_one("#annotate-error", Static).update(str(exc))
            return
        self.dismiss(annotation)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#annotate-save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#annotate-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    @on(Input.Submitted, "#annotate-note")
    def _note_submitted(self) -> None:
        self.action_save()

    @on(SelectionList.SelectedChanged)
    def _tags_changed(self) -> None:
        self.query_one("#annotate-error", Static).update("")


def open_annotation_form(
    app: App[Any],
    exchange_id: str,
    lanes: Sequence[str],
    save: Callable[[Annotation], None] | None,
    *,
    lane: str | None = None,
    prompt: str = "",
    on_saved: Callable[[Annotation], None] | None = None,
) -> Any:
    """Open the form (returns the awaitable of its mounting); when it returns an
    annotation, ``save`` it at once (e.g. ``store.add_annotation``), tell the person, then
    call ``on_saved``. A failing save is shown, never raised (and ``on_saved`` is not
    called)."""

    def done(annotation: Annotation | None) -> None:
        if annotation is None:
            return
        if save is None:
            app.notify("annotation not saved: this view has no session file", severity="warning")
            return
        try:
            save(annotation)
        except Exception as exc:
            app.notify(f"annotation not saved: {exc}", severity="error", timeout=10)
            return
        where = "all lanes" if annotation.lane == ALL_LANES else annotation.lane
        app.notify(f"annotation saved ({where}: {', '.join(annotation.tags)})")
        if on_saved is not None:
            on_saved(annotation)

    return app.push_screen(AnnotationForm(exchange_id, lanes, lane=lane, prompt=prompt), done)
