"""ScrollLink: the chat's lanes scroll together (F7 / ``s`` turns it on and off).

Lanes hold the same exchanges but answers of different lengths, so a plain fraction of
the scrollable height would put exchange 3 beside exchange 2. The link lines up
exchanges instead: the row at the top of the lane scrolled is placed in its exchange
(between that exchange's prompt and the next one's), and every other lane shows the same
exchange at the same fraction of *its* length. At the top, all are at the top; scrolled to
the end, all follow their own answer's end.

Cheap while answers stream: a lane following its answer scrolls itself, which the
:class:`StreamView` does not report, so the link does no work per flush; only the
person's scrolls (wheel, keys) move the others, and those moves are not reported back
(no recursion).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from tui.widgets.chat.stream_view import StreamView


def linked_offset(
    src_anchors: Sequence[int],
    src_rows: int,
    dst_anchors: Sequence[int],
    dst_rows: int,
    y: float,
) -> float:
    """Where a lane with ``dst_anchors`` (first row of each exchange) and ``dst_rows``
    rows should be scrolled to show what a lane scrolled to row ``y`` shows: the same
    exchange, the same fraction into it. Lanes whose exchanges do not match (they
    should) fall back to the same fraction of the whole."""
    if len(src_anchors) != len(dst_anchors):
        return y / src_rows * dst_rows if src_rows else 0.0
    a = [0, *src_anchors, src_rows]
    b = [0, *dst_anchors, dst_rows]
    k = min(max(bisect_right(a, y) - 1, 0), len(a) - 2)
    span = a[k + 1] - a[k]
    frac = min(1.0, (y - a[k]) / span) if span > 0 else 0.0
    return b[k] + frac * (b[k + 1] - b[k])


class ScrollLink:
    """Keeps ``views`` scrolled together while :attr:`linked`."""

    def __init__(self, views: Sequence[StreamView], *, linked: bool = True) -> None:
        self.views = list(views)
        self.linked = linked
        #: How many times a person's scroll moved the other lanes (tests, benchmarks).
        self.syncs = 0
        self._moving = False
        for view in self.views:
            view.on_user_scroll = self._scrolled

    def set_linked(self, linked: bool, source: StreamView | None = None) -> None:
        """Link or unlink; on linking, the others line up with ``source`` (the focused
        lane, else the first one)."""
        self.linked = linked
        if linked and self.views:
            self.sync_from(source if source in self.views else self.views[0])

    def _scrolled(self, view: StreamView) -> None:
        if self.linked and not self._moving:
            self.sync_from(view)

    def sync_from(self, src: StreamView) -> None:
        """Move every other lane to where ``src`` is: its end if ``src`` follows its end
        (they follow theirs), else the same exchange (and they stop following)."""
        self._moving = True
        try:
            y = src.scroll_y
            for dst in self.views:
                if dst is src:
                    continue
                if src.following:
                    dst.scroll_quietly(None, following=True)
                else:
                    at = linked_offset(src.anchors, src.row_count, dst.anchors, dst.row_count, y)
                    dst.scroll_quietly(round(at), following=False)
        finally:
            self._moving = False
        self.syncs += 1
