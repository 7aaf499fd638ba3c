"""MetricsLine: one line under a lane with its live and final numbers.

While an answer streams it shows the UI's own running estimate (time to the first delta,
deltas per second); when the lane finishes the numbers are replaced by the client's
measured ones (taken where the bytes arrive, same definitions as vLLM's benchmark), with
the finish reason and end-to-end time; on a candidate lane a second row gives its
token-level agreement with the reference once the exchange is complete ("≈ KL 0.012 ·
top-1 99 % · diverged at token 41"); while the lanes still stream that row shows the
live shared-prefix numbers (quantlab.agreement.live, dimmed, "… · 143 tok so far") and
the final row replaces it. It is a one-line ``render()`` widget refreshed
without a relayout, so updating it several times a second costs next to nothing.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from quantlab.agreement.compare import agreement_line
from quantlab.records import LaneResult

SEP = (" · ", "dim")


def fmt_ms(ms: float | None) -> str:
    """``840 ms``, ``12.4 s``, or ``–`` when unknown."""
    if ms is None:
        return "–"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s" if ms < 10_000 else f"{ms / 1000:.1f} s"


def fmt_rate(tps: float | None) -> str:
    return "–" if tps is None else f"{tps:.1f}"


class MetricsLine(Widget):
    """TTFT · tok/s · tokens, then finish reason · e2e; or the state before that."""

    DEFAULT_CSS = """
    MetricsLine {
        height: auto;  /* 1 line; 2 on a candidate once its agreement is known */
        max-height: 2;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
        &.-live { color: $text-primary; }
        &.-done { color: $foreground; }
        &.-error { color: $text-error; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._text = Text("idle", style="dim")
        self._state = ""
        self._main = self._text
        self._live: str | None = None  # the live agreement row, until the final one

    @property
    def plain(self) -> str:
        """The line as plain text (tests read it)."""
        return self._text.plain

    def render(self) -> Text:
        return self._text

    def _set(self, text: Text, state: str = "") -> None:
        self._main = text
        if self._live is not None and "\n" not in text.plain:
            text = Text.assemble(text, ("\n≈ ", "bold"), (self._live, "dim"))
        rows = text.plain.count("\n") != self._text.plain.count("\n")
        self._text = text
        if state != self._state:  # a class change restyles the widget: only when it changes
            self._state = state
            for name in ("-live", "-done", "-error"):
                self.set_class(name == state, name)
        self.refresh(layout=rows)  # a relayout only when the agreement row comes or goes

    def set_live_agreement(self, line: str | None) -> None:
        """The live agreement row (None: none, e.g. when the exchange is over); only
        redrawn when it changed."""
        if line != self._live:
            self._live = line
            self._set(self._main, self._state)

    def show_idle(self, message: str = "idle") -> None:
        self._set(Text(message, style="dim"))

    def show_waiting(self, elapsed_s: float) -> None:
        self._set(Text.assemble(("◌ ", "bold"), f"waiting for the first token… {elapsed_s:.1f} s"))

    def show_live(self, ttft_ms: float | None, tps: float | None, tokens: int) -> None:
        """Running numbers while the answer streams (``tokens`` counts text deltas)."""
        self._set(
            Text.assemble(
                ("● ", "bold"),
                ("TTFT ", "dim"),
                (fmt_ms(ttft_ms), "bold"),
                SEP,
                (fmt_rate(tps), "bold"),
                (" tok/s", "dim"),
                SEP,
                (str(tokens), "bold"),
                (" tokens", "dim"),
            ),
            "-live",
        )

    def show_result(self, r: LaneResult, vs_reference: float | None = None) -> None:
        """Final numbers from the client's measurement; a failed lane says so.
        ``vs_reference``: this lane's decode rate over the reference lane's, shown on
        candidate lanes (what the quantization buys in speed)."""
        t = r.timing
        if r.error is not None and t.ttft_ms is None and not t.output_tokens:
            # Failed before any text: only how long it took to fail means something.
            kind = f"{r.error.kind} {r.error.status}" if r.error.status else r.error.kind
            self._set(
                Text.assemble(
                    ("✗ ", "bold"),
                    (f"error: {kind}", "bold"),
                    SEP,
                    ("no answer after ", "dim"),
                    (fmt_ms(t.e2e_ms), "bold"),
                ),
                "-error",
            )
            return
        tokens = "–" if t.output_tokens is None else str(t.output_tokens)
        if t.tokens_counted and t.output_tokens is not None:
            tokens += "*"
        head = ("✗ ", "bold") if r.error else ("✓ ", "bold")
        finish = f"error: {r.error.kind}" if r.error else (r.finish_reason or "–")
        self._set(
            Text.assemble(
                head,
                ("TTFT ", "dim"),
                (fmt_ms(t.ttft_ms), "bold"),
                SEP,
                (fmt_rate(t.tokens_per_s), "bold"),
                (" tok/s", "dim"),
                *([(f" ({vs_reference:.2f}× ref)", "")] if vs_reference is not None else []),
                SEP,
                (tokens, "bold"),
                (" tokens", "dim"),
                SEP,
                (finish, "bold"),
                SEP,
                ("e2e ", "dim"),
                (fmt_ms(t.e2e_ms), "bold"),
                *(
                    [("\n≈ ", "bold"), (agree, "")]
                    if (agree := agreement_line(r.agreement))
                    else []
                ),
            ),
            "-error" if r.error else "-done",
        )

    def show_stopped(self) -> None:
        self._set(Text("stopped by you before the answer ended"), "-error")
