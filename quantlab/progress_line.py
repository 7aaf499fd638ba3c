"""A one-line text progress bar for headless runs, redrawn in place on a terminal.

On a terminal the bar rewrites its line (carriage return + clear to end of line) at most
:attr:`ProgressLine.min_interval` times a second, and messages are printed above it. When
the stream is not a terminal (a log file, CI) nothing is redrawn: each message is a line,
and a progress line is written every 10 % so a log stays short.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from quantlab.textsafe import safe_line


def format_seconds(s: float | None) -> str:
    """``75`` -> ``1m15s``; None -> ``?``."""
    if s is None:
        return "?"
    s = max(0, round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def eta_seconds(elapsed_s: float, finished: int, remaining: int) -> float | None:
    """Seconds left at the pace so far: ``elapsed_s / finished * remaining``, to 0.1 s.

    0.0 when nothing remains; None while nothing has finished (no pace yet). ``finished``
    counts what took time (a runner leaves skipped rows out of it).
    """
    if remaining <= 0:
        return 0.0
    if finished <= 0:
        return None
    return round(elapsed_s / finished * remaining, 1)


class ProgressLine:
    """``[#######.........] 12/40  30%  ETA 1m20s  <status>``"""

    min_interval = 0.1

    def __init__(self, stream: TextIO | None = None, *, width: int | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width or shutil.get_terminal_size((100, 24)).columns
        self._last_draw = 0.0
        self._shown = False
        self._last_decile = -1
        self.done = 0
        self.total = 0
        self.eta: float | None = None
        self.status = ""

    def render(self) -> str:
        """The bar's text, cut to the terminal width."""
        frac = self.done / self.total if self.total else 0.0
        head = f"{self.done}/{self.total} {frac * 100:3.0f}%  ETA {format_seconds(self.eta)}"
        bar_w = max(10, min(30, self.width // 4))
        filled = round(bar_w * frac)
        line = f"[{'#' * filled}{'.' * (bar_w - filled)}] {head}"
        if self.status:
            line += f"  {self.status}"
        return line[: max(20, self.width - 1)]

    def update(
        self, done: int, total: int, eta: float | None, status: str = "", *, force: bool = False
    ) -> None:
        self.done, self.total, self.eta = done, total, eta
        if status:
            self.status = safe_line(status)  # may quote a server: never a raw control
        if self.tty:
            now = time.monotonic()
            if force or now - self._last_draw >= self.min_interval:
                self._last_draw = now
                self.stream.write("\r\x1b[2K" + self.render())
                self.stream.flush()
                self._shown = True
        else:
            decile = int(10 * done / total) if total else 0
            if decile != self._last_decile or force:
                self._last_decile = decile
                self.stream.write(self.render() + "\n")
                self.stream.flush()

    def message(self, text: str) -> None:
        """A line above the bar (the bar is redrawn under it)."""
        if self.tty and self._shown:
            self.stream.write("\r\x1b[2K")
        self.stream.write("\n".join(safe_line(x) for x in text.split("\n")) + "\n")
        if self.tty and self._shown:
            self.stream.write(self.render())
        self.stream.flush()

    def close(self) -> None:
        """Leave the last state of the bar on its own line."""
        if self.tty and self._shown:
            self.stream.write("\r\x1b[2K" + self.render() + "\n")
            self.stream.flush()
            self._shown = False
