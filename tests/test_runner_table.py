"""RunnerTable: a changed cell is drawn anew, an unchanged one comes from its cache, and
anything that restyles the table (zebra stripes, cursor, theme) draws every cell again."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult

from tui.widgets.runner.runner_table import RunnerTable


class _Host(App[None]):
    def compose(self) -> ComposeResult:
        yield RunnerTable(id="t", zebra_stripes=True, cursor_type="row")


def _text(app: App[None]) -> str:
    return "\n".join(line.text for line in app.screen._compositor.render_strips())


async def test_only_the_changed_cell_is_rendered_again_and_it_shows() -> None:
    app = _Host()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(RunnerTable)
        table.add_columns("case", "status", "tok/s")
        for i in range(6):
            table.add_row(Text(f"c{i}"), Text("queued"), Text("–"), key=f"r{i}")
        await pilot.pause()
        calls: list[tuple[int, int]] = []
        original = RunnerTable.__mro__[1]._render_cell  # DataTable's

        def spy(self: Any, row_index: int, column_index: int, *a: Any, **kw: Any) -> Any:
            calls.append((row_index, column_index))
            return original(self, row_index, column_index, *a, **kw)

        RunnerTable.__mro__[1]._render_cell = spy  # type: ignore[method-assign]
        try:
            table.update_cell("r2", table.ordered_columns[1].key, Text("done"))
            await pilot.pause()
            assert "done" in _text(app)
            body = [c for c in calls if c[0] >= 0 and c[1] >= 0]
            assert body == [(2, 1)]  # the other 17 cells came from the cache
            calls.clear()
            table.zebra_stripes = False  # restyles every row: all drawn again
            await pilot.pause()
            assert len([c for c in calls if c[0] >= 0 and c[1] >= 0]) == 18
            calls.clear()
            app.theme = "textual-light"
            await pilot.pause()
            assert len([c for c in calls if c[0] >= 0 and c[1] >= 0]) == 18
            assert "done" in _text(app) and "c5" in _text(app)
        finally:
            RunnerTable.__mro__[1]._render_cell = original  # type: ignore[method-assign]


async def test_the_cursor_row_is_drawn_highlighted_and_moves() -> None:
    app = _Host()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(RunnerTable)
        table.add_columns("case", "status")
        for i in range(4):
            table.add_row(Text(f"c{i}"), Text("ok"), key=f"r{i}")
        await pilot.pause()
        table.move_cursor(row=2)
        await pilot.pause()
        lines = app.screen._compositor.render_strips()
        styles = {
            i: {s.style.bgcolor for s in line if s.text.strip()} for i, line in enumerate(lines)
        }
        row2 = next(i for i, line in enumerate(lines) if "c2" in line.text)
        row1 = next(i for i, line in enumerate(lines) if "c1" in line.text)
        assert styles[row2] != styles[row1]  # the cursor row looks different
        table.move_cursor(row=1)
        await pilot.pause()
        lines = app.screen._compositor.render_strips()
        moved = {
            i: {s.style.bgcolor for s in line if s.text.strip()} for i, line in enumerate(lines)
        }
        assert moved[row1] == styles[row2] != moved[row2]  # the highlight moved up a row
