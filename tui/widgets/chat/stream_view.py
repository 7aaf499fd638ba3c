"""StreamView: a lane's text, streamed at thousands of tokens a second without lag.

Why a custom widget: re-rendering a Markdown document (or re-wrapping a whole text) on
every update costs time proportional to the answer's length, so a long fast answer
starves the event loop. Here each cost is bounded by the screen, not the answer:

* ``append`` only adds the delta to a list (O(1) per token);
* a flush, at most 30 times a second (one :class:`FlushClock` shared by the lanes),
  joins the pending deltas and wraps only the *tail*: the last visual row of the open
  line plus the new text. Rows before it never change when text is appended (greedy
  word wrap: a row is closed only when the next word did not fit, and adding
  characters cannot make it fit);
* ``render_line`` (Textual's Line API) draws only the visible rows, from a small cache.

Scrolling is either the person's (wheel, keys, a scroll call from outside) or the view's
own (following the end, a resize, :meth:`scroll_quietly`): only the person's reaches
``on_user_scroll``, so lanes linked through it (tui.widgets.chat.scroll_link) never move
one another back, and a lane following its answer costs the link nothing per flush.
The first row of each exchange is kept (:attr:`anchors`, through re-wraps) so linked lanes
can line the same exchange up.

Light styling instead of Markdown: fenced code blocks, headings, the user's prompts,
errors and notes each get a component style (themeable in CSS). The text is kept exactly:
rows concatenate back to what was received (tabs shown as spaces, control characters as
visible escapes), which :meth:`answer_text` returns for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.cells import get_character_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.events import Resize
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from quantlab.textsafe import safe_text

#: Row kinds and their component classes (styled in DEFAULT_CSS, overridable in app.tcss).
KINDS: tuple[str, ...] = (
    "text",
    "code",
    "fence",
    "heading",
    "user",
    "error",
    "note",
    "rule",
    "flag",
)
_COMPONENT = {k: f"stream-view--{k}" for k in KINDS if k != "text"}

_CACHE_LIMIT = 512


def clean(text: str) -> str:
    """What is displayed for ``text``: tabs as 4 spaces, CR dropped, other control
    characters (C0, C1, DEL, bidi overrides) shown visibly as escapes such as ``\\x1b``
    (quantlab.textsafe): they would move the terminal's cursor or reorder the text. Text
    is drawn as plain segments, never parsed as markup."""
    if "\t" in text:
        text = text.replace("\t", "    ")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "")
    return safe_text(text)


def wrap(s: str, width: int) -> list[str]:
    """Greedy word wrap of one line into rows of at most ``width`` cells.

    No character is dropped: a space at a break stays at the end of its row (spaces may
    hang past ``width``; they are cropped when drawn), a word longer than a row is cut.
    Always at least one row (``[""]`` for an empty line).
    """
    width = max(1, width)
    if not s.isascii():
        return _wrap_cells(s, width)
    n = len(s)
    if n <= width:
        return [s]
    rows: list[str] = []
    start = 0
    while n - start > width:
        end = start + width
        if s[end] == " ":
            cut = end
        else:
            sp = s.rfind(" ", start, end)
            cut = sp + 1 if sp > start else end
        while cut < n and s[cut] == " ":
            cut += 1
        rows.append(s[start:cut])
        start = cut
    if start < n:
        rows.append(s[start:])
    return rows


def _wrap_cells(s: str, width: int) -> list[str]:
    """:func:`wrap` for text with wide (CJK, emoji) or zero-width characters."""
    rows: list[str] = []
    n = len(s)
    start = i = cells = 0
    last_space = -1
    while i < n:
        c = s[i]
        w = get_character_cell_size(c)
        if cells + w > width and i > start:
            if c == " ":
                cut = i
            elif last_space > start:
                cut = last_space + 1
            else:
                cut = i
            while cut < n and s[cut] == " ":
                cut += 1
            rows.append(s[start:cut])
            start = i = cut
            cells = 0
            last_space = -1
            continue
        if c == " ":
            last_space = i
        cells += w
        i += 1
    if start < n or not rows:
        rows.append(s[start:])
    return rows


class FlushClock:
    """Draws every waiting StreamView in one go, at most ``hz`` times a second.

    Lanes that share a clock flush in the same event-loop turn, so the screen is updated
    once for all of them instead of once per lane. The next tick is due ``1/hz`` after the
    previous one *ended*: when drawing is slow (a loaded machine) the rate drops by itself
    instead of queueing work. ``listeners`` run after each tick (e.g. metrics lines).
    """

    def __init__(self, hz: float = 30.0) -> None:
        self.interval = 1.0 / hz
        self._due: dict[StreamView, None] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._last = 0.0
        self.ticks = 0
        self.listeners: list[Callable[[], None]] = []

    def request(self, view: StreamView) -> None:
        """``view`` has pending text: flush it at the next tick (first one right away)."""
        self._due[view] = None
        if self._handle is None:
            delay = self._last + self.interval - time.monotonic()
            self._handle = asyncio.get_running_loop().call_later(max(0.0, delay), self.tick)

    def cancel(self, view: StreamView) -> None:
        self._due.pop(view, None)

    def tick(self) -> None:
        self._handle = None
        due, self._due = self._due, {}
        for view in due:
            view.flush()
        for listener in self.listeners:
            listener()
        self.ticks += 1
        self._last = time.monotonic()


class StreamView(ScrollView, can_focus=True):
    """Scrollable, word-wrapped text that grows at its end; see the module docstring.

    Follows the end while the view is scrolled to the bottom; a person who scrolls up
    keeps their place until they scroll back down.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {*_COMPONENT.values(), "stream-view--thumb"}
    DEFAULT_CSS = """
    StreamView {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        overflow-y: scroll;
        scrollbar-size-vertical: 0;
    }
    StreamView > .stream-view--user { color: $accent; text-style: bold; }
    StreamView > .stream-view--code { color: $text-success; background: $boost; }
    StreamView > .stream-view--fence { color: $text-muted; background: $boost; }
    StreamView > .stream-view--heading { color: $text-primary; text-style: bold; }
    StreamView > .stream-view--error { color: $text-error; text-style: bold; }
    StreamView > .stream-view--note { color: $text-muted; text-style: italic; }
    StreamView > .stream-view--flag { color: $text-warning; text-style: bold; }
    StreamView > .stream-view--rule { color: $panel-lighten-2; }
    StreamView > .stream-view--thumb { color: $panel-lighten-3; }
    """

    def __init__(
        self,
        *,
        clock: FlushClock | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.clock = clock if clock is not None else FlushClock()
        # Visual rows, in parallel lists: text, kind, and whether the row starts a line.
        self._rows: list[str] = []
        self._kinds: list[str] = []
        self._starts: list[bool] = []
        self._open = False  # is the last logical line still growing?
        self._line_row0 = 0  # first row of the open line
        self._head = ""  # first characters of the open line (decides its kind)
        self._in_code = False  # inside a ``` fence of the current answer
        self._block_kind: str | None = None  # fixed kind, or None: styled as an answer
        self._answer_row0: int | None = None
        self._answer_row_end: int | None = None  # first row after a finished answer
        self._anchors: list[int] = []  # first row of each exchange (its prompt)
        self._wrap_width = 0
        # >0 while the view scrolls itself (follow, resize, a linked lane's move): such a
        # scroll is not passed to on_user_scroll.
        self._self_scroll = 0
        self._scroll_size = Size(0, 0)  # the size the last scroll happened at
        # Pending deltas, and when the oldest of them arrived (perf_counter_ns).
        self._pending: list[str] = []
        self._pending_since = 0
        self._strips: dict[int, Strip] = {}
        self._styles: dict[str, Style] = {}
        self._paint: tuple[int, int, tuple[int, int]] = (0, 0, (0, 0))
        #: Counters for benchmarks and tests.
        self.flushes = 0
        self.paints = 0
        #: Keep the end in view as text arrives; False once the person scrolls up, True
        #: again when they scroll back to the bottom.
        self.following = True
        #: Shown in the middle of the view while it holds nothing.
        self.empty_hint = ""
        #: Called after each flush with the oldest flushed delta's arrival time (ns).
        self.on_flush: Callable[[int], None] | None = None
        #: Called after the person scrolled this view (not after the view's own scrolls).
        self.on_user_scroll: Callable[[StreamView], None] | None = None

    # ------------------------------------------------------------------ public API

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def last_kind(self) -> str | None:
        """The kind of the last row (None when empty)."""
        return self._kinds[-1] if self._kinds else None

    @property
    def anchors(self) -> Sequence[int]:
        """The first row of each exchange written with ``anchor=True``, in order."""
        return self._anchors

    @property
    def pending(self) -> bool:
        """True while deltas wait for the next flush."""
        return bool(self._pending)

    def append(self, delta: str) -> None:
        """Add streamed text; it is drawn at the clock's next tick."""
        if not delta:
            return
        if not self._pending:
            self._pending_since = time.perf_counter_ns()
            self.clock.request(self)
        self._pending.append(delta)

    def flush(self) -> None:
        """Draw every pending delta now."""
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        since = self._pending_since
        first = self._add_text(text)
        self.flushes += 1
        self._changed(first)
        if self.on_flush is not None:
            self.on_flush(since)

    def begin_answer(self) -> None:
        """Start a streamed answer on a new line (styled as Markdown-ish text)."""
        self.flush()
        self._close_line()
        self._block_kind = None
        self._in_code = False
        self._answer_row0 = len(self._rows)
        self._answer_row_end = None

    def end_answer(self) -> None:
        """Draw what is pending and close the answer's last line."""
        self.flush()
        first = len(self._rows)
        self._close_line()
        if self._answer_row0 is not None:
            self._answer_row_end = len(self._rows)
        self._changed(first)

    def write_block(self, text: str, kind: str = "note", *, anchor: bool = False) -> None:
        """Write a whole block (a prompt, an error, a note) on lines of its own;
        ``anchor``: it starts an exchange (see :attr:`anchors`)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        self.flush()
        first = len(self._rows)
        self._close_line()
        if anchor:
            self._anchors.append(first)
        saved = self._block_kind
        self._block_kind = kind
        first = min(first, self._add_text(text))
        self._close_line()
        self._block_kind = saved
        self._changed(first)

    def write_rule(self, label: str = "") -> None:
        """A horizontal rule across the view (drawn to the view's width whatever it
        becomes), with an optional label in it."""
        self.write_block(label, "rule")

    def answer_text(self) -> str:
        """The text of the last answer as displayed (pending deltas not yet drawn are not
        included: call :meth:`flush` first for everything)."""
        if self._answer_row0 is None:
            return ""
        end = len(self._rows) if self._answer_row_end is None else self._answer_row_end
        return self._join(self._answer_row0, end)

    def text(self) -> str:
        """Everything displayed, lines joined with newlines."""
        return self._join(0, len(self._rows))

    def clear(self) -> None:
        """Remove everything (a new conversation)."""
        self.clock.cancel(self)
        self._pending.clear()
        self._rows.clear()
        self._kinds.clear()
        self._starts.clear()
        self._open = False
        self._answer_row0 = None
        self._answer_row_end = None
        self._anchors.clear()
        self._in_code = False
        self._strips.clear()
        self._self_scroll += 1
        try:
            self.virtual_size = Size(self._width(), 0)
            self.scroll_to(y=0, animate=False, immediate=True)
        finally:
            self._self_scroll -= 1
        self.following = True
        self.refresh()

    def scroll_quietly(self, y: float | None, *, following: bool) -> None:
        """Scroll to row ``y`` (None: the end) without telling ``on_user_scroll``, and
        follow the end from now on or not (a linked lane's move)."""
        self._self_scroll += 1
        try:
            target = self.max_scroll_y if y is None else y
            self.scroll_to(y=target, animate=False, immediate=True)
        finally:
            self._self_scroll -= 1
        self.following = following

    # ------------------------------------------------------------------ text model

    def _width(self) -> int:
        """Cells for text: the view less a margin column on the left and the scroll thumb's
        column on the right (drawn here: Textual's scrollbar widget would be one more
        widget to repaint on every flush)."""
        return max(1, self.size.width - 2)

    def _add_text(self, text: str) -> int:
        """Append ``text`` to the rows; returns the first row index that changed."""
        if not self._wrap_width:
            self._wrap_width = self._width()
        text = clean(text)
        first = len(self._rows)
        for i, part in enumerate(text.split("\n")):
            if i:
                self._close_line()
            if not self._open:
                self._open_line()
                first = min(first, self._line_row0)
            if part:
                first = min(first, self._extend(part))
        return first

    def _open_line(self) -> None:
        self._rows.append("")
        self._kinds.append(self._line_kind(""))
        self._starts.append(True)
        self._line_row0 = len(self._rows) - 1
        self._head = ""
        self._open = True

    def _close_line(self) -> None:
        if not self._open:
            return
        if self._block_kind is None and self._is_fence(self._head):
            self._in_code = not self._in_code
        self._open = False

    @staticmethod
    def _is_fence(head: str) -> bool:
        h = head.lstrip()
        return h.startswith("```") or h.startswith("~~~")

    def _line_kind(self, head: str) -> str:
        if self._block_kind is not None:
            return self._block_kind
        if self._is_fence(head):
            return "fence"
        if self._in_code:
            return "code"
        if head.startswith("#"):
            return "heading"
        return "text"

    def _extend(self, part: str) -> int:
        """Append to the open line: re-wrap only its last row plus ``part``."""
        if len(self._head) < 8:
            self._head = (self._head + part)[:8]
        tail_row = len(self._rows) - 1
        new_rows = wrap(self._rows[tail_row] + part, self._wrap_width)
        kind = self._line_kind(self._head)
        self._rows[tail_row:] = new_rows
        self._kinds[tail_row:] = [kind] * len(new_rows)
        self._starts[tail_row:] = [self._starts[tail_row]] + [False] * (len(new_rows) - 1)
        if kind != self._kinds[self._line_row0]:  # the head decided the line's kind late
            for r in range(self._line_row0, tail_row):
                self._kinds[r] = kind
            return self._line_row0
        return tail_row

    def _join(self, start: int, end: int) -> str:
        parts: list[str] = []
        for r in range(start, end):
            if self._starts[r] and r > start:
                parts.append("\n")
            parts.append(self._rows[r])
        return "".join(parts)

    def _rewrap(self, width: int) -> None:
        """Wrap everything again for a new width (once per resize)."""
        lines: list[tuple[str, str, bool]] = []  # text, kind, is the answer start
        answer_line = end_line = None
        anchor_rows = set(self._anchors)
        anchor_lines: list[int] = []
        end_at_tail = self._answer_row_end is not None and self._answer_row_end >= len(self._rows)
        for r in range(len(self._rows)):
            if self._starts[r]:
                if r == self._answer_row0:
                    answer_line = len(lines)
                if r == self._answer_row_end:
                    end_line = len(lines)
                if r in anchor_rows:
                    anchor_lines.append(len(lines))
                lines.append((self._rows[r], self._kinds[r], False))
            else:
                text, kind, _ = lines[-1]
                lines[-1] = (text + self._rows[r], kind, False)
        self._rows, self._kinds, self._starts = [], [], []
        anchors = iter(anchor_lines)
        next_anchor = next(anchors, -1)
        self._anchors = []
        for i, (text, kind, _) in enumerate(lines):
            if i == next_anchor:
                self._anchors.append(len(self._rows))
                next_anchor = next(anchors, -1)
            if i == answer_line:
                self._answer_row0 = len(self._rows)
            if i == end_line:
                self._answer_row_end = len(self._rows)
            rows = wrap(text, width)
            self._rows.extend(rows)
            self._kinds.extend([kind] * len(rows))
            self._starts.extend([True] + [False] * (len(rows) - 1))
        if end_at_tail:
            self._answer_row_end = len(self._rows)
        if lines:
            last_rows = wrap(lines[-1][0], width)
            self._line_row0 = len(self._rows) - len(last_rows)
        self._wrap_width = width

    # ------------------------------------------------------------------ drawing

    def _changed(self, first: int) -> None:
        """Rows from ``first`` on changed: drop their cached strips, resize, follow."""
        strips = self._strips
        if strips:
            for key in [key for key in strips if key >> 1 >= first]:
                del strips[key]
        follow = self.following
        height = len(self._rows)
        self._self_scroll += 1
        try:
            if self.virtual_size.height != height:
                # Not a plain assignment: that asks for a relayout of the whole screen
                # (every widget repainted, ~50 ms here) 30 times a second. The width is
                # fixed, so only the scrollbar needs to learn the new height.
                self.set_reactive(StreamView.virtual_size, Size(self._wrap_width, height))
                self._scroll_update(self.virtual_size)
            if follow and height > self.size.height:
                self.scroll_to(y=height, animate=False, immediate=True)
        finally:
            self._self_scroll -= 1
        if first == 0:
            self.refresh()  # also the rows below the text (the empty view's hint was there)
        else:
            self.refresh_lines(first, max(1, height - first))

    def on_resize(self, event: Resize) -> None:
        self._scroll_size = self.size
        width = self._width()
        if self._rows and width != self._wrap_width:
            follow = self.following
            self._rewrap(width)
            self._strips.clear()
            self._self_scroll += 1
            try:
                self.virtual_size = Size(width, len(self._rows))
                if follow:
                    self.scroll_to(y=len(self._rows), animate=False, immediate=True)
            finally:
                self._self_scroll -= 1
            self.refresh()
        elif not self._rows:
            self._wrap_width = width

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        # Not ScrollView's: it also moves Textual's scrollbar widget, hidden here (size 0,
        # the thumb is drawn by render_line). A hidden widget marked dirty makes the next
        # frame rebuild the screen's whole widget map (~4 ms, every frame while following).
        if round(old_value) != round(new_value):
            self.refresh(self.size.region)
        # Any scroll (the person's or ours) that ends at the bottom means "follow".
        self.following = new_value >= self.max_scroll_y - 1
        if self._self_scroll or self.on_user_scroll is None:
            return
        if self.size != self._scroll_size:  # Textual keeping the offset in range after a
            self._scroll_size = self.size  # resize, before on_resize: not the person
            return
        self.on_user_scroll(self)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._strips.clear()

    def _style(self, kind: str) -> Style:
        style = self._styles.get(kind)
        if style is None:
            base = self.rich_style
            cls = "stream-view--thumb" if kind == "thumb" else _COMPONENT.get(kind)
            style = base + self.get_component_rich_style(cls) if cls else base
            self._styles[kind] = style
        return style

    def render_lines(self, crop: Region) -> list[Strip]:
        # What every line of this paint needs, looked up once (Textual computes ``size``
        # and ``rich_style`` afresh on each access: ~0.2 ms per line otherwise).
        self.paints += 1
        self._paint = (self.scroll_offset.y, self.size.width, self._thumb_span())
        if not self._bare_box() or crop.bottom > self.size.height:
            return super().render_lines(crop)
        # The view has no border, padding, outline, tint or opacity, so Textual's styles
        # cache would only copy each strip (~50 µs a row): with a scroll, every row of
        # every lane, every frame. The strips come from render_line's cache as they are,
        # with the app's line filters applied (each strip caches its filtered copy).
        filters = self.get_line_filters()
        background = self.background_colors[1] if filters else None
        strips: list[Strip] = []
        for y in crop.line_range:
            strip = self.render_line(y)
            for line_filter in filters:
                strip = strip.apply_filter(line_filter, background)  # type: ignore[arg-type]
            strips.append(strip)
        x1, x2 = crop.column_span
        if (x1, x2) != (0, self.size.width):
            strips = [strip.crop(x1, x2) for strip in strips]
        return strips

    def _bare_box(self) -> bool:
        """True when the styles add nothing around or over the rows (the default)."""
        styles = self.styles
        return (
            not any(styles.gutter)
            and not any(edge for edge, _ in styles.outline)
            and styles.tint.a == 0
            and styles.opacity == 1.0
            and styles.text_opacity == 1.0
            and (not styles.has_rule("hatch") or styles.hatch == "none")
            and self._border_title is None
            and self._border_subtitle is None
        )

    def _thumb_span(self) -> tuple[int, int]:
        """Rows (start, end) of the view where the scroll thumb is drawn; empty when
        everything fits."""
        height = self.size.height
        total = len(self._rows)
        if total <= height or height <= 0:
            return (0, 0)
        size = max(1, height * height // total)
        top = round(self.scroll_offset.y * (height - size) / max(1, total - height))
        return (top, top + size)

    def render_line(self, y: int) -> Strip:
        scroll_y, width, (top, end) = self._paint
        index = scroll_y + y
        thumb = top <= y < end
        key = (index << 1) | thumb
        strip = self._strips.get(key)
        if strip is not None and strip.cell_length == width:
            return strip  # Strips are costly to make (and become cyclic garbage): reuse
        base = self._style("text")
        if index >= len(self._rows):
            hint = self.empty_hint if not self._rows and y == self.size.height // 2 else ""
            segments = [Segment(hint.center(width - 1), self._style("note"))]
        else:
            kind = self._kinds[index]
            style = self._style(kind)
            text = self._rows[index]
            if kind == "rule":
                text = f"── {text} " if text else ""
                text += "─" * max(0, width - 3 - len(text))
            body = Strip([Segment(" ", base), Segment(text, style)])
            segments = list(body.crop_extend(0, width - 1, style))
        segments.append(Segment("▕" if thumb else " ", self._style("thumb")))
        strip = Strip(segments, width)
        if len(self._strips) >= _CACHE_LIMIT:
            self._strips.clear()
        self._strips[key] = strip
        return strip
