"""Pilot tests of the chat screen on the real local pair (two llama.cpp servers).

Each test drives the app the way a person does (type, Enter, keys), waits for both lanes
to finish, and reads what the lanes show: text, metrics line, header; and what the session
file holds afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from quantlab.records import Endpoint, SamplingParams
from quantlab.session import SessionStore, load_session
from tui.app import QuantlabApp
from tui.widgets.chat.chat_view import ChatView
from tui.widgets.chat.params_dialog import ParamsDialog
from tui.widgets.chat.prompt_box import PromptBox

pytestmark = pytest.mark.slow

SIZE = (160, 48)


def fresh(endpoints: list[Endpoint]) -> list[Endpoint]:
    """Copies: the fixture's records are shared by every test."""
    return [dataclasses.replace(e) for e in endpoints]


def dead_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def ready(pilot: Pilot, app: QuantlabApp, timeout: float = 30.0) -> ChatView:
    """Wait until discovery answered for every lane."""
    chat = app.chat
    assert chat is not None
    for _ in range(int(timeout / 0.05)):
        if all(p.header.status != "connecting" for p in chat.panes):
            return chat
        await pilot.pause(0.05)
    raise AssertionError("discovery did not finish")


async def ask(pilot: Pilot, chat: ChatView, prompt: str, timeout: float = 120.0) -> None:
    """Type ``prompt`` into the prompt box, press Enter, wait until every lane is done."""
    box = chat.query_one("#prompt", PromptBox)
    box.focus()
    box.value = prompt
    before = len(chat.exchanges)
    await pilot.press("enter")
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while chat.busy or len(chat.exchanges) == before:
        assert loop.time() < end, "no exchange came back in time (was the prompt sent?)"
        await pilot.pause(0.05)
    assert box.value == "", "the prompt box keeps the sent prompt"
    await pilot.pause(0.1)


def params(**kw: object) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=40, seed=0, **kw)  # type: ignore[arg-type]


async def test_prompt_streams_to_both_lanes(local_pair: list[Endpoint], tmp_path: Path) -> None:
    store = SessionStore.open(tmp_path / "s.json")
    app = QuantlabApp(endpoints=fresh(local_pair), params=params(), store=store)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot, app)
        for pane in chat.panes:
            assert pane.header.status == "ready"
            assert "llama.cpp" in pane.header.plain
            assert "ctx 8,192" in pane.header.plain
        assert "BF16" in chat.panes[0].header.plain
        assert "Q4_0" in chat.panes[1].header.plain

        await ask(pilot, chat, "What is the capital of France?")

        exchange = chat.exchanges[-1]
        assert set(exchange.results) == {"bf16", "q4_0"}
        for pane in chat.panes:
            result = exchange.results[pane.lane]
            assert result.ok, result.error
            shown = pane.view.answer_text()
            assert shown.strip(), f"{pane.lane} shows no answer"
            assert shown == result.text.replace("\t", "    ")
            assert "› What is the capital of France?" in pane.view.text()
            line = pane.metrics.plain
            assert "TTFT" in line and "tok/s" in line and "tokens" in line and "e2e" in line
            assert result.finish_reason in line
            assert f"{result.timing.output_tokens} tokens" in line
            assert pane.header.status == "ready"
    store.close()
    saved = load_session(tmp_path / "s.json")
    assert [e.id for e in saved.exchanges] == [exchange.id]
    assert {k: v.text for k, v in saved.exchanges[0].results.items()} == {
        k: v.text for k, v in exchange.results.items()
    }


async def test_dead_lane_shows_its_error_and_the_other_answers(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    dead = Endpoint("dead", f"http://127.0.0.1:{dead_port()}", role="candidate")
    store = SessionStore.open(tmp_path / "s.json")
    app = QuantlabApp(endpoints=[fresh(local_pair)[0], dead], params=params(), store=store)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot, app)
        dead_pane = chat.pane("dead")
        assert dead_pane.header.status == "down"
        assert "refused" in dead_pane.header.plain

        await ask(pilot, chat, "Say hello.")

        exchange = chat.exchanges[-1]
        assert exchange.results["bf16"].ok
        assert chat.pane("bf16").view.answer_text().strip()
        assert exchange.results["dead"].error is not None
        assert exchange.results["dead"].error.kind == "connect"
        assert "✗ connect" in dead_pane.view.text()
        assert "refused" in dead_pane.view.text()
        assert dead_pane.metrics.plain.startswith("✗")
        assert "error: connect" in dead_pane.metrics.plain
        assert dead_pane.header.status == "error"
        assert chat.pane("bf16").header.status == "ready"
    store.close()
    saved = load_session(tmp_path / "s.json").exchanges[0]
    assert saved.results["dead"].error is not None and saved.results["bf16"].ok


async def test_multi_turn_then_new_conversation_clears(local_pair: list[Endpoint]) -> None:
    app = QuantlabApp(endpoints=fresh(local_pair), params=params())
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot, app)
        await ask(pilot, chat, "My name is Ada. Say hi.")
        await ask(pilot, chat, "What is my name?")
        second = chat.exchanges[-1]
        for lane in ("bf16", "q4_0"):
            roles = [m["role"] for m in second.messages[lane]]
            assert roles == ["user", "assistant", "user"], roles
            assert second.messages[lane][0]["content"] == "My name is Ada. Say hi."
            assert second.messages[lane][1]["content"] == chat.exchanges[0].results[lane].text

        await pilot.press("ctrl+n")
        await pilot.pause()
        for pane in chat.panes:
            assert pane.view.text() == ""
            assert pane.view.row_count == 0
        assert chat.conversation.turns == {"bf16": 0, "q4_0": 0}

        await ask(pilot, chat, "What is my name?")
        third = chat.exchanges[-1]
        for lane in ("bf16", "q4_0"):
            assert [m["role"] for m in third.messages[lane]] == ["user"]
        assert third.meta["conversation"] != second.meta["conversation"]


