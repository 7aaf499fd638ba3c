"""The candidate lane's agreement row while both lanes stream (issue 11): live
shared-prefix numbers first, the final row once the exchange is complete.

Two stand-in servers (vLLM's wire format, logprobs in the streamed chunks) drip the same
answer with different ``p_actual``, so the KL is known and not zero.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from standin import Reply, StandIn
from textual.pilot import Pilot
from tui_pilot import ready

from quantlab.agreement.live import LiveExchange
from quantlab.records import Endpoint, SamplingParams
from tui.app import QuantlabApp
from tui.widgets.chat.chat_view import ChatView
from tui.widgets.chat.lane_pane import METRICS_HZ

pytestmark = pytest.mark.slow

WORDS = [f" w{i}" for i in range(60)]
#: Slow enough that the flush clock ticks many times while both lanes stream, even on a
#: loaded machine (the stand-ins are threads of this process: starved, they deliver in
#: bursts, and a stream that arrives whole between two ticks has no live row to show).
RATE = 15


@contextlib.asynccontextmanager
async def two_lanes(
    words: list[str], rate: float, max_tokens: int
) -> AsyncIterator[tuple[Pilot[int], ChatView]]:
    """The app on two stand-ins dripping ``words`` (reference p_actual 0.7, candidate 0.5),
    top-5 logprobs, discovery done."""
    with (
        StandIn(Reply(tokens=words, tokens_per_s=rate), p_actual=0.7) as ref,
        StandIn(Reply(tokens=words, tokens_per_s=rate), p_actual=0.5) as cand,
    ):
        eps = [Endpoint("bf16", ref.url, role="reference"), Endpoint("q4", cand.url)]
        params = SamplingParams(max_tokens=max_tokens, top_logprobs=5)
        app = QuantlabApp(endpoints=eps, params=params)
        async with app.run_test(size=(120, 40)) as pilot:
            yield pilot, await ready(pilot, app)


async def ask_and_wait(pilot: Pilot[int], chat: ChatView, timeout: float = 30) -> float:
    """Send a prompt and wait for the exchange to end; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    chat.prompt_box.value = "Say the words"
    await pilot.press("enter")
    while chat.busy or not chat.exchanges:
        assert loop.time() < t0 + timeout, "the exchange did not end"
        await pilot.pause(0.02)
    return loop.time() - t0


async def test_candidate_row_is_live_while_streaming_then_final() -> None:
    async with two_lanes(WORDS, RATE, 200) as (pilot, chat):
        loop = asyncio.get_running_loop()
        chat.prompt_box.value = "Say the words"
        await pilot.press("enter")

        metrics = chat.pane("q4").metrics
        seen: list[str] = []
        end = loop.time() + 30
        while chat.busy or not chat.exchanges:
            assert loop.time() < end, "the exchange did not end"
            row = metrics.plain.partition("\n")[2]
            if row and chat.busy and (not seen or seen[-1] != row):
                seen.append(row)
            await pilot.pause(0.02)
        live = [r for r in seen if "live KL" in r]
        assert len(live) >= 2, seen  # updated as tokens came, before the exchange ended
        counts = [int(r.split(" · ")[-1].split()[0]) for r in live if "so far" in r]
        assert counts == sorted(counts) and 0 < counts[0] < len(WORDS), live
        assert "live" not in chat.pane("bf16").metrics.plain  # the reference has none

        await pilot.pause(0.1)
        final = metrics.plain.partition("\n")[2]
        assert final.startswith("≈ KL ") and "live" not in final and "so far" not in final
        ag = chat.exchanges[-1].results["q4"].agreement
        assert ag is not None and ag["mean_kl"] > 0.01
        assert f"KL {ag['mean_kl']:.3f}" in final
        # vLLM-like servers: the final row is teacher-forced over the whole answer; the toy
        # model's KL is the same at every position, so the live mean already showed it
        assert ag["method"] == "teacher-forced" and "teacher-forced 60 tokens" in final
        assert live[-1].startswith(f"≈ live KL {ag['mean_kl']:.3f} · top-1 100 %")


async def test_numbers_are_drawn_at_their_own_pace_not_each_flush(monkeypatch) -> None:
    """A lane's metrics line (numbers and live row) is redrawn at most METRICS_HZ times a
    second, all lanes in the same tick, however often the text is flushed: each redraw
    costs about a millisecond a lane, and numbers changing 30 times a second are not read."""
    words = [f" w{i}" for i in range(400)]
    async with two_lanes(words, 250, 500) as (pilot, chat):
        drawn: dict[str, set[int]] = {"bf16": set(), "q4": set()}  # clock ticks
        for pane in chat.panes:
            original = pane.metrics._set

            def spy(*args: object, _orig=original, _lane=pane.lane, **kw: object) -> None:
                if chat.busy:
                    drawn[_lane].add(chat.clock.ticks)
                _orig(*args, **kw)  # type: ignore[arg-type]

            monkeypatch.setattr(pane.metrics, "_set", spy)
        ticks0 = chat.clock.ticks
        seconds = await ask_and_wait(pilot, chat)
        ticks = chat.clock.ticks - ticks0
        bound = METRICS_HZ * seconds + 3
        assert ticks > bound, (ticks, seconds)  # the text was flushed more often
        for lane, at in drawn.items():
            assert 4 <= len(at) <= bound, (lane, len(at), bound)
        assert len(drawn["bf16"] & drawn["q4"]) >= len(drawn["q4"]) - 3  # same ticks


async def test_new_text_is_drawn_before_the_live_parse(monkeypatch) -> None:
    """The live agreement's parse (a few ms a tick at top-20) runs after the frame that
    shows the flushed text, never inside the flush tick, so the text does not wait."""
    words = [f" w{i}" for i in range(200)]
    async with two_lanes(words, 200, 300) as (pilot, chat):
        views = [p.view for p in chat.panes]
        in_tick = False
        painted = 0  # paints when the last tick began
        outside: list[bool] = []  # per parse: not inside a tick
        drawn: list[bool] = []  # per parse: a paint since the last tick began
        tick = chat.clock.tick

        def spy_tick() -> None:
            nonlocal in_tick, painted
            in_tick, painted = True, sum(v.paints for v in views)
            tick()
            in_tick = False

        update = LiveExchange.update

        def spy_update(self: LiveExchange, limit: int | None = None) -> list[str]:
            outside.append(not in_tick)
            drawn.append(sum(v.paints for v in views) > painted)
            return update(self, limit)

        monkeypatch.setattr(chat.clock, "tick", spy_tick)
        monkeypatch.setattr(LiveExchange, "update", spy_update)
        await ask_and_wait(pilot, chat)
        assert len(outside) >= 5 and all(outside), outside
        # the first and the last parse may follow a tick that painted nothing new
        assert sum(drawn) >= len(drawn) - 2, [i for i, d in enumerate(drawn) if not d]
