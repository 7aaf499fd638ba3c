"""AppBar: the top line — what quantlab compares and where the session goes."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.widget import Widget


class AppBar(Widget):
    """``◆ quantlab  local pair · SmolLM2-135M BF16 vs Q4_0      session … · 3 exchanges``."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"app-bar--brand", "app-bar--what", "app-bar--session"}
    DEFAULT_CSS = """
    AppBar {
        height: 1;
        background: $panel;
        padding: 0 1;
    }
    AppBar > .app-bar--brand { color: $text-primary; text-style: bold; }
    AppBar > .app-bar--what { color: $foreground; }
    AppBar > .app-bar--session { color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.what = "starting…"
        self.session = ""
        self.exchanges = 0
        self.busy = False

    def update_state(
        self,
        *,
        what: str | None = None,
        session: str | None = None,
        exchanges: int | None = None,
        busy: bool | None = None,
    ) -> None:
        if what is not None:
            self.what = what
        if session is not None:
            self.session = session
        if exchanges is not None:
            self.exchanges = exchanges
        if busy is not None:
            self.busy = busy
        self.refresh()

    @property
    def plain(self) -> str:
        left, right = self._parts()
        return f"{left.plain}  {right.plain}"

    def _parts(self) -> tuple[Text, Text]:
        brand = self.get_component_rich_style("app-bar--brand")
        what = self.get_component_rich_style("app-bar--what")
        muted = self.get_component_rich_style("app-bar--session")
        left = Text.assemble(("◆ quantlab", brand), "  ", (self.what, what))
        n = self.exchanges
        count = f"{n} exchange" + ("" if n == 1 else "s")
        right = Text.assemble(
            (("streaming  ·  " if self.busy else ""), brand),
            (f"{self.session}  ·  " if self.session else "", muted),
            (count, muted),
        )
        return left, right

    def render(self) -> Table:
        left, right = self._parts()
        left.no_wrap = True
        left.overflow = "ellipsis"
        grid = Table.grid(expand=True)
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(width=2)
        grid.add_column(justify="right", no_wrap=True, overflow="ellipsis")
        grid.add_row(left, "", right)
        return grid
