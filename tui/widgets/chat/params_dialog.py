"""ParamsDialog: a modal to edit the sampling parameters of the next prompts.

Fields are checked as typed text; a wrong value is named under the form and nothing is
applied until every field is valid (Enter or "Apply"; Escape cancels).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from quantlab.records import SamplingParams

#: field id -> (label, help)
FIELDS: dict[str, tuple[str, str]] = {
    "temperature": ("temperature", "0 = greedy (the lanes then compare like for like)"),
    "top_p": ("top_p", "above 0, at most 1"),
    "max_tokens": ("max tokens", "most tokens per answer"),
    "seed": ("seed", "a whole number, or empty for none"),
    "system_prompt": ("system prompt", "empty for none"),
}


class ParamsError(ValueError):
    """A field the person must fix; the message names it."""


def parse_params(values: dict[str, str], base: SamplingParams) -> SamplingParams:
    """New parameters from the form's text fields (``stop`` is kept from ``base``)."""

    def number(key: str) -> float:
        raw = values.get(key, "").strip()
        try:
            v = float(raw)
        except ValueError:
            raise ParamsError(f"{FIELDS[key][0]}: {raw!r} is not a number") from None
        if not math.isfinite(v):
            raise ParamsError(f"{FIELDS[key][0]}: must be a finite number")
        return v

    def whole(key: str) -> int:
        raw = values.get(key, "").strip()
        try:
            return int(raw)
        except ValueError:
            raise ParamsError(f"{FIELDS[key][0]}: {raw!r} is not a whole number") from None

    temperature = number("temperature")
    if temperature < 0:
        raise ParamsError("temperature: must be 0 or more")
    top_p = number("top_p")
    if not 0 < top_p <= 1:
        raise ParamsError("top_p: must be above 0 and at most 1")
    max_tokens = whole("max_tokens")
    if max_tokens < 1:
        raise ParamsError("max tokens: must be 1 or more")
    seed = None if not values.get("seed", "").strip() else whole("seed")
    system = values.get("system_prompt", "").strip() or None
    return replace(
        base,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        seed=seed,
        system_prompt=system,
    )


def field_values(p: SamplingParams) -> dict[str, str]:
    return {
        "temperature": f"{p.temperature:g}",
        "top_p": f"{p.top_p:g}",
        "max_tokens": str(p.max_tokens),
        "seed": "" if p.seed is None else str(p.seed),
        "system_prompt": p.system_prompt or "",
    }


class ParamsDialog(ModalScreen[SamplingParams | None]):
    """Edit the sampling parameters; dismisses with the new ones, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        # Priority: focus moves before the next key is read, so fast typing (or keys
        # sent in one burst over SSH) lands in the field the person tabbed to.
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    ]
    DEFAULT_CSS = """
    ParamsDialog {
        align: center middle;
    }
    ParamsDialog > Vertical {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        overflow-y: auto;
        padding: 0 2;
        background: $panel;
        border: round $primary;
        border-title-color: $text-primary;
        border-title-style: bold;
    }
    ParamsDialog Grid {
        margin-top: 1;
        grid-size: 2;
        grid-columns: 15 1fr;
        grid-rows: 1;
        grid-gutter: 1 0;
        height: auto;
    }
    ParamsDialog Label { color: $text-muted; }
    ParamsDialog Input {
        height: 1;
        border: none;
        padding: 0 1;
        background: $surface;
        &:focus { background: $boost; border: none; border-left: outer $primary; padding: 0 1 0 0; }
    }
    ParamsDialog #params-help { color: $text-muted; padding: 1 0 0 0; }
    ParamsDialog #params-error { color: $text-error; height: auto; }
    ParamsDialog Horizontal { height: auto; align-horizontal: right; padding-top: 1; }
    ParamsDialog Button { margin-left: 2; }
    """

    def __init__(self, params: SamplingParams) -> None:
        super().__init__()
        self.params = params

    def compose(self) -> ComposeResult:
        values = field_values(self.params)
        with Vertical() as box:
            box.border_title = "Sampling parameters"
            with Grid():
                for key, (label, help_text) in FIELDS.items():
                    yield Label(label)
                    yield Input(values[key], placeholder=help_text, id=f"param-{key}")
            yield Static(
                "Sent explicitly with every request, to every lane, and saved with each "
                "exchange. Enter applies, Esc cancels.",
                id="params-help",
            )
            yield Static("", id="params-error")
            with Horizontal():
                yield Button("Cancel", id="params-cancel")
                yield Button("Apply", variant="primary", id="params-apply")

    def on_mount(self) -> None:
        # At once, not on the next refresh: keys typed right after F2 must land here.
        self.set_focus(self.query_one("#param-temperature", Input))

    def _values(self) -> dict[str, str]:
        return {key: self.query_one(f"#param-{key}", Input).value for key in FIELDS}

    def action_apply(self) -> None:
        try:
            params = parse_params(self._values(), self.params)
        except ParamsError as exc:
            self.query_one("#params-error", Static).update(f"✗ {exc}")
            return
        self.dismiss(params)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_apply()

    @on(Button.Pressed, "#params-apply")
    def _apply_pressed(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#params-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()
