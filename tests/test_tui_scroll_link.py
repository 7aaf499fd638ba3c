"""Linked scrolling of the chat's lanes (issue 12): one lane scrolled by the person moves
the others to the same exchange; unlinked, it does not; a lane following its answer keeps
following and costs the link nothing; the state shows in the headers and the footer.

The lanes point at dead ports and show a reopened session's exchanges (answers of
different lengths per lane); streaming goes through the panes' own calls."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.app import App, ComposeResult

from quantlab.records import Endpoint, Exchange, LaneResult, SamplingParams
from tui.app import QuantlabApp
from tui.state import load_state
from tui.theme import load_app_themes
from tui.widgets.chat.chat_view import ChatView
from tui.widgets.chat.lane_header import LaneHeader
from tui.widgets.chat.scroll_link import linked_offset
from tui.widgets.chat.stream_view import StreamView


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lanes() -> list[Endpoint]:
    return [
        Endpoint("bf16", f"http://127.0.0.1:{dead_port()}", role="reference"),
        Endpoint("q4_0", f"http://127.0.0.1:{dead_port()}", role="candidate"),
    ]


def history(n: int = 6) -> list[Exchange]:
    """``n`` exchanges; the candidate's answers are three times as long as the reference's,
    and their lengths differ from one exchange to the next."""
    out = []
    for i in range(n):
        base = "\n".join(f"line {j} of answer {i}" for j in range(4 + 3 * i))
        ex = Exchange(prompt=f"question {i}", params=SamplingParams(), meta={"conversation": "c"})
        ex.results = {
            "bf16": LaneResult("bf16", text=base),
            "q4_0": LaneResult("q4_0", text="\n".join([base] * 3)),
        }
        out.append(ex)
    return out


def make_app(**kw: Any) -> QuantlabApp:
    return QuantlabApp(endpoints=lanes(), themes=load_app_themes(None), history=history(), **kw)


def views(app: QuantlabApp) -> tuple[ChatView, StreamView, StreamView]:
    chat = app.chat
    assert chat is not None
    return chat, chat.panes[0].view, chat.panes[1].view


def footer_keys(app: QuantlabApp) -> dict[str, str]:
    return {
        key: b.binding.description
        for key, b in app.screen.active_bindings.items()
        if b.binding.show and b.enabled
    }


def exchange_at_top(view: StreamView) -> int:
    """Index of the exchange whose rows are at the top of the view (-1: above the first)."""
    y = view.scroll_offset.y
    return max((i for i, row in enumerate(view.anchors) if row <= y), default=-1)


def test_linked_offset_lines_up_exchanges_not_fractions() -> None:
    src, dst = [2, 10, 30], [2, 40, 100]
    assert linked_offset(src, 50, dst, 200, 0) == 0
    assert linked_offset(src, 50, dst, 200, 10) == 40  # exchange 2's prompt on both tops
    assert linked_offset(src, 50, dst, 200, 20) == 70  # halfway into exchange 2
    assert linked_offset(src, 50, dst, 200, 40) == 150  # halfway into the last one
    assert linked_offset([0, 10], 20, [0, 30], 60, 0) == 0  # a prompt on row 0
    assert linked_offset([1], 10, [1, 5], 20, 5) == 10  # exchanges differ: same fraction


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])  # side by side, stacked
async def test_scrolling_one_lane_shows_the_same_exchange_in_the_other(
    size: tuple[int, int],
) -> None:
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        chat, a, b = views(app)
        assert chat.link.linked and len(a.anchors) == len(b.anchors) == 6
        assert a.following and b.following and b.scroll_offset.y == b.max_scroll_y
        await pilot.press("tab")  # from the prompt to the first lane (not the tab strip)
        assert app.focused is a
        await pilot.press("home")
        await pilot.pause()
        assert b.scroll_offset.y == 0 and not b.following
        for k in range(1, 5):  # arrow keys, a row at a time, in the first lane
            while exchange_at_top(a) < k:
                await pilot.press("down")
            assert a.scroll_offset.y == a.anchors[k]
            assert b.scroll_offset.y == b.anchors[k]  # the same prompt at the top
        await pilot.press("home", "pagedown")
        await pilot.pause()
        assert not a.following and exchange_at_top(b) == exchange_at_top(a)
        y = b.scroll_offset.y
        # The mouse wheel over the first lane (no focus needed).
        await pilot._post_mouse_events([events.MouseScrollUp], widget=a, offset=(4, 4))
        assert 0 < b.scroll_offset.y < y and exchange_at_top(b) == exchange_at_top(a)
        await pilot.press("end")  # back at the end: both follow their answers again
        await pilot.pause()
        assert a.following and b.following
        assert b.scroll_offset.y == b.max_scroll_y


async def test_unlinked_lanes_scroll_apart_and_the_state_shows() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        chat, a, b = views(app)
        assert all("⇅ linked" in p.header.plain for p in chat.panes)
        assert footer_keys(app).get("f7") == "Unlink"
        await pilot.press("f7")  # from the prompt box: a function key works there
        await pilot.pause()
        assert not chat.link.linked and not app.linked_scroll
        assert not any("linked" in p.header.plain for p in chat.panes)
        assert footer_keys(app).get("f7") == "Link scroll"
        bottom = b.scroll_offset.y
        a.focus()
        await pilot.press("home")
        await pilot.pause()
        assert a.scroll_offset.y == 0 and b.scroll_offset.y == bottom and b.following
        await pilot.press("s")  # no text box has focus: s links them again
        await pilot.pause()
        assert chat.link.linked and b.scroll_offset.y == 0  # lined up with the focused lane
        chat.prompt_box.focus()
        await pilot.press("s")  # in the prompt: a character
        assert chat.prompt_box.value == "s" and chat.link.linked
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Unlink lane scrolling" in titles


async def test_a_move_is_not_passed_back_and_costs_one_sync() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        chat, a, b = views(app)
        told: list[StreamView] = []
        forward = chat.link._scrolled

        def spy(view: StreamView) -> None:
            told.append(view)
            forward(view)

        a.on_user_scroll = b.on_user_scroll = spy
        before = chat.link.syncs
        a.scroll_to(y=a.anchors[2], animate=False)  # as a drag of the scroll thumb does
        await pilot.pause()
        assert told == [a]  # b moved, and did not report its move
        assert chat.link.syncs == before + 1
        assert b.scroll_offset.y == b.anchors[2]


async def test_following_lanes_keep_following_and_a_scroll_up_stops_all() -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        chat, a, b = views(app)
        pa, pb = chat.panes
        for pane in chat.panes:
            pane.start("stream now")
        syncs = chat.link.syncs
        for i in range(40):  # both answers stream; each flush follows its lane's end
            pa.on_text(f"token {i}\n")
            pb.on_text(f"token {i} and some more\n")
            chat.clock.tick()
        await pilot.pause()
        assert chat.link.syncs == syncs  # no work for the link while lanes follow
        assert a.following and b.following
        assert a.scroll_offset.y == a.max_scroll_y and b.scroll_offset.y == b.max_scroll_y
        a.focus()
        await pilot.press("pageup")  # the person looks back in one lane
        await pilot.pause()
        assert not a.following and not b.following
        held = b.scroll_offset.y
        for i in range(20):
            pb.on_text(f"more {i}\n")
            chat.clock.tick()
        await pilot.pause()
        assert b.scroll_offset.y == held  # the other lane stays where the link put it
        await pilot.press("end")
        await pilot.pause()
        assert b.following and b.scroll_offset.y == b.max_scroll_y
        pb.on_text("after\n")
        chat.clock.tick()
        await pilot.pause()
        assert b.scroll_offset.y == b.max_scroll_y  # following again


async def test_anchors_survive_a_rewrap_and_the_choice_is_remembered(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    app = make_app(state_path=path)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause()
        chat, a, b = views(app)
        a.focus()
        a.scroll_to(y=a.anchors[3], animate=False)
        await pilot.pause()
        await pilot.resize_terminal(80, 24)  # stacked, narrower: every row wraps anew
        await pilot.pause()
        for view in (a, b):
            assert len(view.anchors) == 6
            for k, row in enumerate(view.anchors):
                assert view._rows[row] == f"› question {k}"
        await pilot.press("f7")
        await pilot.pause()
    assert load_state(path).linked_scroll is False
    again = make_app(linked_scroll=False)
    async with again.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        chat, _a, _b = views(again)
        assert not chat.link.linked and footer_keys(again).get("f7") == "Link scroll"


class HeaderApp(App[None]):
    def compose(self) -> ComposeResult:
        ep = Endpoint(
            "q4_0",
            "http://127.0.0.1:41975",
            role="candidate",
            model="smollm2-135m-q4_0",
            backend="llama.cpp",
            server_version="b6140",
            max_context=8192,
            quantization="Q4_0",
        )
        header = LaneHeader(ep)
        header.styles.width = 56  # a lane's width side by side at 120 columns
        yield header


async def test_the_linked_mark_leaves_the_server_line_its_width() -> None:
    app = HeaderApp()
    async with app.run_test(size=(120, 10)) as pilot:
        header = app.query_one(LaneHeader)
        header.set_status("ready")
        header.linked = True
        await pilot.pause()
        first, second = header.render_line(0).text, header.render_line(1).text
        assert "⇅ linked  ● ready" in first and "smollm2-135m-q4_0" in first
        assert "llama.cpp b6140 · ctx 8,192 · Q4_0 · 127.0.0.1:41975" in second
