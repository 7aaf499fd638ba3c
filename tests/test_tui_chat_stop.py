"""Esc mid-answer in the chat: the stopped exchange is kept, counted, told truthfully and
is the one F3 annotates (issue 12, item 2).

Scripted servers: the reference answers at once, the candidate drips, so Esc always lands
after one lane finished and inside the other's answer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from standin import Reply, StandIn
from tui_pilot import ready

from quantlab.records import Endpoint, SamplingParams
from quantlab.session import SessionStore, load_session
from tui.app import QuantlabApp
from tui.widgets.common.annotate import AnnotationForm

pytestmark = pytest.mark.slow

SLOW = ["one", " two", " three"] * 100


async def test_esc_keeps_the_stopped_exchange_and_f3_annotates_it(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.json")
    with (
        StandIn(Reply(tokens=["Quick", " answer", "."])) as ref,
        StandIn(Reply(tokens=SLOW, tokens_per_s=30)) as cand,
    ):
        eps = [Endpoint("bf16", ref.url, role="reference"), Endpoint("awq", cand.url)]
        app = QuantlabApp(endpoints=eps, params=SamplingParams(max_tokens=500), store=store)
        async with app.run_test(size=(120, 40)) as pilot:
            chat = await ready(pilot, app)
            loop = asyncio.get_running_loop()
            chat.prompt_box.value = "Count for me"
            await pilot.press("enter")
            end = loop.time() + 30
            while not (
                chat.pane("bf16").header.status == "ready"
                and not chat.pane("bf16").streaming
                and "three" in chat.pane("awq").view.text()
            ):
                assert loop.time() < end, "the lanes did not get going"
                await pilot.pause(0.05)
            assert chat.busy and chat.exchanges == []

            await pilot.press("escape")
            end = loop.time() + 10
            while chat.busy:
                assert loop.time() < end, "Esc did not stop the exchange"
                await pilot.pause(0.05)
            await pilot.pause(0.1)

            # Kept and counted: one exchange, its finished lane whole, the other partial.
            assert len(chat.exchanges) == 1
            ex = chat.exchanges[0]
            assert ex.meta.get("stopped") is True
            assert ex.results["bf16"].text == "Quick answer." and not ex.results["bf16"].stopped
            awq = ex.results["awq"]
            assert awq.stopped and awq.text and "".join(SLOW).startswith(awq.text)
            assert "1 exchange" in app.query_one("AppBar").plain  # type: ignore[attr-defined]
            assert chat.pane("awq").header.status == "stopped"
            # The toast tells what happened, lane by lane.
            said = [n.message for n in app._notifications]
            assert any(
                "bf16 finished" in m and "awq stopped" in m and "saved" in m for m in said
            ), said
            assert not any("lanes that had finished are saved" in m for m in said)

            # F3 annotates the stopped exchange, and the note is saved against its id.
            await pilot.press("f3")
            await pilot.pause()
            assert isinstance(app.screen, AnnotationForm)
            await pilot.press("space")
            await pilot.press("ctrl+s")
            await pilot.pause(0.3)
            on_disk = load_session(tmp_path / "s.json")
            assert [a.exchange_id for a in on_disk.annotations] == [ex.id]
            kept = on_disk.exchange(ex.id)
            assert kept is not None and kept.results["awq"].stopped
            assert kept.results["awq"].text == awq.text

            # The next prompt is sent after the same turns on every lane (none, here).
            cand.script = Reply(tokens=["Fine", "."])
            chat.prompt_box.value = "Again"
            await pilot.press("enter")
            end = loop.time() + 30
            while chat.busy or len(chat.exchanges) < 2:
                assert loop.time() < end, "the second exchange did not come back"
                await pilot.pause(0.05)
            second = chat.exchanges[-1]
            assert [[m["role"] for m in second.messages[n]] for n in ("bf16", "awq")] == [
                ["user"],
                ["user"],
            ]
    store.close()
