"""An exchange stopped mid-answer (Esc in the chat) is kept: finished lanes as they are,
the others with their partial text marked stopped, saved whole when the caller asks.

Scripted servers (tests/standin.py): one lane answers at once, the other drips slowly, so
the stop always lands after the first finished and inside the second's answer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from standin import Reply, StandIn

from quantlab.client import LaneClient
from quantlab.fanout import Conversation, ExchangeStopped
from quantlab.pipeline import send_exchange
from quantlab.records import Endpoint, SamplingParams
from quantlab.session import SessionStore, load_session

PARAMS = SamplingParams(max_tokens=500)
SLOW = ["w1", " w2", " w3"] * 100


async def stop_midway(store: SessionStore | None, *, keep: bool) -> ExchangeStopped:
    """Run one exchange, cancel it once ``fast`` is done and ``slow`` has sent text."""
    with (
        StandIn(Reply(tokens=["All", " done", "."])) as fast_s,
        StandIn(Reply(tokens=SLOW, tokens_per_s=40)) as slow_s,
    ):
        clients = [
            LaneClient(Endpoint("fast", fast_s.url, role="reference")),
            LaneClient(Endpoint("slow", slow_s.url)),
        ]
        seen: dict[str, str] = {"fast": "", "slow": ""}
        finished: list[str] = []

        def on_text(lane: str, delta: str) -> None:
            seen[lane] += delta

        task = asyncio.create_task(
            send_exchange(
                clients,
                {c.name: [{"role": "user", "content": "go"}] for c in clients},
                PARAMS,
                prompt="go",
                source="chat",
                reference="fast",
                meta={"conversation": "c1"},
                on_text=on_text,
                on_lane_done=lambda lane, _r: finished.append(lane),
                store=store,
                save_lanes=store is not None,
                keep_stopped=keep,
            )
        )
        for _ in range(400):
            if finished == ["fast"] and len(seen["slow"]) >= 9:
                break
            await asyncio.sleep(0.02)
        assert finished == ["fast"], "the fast lane did not finish first"
        task.cancel()
        with pytest.raises(ExchangeStopped) as info:
            await task
        assert task.cancelled()  # still a cancellation for whoever awaits the task
        for c in clients:
            await c.aclose()
        info.value.seen = seen  # type: ignore[attr-defined]
        return info.value


async def test_a_stopped_exchange_keeps_partial_text_and_is_saved(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.json")
    stopped = await stop_midway(store, keep=True)
    ex = stopped.exchange
    fast, slow = ex.results["fast"], ex.results["slow"]
    assert fast.ok and not fast.stopped and fast.text == "All done."
    assert slow.stopped and not slow.ok and slow.error is not None
    assert slow.error.kind == "cancelled"
    # What had come is kept: at least what the screen saw when Esc was pressed, and only
    # the answer's own beginning.
    shown = stopped.seen["slow"]  # type: ignore[attr-defined]
    assert slow.text.startswith(shown[:9]) and "".join(SLOW).startswith(slow.text)
    assert slow.timing.ttft_ms is not None and slow.timing.e2e_ms is not None
    assert ex.meta["stopped"] is True and ex.meta["conversation"] == "c1"
    store.close()
    saved = load_session(tmp_path / "s.json")
    assert [e.id for e in saved.exchanges] == [ex.id]
    back = saved.exchanges[0].results
    assert back["fast"].text == "All done." and not back["fast"].stopped
    assert back["slow"].stopped and back["slow"].text == slow.text


async def test_without_keep_stopped_only_finished_lanes_were_saved(tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.json")
    stopped = await stop_midway(store, keep=False)
    store.close()
    saved = load_session(tmp_path / "s.json")
    # save_lanes wrote the fast lane when it ended; the stopped one was never written.
    assert [list(e.results) for e in saved.exchanges] == [["fast"]]
    assert stopped.exchange.results["slow"].stopped


async def test_a_stopped_exchange_stays_out_of_the_conversation() -> None:
    stopped = await stop_midway(None, keep=True)
    conv = Conversation(["fast", "slow"])
    conv.record(stopped.exchange)
    assert conv.turns == {"fast": 0, "slow": 0}


class _OrderStore:
    """Records when the exchange is saved, relative to the streams-ended callback."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def save_lane(self, *_: object) -> None:
        self.events.append("save_lane")

    def append_exchange(self, *_: object) -> None:
        self.events.append("append_exchange")


def test_streams_ended_fires_once_before_judging_and_saving() -> None:
    """The runner frees a request's concurrency slot at ``on_streams_ended``: it must come
    when the last lane's stream ends, once, before the saves (else "64 in flight" counts
    exchanges being written, and the server sees fewer)."""
    events: list[str] = []

    async def go() -> None:
        with (
            StandIn(Reply(tokens=["a", " b"])) as a_s,
            StandIn(Reply(tokens=["c"] * 20, tokens_per_s=200)) as b_s,
        ):
            clients = [
                LaneClient(Endpoint("a", a_s.url, role="reference")),
                LaneClient(Endpoint("b", b_s.url)),
            ]

            def on_lane_done(lane: str, _result: object) -> None:
                events.append(f"done:{lane}")

            try:
                await send_exchange(
                    clients,
                    {c.name: [{"role": "user", "content": "hi"}] for c in clients},
                    PARAMS,
                    prompt="hi",
                    source="test",
                    reference="a",
                    store=_OrderStore(events),  # type: ignore[arg-type]
                    save_lanes=True,
                    on_lane_done=on_lane_done,
                    on_streams_ended=lambda: events.append("ended"),
                )
            finally:
                for c in clients:
                    await c.aclose()

    asyncio.run(go())
    assert events.count("ended") == 1
    # a finished first: its lane is judged and saved while b still streams; "ended" comes
    # with b's end, before b's lane save and before the exchange is written
    assert events.index("ended") > events.index("done:a")
    assert events.index("ended") < events.index("done:b") < events.index("append_exchange")
    assert events[-1] == "append_exchange"
