"""Suite kinds as types: one module per kind plans, aggregates and summarises its suites.

``KINDS`` maps the kind a suite file names to its :class:`SuiteKind`; the runner looks the
kind up here once and calls it, so adding a kind is one module and one line below.
"""

from __future__ import annotations

from quantlab.suites.kinds import capacity, cases, concurrency, long_context
from quantlab.suites.kinds.base import Job, Send, SuiteKind

KINDS: dict[str, SuiteKind] = {
    k.name: k for k in (cases.KIND, concurrency.KIND, capacity.KIND, long_context.KIND)
}


def kind_of(name: str) -> SuiteKind:
    """The kind named ``name`` (a suite file's ``kind``, checked when the suite is read)."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown suite kind {name!r}; one of {', '.join(KINDS)}") from None


__all__ = ["KINDS", "Job", "Send", "SuiteKind", "kind_of"]
