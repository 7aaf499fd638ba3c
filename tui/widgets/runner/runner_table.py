"""RunnerTable: the Runner's DataTable, redrawing only the cells that changed.

Textual's DataTable keys its cell cache on one table-wide update counter, so changing one
cell makes the next frame render every visible cell again through Rich (~100 µs a cell):
with a suite at 16 in flight, rows change many times a second and each redraw held the
event loop for 13-40 ms (benchmarks/soak.py). Here a rendered cell is kept under its own
content, position, width and style, so an update costs the changed cells only; the rows
are still composed by the DataTable from these cells.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable

#: Rendered cells kept (LRU): a few screens' worth of a wide table.
CELL_CACHE_SIZE = 20_000


def _content_key(value: object) -> object:
    """What a cell shows, hashable: a Text by its text, spans and style."""
    if isinstance(value, Text):
        return (value.plain, tuple(value.spans), str(value.style), value.justify)
    return (type(value), str(value))


class RunnerTable(DataTable[Any]):
    """A DataTable whose cells are re-rendered only when they themselves change."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before DataTable's __init__: its watchers already clear caches.
        self._cells: OrderedDict[tuple[object, ...], Any] = OrderedDict()
        super().__init__(*args, **kwargs)

    # Whenever the DataTable drops its caches for a reason other than a cell's content
    # (clear, theme, CSS, zebra stripes, cursor shown, header, padding...), ours goes too:
    # those settings need no place in the key below.
    def _clear_caches(self) -> None:
        self._cells.clear()
        super()._clear_caches()

    def notify_style_update(self) -> None:
        self._cells.clear()
        super().notify_style_update()

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> Any:
        if row_index < 0 or column_index < 0:  # header and row labels: as DataTable does
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        row = self.rows.get(row_key) if row_key is not None else None
        if row_key is None or row is None or column_key is None or row.auto_height:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (
            row_index,  # the segments carry the row and column index (mouse meta)
            column_index,
            _content_key(self._data[row_key].get(column_key)),
            width,
            row.height,
            base_style,
            cursor,
            hover,
            self._show_hover_cursor,
            self.cursor_type,  # changing it clears no cache
            self._pseudo_class_state,
        )
        lines = self._cells.get(key)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            self._cells[key] = lines
            if len(self._cells) > CELL_CACHE_SIZE:
                self._cells.popitem(last=False)
        else:
            self._cells.move_to_end(key)
        return lines
