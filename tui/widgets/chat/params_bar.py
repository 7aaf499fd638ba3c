"""ParamsBar: the sampling parameters the next prompt will be sent with, always visible.

Every request sends all of them explicitly (servers would otherwise fill unset ones from
the model's own defaults), so the person should see them all the time, not only in the
editor (:class:`tui.widgets.chat.params_dialog.ParamsDialog`, F2).
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from quantlab.records import SamplingParams


def params_text(p: SamplingParams, *, width: int | None = None) -> Text:
    """``temperature 0 · top_p 1 · max 256 · seed 0 · system: none``."""

    def item(label: str, value: str) -> list[tuple[str, str]]:
        return [(f"{label} ", "dim"), (value, "bold")]

    parts: list[tuple[str, str]] = []
    sep = ("  ·  ", "dim")
    system = p.system_prompt.replace("\n", " ") if p.system_prompt else "none"
    if len(system) > 40:
        system = system[:39] + "…"
    fields = [
        ("temperature", f"{p.temperature:g}"),
        ("top_p", f"{p.top_p:g}"),
        ("max tokens", str(p.max_tokens)),
        ("seed", "none" if p.seed is None else str(p.seed)),
        ("system", system),
    ]
    if p.stop:
        fields.append(("stop", ", ".join(repr(s) for s in p.stop)))
    for i, (label, value) in enumerate(fields):
        if i:
            parts.append(sep)
        parts.extend(item(label, value))
    text = Text.assemble(*parts)
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


class ParamsBar(Widget):
    """One line above the prompt box with the current sampling parameters."""

    DEFAULT_CSS = """
    ParamsBar {
        height: 1;
        padding: 0 1;
        color: $foreground;
        background: $surface;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, params: SamplingParams, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.params = params

    def set_params(self, params: SamplingParams) -> None:
        self.params = params
        self.refresh()

    @property
    def plain(self) -> str:
        return params_text(self.params).plain

    def render(self) -> Text:
        """The parameters cut with an ellipsis; "F2 edit" only where it fits whole."""
        text = Text.assemble(("⚙ ", "bold"), params_text(self.params))
        hint = Text("   F2 edit", "dim")
        if text.cell_len + hint.cell_len <= self.content_size.width:
            text.append_text(hint)
        text.no_wrap = True
        text.overflow = "ellipsis"
        return text
