"""``concurrency``: the cases at each of the suite's ``levels`` in flight; the result
compares each lane between the levels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quantlab import suite_results
from quantlab.client import LaneClient
from quantlab.records import Exchange
from quantlab.suites.kinds.base import Job, Send, case_jobs, levels, result

if TYPE_CHECKING:
    from quantlab.runner import Runner
    from quantlab.suites import Suite


class Concurrency:
    name = "concurrency"

    def plan(self, run: Runner, suite: Suite, clients: list[LaneClient]) -> Send:
        at = levels(suite.settings.get("levels"), [1, 8])
        bucket: list[Exchange] = []
        per_level: list[tuple[int, list[Job]]] = []
        for level in at:
            jobs = case_jobs(run, suite, clients, level, bucket)
            per_level.append((level, jobs))
            run.add_rows([j.row for j in jobs])
        if run.options.concurrency != 1:
            run.message(f"{suite.name}: uses its own levels {at}; --concurrency ignored")

        async def send() -> None:
            for level, jobs in per_level:
                if run.cancelled:
                    return
                run.message(f"{suite.name}: {len(jobs)} exchanges at concurrency {level}")
                await run.send_all(jobs, level)
            run.results[suite.name] = self.aggregate(run, suite, bucket)

        return send

    def aggregate(self, run: Runner, suite: Suite, exchanges: list[Exchange]) -> dict[str, Any]:
        return result(run, suite, suite_results.concurrency_comparison(exchanges))


KIND = Concurrency()
