"""Snapshots of the chat screen after one exchange: stacked (80x24) and side by side (160x48).

Made stable: the two lanes are stand-in servers on fixed ports with fixed answers (one
sensible, one looping like a damaged quant), and the client-measured timings on the
metrics lines are replaced by fixed numbers once the lanes finish (the Pilot tests on the
real pair check the live ones). Update with ``pytest tests/test_tui_snapshot.py
--snapshot-update`` after a deliberate change of the look, and look at the SVGs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from standin import Reply, StandIn
from textual.pilot import Pilot

from quantlab.records import Endpoint, SamplingParams, Timing
from tui.app import QuantlabApp
from tui.theme import load_app_themes
from tui.widgets.chat.prompt_box import PromptBox

PORTS = (18141, 18142)  # fixed: the port is shown in the lane header

REFERENCE = [
    "The", " capital", " of", " France", " is", " Paris", ".", "\n\n",
    "```python", "\n", "def", " capital", "(", "country", "):", "\n",
    "    return", ' "Paris"', "\n", "```", "\n", "#", " Done", "\n", "It", " has",
    " about", " 2.1", " million", " people", ".",
]  # fmt: skip
CANDIDATE = ["The", " capital", " of", " France", " is", " Paris", ",", " Paris", ","] + [
    " Paris",
    ",",
] * 12


@pytest.fixture(scope="module")
def lanes() -> Iterator[list[str]]:
    with (
        # version pinned: the saved pictures show "vllm 0.11.0" in the lane headers
        StandIn(
            Reply(tokens=REFERENCE),
            model="Qwen/Qwen2.5-1.5B-Instruct",
            port=PORTS[0],
            version="0.11.0",
        ) as a,
        StandIn(
            Reply(tokens=CANDIDATE),
            model="Qwen/Qwen2.5-1.5B-Instruct-AWQ",
            port=PORTS[1],
            version="0.11.0",
        ) as b,
    ):
        yield [a.url, b.url]


def make_app(urls: list[str]) -> QuantlabApp:
    endpoints = [
        Endpoint("bf16", urls[0], role="reference"),
        Endpoint("awq", urls[1], role="candidate"),
    ]
    return QuantlabApp(
        endpoints=endpoints,
        params=SamplingParams(max_tokens=64, system_prompt="Be brief."),
        themes=load_app_themes(None),
    )


async def one_exchange(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, QuantlabApp)
    chat = app.chat
    assert chat is not None
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    while any(p.header.status == "connecting" for p in chat.panes):
        assert loop.time() < end
        await pilot.pause(0.05)
    box = chat.query_one("#prompt", PromptBox)
    box.value = "What is the capital of France?"
    await pilot.press("enter")
    while chat.busy or not chat.exchanges:
        assert loop.time() < end
        await pilot.pause(0.05)
    # Freeze the client's timings (they differ on every run); tokens come from the server.
    exchange = chat.exchanges[-1]
    for i, pane in enumerate(chat.panes):
        r = exchange.results[pane.lane]
        r.timing = Timing(
            ttft_ms=120.0 / (i + 1),
            e2e_ms=640.0 / (i + 1),
            output_tokens=r.timing.output_tokens,
            tokens_per_s=48.5 * (i + 1),
        )
        pane.metrics.show_result(r)
    chat._show_speedups(exchange)
    box.cursor_blink = False  # a blinking cursor is on or off depending on the moment
    box.focus()
    await pilot.pause(0.1)


def test_chat_stacked_80x24(snap_compare: Any, lanes: list[str]) -> None:
    assert snap_compare(make_app(lanes), terminal_size=(80, 24), run_before=one_exchange)


def test_chat_side_by_side_160x48(snap_compare: Any, lanes: list[str]) -> None:
    assert snap_compare(make_app(lanes), terminal_size=(160, 48), run_before=one_exchange)
