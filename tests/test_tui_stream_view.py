"""StreamView: word wrap that loses nothing, and incremental wrapping equal to a full wrap.

The widget wraps only the tail of the growing line on each flush; these tests check that
the rows it ends with are exactly those of wrapping the whole text at once, for random
chunkings, widths and scripts (ASCII, wide CJK, long words, newlines, code fences).
"""

from __future__ import annotations

import random

from rich.cells import cell_len
from textual.app import App, ComposeResult

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
