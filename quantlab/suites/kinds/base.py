"""What every suite kind is: it plans a suite's exchanges, aggregates them, and says what
the run's result for the suite holds. The runner calls these and never the kind string.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from quantlab.client import LaneClient
from quantlab.records import Case, Exchange, SamplingParams

if TYPE_CHECKING:
    from quantlab.runner import Row, Runner
    from quantlab.suites import Suite

#: Sends a planned suite's exchanges and records its result in ``runner.results``.
Send = Callable[[], Awaitable[None]]


@dataclass
class Job:
    """A planned exchange: a case, the lanes it goes to, and its row."""

    row: Row
    case: Case
    params: SamplingParams
    clients: list[LaneClient]
    meta: dict[str, Any]
    extra_body: dict[str, Any] | None = None
    bucket: list[Exchange] | None = None


class SuiteKind(Protocol):
    """One kind of suite (cases, concurrency, capacity, long_context)."""

    name: str

    def plan(self, run: Runner, suite: Suite, clients: list[LaneClient]) -> Send:
        """Add the suite's rows to the run now (so the total is known early); return what
        sends them."""
        ...

    def aggregate(self, run: Runner, suite: Suite, exchanges: list[Exchange]) -> dict[str, Any]:
        """The suite's result from exchanges already sent (a cancelled run's partial one)."""
        ...


def result(run: Runner, suite: Suite, body: dict[str, Any]) -> dict[str, Any]:
    """A suite's result as the session stores it: its kind and run, then the kind's body."""
    return {"kind": suite.kind, "run_id": run.run_id, **body}


def levels(raw: Any, default: list[int]) -> list[int]:
    """A suite's ``levels`` setting: distinct whole numbers >= 1, sorted; else ``default``."""
    if not isinstance(raw, list) or not raw:
        return default
    out = sorted({int(x) for x in raw if isinstance(x, int) and x >= 1})
    return out or default


def case_jobs(
    run: Runner,
    suite: Suite,
    clients: list[LaneClient],
    level: int,
    bucket: list[Exchange],
) -> list[Job]:
    """One job per case and repetition, at ``level`` exchanges in flight."""
    names: Sequence[str] = [c.name for c in clients]
    return [
        Job(
            row=run.row(suite, case, names, level, rep),
            case=case,
            params=suite.case_params(case),
            clients=clients,
            meta={"concurrency": level, "repetition": rep},
            bucket=bucket,
        )
        for rep in range(run.options.repeat)
        for case in suite.cases
    ]
