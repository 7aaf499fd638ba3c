"""The findings gate of ``quantlab detect`` and ``quantlab run``: exit non-zero when a
finding at the chosen severity (or worse) is present, so either command can gate CI.

``--fail-on fail`` (the default) trips on ``fail`` findings, ``warn`` on ``warn`` or
``fail``, ``never`` not at all. Findings a person dismissed do not count.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable

from quantlab.records import Exchange

#: --fail-on choices, strictest first.
FAIL_ON = ("warn", "fail", "never")
SEVERITY_ORDER = ("info", "warn", "fail")
#: The exit status when the gate trips.
GATE_STATUS = 1

#: (lane, detector, severity) -> how many findings.
Counts = Counter[tuple[str, str, str]]


def add_fail_on(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fail-on",
        choices=FAIL_ON,
        default="fail",
        help=f"exit {GATE_STATUS} when a finding this severe or worse is present: fail "
        "(default), warn (warn or fail), never",
    )


def counts_of(exchanges: Iterable[Exchange]) -> Counts:
    """The findings of saved exchanges, dismissed ones left out."""
    counts: Counts = Counter()
    for ex in exchanges:
        for lane, result in ex.results.items():
            for f in result.findings:
                if f.status != "dismissed":
                    counts[(lane, f.detector, f.severity)] += 1
    return counts


def tripped(counts: Counts, fail_on: str) -> Counts:
    """The findings that trip the gate at ``fail_on`` (empty: the gate passes)."""
    if fail_on == "never":
        return Counter()
    floor = SEVERITY_ORDER.index(fail_on)
    return Counter({k: n for k, n in counts.items() if n and SEVERITY_ORDER.index(k[2]) >= floor})


def gate_message(prog: str, hits: Counts, fail_on: str) -> str:
    """One line for stderr: how many findings tripped the gate, per lane and detector."""
    total = sum(hits.values())
    per_lane: dict[str, Counter[str]] = {}
    for (lane, detector, _), n in hits.items():
        per_lane.setdefault(lane, Counter())[detector] += n
    where = "; ".join(
        f"{lane}: " + ", ".join(f"{d} ×{n}" for d, n in sorted(c.items()))
        for lane, c in sorted(per_lane.items())
    )
    level = "fail" if fail_on == "fail" else "warn or fail"
    noun = "finding" if total == 1 else "findings"
    return (
        f"{prog}: {total} {level} {noun} ({where}); exit status {GATE_STATUS} "
        "(--fail-on never ignores them)"
    )
