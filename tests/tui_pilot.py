"""Pilot helpers shared by the chat tests."""

from __future__ import annotations

import asyncio

from textual.pilot import Pilot

from tui.app import QuantlabApp
from tui.widgets.chat.chat_view import ChatView


async def ready(pilot: Pilot, app: QuantlabApp) -> ChatView:
    """The app's chat once every lane's discovery is over, its prompt box focused."""
    chat = app.chat
    assert chat is not None
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    while any(p.header.status == "connecting" for p in chat.panes):
        assert loop.time() < end, "discovery did not finish"
        await pilot.pause(0.05)
    chat.prompt_box.focus()
    return chat
