"""The chat's everyday habits (issue 12): a multi-line prompt box, retry / regenerate the
last prompt, copy an answer or the whole exchange (OSC 52) and export it as Markdown.

Scripted servers (tests/standin.py) so every answer is known in advance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from standin import Reply, StandIn
from textual import events
from textual.pilot import Pilot
from tui_pilot import ready

from quantlab.fanout import Conversation
from quantlab.records import Endpoint, SamplingParams
from quantlab.reports.exchange_md import exchange_markdown
from quantlab.session import SessionStore, load_session
from tui.app import QuantlabApp
from tui.widgets.chat.chat_view import ChatView
from tui.widgets.chat.prompt_box import PromptBox

pytestmark = pytest.mark.slow

SIZE = (120, 40)


async def settle(pilot: Pilot, chat: ChatView, count: int) -> None:
    """Wait until ``count`` exchanges are done and nothing streams."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    while chat.busy or len(chat.exchanges) < count:
        assert loop.time() < end, "the exchange did not come back"
        await pilot.pause(0.05)
    await pilot.pause(0.05)


def app_for(urls: Sequence[str], store: SessionStore | None = None) -> QuantlabApp:
    eps = [Endpoint("bf16", urls[0], role="reference"), Endpoint("awq", urls[1])]
    return QuantlabApp(endpoints=eps, params=SamplingParams(max_tokens=32), store=store)


async def test_enter_sends_ctrl_j_and_a_paste_keep_newlines() -> None:
    with StandIn(Reply(tokens=["ok"])) as a, StandIn(Reply(tokens=["ok"])) as b:
        app = app_for([a.url, b.url])
        async with app.run_test(size=SIZE) as pilot:
            chat = await ready(pilot, app)
            box = chat.query_one("#prompt", PromptBox)
            await pilot.press(*"first", "ctrl+j", *"second")
            assert box.value == "first\nsecond" and not chat.exchanges and not chat.busy
            # A paste keeps its line breaks and sends nothing by itself.
            app.post_message(events.Paste("\nthird\nfourth"))  # as the terminal sends it
            await pilot.pause()
            assert box.value == "first\nsecond\nthird\nfourth" and not chat.busy
            assert box.size.height > 3, "the box grows with its lines"
            await pilot.press("enter")
            await settle(pilot, chat, 1)
            assert chat.exchanges[0].prompt == "first\nsecond\nthird\nfourth"
            sent = a.requests[-1]["messages"][-1]["content"]
            assert sent == "first\nsecond\nthird\nfourth" and box.value == ""
            await pilot.press("enter")  # an empty box sends nothing
            await pilot.pause(0.2)
            assert len(chat.exchanges) == 1 and not chat.busy


async def test_retry_regenerates_the_last_answer_after_the_same_turns(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.json")
    ref_answers = [Reply(tokens=[w]) for w in ("R1", "R2", "R3")]
    cand_answers = [Reply(tokens=[w]) for w in ("C1", "C2", "C3")]
    with StandIn(ref_answers) as a, StandIn(cand_answers) as b:
        app = app_for([a.url, b.url], store)
        async with app.run_test(size=SIZE) as pilot:
            chat = await ready(pilot, app)
            chat.prompt_box.value = "Pick a word"
            await pilot.press("enter")
            await settle(pilot, chat, 1)
            first = chat.exchanges[0]
            chat.prompt_box.value = "half-typed"
            await pilot.press("ctrl+r")
            await settle(pilot, chat, 2)
            again = chat.exchanges[1]
            assert chat.prompt_box.value == "half-typed", "retry keeps what is being typed"
            assert again.prompt == first.prompt and again.messages == first.messages
            assert again.meta["retry_of"] == again.meta["regenerated_from"] == first.id
            assert again.results["bf16"].text == "R2"
            assert "↻ Pick a word" in chat.pane("bf16").view.text()

            chat.prompt_box.value = "Another"
            await pilot.press("enter")
            await settle(pilot, chat, 3)
            third = chat.exchanges[2]
            # The regenerated answer replaced the first one in every lane's history.
            assert [m["content"] for m in third.messages["bf16"]] == [
                "Pick a word",
                "R2",
                "Another",
            ]
            assert [m["content"] for m in third.messages["awq"]] == ["Pick a word", "C2", "Another"]
    store.close()
    saved = load_session(tmp_path / "s.json").exchanges
    assert [e.id for e in saved] == [first.id, again.id, third.id]  # nothing is lost
    rebuilt = Conversation.from_exchanges(["bf16", "awq"], saved)
    assert [m["content"] for m in rebuilt.histories["bf16"]] == [
        "Pick a word",
        "R2",
        "Another",
        "R3",
    ]


async def test_copy_answers_lane_by_lane_copy_and_export_the_exchange(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "chat.json")
    sneaky = ["Paris", "\x1b]52;c;cm0gLXJm\x07", " is it."]
    with StandIn(Reply(tokens=["Paris", "."])) as a, StandIn(Reply(tokens=sneaky)) as b:
        app = app_for([a.url, b.url], store)
        async with app.run_test(size=SIZE) as pilot:
            chat = await ready(pilot, app)
            await pilot.press("f8")
            await pilot.pause()
            assert app.clipboard == ""  # nothing to copy yet: said, not raised
            chat.prompt_box.value = "Capital of France?"
            await pilot.press("enter")
            await settle(pilot, chat, 1)
            ex = chat.exchanges[0]

            await pilot.press("f8")
            assert app.clipboard == "Paris."
            await pilot.press("f8")  # again: the next lane, its escape sequence made visible
            assert app.clipboard == "Paris\\x1b]52;c;cm0gLXJm\\x07 is it."
            said = [n.message for n in app._notifications]
            assert any("copied bf16's answer" in m and "F8 again: awq" in m for m in said)
            assert any("copied awq's answer" in m and "OSC 52" in m for m in said)

            await pilot.press("f9")
            md = app.clipboard
            assert md == exchange_markdown(ex, chat.endpoints)
            assert md.startswith(f"# Exchange {ex.id}\n")
            assert "## Prompt" in md and "Capital of France?" in md
            assert "## bf16 (reference)" in md and "## awq (candidate)" in md
            assert "\x1b" not in md and "Paris." in md

            await pilot.press("ctrl+s")
            await pilot.pause()
            out = tmp_path / f"chat.{ex.id}.md"
            assert out.read_text(encoding="utf-8") == md
            assert any(str(out) in n.message for n in app._notifications)
    store.close()
