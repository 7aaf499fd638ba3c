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

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, SelectionList, Static

from quantlab.records import FAILURE_TAGS, Annotation

ALL_LANES = "*"


class AnnotationForm(ModalScreen[Annotation | None]):
    """Returns the Annotation on save, None on cancel."""

    DEFAULT_CSS = """
    AnnotationForm {
        align: center middle;
    }
    AnnotationForm > #annotate-box {
        width: 76;
        max-width: 95%;
        height: auto;
        max-height: 95%;
        border: thick $primary 60%;
        background: $surface;
        padding: 1 2;
    }
    AnnotationForm #annotate-title {
        text-style: bold;
    }
    AnnotationForm #annotate-prompt {
        color: $text-muted;
        margin-bottom: 1;
    }
    AnnotationForm .annotate-label {
        margin-top: 1;
        text-style: bold;
    }
    AnnotationForm RadioSet {
        layout: horizontal;
        width: 100%;
        height: auto;
    }
    AnnotationForm #annotate-tags {
        height: 8;
    }
    AnnotationForm VerticalScroll {
        height: auto;
    }
    AnnotationForm #annotate-error {
        color: $error;
        height: auto;
    }
    AnnotationForm #annotate-buttons {
        height: auto;
        margin-top: 1;
        align-horizontal: right;
    }
    AnnotationForm #annotate-buttons Button {
        margin-left: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
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
        with Vertical(id="annotate-box"):
            yield Label(f"Annotate exchange {self.exchange_id}", id="annotate-title")
            shown = self.prompt.replace("\n", " ")
            yield Static(shown[:150] + ("…" if len(shown) > 150 else ""), id="annotate-prompt")
            with VerticalScroll():
                yield Label("Lane", classes="annotate-label")
                with RadioSet(id="annotate-lane"):
                    for name in self.lanes:
                        yield RadioButton(name, value=name == self.lane, name=name)
                    yield RadioButton("all lanes", value=self.lane == ALL_LANES, name=ALL_LANES)
                yield Label("Failure tags", classes="annotate-label")
                yield SelectionList[str](
                    *((t, t, t in self.preset_tags) for t in FAILURE_TAGS), id="annotate-tags"
                )
                yield Label("Severity (1 minor · 2 clear · 3 severe)", classes="annotate-label")
                with RadioSet(id="annotate-severity"):
                    for s in (1, 2, 3):
                        yield RadioButton(
                            str(s), value=s == self.severity, name=str(s), id=f"annotate-sev-{s}"
                        )
                yield Label("Note", classes="annotate-label")
                yield Input(self.note, placeholder="what you saw (optional)", id="annotate-note")
            yield Static("", id="annotate-error")
            with Horizontal(id="annotate-buttons"):
                yield Button("Cancel", id="annotate-cancel")
                yield Button("Save", variant="primary", id="annotate-save")

    def on_mount(self) -> None:
        self.query_one("#annotate-tags", SelectionList).focus()

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
) -> None:
    """Open the form; when it returns an annotation, ``save`` it at once (e.g.
    ``store.add_annotation``), tell the person, then call ``on_saved``. A failing save is
    shown, never raised (and ``on_saved`` is not called)."""

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

    app.push_screen(AnnotationForm(exchange_id, lanes, lane=lane, prompt=prompt), done)
