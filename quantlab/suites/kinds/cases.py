"""``cases``: every case to every lane (``--concurrency`` in flight, ``--repeat`` times);
the result counts judged, failed and errored answers per lane and case group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quantlab import suite_results
from quantlab.client import LaneClient
from quantlab.records import Exchange
from quantlab.suites.kinds.base import Send, case_jobs, result

if TYPE_CHECKING:
    from quantlab.runner import Runner
    from quantlab.suites import Suite


class Cases:
    name = "cases"

    def plan(self, run: Runner, suite: Suite, clients: list[LaneClient]) -> Send:
        bucket: list[Exchange] = []
        jobs = case_jobs(run, suite, clients, run.options.concurrency, bucket)
        run.add_rows([j.row for j in jobs])

        async def send() -> None:
            await run.send_all(jobs, run.options.concurrency)
            run.results[suite.name] = self.aggregate(run, suite, bucket)

        return send

    def aggregate(self, run: Runner, suite: Suite, exchanges: list[Exchange]) -> dict[str, Any]:
        return result(run, suite, suite_results.cases_summary(exchanges))


KIND = Cases()
