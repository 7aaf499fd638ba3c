"""The sessions folder at a glance: one :class:`SessionSummary` per session file (date,
lanes, exchange count, first prompt), and a search over the prompts, for the TUI's session
browser (and anything headless that wants the same list).

Files are only read (:func:`~quantlab.session.file.load_session`: no lock is taken, a
session another process writes is read as it stands). A file that is not a session is
listed in the problems with the reason, never dropped silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from quantlab.session.file import load_session
from quantlab.session.model import SessionError


@dataclass(frozen=True)
class SessionSummary:
    """What the browser shows of one session file. ``started``: the first exchange's start
    (Unix seconds), else the file's modification time."""

    path: Path
    started: float
    lanes: tuple[str, ...]
    exchanges: int
    first_prompt: str
    prompts: tuple[str, ...] = field(repr=False, default=())

    def matches(self, query: str) -> bool:
        """Every word of ``query`` (case-insensitive) is in one of the prompts."""
        return self.first_match(query) is not None

    def first_match(self, query: str) -> str | None:
        """The first prompt holding every word of ``query`` (case-insensitive): the first
        prompt for an empty query, None when no prompt matches."""
        words = query.lower().split()
        if not words:
            return self.first_prompt
        return next((p for p in self.prompts if all(w in p.lower() for w in words)), None)


def summarize_session(path: str | os.PathLike[str]) -> SessionSummary:
    """One file's summary; raises :class:`SessionError` when it is not a readable session."""
    p = Path(path)
    session = load_session(p)
    starts = [ex.started_at for ex in session.exchanges if ex.started_at]
    try:
        mtime = p.stat().st_mtime
    except OSError:
        mtime = 0.0
    prompts = tuple(ex.prompt for ex in session.exchanges)
    return SessionSummary(
        path=p,
        started=min(starts) if starts else mtime,
        lanes=tuple(session.lanes),
        exchanges=len(session.exchanges),
        first_prompt=prompts[0] if prompts else "",
        prompts=prompts,
    )


def list_sessions(folder: str | os.PathLike[str]) -> tuple[list[SessionSummary], list[str]]:
    """The session files of ``folder`` (``*.json``; journals, locks and temporary files are
    not sessions), newest first, and one message per file that could not be read."""
    root = Path(folder)
    if not root.is_dir():
        return [], [f"{root}: no such folder"]
    found: list[SessionSummary] = []
    problems: list[str] = []
    for p in sorted(root.glob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            found.append(summarize_session(p))
        except SessionError as exc:
            problems.append(str(exc))
    found.sort(key=lambda s: s.started, reverse=True)
    return found, problems


def search_sessions(summaries: list[SessionSummary], query: str) -> list[SessionSummary]:
    """The summaries whose prompts hold every word of ``query``, in the given order."""
    return [s for s in summaries if s.matches(query)]
