"""``quantlab web``: the TUI served by textual-serve, started as a person starts it, its page
fetched over HTTP, its app process driven through the websocket the page opens, and (where
Chromium is installed) the page drawn in headless Chromium. Plus the checks that keep a
mistake on the terminal: a busy port, a bad config."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from quantlab.cli import build_parser, main
from quantlab.commands.web import child_argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, subprocess.Popen[str], list[str]]]:
    """``quantlab web top`` on a free loopback port: (URL, process, its first lines). One
    server for the module: each test's connection gets its own app process anyway."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantlab", "web", "--port", str(port), "top"],
        cwd=tmp_path_factory.mktemp("web"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=2)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    try:
        yield url, proc, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0  # SIGTERM is a clean stop


def test_it_says_where_it_serves_and_the_tunnel_to_it(
    served: tuple[str, subprocess.Popen[str], list[str]],
) -> None:
    url, _, lines = served
    port = url.rsplit(":", 1)[1]
    assert lines[0].startswith(f"quantlab web: serving top (telemetry) at {url} ")
    assert f"ssh -N -L {port}:127.0.0.1:{port} USER@" in lines[1]
    assert f"then open http://127.0.0.1:{port}" in lines[1]


async def test_the_page_and_the_tui_behind_its_websocket(
    served: tuple[str, subprocess.Popen[str], list[str]],
) -> None:
    url, _, _ = served
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        page = await http.get(url + "/")
        js = await http.get(url + "/static/js/textual.js")
    assert page.status_code == 200 and "textual.js" in page.text
    assert f"ws://127.0.0.1:{url.rsplit(':', 1)[1]}/ws" in page.text
    assert js.status_code == 200 and len(js.content) > 10_000
    # What the page's script does: open the websocket, and get the app's screen.
    screen = b""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url + "/ws?width=100&height=30") as ws,
    ):
        deadline = time.monotonic() + 90
        while b"top: GPUs and host" not in screen and time.monotonic() < deadline:
            try:
                msg = await asyncio.wait_for(ws.receive(), 2)
            except TimeoutError:
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                screen += msg.data
            elif msg.type != aiohttp.WSMsgType.TEXT:
                break
    assert b"quantlab" in screen and b"top: GPUs and host" in screen


@pytest.mark.slow
async def test_headless_chromium_draws_the_tui(
    served: tuple[str, subprocess.Popen[str], list[str]], tmp_path: Path
) -> None:
    from chromium_shot import chromium, settled_screenshot

    if chromium() is None:
        pytest.skip("no chromium here (apt-get install -y chromium)")
    url, _, _ = served
    out = Path(os.environ.get("QUANTLAB_WEB_SHOT", tmp_path / "web.png"))
    sizes = await settled_screenshot(url + "/", out)
    # The blank page first, then the far fuller TUI.
    assert out.stat().st_size == sizes[-1] and sizes[-1] > 1.5 * sizes[0]


def test_a_busy_port_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["web", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"quantlab web: port {port} on 127.0.0.1 is in use; pick another with --port\n"


def test_a_bad_config_is_said_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["web", "--config", str(tmp_path / "nope.toml"), "--port", "1"]) == 2
    assert "nope.toml: no such config file" in capsys.readouterr().err


def test_each_connection_runs_quantlab_with_the_flags_given(tmp_path: Path) -> None:
    cfg = tmp_path / "q.toml"
    args = build_parser().parse_args(
        ["web", "--endpoint", "bf16=http://h:8000", "--config", str(cfg), "top"]
    )
    assert args.host == "127.0.0.1" and args.port == 8000
    assert child_argv(args) == [
        sys.executable,
        "-m",
        "quantlab",
        "--endpoint",
        "bf16=http://h:8000",
        "--config",
        str(cfg.resolve()),
        "top",
    ]
    chat = build_parser().parse_args(["web", "--host", "0.0.0.0", "--demo"])
    assert chat.host == "0.0.0.0" and child_argv(chat)[3:] == ["--demo"]
