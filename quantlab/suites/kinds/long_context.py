"""``long_context``: prompts generated to each of the suite's lengths, with facts hidden
in them; lanes whose context cannot hold a length are skipped (and say why). The result
is the recall table per length and lane."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from quantlab import suite_results
from quantlab.backends import for_endpoint
from quantlab.client import LaneClient
from quantlab.longctx import GeneratorSpec, LongContextError, build_length
from quantlab.records import Case, Exchange
from quantlab.suites.kinds.base import Job, Send, result

if TYPE_CHECKING:
    from quantlab.runner import Row, Runner
    from quantlab.suites import Suite


class LongContext:
    name = "long_context"

    def plan(self, run: Runner, suite: Suite, clients: list[LaneClient]) -> Send:
        try:
            spec: GeneratorSpec | None = GeneratorSpec.from_settings(suite.settings, suite.name)
        except LongContextError as exc:
            run.message(str(exc))
            spec = None
        names = [c.name for c in clients]
        placeholder = {
            i: Case(id=f"ctx-{ln.label}", messages=[], group=ln.label)
            for i, ln in enumerate(spec.lengths if spec else [])
        }
        conc = run.options.concurrency
        rows = {
            (i, rep): run.row(suite, placeholder[i], names, conc, rep)
            for rep in range(run.options.repeat)
            for i in placeholder
        }
        run.add_rows(list(rows.values()))

        async def send() -> None:
            if spec is None:
                return
            bucket: list[Exchange] = []
            jobs, skipped = await self._jobs(run, suite, spec, clients, rows, bucket)
            if jobs is None:
                return
            await run.send_all(jobs, conc)
            run.results[suite.name] = self._result(run, suite, bucket, skipped)

        return send

    async def _jobs(
        self,
        run: Runner,
        suite: Suite,
        spec: GeneratorSpec,
        clients: list[LaneClient],
        rows: dict[tuple[int, int], Row],
        bucket: list[Exchange],
    ) -> tuple[list[Job] | None, list[dict[str, Any]]]:
        """Build each length's prompt (counted by a lane's tokenizer where one can); the
        lengths no lane can hold are marked skipped. None for the jobs when cancelled."""
        jobs: list[Job] = []
        skipped_rows: list[dict[str, Any]] = []
        params = suite.params
        for i, length in enumerate(spec.lengths):
            if run.cancelled:
                return None, skipped_rows
            fits, skipped = fitting(clients, length.tokens, params.max_tokens)
            lane_rows = [rows[(i, rep)] for rep in range(run.options.repeat)]
            if not fits:
                why = "; ".join(skipped.values())
                run.message(f"{suite.name} {length.label}: skipped ({why})")
                for row in lane_rows:
                    _skip_lanes(row, skipped)
                    run.set_row(row, "skipped", why)
                skipped_rows.append(
                    {"label": length.label, "target_tokens": length.tokens, "skipped": skipped}
                )
                continue
            built = await build_length(spec, i, _counter(fits), f"ctx-{length.label}")
            if built.case is None:
                for row in lane_rows:
                    run.set_row(row, "skipped", built.note)
                skipped_rows.append(
                    {
                        "label": length.label,
                        "target_tokens": length.tokens,
                        "skipped": {"*": built.note},
                    }
                )
                continue
            case = built.case
            by_lane = await _verify_counts(fits, case, built)
            note = built.note
            source = "counted by the server" if built.count_source == "server" else note
            run.message(f"{suite.name} {length.label}: {built.tokens} tokens ({source})")
            for rep, row in enumerate(lane_rows):
                _skip_lanes(row, skipped)
                row.note = note
                jobs.append(
                    Job(
                        row=row,
                        case=case,
                        params=params,
                        clients=fits,
                        meta={
                            "concurrency": run.options.concurrency,
                            "repetition": rep,
                            "length_label": length.label,
                            "target_tokens": length.tokens,
                            "context_tokens": built.tokens,
                            "context_tokens_by_lane": by_lane,
                            "count_source": built.count_source,
                            "count_note": note,
                            "facts": [f.to_dict() for f in case.facts],
                            "skipped_lanes": skipped,
                        },
                        bucket=bucket,
                    )
                )
        return jobs, skipped_rows

    def aggregate(self, run: Runner, suite: Suite, exchanges: list[Exchange]) -> dict[str, Any]:
        return self._result(run, suite, exchanges, [])

    def _result(
        self,
        run: Runner,
        suite: Suite,
        exchanges: list[Exchange],
        skipped: list[dict[str, Any]],
    ) -> dict[str, Any]:
        table = suite_results.recall_table(exchanges)
        return result(
            run,
            suite,
            {"rows": table, "skipped": skipped, "summary": suite_results.recall_summary(table)},
        )


def _skip_lanes(row: Row, skipped: dict[str, str]) -> None:
    for lane, reason in skipped.items():
        row.lanes[lane].status = "skipped"
        row.lanes[lane].note = reason


def _counter(clients: Sequence[LaneClient]) -> Callable[[list[dict[str, str]]], Any]:
    """Count with the first lane that can."""

    async def count(messages: list[dict[str, str]]) -> int | None:
        for c in clients:
            n = await c.count_tokens(messages=messages)
            if n is not None:
                return n
        return None

    return count


async def _verify_counts(clients: Sequence[LaneClient], case: Case, built: Any) -> dict[str, Any]:
    """Each lane's own count of the final prompt (lanes may use different tokenizers)."""
    if built.count_source != "server":
        return {}
    counts = await asyncio.gather(*(c.count_tokens(messages=case.messages) for c in clients))
    return {c.name: n for c, n in zip(clients, counts, strict=True)}


KIND = LongContext()


def fitting(
    clients: Sequence[LaneClient], tokens: int, max_tokens: int
) -> tuple[list[LaneClient], dict[str, str]]:
    """Lanes whose context holds ``tokens`` of prompt plus ``max_tokens`` of answer, and why
    the others are skipped. A lane that did not say its context length is tried."""
    fits: list[LaneClient] = []
    skipped: dict[str, str] = {}
    for c in clients:
        ep = c.endpoint
        if ep.status == "down":
            skipped[c.name] = f"{c.name} is down ({ep.status_detail})"
        elif ep.max_context is not None and tokens + max_tokens > ep.max_context:
            note = for_endpoint(ep).context_note(ep)
            skipped[c.name] = (
                f"{c.name}: {tokens} prompt + {max_tokens} answer tokens do not fit its "
                f"{ep.max_context}-token context{note}"
            )
        else:
            fits.append(c)
    return fits, skipped
