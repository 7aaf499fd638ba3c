"""LanePane: one endpoint's column in the chat — header, streamed text, metrics line.

The pane only draws: the chat view hands it the prompt, each text delta (buffered by the
StreamView), and the lane's final :class:`LaneResult`. A failed lane shows its error in
its own text and metrics line; other panes are unaffected.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer

from quantlab.records import Endpoint, Exchange, Finding, LaneResult
from quantlab.textsafe import safe_line
from tui.widgets.chat.lane_header import LaneHeader
from tui.widgets.chat.metrics_line import MetricsLine
from tui.widgets.chat.stream_view import FlushClock, StreamView

#: Live metrics refresh rate while streaming (numbers faster than this are unreadable).
METRICS_HZ = 8.0


class LanePane(Vertical):
    """A lane: :class:`LaneHeader`, :class:`StreamView`, :class:`MetricsLine`."""

    DEFAULT_CSS = """
    LanePane {
        height: 1fr;
        width: 1fr;
    }
    """

    def __init__(
        self,
        endpoint: Endpoint,
        index: int = 0,
        *,
        clock: FlushClock | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=f"lane-{index % 4}")
        self.endpoint = endpoint
        self.lane = endpoint.name
        self.header = LaneHeader(endpoint)
        self.view = StreamView(clock=clock)
        self.metrics = MetricsLine()
        self.streaming = False
        self._t_sent = 0.0
        self._t_first: float | None = None
        self._deltas = 0
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.view
        yield self.metrics

    # ------------------------------------------------------------------ status

    def set_status(self, status: str, detail: str | None = None) -> None:
        self.header.set_status(status, detail)

    def set_endpoint(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.header.update_endpoint(endpoint)

    # ------------------------------------------------------------------ one exchange

    def on_mount(self) -> None:
        self.view.empty_hint = "type a prompt below: it goes to every lane at once"

    def _write_prompt(self, text: str) -> None:
        if self.view.row_count and self.view.last_kind != "rule":
            self.view.write_block("", "text")  # a blank line between exchanges
        self.view.write_block(f"› {text}", "user", anchor=True)  # linked scroll lines up on it

    def start(self, prompt: str) -> None:
        """A new prompt was sent to this lane."""
        self._write_prompt(prompt)
        self.view.begin_answer()
        self.streaming = True
        self._t_sent = time.perf_counter()
        self._t_first = None
        self._deltas = 0
        self.set_status("streaming")
        self.metrics.show_waiting(0.0)
        if self._timer is None:
            self._timer = self.set_interval(1 / METRICS_HZ, self._tick)
        else:
            self._timer.resume()

    def on_text(self, delta: str) -> None:
        """A text delta arrived (called for every chunk: keep it O(1))."""
        if self._t_first is None:
            self._t_first = time.perf_counter()
        self._deltas += 1
        self.view.append(delta)

    def _tick(self) -> None:
        """The pane's own 8 Hz timer: the waiting clock, and the numbers of a lane whose
        text has stopped flowing (while text flows, the flush clock updates them)."""
        if self.streaming and not self.view.pending:
            self.update_metrics()

    def tick_metrics(self) -> None:
        """Called after the lanes' text was flushed, at most METRICS_HZ times a second
        (ChatView's cadence, one for all lanes): update the numbers in the same frame."""
        if self.streaming:
            self.update_metrics()

    def update_metrics(self) -> None:
        now = time.perf_counter()
        if self._t_first is None:
            self.metrics.show_waiting(now - self._t_sent)
            return
        ttft = (self._t_first - self._t_sent) * 1000
        span = now - self._t_first
        tps = (self._deltas - 1) / span if self._deltas > 1 and span > 0 else None
        self.metrics.show_live(ttft, tps, self._deltas)

    def finish(self, result: LaneResult) -> None:
        """The lane's answer is complete (or failed): final text and numbers."""
        self._stop_streaming()
        if result.error is not None:
            if result.text and not self._deltas:
                self.view.append(result.text)
            self.view.end_answer()
            self.view.write_block(f"✗ {result.error}", "error")
            self.set_status("error", safe_line(str(result.error)))
        else:
            if result.text and not self._deltas:
                self.view.append(result.text)  # a server that sent the answer whole
            self.view.end_answer()
            self.set_status("ready")
        for note in result.notes:  # what the server sent wrong and the client worked around
            self.view.write_block(f"ⓘ {note}", "note")
        self.metrics.show_result(result)

    def show_findings(self, findings: Sequence[Finding]) -> None:
        """What the detectors flagged in this lane's answer (warn and fail; info, such as
        mere wording differences from the reference, stays in the session only)."""
        for f in findings:
            if f.severity == "info" or f.status == "dismissed":
                continue
            mark = "⚑" if f.severity == "fail" else "△"
            self.view.write_block(f"{mark} {f.detector} ({f.severity}): {f.evidence}", "flag")

    def stop(self) -> None:
        """The exchange was cancelled before this lane finished."""
        if not self.streaming:
            return
        self._stop_streaming()
        self.view.end_answer()
        self.view.write_block("(stopped here)", "note")  # the header says ■ stopped
        self.set_status("stopped", "stopped by you before the answer ended")
        self.metrics.show_stopped()

    def _stop_streaming(self) -> None:
        self.streaming = False
        if self._timer is not None:
            self._timer.pause()

    # ------------------------------------------------------------------ history

    def show_past(self, exchange: Exchange) -> None:
        """An exchange from a reopened session: its prompt and this lane's answer."""
        result = exchange.results.get(self.lane)
        label = (
            exchange.prompt
            if exchange.source == "chat"
            else f"[{exchange.source}] {exchange.prompt}"
        )
        self._write_prompt(label)
        if result is None:
            self.view.write_block("(this lane was not part of this exchange)", "note")
            return
        self.view.begin_answer()
        if result.text:
            self.view.append(result.text)
        self.view.end_answer()
        self.show_findings(result.findings)
        if result.stopped:
            self.view.write_block("(stopped here)", "note")
        elif result.error is not None:
            self.view.write_block(f"✗ {result.error}", "error")
        self.metrics.show_result(result)

    def clear(self) -> None:
        """A new conversation."""
        self._stop_streaming()
        self.view.clear()
        self.metrics.show_idle("new conversation")
        if self.header.status == "stopped":  # that answer is gone from view: so is its mark
            self.set_status("ready")
