"""A text progress display for the local pair's first build, for headless commands.

On a terminal it redraws one line in place; into a pipe or a log it writes a line per
stage and per tenth of a stage, so a CI log shows progress without hundreds of lines.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class TextProgress:
    """A ``progress(message, fraction)`` callback that writes to a text stream (stderr by
    default). Call :meth:`close` (or use it as a context manager) to end the line."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "quantlab: ") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.prefix = prefix
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._message: str | None = None
        self._tenth = -1
        self._open_line = False
        self._last_draw = 0.0

    def __call__(self, message: str, fraction: float | None = None) -> None:
        if self.tty:
            self._draw(message, fraction)
            return
        tenth = -1 if fraction is None else int(fraction * 10)
        if message != self._message or tenth > self._tenth:
            pct = "" if _no_measure(message != self._message, fraction) else f" {fraction:.0%}"
            self.stream.write(f"{self.prefix}{message}{pct}\n")
            self.stream.flush()
        if message != self._message:
            self._tenth = -1
        self._message, self._tenth = message, max(tenth, self._tenth)

    def _draw(self, message: str, fraction: float | None) -> None:
        now = time.monotonic()
        changed = message != self._message
        if not changed and fraction is not None and fraction < 1.0 and now - self._last_draw < 0.1:
            return  # at most 10 redraws a second within a stage
        if changed and self._open_line:
            self.stream.write("\n")  # keep the finished stage on its own line
        bar = ""
        if not _no_measure(changed, fraction):
            assert fraction is not None
            filled = int(max(0.0, min(1.0, fraction)) * 24)
            bar = f" [{'#' * filled}{'.' * (24 - filled)}] {fraction:4.0%}"
        self.stream.write(f"\r\x1b[2K{self.prefix}{message}{bar}")
        self.stream.flush()
        self._open_line = True
        self._message, self._last_draw = message, now

    def close(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False

    def __enter__(self) -> TextProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _no_measure(new_stage: bool, fraction: float | None) -> bool:
    """No figure to show: none given, or a stage announced as already complete ("models
    ready", 1.0), where a trailing "100%" says nothing."""
    return fraction is None or (new_stage and fraction >= 1.0)
