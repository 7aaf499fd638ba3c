"""The chat saves each lane the moment it completes: a slow lane still streaming does not
hold back a finished one (a crash then loses only what was in flight)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from standin import Reply, StandIn

from quantlab.records import Endpoint, SamplingParams
from quantlab.session import SessionStore, load_session
from tui.app import QuantlabApp
from tui.widgets.chat.prompt_box import PromptBox


async def test_fast_lane_is_on_disk_while_the_slow_one_streams(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    fast_reply = Reply(tokens=["Quick", " answer", "."])
    slow_reply = Reply(tokens=["slow"], n_tokens=40, tokens_per_s=10)  # a slow drip: ~4 s
    with StandIn(fast_reply) as fast, StandIn(slow_reply) as slow:
        store = SessionStore.open(path)
        endpoints = [Endpoint("fast", fast.url, role="reference"), Endpoint("slow", slow.url)]
        app = QuantlabApp(endpoints=endpoints, params=SamplingParams(max_tokens=64), store=store)
        async with app.run_test(size=(120, 30)) as pilot:
            chat = app.chat
            assert chat is not None
            chat.query_one("#prompt", PromptBox).value = "hello"
            await pilot.press("enter")
            loop = asyncio.get_running_loop()
            end = loop.time() + 20
            while not chat.pane("fast").metrics.plain.startswith("✓"):
                assert loop.time() < end
                await pilot.pause(0.05)
            await pilot.pause(0.3)  # the save runs on a worker thread
            assert chat.busy and chat.pane("slow").streaming

            on_disk = load_session(path).exchanges
            assert len(on_disk) == 1
            assert set(on_disk[0].results) == {"fast"}
            assert on_disk[0].results["fast"].text == "Quick answer."
            assert on_disk[0].prompt == "hello"

            while chat.busy:
                assert loop.time() < end
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            done = load_session(path).exchanges
            assert [e.id for e in done] == [on_disk[0].id]
            assert done[0].results["slow"].text == "slow" * 40
            assert done[0].wall_ms is not None
        store.close()