async def test_changed_params_are_sent_and_recorded(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    store = SessionStore.open(tmp_path / "s.json")
    app = QuantlabApp(endpoints=fresh(local_pair), params=params(), store=store)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot, app)
        await pilot.press("f2")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ParamsDialog)
        values = {
            "temperature": "0.5",
            "top_p": "0.9",
            "max_tokens": "12",
            "seed": "7",
            "system_prompt": "You answer in French.",
        }
        for key, value in values.items():
            dialog.query_one(f"#param-{key}", Input).value = value
        dialog.query_one("#param-seed", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, ParamsDialog)
        assert "temperature 0.5" in chat.query_one("#params-bar").plain  # type: ignore[attr-defined]

        await ask(pilot, chat, "Tell me a long story about a cat.")

        ex = chat.exchanges[-1]
        assert ex.params.temperature == 0.5
        assert ex.params.top_p == 0.9
        assert ex.params.max_tokens == 12
        assert ex.params.seed == 7
        assert ex.params.system_prompt == "You answer in French."
        for lane, result in ex.results.items():
            assert ex.messages[lane][0] == {"role": "system", "content": "You answer in French."}
            # The servers obeyed: the answer stopped at exactly 12 tokens.
            assert result.finish_reason == "length", lane
            assert result.timing.output_tokens == 12, lane
    store.close()
    saved = load_session(tmp_path / "s.json").exchanges[0]
    assert saved.params == ex.params


async def test_bad_param_is_named_and_nothing_changes(local_pair: list[Endpoint]) -> None:
    app = QuantlabApp(endpoints=fresh(local_pair), params=params())
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot, app)
        await pilot.press("f2")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ParamsDialog)
        dialog.query_one("#param-top_p", Input).value = "1.5"
        dialog.query_one("#param-top_p", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog
        assert "top_p" in str(dialog.query_one("#params-error").render())
        await pilot.press("escape")
        await pilot.pause()
        assert chat.params.top_p == 1.0


async def test_reopened_session_shows_history_and_continues(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    path = tmp_path / "s.json"
    store = SessionStore.open(path)
    app = QuantlabApp(endpoints=fresh(local_pair), params=params(), store=store)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot, app)
        await ask(pilot, chat, "Name a colour.")
        first = chat.exchanges[-1]
    store.close()

    store = SessionStore.open(path)
    history = list(store.session.exchanges)
    assert [e.id for e in history] == [first.id]
    app = QuantlabApp(
        endpoints=fresh(local_pair),
        params=params(),
        store=store,
        history=history,
        session_path=path,
    )
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot, app)
        for pane in chat.panes:
            text = pane.view.text()
            assert "history · 1 exchange(s) from s.json" in text
            assert "› Name a colour." in text
            assert first.results[pane.lane].text.strip().splitlines()[0] in text
            assert "TTFT" in pane.metrics.plain
        await ask(pilot, chat, "Name another one.")
        second = chat.exchanges[-1]
        for lane in ("bf16", "q4_0"):
            assert [m["role"] for m in second.messages[lane]] == ["user", "assistant", "user"]
            assert second.messages[lane][1]["content"] == first.results[lane].text
    store.close()
    assert [e.id for e in load_session(path).exchanges] == [first.id, second.id]


async def test_chat_flags_findings_and_f3_annotates_into_the_session(tmp_path: Path) -> None:
    """The detectors judge every chat answer (flags under the lane), and F3 opens the
    annotation form for the last exchange; the annotation is in the session file at once.

    Scripted servers: the real Q4_0 lane's exact damage varies with its cache state, and
    this test is about what the chat shows, not about the model."""
    from standin import Reply, StandIn

    from tui.widgets.common.annotate import AnnotationForm

    good = Reply(tokens=["The", " Pacific", " Ocean", "."])
    loop = Reply(
        tokens=["The", " Pacific", " is", " the", " Pacific,"] + [" the Pacific,"] * 40,
        finish_reason="length",
    )
    store = SessionStore.open(tmp_path / "s.json")
    with StandIn(good) as ref, StandIn(loop) as cand:
        eps = [Endpoint("bf16", ref.url, role="reference"), Endpoint("awq", cand.url)]
        app = QuantlabApp(endpoints=eps, params=SamplingParams(max_tokens=45), store=store)
        async with app.run_test(size=SIZE) as pilot:
            chat = await ready(pilot, app)
            await ask(pilot, chat, "What is the largest ocean on Earth?")
            exchange = chat.exchanges[-1]
            flagged = [f for f in exchange.results["awq"].findings if f.severity != "info"]
            assert {"repetition", "truncation"} <= {f.detector for f in flagged}
            shown = chat.pane("awq").view.text()
            assert all(f"{f.detector} ({f.severity})" in shown for f in flagged)
            assert "repetition" not in chat.pane("bf16").view.text()

            await pilot.press("f3")
            await pilot.pause()
            assert isinstance(app.screen, AnnotationForm)
            await pilot.press("space")  # first tag: "repetition loop"
            await pilot.press("ctrl+s")
            await pilot.pause(0.3)
            on_disk = load_session(tmp_path / "s.json")  # read while the writer is still open
            assert [(a.exchange_id, a.tags) for a in on_disk.annotations] == [
                (exchange.id, ["repetition loop"])
            ]
    store.close()
