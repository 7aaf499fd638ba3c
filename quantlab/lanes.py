"""Rules about lanes that every layer shares: which lane is the reference, and what a
lane's result shows as one table row.

Written once here so the chat, the runner, its pane and the reports cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from quantlab.records import Endpoint, LaneResult


def reference_lane(
    endpoints: Iterable[Endpoint],
    lanes: Sequence[str] | None = None,
    runs: object = None,
) -> str | None:
    """The reference lane, the one candidates are compared against.

    In order: the reference the last run in ``runs`` (a session's ``meta["runs"]``) used,
    if it is among ``lanes``; else the endpoint whose role is "reference" (among
    ``lanes``); else the first lane. ``lanes`` defaults to the endpoints' names (a session
    passes its own, which include lanes no endpoint describes). None when there is no lane.
    """
    eps = list(endpoints)
    names = list(lanes) if lanes is not None else [e.name for e in eps]
    if not names:
        return None
    if isinstance(runs, list):
        for run in reversed(runs):
            ref = run.get("reference") if isinstance(run, dict) else None
            if ref in names:
                return str(ref)
    for e in eps:
        if e.role == "reference" and e.name in names:
            return e.name
    return names[0]


@dataclass
class LaneRow:
    """One lane's part of a runner row, as the table shows it."""

    status: str = "queued"  # queued | running | done | failed | skipped
    ttft_ms: float | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    flags: list[str] = field(default_factory=list)  # detectors that found a failure
    warnings: list[str] = field(default_factory=list)  # detectors that warned
    error: str | None = None
    note: str = ""


def fill_lane_row(row: LaneRow, result: LaneResult) -> LaneRow:
    """Set ``row`` from a finished lane: status, timings, and the detectors that failed or
    warned. A finding a person dismissed counts for neither (it is not a failure any more);
    ``note`` is left as it is. Returns ``row``."""
    row.status = "done" if result.ok else "failed"
    row.ttft_ms = result.timing.ttft_ms
    row.tokens = result.timing.output_tokens
    row.tokens_per_s = result.timing.tokens_per_s
    live = [f for f in result.findings if f.status != "dismissed"]
    row.flags = sorted({f.detector for f in live if f.severity == "fail"})
    row.warnings = sorted({f.detector for f in live if f.severity == "warn"})
    row.error = None if result.error is None else str(result.error)
    return row


def lane_row(result: LaneResult) -> LaneRow:
    """A fresh :class:`LaneRow` for a saved lane result."""
    return fill_lane_row(LaneRow(), result)
