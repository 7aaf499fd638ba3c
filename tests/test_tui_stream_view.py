"""StreamView: word wrap that loses nothing, and incremental wrapping equal to a full wrap.

The widget wraps only the tail of the growing line on each flush; these tests check that
the rows it ends with are exactly those of wrapping the whole text at once, for random
chunkings, widths and scripts (ASCII, wide CJK, long words, newlines, code fences).
"""

from __future__ import annotations

import random

from rich.cells import cell_len
from textual._compositor import Compositor
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.widgets.chat.stream_view import StreamView, clean, wrap

SAMPLES = [
    "The quick brown fox jumps over the lazy dog. " * 30,
    "word " * 50 + "supercalifragilisticexpialidocious" * 5 + " end",
    "首先，我们需要理解量化的基本概念。模型的权重被压缩为四位整数。" * 8,
    "mixed 中文 and English words 混合 text with wide 字符 " * 10,
    "line one\nline two\n\n```python\ndef f(x):\n    return x + 1\n```\n# Heading\nafter",
    "   leading spaces and   many    spaces   between   words   " * 6,
    "a" * 500,
]


def test_wrap_loses_nothing_and_fits() -> None:
    for text in SAMPLES:
        for line in text.split("\n"):
            for width in (1, 2, 5, 17, 40, 80):
                rows = wrap(line, width)
                assert "".join(rows) == line
                assert rows, "an empty line still takes one row"
                for row in rows:
                    assert cell_len(row.rstrip(" ")) <= width or len(row.rstrip(" ")) == 1


def test_wrap_breaks_at_spaces_when_it_can() -> None:
    assert wrap("hello world foo", 11) == ["hello world ", "foo"]
    assert wrap("hello world foo", 10) == ["hello ", "world foo"]
    assert wrap("hello world", 5) == ["hello ", "world"]
    assert wrap("abcdefghij", 4) == ["abcd", "efgh", "ij"]
    assert wrap("中文字符", 4) == ["中文", "字符"]


class Harness(App[None]):
    def compose(self) -> ComposeResult:
        yield StreamView()


def _chunks(text: str, rng: random.Random) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.choice((1, 1, 2, 3, 5, 8, 13, 40))
        out.append(text[i : i + n])
        i += n
    return out


async def test_incremental_rows_equal_wrapping_everything() -> None:
    rng = random.Random(7)
    app = Harness()
    async with app.run_test(size=(44, 20)) as pilot:
        view = app.query_one(StreamView)
        width = view._width()
        for text in SAMPLES:
            view.clear()
            view.begin_answer()
            for chunk in _chunks(text, rng):
                view.append(chunk)
                if rng.random() < 0.3:
                    view.flush()
            view.end_answer()
            assert view.answer_text() == clean(text)
            expected = [row for line in clean(text).split("\n") for row in wrap(line, width)]
            assert view._rows == expected
        await pilot.pause()


async def test_resize_rewraps_without_loss_and_styles_code() -> None:
    app = Harness()
    async with app.run_test(size=(60, 20)) as pilot:
        view = app.query_one(StreamView)
        view.write_block("› a prompt", "user")
        view.begin_answer()
        text = SAMPLES[4] + "\n" + SAMPLES[0]
        for chunk in _chunks(text, random.Random(1)):
            view.append(chunk)
        view.end_answer()
        before = view.answer_text()
        await pilot.resize_terminal(30, 20)
        await pilot.pause()
        assert view._wrap_width == 28
        assert view.answer_text() == before == text
        kinds = dict(zip(view._rows, view._kinds, strict=True))
        assert kinds["```python"] == "fence"
        assert kinds["    return x + 1"] == "code"
        assert kinds["# Heading"] == "heading"
        assert kinds["after"] == "text"
        assert kinds["› a prompt"] == "user"


async def test_follows_the_end_unless_scrolled_up_and_after_a_resize() -> None:
    app = Harness()
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(StreamView)
        view.begin_answer()
        for i in range(60):
            view.append(f"line {i}\n")
        view.flush()
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y > 0
        await pilot.resize_terminal(30, 8)  # narrower and shorter: rewrapped, still at the end
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y
        view.scroll_to(y=0, animate=False, immediate=True)
        await pilot.pause()
        assert not view.following
        view.append("more\n")
        view.flush()
        await pilot.pause()
        assert view.scroll_y == 0  # the person's place is kept
        view.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        assert view.following
        view.append("and more\n")
        view.flush()
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y


class Styled(App[None]):
    """The view as it is drawn in the chat, and one with padding and a border (which its
    own drawing path leaves to Textual)."""

    CSS = """
    #boxed { padding: 0 2; border: round red; }
    """

    def compose(self) -> ComposeResult:
        yield StreamView(id="bare")
        yield StreamView(id="boxed")


def _cells(strips: list[Strip]) -> list[list[tuple[str, object]]]:
    return [[(seg.text, seg.style) for seg in strip if seg.text] for strip in strips]


async def test_own_drawing_equals_textuals_for_every_row_kind() -> None:
    """The bare view skips Textual's styles cache: what it draws must be what that cache
    would have drawn, cell for cell and style for style, focused (tinted) or not, for each
    row kind, the scroll thumb, a partial crop, and rows past the text."""
    app = Styled()
    async with app.run_test(size=(50, 24)) as pilot:
        for vid in ("bare", "boxed"):
            view = app.query_one(f"#{vid}", StreamView)
            view.write_block("a prompt", "user", anchor=True)
            view.begin_answer()
            for i in range(20):
                view.append(f"line {i} with a few words to wrap around the view\n")
            view.append("```\ncode()\n```\n# Heading\nthe end")
            view.end_answer()
            view.write_rule("rule")
            view.write_block("a note", "note")
        await pilot.pause()
        bare = app.query_one("#bare", StreamView)
        assert bare._bare_box() and not app.query_one("#boxed", StreamView)._bare_box()
        for focused in (False, True):
            if focused:
                bare.focus()
                await pilot.pause()
            for y in (0, 5, bare.max_scroll_y):
                bare.scroll_to(y=y, animate=False, immediate=True)
                await pilot.pause()
                w, h = bare.size
                for crop in (
                    Region(0, 0, w, h),
                    Region(3, 2, w - 8, h - 4),
                    Region(0, 0, w, h + 2),
                ):
                    ours = bare.render_lines(crop)
                    textuals = ScrollView.render_lines(bare, crop)
                    assert _cells(ours) == _cells(textuals), (focused, y, crop)
        boxed = app.query_one("#boxed", StreamView)
        lines = [strip.text for strip in boxed.render_lines(Region(0, 0, *boxed.size))]
        assert lines[0].startswith("╭") and lines[1].startswith("│   ")  # border and padding kept


async def test_following_the_end_does_not_rebuild_the_screen_map(monkeypatch) -> None:
    """Scrolling to follow the text must not mark Textual's (hidden) scrollbar dirty: a
    widget outside the visible map makes the next frame arrange the whole screen again."""
    app = Harness()
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(StreamView)
        view.begin_answer()
        await pilot.pause()
        arranged = 0
        original = Compositor._arrange_root

        def counting(self: Compositor, *args: object, **kwargs: object) -> object:
            nonlocal arranged
            arranged += 1
            return original(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Compositor, "_arrange_root", counting)
        for i in range(40):
            view.append(f"line {i}\n")
            view.flush()
            await pilot.pause()
        assert view.scroll_y == view.max_scroll_y > 20
        assert arranged == 0
