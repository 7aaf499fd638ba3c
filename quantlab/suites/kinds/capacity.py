"""``capacity``: one lane at a time, cold-cache requests at each of the suite's ``levels``
in flight; the result is each lane's throughput and latency per level (and cost, with a
GPU-hour price). A long ramp is written to the session level by level."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from quantlab import suite_results
from quantlab.backends import for_endpoint
from quantlab.client import LaneClient
from quantlab.records import Case, Endpoint, Exchange
from quantlab.suites.kinds.base import Job, Send, levels, result

if TYPE_CHECKING:
    from quantlab.runner import Runner
    from quantlab.suites import Suite


class Capacity:
    name = "capacity"

    def plan(self, run: Runner, suite: Suite, clients: list[LaneClient]) -> Send:
        st = suite.settings
        at = levels(st.get("levels"), [1, 2, 4, 8, 16])
        rounds = int(st.get("rounds", 2))
        min_requests = int(st.get("min_requests", 4))
        plan: list[tuple[LaneClient, int, list[Job]]] = []
        templates = suite.cases
        counter = 0
        for client in clients:
            for level in at:
                jobs = []
                for i in range(max(level * rounds, min_requests)):
                    tmpl = templates[counter % len(templates)]
                    counter += 1
                    uid = f"{run.run_id}-{client.name}-{level}-{i}"
                    case, extra, mode = cold_case(tmpl, uid, client.endpoint)
                    jobs.append(
                        Job(
                            row=run.row(suite, tmpl, [client.name], level, i, f"@{client.name}"),
                            case=case,
                            # one lane at a time: no agreement to compute, and
                            # logprobs would cost the servers time being measured
                            params=replace(suite.case_params(tmpl), top_logprobs=None),
                            clients=[client],
                            meta={
                                "concurrency": level,
                                "repetition": 0,
                                "request": i,
                                "lane": client.name,
                                "ttft_mode": mode,
                            },
                            extra_body=extra,
                        )
                    )
                plan.append((client, level, jobs))
                run.add_rows([j.row for j in jobs])
        if run.options.concurrency != 1:
            run.message(f"{suite.name}: uses its own levels {at}; --concurrency ignored")

        async def send() -> None:
            table: dict[str, list[dict[str, Any]]] = {}
            modes: dict[str, str] = {}
            for client, level, jobs in plan:
                if run.cancelled:
                    break
                run.message(
                    f"{suite.name}: {client.name} at {level} in flight ({len(jobs)} requests)"
                )
                bucket: list[Exchange] = []
                for j in jobs:
                    j.bucket = bucket
                t0 = time.perf_counter()
                await run.send_all(jobs, level)
                wall = time.perf_counter() - t0
                if not bucket:
                    continue
                results = [ex.results[client.name] for ex in bucket]
                row = suite_results.capacity_level(results, wall, level, run.options.gpu_hour_price)
                table.setdefault(client.name, []).append(row)
                modes[client.name] = jobs[0].meta["ttft_mode"]
                run.results[suite.name] = self._result(run, suite, table, modes)
                # A long ramp shows up in the session level by level.
                await run.write_results(suite, final=False)

        return send

    def aggregate(self, run: Runner, suite: Suite, exchanges: list[Exchange]) -> dict[str, Any]:
        table = suite_results.capacity_table(exchanges, run.options.gpu_hour_price)
        modes = {ex.meta.get("lane", ""): ex.meta.get("ttft_mode", "") for ex in exchanges}
        return self._result(run, suite, table, modes)

    def _result(
        self,
        run: Runner,
        suite: Suite,
        table: dict[str, list[dict[str, Any]]],
        modes: dict[str, str],
    ) -> dict[str, Any]:
        return result(
            run,
            suite,
            {
                "gpu_hour_price": run.options.gpu_hour_price,
                "max_tokens": suite.params.max_tokens,
                "ttft_mode": modes,
                "lanes": table,
            },
        )


KIND = Capacity()


def cold_case(tmpl: Case, uid: str, ep: Endpoint) -> tuple[Case, dict[str, Any] | None, str]:
    """A copy of ``tmpl`` no server can answer from its prefix cache, and what made it so.

    The request id goes first in the first message, so not even the system prompt's
    tokens are shared between requests; the backend adds its own cache-busting fields
    (vLLM a per-request ``cache_salt``, llama.cpp ``cache_prompt: false``).
    """
    msgs = [dict(m) for m in tmpl.messages]
    tag = f"Request {uid}."
    if msgs[0]["role"] == "system":
        msgs[0]["content"] = f"{tag} {msgs[0]['content']}"
    else:
        msgs.insert(0, {"role": "system", "content": tag})
    case = replace(tmpl, messages=msgs)
    mode = "cold: unique prefix per request"
    extra, words = for_endpoint(ep).cold_cache_fields(uid)
    if words:
        mode += f" + {words}"
    return case, extra, mode
