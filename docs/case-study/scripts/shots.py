"""Pilot screenshots of the chat, Runner and Telemetry tabs on live lanes (SVG files).

    python shots.py OUTDIR bf16=http://127.0.0.1:8000 fp8=http://127.0.0.1:8001 …

Drives QuantlabApp the way a person does: one prompt in the chat, a few sanity cases in
the Runner tab, then the Telemetry tab while 16 long answers per lane keep the servers busy.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
from textual.widgets import DataTable, Input, TabbedContent

from quantlab.records import Endpoint, SamplingParams
from quantlab.session import SessionStore
from quantlab.suites import find_suite
from tui.app import QuantlabApp
from tui.widgets.runner import RunnerPane

SIZE = (210, 58)
#: Long answers in flight per lane while the Telemetry tab is shot.
LOAD = int(os.environ.get("QL_SHOTS_LOAD", "16"))
PROMPT = "Explain in two sentences why the sky is blue."


async def until(pilot, cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(what)
        await pilot.pause(0.1)


async def load(eps: list[Endpoint], stop: asyncio.Event) -> None:
    """LOAD long answers per lane, again and again, until ``stop``: busy servers to show."""

    async def one(http: httpx.AsyncClient, ep: Endpoint) -> None:
        body = {
            "model": ep.model or ep.name,
            "messages": [{"role": "user", "content": "Tell a very long story."}],
            "max_tokens": 768,
            "ignore_eos": True,
            "stream": True,
        }
        while not stop.is_set():
            try:
                async with http.stream(
                    "POST", ep.base_url + "/v1/chat/completions", json=body
                ) as r:
                    async for _ in r.aiter_raw():
                        if stop.is_set():
                            break
            except httpx.HTTPError:
                await asyncio.sleep(0.5)

    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(one(http, ep) for ep in eps for _ in range(LOAD)))


async def main(out: Path, lanes: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    eps = []
    for i, spec in enumerate(lanes):
        name, _, url = spec.partition("=")
        eps.append(Endpoint(name=name, base_url=url, role="reference" if i == 0 else "candidate"))
    store = SessionStore.open(out / "shots-session.json", endpoints=eps)
    params = SamplingParams(temperature=0.0, max_tokens=96, seed=0)
    app = QuantlabApp(
        endpoints=eps,
        params=params,
        store=store,
        session_path=out / "shots-session.json",
        telemetry_hz=4.0,
    )
    async with app.run_test(size=SIZE) as pilot:
        chat = app.chat
        assert chat is not None
        await until(
            pilot, lambda: all(p.header.status != "connecting" for p in chat.panes), 60, "discovery"
        )
        box = chat.query_one("#prompt", Input)
        box.focus()
        box.value = PROMPT
        await pilot.press("enter")
        await until(pilot, lambda: len(chat.exchanges) == 1 and not chat.busy, 180, "chat answer")
        await pilot.pause(0.5)
        print("chat:", app.save_screenshot("chat.svg", str(out)), flush=True)

        tabs = app.query_one(TabbedContent)
        tabs.active = "tab-runner"
        await pilot.pause(0.5)
        pane = app.query_one(RunnerPane)
        base = find_suite("sanity")
        suite = replace(base, cases=base.cases[:8])
        pane.start([suite])
        await until(pilot, lambda: pane.runner is not None or pane.exchanges, 30, "run start")
        await until(pilot, lambda: pane.runner is None and len(pane.exchanges) >= 8, 300, "run")
        table = pane.query_one("#runner-table", DataTable)
        flagged = [i for i, k in enumerate(table.rows) if str(table.get_row(k)[-1]).strip()]
        table.focus()
        table.move_cursor(row=flagged[0] if flagged else 1)
        await pilot.pause(0.8)
        print("runner:", app.save_screenshot("runner.svg", str(out)), flush=True)

        stop = asyncio.Event()
        busy = asyncio.create_task(load(eps, stop))
        tabs.active = "tab-telemetry"
        await pilot.pause(6.0)
        print("telemetry:", app.save_screenshot("telemetry.svg", str(out)), flush=True)
        stop.set()
        busy.cancel()
        await asyncio.gather(busy, return_exceptions=True)
        await pilot.press("ctrl+q")
    store.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2:]))
