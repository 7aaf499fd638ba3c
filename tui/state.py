"""What the app remembers between runs: the chosen theme, the lane layout, and whether
the chat's lanes scroll together.

A small JSON file, ``$XDG_CONFIG_HOME/quantlab/state.json`` (default
``~/.config/quantlab/state.json``), readable by its owner only (0600) and replaced whole on
each save, so a crash never leaves half a file. A missing, unreadable or odd file means
"nothing remembered", never an error: it only holds preferences.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from quantlab.themes import user_theme_dir

LAYOUTS = ("auto", "side", "stacked")


@dataclass(slots=True)
class UiState:
    """The remembered choices (None / "auto": nothing chosen yet)."""

    theme: str | None = None
    layout: str = "auto"
    linked_scroll: bool = True


def state_path() -> Path:
    """Beside the user's theme folder: ``<config dir>/quantlab/state.json``."""
    return user_theme_dir().parent / "state.json"


def load_state(path: Path | None = None) -> UiState:
    """The remembered choices; defaults for anything missing or not understood."""
    try:
        data = json.loads((path or state_path()).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return UiState()
    if not isinstance(data, dict):
        return UiState()
    theme = data.get("theme")
    layout = data.get("layout")
    linked = data.get("linked_scroll")
    return UiState(
        theme=theme if isinstance(theme, str) and theme else None,
        layout=layout if layout in LAYOUTS else "auto",
        linked_scroll=linked if isinstance(linked, bool) else True,
    )


def save_state(state: UiState, path: Path | None = None) -> None:
    """Write the file atomically with mode 0600; raises OSError when it cannot."""
    target = path or state_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    data = {"theme": state.theme, "layout": state.layout, "linked_scroll": state.linked_scroll}
    body = json.dumps(data, indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp creates it 0600
            f.write(body)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.chmod(target, 0o600)
