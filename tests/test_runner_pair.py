"""The suite runner against the real local pair (BF16 reference, Q4_0 candidate).

Small versions of every suite: few cases, short answers, so the whole file runs in about
a minute on two CPU cores. The Q4_0 lane really loops and misstates at temperature 0: its
findings must reach the session file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from quantlab.records import Endpoint
from quantlab.runner import RunEvent, Runner, RunOptions, RunSummary
from quantlab.session import SessionStore, load_session
from quantlab.suites import Suite, find_suite

pytestmark = pytest.mark.slow


def _copies(endpoints: list[Endpoint]) -> list[Endpoint]:
    """The fixture's endpoints are shared: the runner's discovery must not touch them."""
    return [Endpoint.from_dict(e.to_dict()) for e in endpoints]


def _small(name: str, case_ids: list[str] | None = None, **settings: Any) -> Suite:
    s = find_suite(name)
    cases = [c for c in s.cases if case_ids is None or c.id in case_ids]
    return replace(s, cases=cases, settings={**s.settings, **settings})


async def _run(
    endpoints: list[Endpoint],
    suites: list[Suite],
    path: Path,
    options: RunOptions | None = None,
    on_event: Any = None,
) -> tuple[RunSummary, list[RunEvent]]:
    events: list[RunEvent] = []

    def record(ev: RunEvent) -> None:
        events.append(ev)
        if on_event is not None:
            on_event(ev, runner)

    store = SessionStore.open(path, endpoints=endpoints)
    try:
        runner = Runner(_copies(endpoints), suites, store=store, options=options, on_event=record)
        summary = await runner.run()
    finally:
        store.close()
    return summary, events


async def test_sanity_run_writes_exchanges_findings_and_aggregates(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    suite = _small("sanity", ["json-lisbon", "arith-mul", "fact-gold", "fact-berlin"])
    path = tmp_path / "s.json"
    summary, events = await _run(local_pair, [suite], path)
    assert not summary.cancelled and summary.progress.done == summary.progress.total == 4

    s = load_session(path)
    assert len(s.exchanges) == 4
    for ex in s.exchanges:
        assert ex.source == f"suite:sanity/{ex.case_id}" and ex.suite == "sanity"
        assert set(ex.results) == {"bf16", "q4_0"}
        assert ex.meta["concurrency"] == 1 and ex.meta["repetition"] == 0
        assert ex.meta["run_id"] == summary.run_id and ex.meta["group"]
        assert all(r.ok for r in ex.results.values())
    q4 = {ex.case_id: ex.results["q4_0"] for ex in s.exchanges}
    # The Q4_0 lane loops on the JSON prompt until max_tokens: a repetition failure.
    loop = [f for f in q4["json-lisbon"].findings if f.detector == "repetition"]
    assert loop and loop[0].severity == "fail", q4["json-lisbon"].text
    # It misstates at least one checkable answer, and diverges from the reference.
    wrong = [ex for ex, r in q4.items() if any(f.detector == "expected_answer" for f in r.findings)]
    assert wrong, {k: r.text for k, r in q4.items()}
    assert any(f.detector == "divergence" for r in q4.values() for f in r.findings)
    # The reference lane is never compared with itself.
    for ex in s.exchanges:
        assert not any(f.detector == "divergence" for f in ex.results["bf16"].findings)

    agg = s.meta["results"]["sanity"]
    assert agg["kind"] == "cases" and agg["exchanges"] == 4
    assert agg["lanes"]["q4_0"]["flagged"] >= 2
    run = s.meta["runs"][-1]
    assert run["run_id"] == summary.run_id and run["cancelled"] is False
    assert run["done"] == run["total"] == 4 and run["finished_at"] and run["reference"] == "bf16"

    kinds = [e.kind for e in events]
    assert kinds[0] in ("planned", "message") and kinds[-1] == "finished"
    assert kinds.count("lane") == 8
    planned = next(e for e in events if e.kind == "planned")
    assert len(planned.rows) == 4 and planned.progress.total == 4
    # Each lane is reported before its row completes.
    first_lane = kinds.index("lane")
    first_done = next(i for i, e in enumerate(events) if e.kind == "row" and e.row.status == "done")
    assert first_lane < first_done
    done_events = [e for e in events if e.kind == "row" and e.row.status == "done"]
    assert done_events[-1].progress.done == 4 and done_events[-1].exchange is not None


async def test_long_context_1k_is_exact_by_the_servers_count_and_16k_is_skipped_with_why(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    lengths = [{"label": "1K", "tokens": 1000}, {"label": "16K", "tokens": 16000}]
    suite = _small("long-context", lengths=lengths)
    path = tmp_path / "lc.json"
    summary, events = await _run(local_pair, [suite], path)
    assert summary.progress.total == 2 and summary.progress.skipped == 1

    s = load_session(path)
    assert len(s.exchanges) == 1
    ex = s.exchanges[0]
    assert ex.case_id == "ctx-1K" and ex.meta["length_label"] == "1K"
    assert ex.meta["context_tokens"] == 1000 and ex.meta["count_source"] == "server"
    assert ex.meta["context_tokens_by_lane"] == {"bf16": 1000, "q4_0": 1000}
    for r in ex.results.values():
        # The server saw exactly the length quantlab built.
        assert r.usage and r.usage["prompt_tokens"] == 1000
    assert [f["depth"] for f in ex.meta["facts"]] == sorted(f["depth"] for f in ex.meta["facts"])
    assert len(ex.meta["facts"]) == 3

    agg = s.meta["results"]["long-context"]
    assert agg["kind"] == "long_context"
    row = agg["rows"][0]
    assert row["label"] == "1K" and set(row["lanes"]) == {"bf16", "q4_0"}
    for lane in ("bf16", "q4_0"):
        assert row["lanes"][lane]["total"] == 3
        assert agg["summary"][lane]["1K"] == row["lanes"][lane]["share"]
    skipped = agg["skipped"]
    assert [x["label"] for x in skipped] == ["16K"]
    reason = skipped[0]["skipped"]["q4_0"]
    assert "16000 prompt + 96 answer tokens do not fit its 8192-token context" in reason
    messages = [e.message for e in events if e.kind == "message"]
    assert any("16K: skipped" in m for m in messages)
    assert any("1K: 1000 tokens (counted by the server)" in m for m in messages)


async def test_concurrency_suite_compares_each_lane_between_levels(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    suite = _small("concurrency", ["conc-bicycle", "conc-tides", "conc-volcano"], levels=[1, 3])
    suite = replace(suite, params=replace(suite.params, max_tokens=32))
    path = tmp_path / "c.json"
    summary, _ = await _run(local_pair, [suite], path)
    assert summary.progress.done == 6

    s = load_session(path)
    assert sorted(ex.meta["concurrency"] for ex in s.exchanges) == [1, 1, 1, 3, 3, 3]
    # The kind is stored, not guessed: on every exchange and in the run record.
    assert {ex.meta["suite_kind"] for ex in s.exchanges} == {"concurrency"}
    assert s.meta["runs"][-1]["kinds"] == {"concurrency": "concurrency"}
    agg = s.meta["results"]["concurrency"]
    assert agg["levels"] == [1, 3] and agg["baseline"] == 1
    assert len(agg["pairs"]) == 6  # 3 cases x 2 lanes
    for p in agg["pairs"]:
        assert p["level"] == 3
        assert p["identical"] == (p["first_diff"] is None)
        assert set(p["exchange_ids"]) == {"1", "3"}
    for lane in ("bf16", "q4_0"):
        lv = agg["lanes"][lane]
        assert lv["compared"] == 3
        assert lv["levels"]["1"]["e2e_p50_ms"] > 0 and lv["levels"]["3"]["e2e_p50_ms"] > 0


async def test_capacity_ramp_is_cold_per_lane_and_priced(
    local_pair: list[Endpoint], tmp_path: Path
) -> None:
    suite = _small(
        "capacity", ["cap-garden", "cap-rivers"], levels=[1, 2], rounds=1, min_requests=2
    )
    suite = replace(suite, params=replace(suite.params, max_tokens=8))
    path = tmp_path / "cap.json"
    summary, _ = await _run(local_pair, [suite], path, RunOptions(gpu_hour_price=2.0))
    assert summary.progress.done == 8  # 2 lanes x (2 + 2) requests

    s = load_session(path)
    for ex in s.exchanges:
        assert list(ex.results) == [ex.meta["lane"]], "each lane is measured alone"
        assert ex.messages[ex.meta["lane"]][0]["content"].startswith("Request ")
    prefixes = {ex.messages[ex.meta["lane"]][0]["content"].split(".")[0] for ex in s.exchanges}
    assert len(prefixes) == 8, "every request starts differently"
    agg = s.meta["results"]["capacity"]
    assert agg["gpu_hour_price"] == 2.0
    for lane in ("bf16", "q4_0"):
        assert "cache_prompt=false" in agg["ttft_mode"][lane]
        rows = agg["lanes"][lane]
        assert [r["concurrency"] for r in rows] == [1, 2]
        for r in rows:
            assert r["ok"] == r["requests"] == 2
            assert r["cached_prompt_tokens"] == 0, "TTFT was measured cold"
            assert r["throughput_tok_s"] > 0 and r["ttft_p95_ms"] >= r["ttft_p50_ms"] > 0
            expected = 2.0 / (r["throughput_tok_s"] * 3600) * 1e6
            assert r["cost_per_1m_output_usd"] == pytest.approx(expected, rel=1e-3)


async def test_distribution_groups_are_kept(local_pair: list[Endpoint], tmp_path: Path) -> None:
    suite = _small("distribution", ["chat-budget-teen", "math-power", "code-len"])
    suite = replace(suite, params=replace(suite.params, max_tokens=48))
    path = tmp_path / "d.json"
    await _run(local_pair, [suite], path, RunOptions(concurrency=3))
    s = load_session(path)
    assert {ex.meta["group"] for ex in s.exchanges} == {"calibration", "ood:math", "ood:code"}
    assert all(ex.meta["concurrency"] == 3 for ex in s.exchanges)
    groups = s.meta["results"]["distribution"]["lanes"]["q4_0"]["groups"]
    assert set(groups) == {"calibration", "ood:math", "ood:code"}


async def test_cancel_keeps_what_finished(local_pair: list[Endpoint], tmp_path: Path) -> None:
    suite = find_suite("sanity")

    def stop_after_two(ev: RunEvent, runner: Runner) -> None:
        done = ev.kind == "row" and ev.row is not None and ev.row.status == "done"
        if done and ev.progress.done >= 2:
            runner.cancel()

    path = tmp_path / "x.json"
    summary, events = await _run(local_pair, [suite], path, on_event=stop_after_two)
    assert summary.cancelled
    s = load_session(path)
    assert 2 <= len(s.exchanges) < len(suite.cases)
    assert len(s.exchanges) == len(summary.exchanges)
    assert all(set(ex.results) == {"bf16", "q4_0"} for ex in s.exchanges)
    run = s.meta["runs"][-1]
    assert run["cancelled"] is True and run["finished_at"] and run["total"] == len(suite.cases)
    agg = s.meta["results"]["sanity"]
    assert agg["partial"] is True and agg["exchanges"] == len(s.exchanges)
    assert any(e.kind == "row" and e.row.status == "cancelled" for e in events)
    assert events[-1].kind == "finished" and events[-1].message == "cancelled"
