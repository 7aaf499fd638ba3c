"""StartupPanel: progress while the local pair is built (once) and its servers start.

The first run ever downloads the model wheel and builds the BF16 and Q4_0 files (tens of
seconds); later runs only start the two servers (about a second). Each stage is kept as a
line so the person sees what happened, with a bar for the stage in progress.
"""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Center, Vertical
from textual.widgets import ProgressBar, Static


def same_stage(a: str, b: str) -> bool:
    """Two reports of one stage ("downloading X (1 s)", "downloading X (2 s, 33 MB)"):
    the first two words match. A new stage starts with other words."""
    return a.split()[:2] == b.split()[:2]


class StartupPanel(Vertical):
    """A centred box: title, finished stages, the current stage with its bar."""

    DEFAULT_CSS = """
    StartupPanel {
        align: center middle;
        height: 1fr;
    }
    StartupPanel > #startup-box {
        width: 76;
        max-width: 95%;
        height: auto;
        padding: 1 2;
        background: $panel;
        border: round $primary;
        border-title-color: $text-primary;
        border-title-style: bold;
    }
    StartupPanel #startup-note { color: $text-muted; padding-bottom: 1; }
    StartupPanel #startup-stages { color: $text-muted; height: auto; }
    StartupPanel #startup-current { color: $foreground; padding-top: 1; }
    StartupPanel Center { height: auto; margin-top: 1; }
    StartupPanel #startup-error { color: $text-error; height: auto; padding-top: 1; display: none; }
    """

    def __init__(self, title: str, note: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = title
        self.note = note
        self.stages: list[str] = []
        self.current = ""
        self._t0 = time.monotonic()

    def compose(self) -> ComposeResult:
        with Vertical(id="startup-box") as box:
            box.border_title = self.title
            if self.note:
                yield Static(self.note, id="startup-note")
            yield Static("", id="startup-stages")
            yield Static("…", id="startup-current")
            with Center():
                yield ProgressBar(total=None, show_eta=False, id="startup-bar")
            yield Static("", id="startup-error")

    def progress(self, message: str, fraction: float | None) -> None:
        """One report from the build/start (``fraction`` None: no measure for this stage)."""
        if message != self.current:
            if self.current and not same_stage(self.current, message):
                self.stages.append(f"✓ {self.current}")
                self.query_one("#startup-stages", Static).update("\n".join(self.stages[-8:]))
            self.current = message
            self.query_one("#startup-current", Static).update(f"▸ {message}")
        bar = self.query_one("#startup-bar", ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=max(0.0, min(1.0, fraction)) * 100)

    def fail(self, message: str) -> None:
        """Starting failed: say why; the person quits with Ctrl+Q."""
        self.query_one("#startup-bar", ProgressBar).display = False
        error = self.query_one("#startup-error", Static)
        error.update(f"✗ {message}\n\nCtrl+Q quits.")
        error.display = True
