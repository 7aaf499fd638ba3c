"""ChatView: the chat tab — one LanePane per endpoint, the parameters line, the prompt box.

It wires the core to the panes and adds no logic of its own: prompts go through
:func:`quantlab.pipeline.send_exchange` (the same path as ``quantlab ask`` and the runner:
send, detect, save), each lane keeps its own history in a
:class:`quantlab.fanout.Conversation`, and every lane's result is saved to the session the
moment that lane completes, then the whole exchange with its findings once all lanes are
done. An exchange stopped with Esc is kept too: the finished lanes as they are, the others
with their partial text marked stopped (the pipeline saves it); it counts as an exchange
and is the one F3 annotates. The lanes scroll together while :attr:`ChatView.link` is
linked (tui.widgets.chat.scroll_link says how).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical
from textual.message import Message
from textual.worker import Worker, WorkerState

from quantlab.agreement.live import LiveExchange
from quantlab.client import LaneClient
from quantlab.fanout import Conversation, ExchangeStopped
from quantlab.fsio import atomic_write
from quantlab.lanes import reference_lane
from quantlab.limits import ClientLimits
from quantlab.pipeline import send_exchange
from quantlab.records import Endpoint, Exchange, LaneResult, SamplingParams, new_id
from quantlab.textsafe import safe_text
from tui.widgets.chat.lane_pane import METRICS_HZ, LanePane
from tui.widgets.chat.params_bar import ParamsBar
from tui.widgets.chat.prompt_box import PromptBox
from tui.widgets.chat.scroll_link import ScrollLink
from tui.widgets.chat.stream_view import FlushClock

if TYPE_CHECKING:
    from quantlab.session import SessionStore


def conversation_of(ex: Exchange) -> str | None:
    """The chat conversation an exchange belongs to (None for older or non-chat ones)."""
    conv = ex.meta.get("conversation") if isinstance(ex.meta, dict) else None
    return conv if isinstance(conv, str) else None


#: Said after a copy: the clipboard is reached through the terminal (OSC 52), which may
#: refuse (tmux needs ``set -g set-clipboard on``).
CLIPBOARD_NOTE = " to the clipboard (OSC 52: in tmux, set -g set-clipboard on)"


def stopped_summary(exchange: Exchange, *, saved: bool) -> str:
    """The toast after Esc: which lanes had finished, which were stopped, where it went."""
    done = [n for n, r in exchange.results.items() if not r.stopped]
    cut = [n for n, r in exchange.results.items() if r.stopped]
    parts = [f"{', '.join(done)} finished" if done else "no lane had finished"]
    if cut:
        parts.append(f"{', '.join(cut)} stopped (partial text kept)")
    where = "saved to the session" if saved else "kept in this chat (not in a session file)"
    return f"stopped: {'; '.join(parts)}; {where}, F3 annotates it"


#: Chunks per lane the live agreement parses at one flush tick (~3 ms for three lanes at
#: top-20): 720 tokens a second per lane at 30 Hz, ahead of any real server's stream, and
#: a 2,000 tok/s stand-in no longer costs the screen its frame rate (benchmarks/ui_lag.py).
LIVE_CHUNKS_PER_TICK = 24


class ChatView(Vertical):
    """The split-screen chat. ``store`` is a :class:`quantlab.session.SessionStore` (or
    None: nothing is saved); ``history`` the exchanges of a reopened session;
    ``scroll_linked``: the lanes start scrolling together."""

    DEFAULT_CSS = """
    ChatView { height: 1fr; }
    ChatView > #lanes { layout: horizontal; height: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "retry", "Retry", show=False, tooltip="Send the last prompt again"),
        Binding("f8", "copy_answer", "Copy answer", show=False),
        Binding("f9", "copy_exchange", "Copy exchange", show=False),
        Binding("ctrl+s", "export_markdown", "Export", show=False),
    ]

    class Changed(Message):
        """The chat's state changed: number of exchanges, streaming or not."""

        def __init__(self, exchanges: int, busy: bool) -> None:
            super().__init__()
            self.exchanges = exchanges
            self.busy = busy

    class ExchangeDone(Message):
        """An exchange finished (all lanes); tests and other panes can listen."""

        def __init__(self, exchange: Exchange) -> None:
            super().__init__()
            self.exchange = exchange

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        params: SamplingParams | None = None,
        store: SessionStore | None = None,
        history: Sequence[Exchange] = (),
        history_label: str | None = None,
        read_timeout: float = 300.0,
        limits: ClientLimits | None = None,
        stacked: bool = False,
        compact: bool = False,
        scroll_linked: bool = True,
        id: str | None = None,
    ) -> None:
        """``stacked`` / ``compact``: the layout to start in (the app keeps it up to date
        after a resize); known before the first styling, it costs no restyle."""
        super().__init__(id=id)
        self.stacked = stacked
        self.endpoints = list(endpoints)
        self.params = params or SamplingParams()
        self.store = store
        self.history = list(history)
        self.history_label = history_label
        self.clients = [
            LaneClient(ep, limits=limits) if limits else LaneClient(ep, read_timeout=read_timeout)
            for ep in self.endpoints
        ]
        # One flush clock for all lanes: their text reaches the screen in one refresh.
        self.clock = FlushClock(hz=30.0)
        self.panes = [LanePane(ep, i, clock=self.clock) for i, ep in enumerate(self.endpoints)]
        if compact:
            for pane in self.panes:
                pane.header.add_class("-compact", update=False)
        self.clock.listeners.append(self._after_flush)
        self.link = ScrollLink([p.view for p in self.panes], linked=scroll_linked)
        for pane in self.panes:
            pane.header.linked = scroll_linked and len(self.panes) > 1
        self.prompt_box = PromptBox(id="prompt")
        self.params_bar = ParamsBar(self.params, id="params-bar")
        self.conversation = Conversation([ep.name for ep in self.endpoints])
        self.conversation_id = new_id()
        self.exchanges: list[Exchange] = list(self.history)
        self.busy = False
        self.save_errors: list[str] = []
        self._worker: Worker[Exchange | None] | None = None
        #: The streaming exchange's live agreement (None when idle or without logprobs).
        self._live: LiveExchange | None = None
        self._live_changed: set[str] = set()  # lanes whose live row changed, not yet drawn
        self._numbers_at = 0.0  # when the lanes' numbers were last drawn
        self._parse_queued = False  # a live parse waits for the next frame
        #: (exchange id, lane index, when) of the last F8: pressed again soon, the next lane.
        self._copied: tuple[str, int, float] | None = None

    def compose(self) -> ComposeResult:
        with Container(id="lanes", classes="-stacked" if self.stacked else ""):
            yield from self.panes
        yield self.params_bar
        yield self.prompt_box

    def on_mount(self) -> None:
        self._show_history()
        # After the first frame: the lanes' probes (several requests each) need not hold
        # it up, and a server still starting answers none of them yet anyway.
        self.call_after_refresh(self.discover)
        self.prompt_box.focus()

    async def on_unmount(self) -> None:
        # Workers first: a discovery or an exchange still running would send on a closed
        # client (an app quit while the lanes were being discovered raised from a worker).
        self.workers.cancel_node(self)
        await asyncio.gather(*(c.aclose() for c in self.clients), return_exceptions=True)

    def _after_flush(self) -> None:
        """After each flush tick: parse the live agreement a little once the frame with the
        new text is drawn (the work stays spread over the ticks, and the text does not wait
        for it), and at METRICS_HZ redraw every lane's numbers and live row in one frame.
        Each metrics line costs ~1 ms to draw: at every tick, three lanes' lines took a
        third of the frame, for numbers no one reads 30 times a second."""
        live = self._live
        if live is not None and not self._parse_queued:
            self._parse_queued = True
            self.call_after_refresh(self._parse_live)
        now = time.perf_counter()
        if now - self._numbers_at < 1 / METRICS_HZ:
            return
        self._numbers_at = now
        for pane in self.panes:
            pane.tick_metrics()
        if live is not None:
            for lane in self._live_changed:
                self.pane(lane).metrics.set_live_agreement(live.line(lane))
        self._live_changed.clear()

    def _parse_live(self) -> None:
        """Parse the chunks that came since the last tick (at most LIVE_CHUNKS_PER_TICK a
        lane); the rows they change are drawn at the next METRICS_HZ tick."""
        self._parse_queued = False
        live = self._live
        if live is not None:
            self._live_changed.update(live.update(LIVE_CHUNKS_PER_TICK))

    def pane(self, lane: str) -> LanePane:
        return next(p for p in self.panes if p.lane == lane)

    # ------------------------------------------------------------------ discovery

    @work(group="discover")
    async def discover(self) -> None:
        """Ask every server what it is; the headers show the answer as it comes."""

        async def one(client: LaneClient, pane: LanePane) -> None:
            pane.set_status("connecting")
            ep = await client.discover()
            pane.set_endpoint(ep)
            if ep.status == "down":
                pane.set_status("down", ep.status_detail)
            elif ep.status == "error":
                pane.set_status("error", ep.status_detail)
            else:
                pane.set_status("ready")

        await asyncio.gather(*(one(c, p) for c, p in zip(self.clients, self.panes, strict=True)))
        if self.store is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.set_endpoints, self.endpoints)

    # ------------------------------------------------------------------ history

    def _show_history(self) -> None:
        if not self.history:
            return
        lanes = {p.lane for p in self.panes}
        label = self.history_label or "this session"
        for pane in self.panes:
            pane.view.write_rule(f"history · {len(self.history)} exchange(s) from {label}")
        previous: str | None = None
        for i, ex in enumerate(self.history):
            conv = conversation_of(ex)
            if i and conv != previous:
                for pane in self.panes:
                    pane.view.write_rule("new conversation")
            previous = conv
            for pane in self.panes:
                pane.show_past(ex)
        for pane in self.panes:
            pane.view.write_rule("now · continue the conversation")
        # Continue the last conversation: its chat exchanges become each lane's history.
        last = conversation_of(self.history[-1])
        tail: list[Exchange] = []
        for ex in reversed(self.history):
            if conversation_of(ex) != last or ex.source != "chat":
                break
            tail.append(ex)
        self.conversation = Conversation.from_exchanges([p.lane for p in self.panes], tail[::-1])
        if last is not None:
            self.conversation_id = last
        missing = sorted({lane for ex in self.history for lane in ex.results} - lanes)
        if missing:
            self.notify(
                f"lanes in the session but not connected now: {', '.join(missing)}",
                severity="warning",
            )

    # ------------------------------------------------------------------ sending

    @on(PromptBox.Send)
    def _on_send(self, event: PromptBox.Send) -> None:
        event.stop()
        self.send(event.prompt)

    def send(
        self, prompt: str, *, retry: Exchange | None = None, regenerates: bool = False
    ) -> bool:
        """Send ``prompt`` to every lane; False (with a note) while one is streaming.
        ``retry``: the exchange sent again (``meta["retry_of"]``; the prompt box keeps what
        is being typed); ``regenerates``: it is replaced in the conversation
        (``meta["regenerated_from"]``)."""
        if self.busy:
            self.notify("an answer is still streaming; Esc stops it", severity="warning")
            return False
        box = self.prompt_box
        meta: dict[str, Any] = {"conversation": self.conversation_id}
        if retry is None:
            box.value = ""
        else:
            meta["retry_of"] = retry.id
            if regenerates:
                meta["regenerated_from"] = retry.id
        self.busy = True
        box.set_busy(True)
        self.post_message(self.Changed(len(self.exchanges), True))
        self._worker = self._run_exchange(prompt, self.params, meta)
        return True

    def retry(self) -> bool:
        """Send the last prompt again (with the current parameters). A finished exchange
        of this conversation is regenerated: its turn is taken back, so every lane answers
        after the same earlier turns, and the new one replaces it in the conversation (the
        session keeps both). A stopped or failed one is simply sent again."""
        last = self.exchanges[-1] if self.exchanges else None
        if last is None:
            self.notify("nothing to retry yet: send a prompt first", severity="warning")
            return False
        if self.busy:
            return self.send(last.prompt, retry=last)  # says an answer is still streaming
        same = conversation_of(last) == self.conversation_id and last.source == "chat"
        replaced = same and self.conversation.forget(last)
        return self.send(last.prompt, retry=last, regenerates=replaced)

    @work(group="exchange", exclusive=True)
    async def _run_exchange(
        self, prompt: str, params: SamplingParams, meta: dict[str, Any]
    ) -> Exchange | None:
        messages = self.conversation.messages_for(prompt, params)
        panes = {p.lane: p for p in self.panes}
        errors_before = len(self.save_errors)
        shown = f"↻ {prompt}" if "retry_of" in meta else prompt
        for pane in self.panes:
            pane.start(shown)
        ref = reference_lane(self.endpoints)
        if params.top_logprobs and ref is not None and len(self.panes) > 1:
            self._live = LiveExchange(list(panes), reference=ref, k=params.top_logprobs)

        def on_text(lane: str, delta: str) -> None:
            panes[lane].on_text(delta)

        def on_lane_done(lane: str, result: LaneResult) -> None:
            panes[lane].finish(result)

        try:
            exchange = await send_exchange(
                self.clients,
                messages,
                params,
                prompt=prompt,
                source="chat",
                reference=reference_lane(self.endpoints),
                meta=meta,
                on_text=on_text,
                on_lane_done=on_lane_done,
                store=self.store,
                save_lanes=True,
                write=self._save,
                keep_stopped=True,
                live=self._live,
            )
        except ExchangeStopped as stopped:
            self._end_live()  # dropped as is: a stopped scoring's thread may still read it
            saved = self.store is not None and len(self.save_errors) == errors_before
            self._keep_stopped(stopped.exchange, saved=saved)
            raise
        if self._live is not None:
            self._live.free()  # scored: its positions go off the event loop (90 ms here)
        self._end_live()
        for pane in self.panes:
            result = exchange.results.get(pane.lane)
            if result is not None:
                pane.show_findings(result.findings)
        self._show_speedups(exchange)
        self.conversation.record(exchange)
        self.exchanges.append(exchange)
        return exchange

    def _end_live(self) -> None:
        """The exchange is over: the live rows go (the final ones replace them)."""
        self._live = None
        self._live_changed.clear()
        for pane in self.panes:
            pane.metrics.set_live_agreement(None)

    def _keep_stopped(self, exchange: Exchange, *, saved: bool) -> None:
        """An exchange stopped mid-answer: count it, flag its finished lanes, say the truth.

        It stays out of the lanes' conversation (:meth:`Conversation.record` skips it), so
        the next prompt is sent to every lane after the same turns."""
        self.exchanges.append(exchange)
        if exchange.meta.get("conversation") == self.conversation_id:  # not after Ctrl+N
            for pane in self.panes:
                result = exchange.results.get(pane.lane)
                if result is not None and not result.stopped:
                    pane.show_findings(result.findings)
        self.notify(stopped_summary(exchange, saved=saved), timeout=8)

    def _show_speedups(self, exchange: Exchange) -> None:
        """Candidates' decode rate relative to the reference lane, on their metrics line."""
        ref = reference_lane(self.endpoints)
        base = exchange.results.get(ref) if ref else None
        if base is None or not base.ok or not base.timing.tokens_per_s:
            for pane in self.panes:  # no speed ratio; the agreement row still comes
                r = exchange.results.get(pane.lane)
                if r is not None and r.agreement:
                    pane.metrics.show_result(r)
            return
        for pane in self.panes:
            r = exchange.results.get(pane.lane)
            if pane.lane != ref and r is not None and r.ok and r.timing.tokens_per_s:
                pane.metrics.show_result(r, r.timing.tokens_per_s / base.timing.tokens_per_s)

    async def _save(self, fn: Callable[..., Any], *args: Any) -> None:
        """Write to the session off the event loop; a failure is shown, never raised."""
        try:
            await asyncio.to_thread(fn, *args)
        except Exception as exc:
            msg = f"could not save to the session: {exc}"
            self.save_errors.append(msg)
            self.notify(msg, severity="error", timeout=10)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self._worker:
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            if event.state != WorkerState.SUCCESS:
                self._end_live()
            if event.state == WorkerState.CANCELLED:
                for pane in self.panes:
                    pane.stop()
            elif event.state == WorkerState.ERROR:
                for pane in self.panes:
                    pane.stop()
                self.notify(f"the exchange failed: {event.worker.error!r}", severity="error")
            self.busy = False
            self._worker = None
            self.prompt_box.set_busy(False)
            self.post_message(self.Changed(len(self.exchanges), False))
            if event.state == WorkerState.SUCCESS and event.worker.result is not None:
                self.post_message(self.ExchangeDone(event.worker.result))

    # ------------------------------------------------------------------ actions

    def stop(self) -> bool:
        """Stop the streaming exchange; it is kept as it stands (see :meth:`_keep_stopped`,
        which says what finished and what was stopped once the lanes have let go)."""
        if self._worker is None:
            return False
        self._worker.cancel()
        return True

    def set_scroll_linked(self, linked: bool) -> None:
        """Scroll the lanes together or each on its own; on linking, the others line up
        with the focused lane (else the first). The lane headers say "⇅ linked"."""
        focused = self.app.focused
        source = next((p.view for p in self.panes if p.view is focused), None)
        self.link.set_linked(linked, source)
        for pane in self.panes:
            pane.header.linked = linked and len(self.panes) > 1

    def new_conversation(self) -> None:
        """Forget every lane's history and clear the panes; the session keeps everything."""
        self.stop()
        self.conversation.reset()
        self.conversation_id = new_id()
        for pane in self.panes:
            pane.clear()
        self.notify("new conversation: the lanes start from a blank history")

    def edit_params(self) -> Any:
        """Open the editor; returns the awaitable of its mounting (see QuantlabApp)."""

        def apply(params: SamplingParams | None) -> None:
            if params is not None:
                self.set_params(params)

        from tui.widgets.chat.params_dialog import ParamsDialog

        return self.app.push_screen(ParamsDialog(self.params), apply)

    def set_params(self, params: SamplingParams) -> None:
        self.params = params
        self.params_bar.set_params(params)

    # ------------------------------------------------------------------ retry, copy, export

    def action_retry(self) -> None:
        self.retry()

    def _last(self, what: str) -> Exchange | None:
        if self.exchanges:
            return self.exchanges[-1]
        self.notify(f"nothing to {what} yet: send a prompt first", severity="warning")
        return None

    def action_copy_answer(self) -> None:
        """Copy one lane's last answer; F8 again within a few seconds copies the next
        lane's (the note says which lane comes next)."""
        ex = self._last("copy")
        if ex is None or not ex.results:
            return
        lanes = list(ex.results)
        now = time.monotonic()
        i = 0
        if self._copied is not None and self._copied[0] == ex.id and now - self._copied[2] < 8:
            i = (self._copied[1] + 1) % len(lanes)
        self._copied = (ex.id, i, now)
        lane = lanes[i]
        text = safe_text(ex.results[lane].text)
        self.app.copy_to_clipboard(text)
        nxt = f" · F8 again: {lanes[(i + 1) % len(lanes)]}" if len(lanes) > 1 else ""
        self.notify(f"copied {lane}'s answer ({len(text)} characters){nxt}{CLIPBOARD_NOTE}")

    def action_copy_exchange(self) -> None:
        """Copy the last exchange, every lane, as Markdown."""
        ex = self._last("copy")
        if ex is None:
            return
        from quantlab.reports.exchange_md import exchange_markdown

        text = exchange_markdown(ex, self.endpoints)
        self.app.copy_to_clipboard(text)
        self.notify(
            f"copied the exchange as Markdown ({len(ex.results)} lanes, "
            f"{len(text)} characters){CLIPBOARD_NOTE}"
        )

    def export_path(self, exchange: Exchange) -> Path:
        """Beside the session file (``X.<exchange id>.md``), or in the current folder."""
        if self.store is not None:
            base = Path(self.store.path)
            return base.with_name(f"{base.stem}.{exchange.id}.md")
        return Path.cwd() / f"quantlab-exchange-{exchange.id}.md"

    def action_export_markdown(self) -> None:
        """Write the last exchange as a Markdown file; the note says where."""
        ex = self._last("export")
        if ex is None:
            return
        path = self.export_path(ex)
        try:
            from quantlab.reports.exchange_md import exchange_markdown

            atomic_write(path, exchange_markdown(ex, self.endpoints).encode("utf-8"))
        except OSError as exc:
            self.notify(f"could not write {path}: {exc.strerror or exc}", severity="error")
            return
        self.notify(f"exported the exchange as Markdown: {path}", timeout=8)
