"""Screenshots of a page in headless Chromium, over the DevTools protocol (aiohttp, which
textual-serve brings): a web TUI draws after its websocket connects and its app process
starts, long after the page's load event, so screenshots are taken until the picture stops
changing rather than once at load (what ``chromium --screenshot`` does)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Cdp:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: object) -> dict:
        mid = next(self.ids)
        await self.ws.send_json({"id": mid, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})


async def _debugger_url(http: aiohttp.ClientSession, port_file: Path, deadline: float) -> str:
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            port = port_file.read_text().split()[0]
            try:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                    pages = [t for t in await r.json() if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            except aiohttp.ClientError:
                pass
        await asyncio.sleep(0.2)
    raise TimeoutError("Chromium's DevTools endpoint did not come up")


async def settled_screenshot(
    url: str, out: Path, size: tuple[int, int] = (1280, 800), timeout: float = 90.0
) -> list[int]:
    """Open ``url``, screenshot every 2 s until two pictures in a row are far fuller than
    the blank page shot first (a live TUI never holds still, so "the same twice" would not
    do); write the last to ``out``. Returns the PNG sizes seen, the blank page's first (the
    test's evidence that the TUI drew)."""
    exe = chromium()
    assert exe is not None
    profile = Path(tempfile.mkdtemp(prefix="quantlab-chromium-"))
    proc = subprocess.Popen(
        [exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    sizes: list[int] = []
    try:
        async with aiohttp.ClientSession() as http:
            ws_url = await _debugger_url(http, profile / "DevToolsActivePort", deadline)
            async with http.ws_connect(ws_url, max_msg_size=0) as ws:
                cdp = _Cdp(ws)
                await cdp.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=size[0],
                    height=size[1],
                    deviceScaleFactor=1,
                    mobile=False,
                )
                # The baseline: the blank page before the app's. On a quiet machine the
                # loading screen is gone before the first 2 s shot, so it cannot be the one.
                blank = base64.b64decode((await cdp.call("Page.captureScreenshot"))["data"])
                sizes.append(len(blank))
                await cdp.call("Page.navigate", url=url)
                shots: list[bytes] = [blank]
                while time.monotonic() < deadline:
                    await asyncio.sleep(2.0)
                    png = base64.b64decode((await cdp.call("Page.captureScreenshot"))["data"])
                    shots.append(png)
                    sizes.append(len(png))
                    if len(sizes) >= 3 and min(sizes[-2:]) > 1.5 * sizes[0]:
                        break
                out.write_bytes(shots[-1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return sizes
