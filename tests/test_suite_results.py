"""The per-suite aggregates, on hand-built exchanges."""

from __future__ import annotations

import pytest

from quantlab.quantiles import percentile
from quantlab.records import Exchange, Finding, LaneError, LaneResult, SamplingParams, Timing
from quantlab.suite_results import (
    capacity_level,
    capacity_table,
    cases_summary,
    concurrency_comparison,
    first_difference,
    recall_summary,
    recall_table,
)


def _r(lane: str, text: str = "", **timing: float) -> LaneResult:
    return LaneResult(lane=lane, text=text, timing=Timing(**timing))  # type: ignore[arg-type]


def _ex(results: list[LaneResult], **meta: object) -> Exchange:
    ex = Exchange(prompt="p", params=SamplingParams(), results={r.lane: r for r in results})
    ex.meta.update(meta)
    ex.case_id = str(meta.get("case", "c"))
    return ex


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10, 20, 30, 40, 50], 95) == pytest.approx(48.0)


def test_first_difference() -> None:
    assert first_difference("abc", "abc") is None
    assert first_difference("abc", "abd") == 2
    assert first_difference("abc", "abcdef") == 3
    assert first_difference("", "x") == 0


def test_capacity_level_throughput_percentiles_and_cost() -> None:
    results = [
        _r("a", output_tokens=100, ttft_ms=t, tokens_per_s=50.0 + i, e2e_ms=2000.0)
        for i, t in enumerate([100.0, 200.0, 300.0, 400.0])
    ]
    results[0].usage = {"prompt_tokens": 20, "prompt_tokens_details": {"cached_tokens": 0}}
    failed = _r("a")
    failed.error = LaneError("http", "boom", 500)
    row = capacity_level([*results, failed], wall_s=4.0, level=4, gpu_hour_price=3.6)
    assert row["requests"] == 5 and row["ok"] == 4 and row["errors"] == ["http 500: boom"]
    assert row["output_tokens"] == 400 and row["throughput_tok_s"] == 100.0
    assert row["ttft_p50_ms"] == 250.0 and row["ttft_p95_ms"] == pytest.approx(385.0)
    assert row["tokens_per_s_user"] == 51.5
    # $3.60 per hour at 100 tok/s = 360,000 tokens per hour -> $10 per 1M tokens.
    assert row["cost_per_1m_output_usd"] == pytest.approx(10.0)
    assert row["prompt_tokens"] == 20 and row["cached_prompt_tokens"] == 0
    assert capacity_level(results, 4.0, 4)["cost_per_1m_output_usd"] is None


def test_capacity_table_rebuilds_levels_from_exchanges() -> None:
    exs = []
    for level, start in ((1, 100.0), (2, 200.0)):
        for i in range(2):
            ex = _ex([_r("q4", "x", output_tokens=10, ttft_ms=50.0)], lane="q4", concurrency=level)
            ex.started_at = start + i
            ex.wall_ms = 1000.0
            exs.append(ex)
    table = capacity_table(exs, gpu_hour_price=1.0)
    assert [row["concurrency"] for row in table["q4"]] == [1, 2]
    assert table["q4"][0]["wall_s"] == pytest.approx(2.0)
    assert table["q4"][0]["throughput_tok_s"] == pytest.approx(10.0)


def test_concurrency_comparison_pairs_each_lane_with_its_own_baseline() -> None:
    exs = [
        _ex(
            [_r("bf16", "same text", e2e_ms=100.0), _r("q4", "loop loop", e2e_ms=50.0)],
            case="a",
            concurrency=1,
            repetition=0,
        ),
        _ex(
            [_r("bf16", "same text", e2e_ms=300.0), _r("q4", "loop lo0p", e2e_ms=90.0)],
            case="a",
            concurrency=8,
            repetition=0,
        ),
        _ex(
            [_r("bf16", "b", e2e_ms=100.0), _r("q4", "b", e2e_ms=50.0)],
            case="b",
            concurrency=1,
            repetition=0,
        ),
    ]
    out = concurrency_comparison(exs)
    assert out["levels"] == [1, 8] and out["baseline"] == 1
    pairs = {(p["case_id"], p["lane"]): p for p in out["pairs"]}
    assert pairs[("a", "bf16")]["identical"] is True
    assert pairs[("a", "q4")]["first_diff"] == 7
    assert ("b", "bf16") not in pairs  # no level-8 answer to compare with
    assert out["lanes"]["q4"]["compared"] == 1 and out["lanes"]["q4"]["identical"] == 0
    assert out["lanes"]["bf16"]["levels"]["8"]["e2e_p50_ms"] == 300.0
    assert out["lanes"]["bf16"]["levels"]["1"]["answers"] == 2


def test_recall_table_and_summary() -> None:
    facts = [
        {"key": "code", "value": "4417", "depth": 0.1},
        {"key": "name", "value": "Priya Nair", "depth": 0.5},
    ]
    exs = [
        _ex(
            [_r("bf16", "The code is 4,417 and Priya Nair leads."), _r("q4", "The code is 4471.")],
            length_label="1K",
            target_tokens=1000,
            context_tokens=1000,
            facts=facts,
        )
    ]
    rows = recall_table(exs)
    assert rows[0]["lanes"]["bf16"]["recalled"] == 2
    assert rows[0]["lanes"]["q4"]["facts"] == {"code": False, "name": False}
    assert recall_summary(rows) == {"bf16": {"1K": 1.0}, "q4": {"1K": 0.0}}


def test_cases_summary_counts_flagged_and_errors_per_group() -> None:
    bad = _r("q4", "x")
    bad.findings = [Finding("repetition", "q4", "fail", 0.1, "loop")]
    dismissed = _r("q4", "y")
    dismissed.findings = [Finding("format", "q4", "fail", 0.0, "x", status="dismissed")]
    err = _r("q4")
    err.error = LaneError("connect", "refused")
    exs = [
        _ex([_r("bf16", "ok"), bad], group="math"),
        _ex([_r("bf16", "ok"), dismissed], group="math"),
        _ex([_r("bf16", "ok"), err], group="code"),
    ]
    out = cases_summary(exs)
    q4 = out["lanes"]["q4"]
    assert (q4["answers"], q4["flagged"], q4["errors"]) == (3, 1, 1)
    assert q4["groups"]["math"] == {"answers": 2, "flagged": 1, "errors": 0}
    assert out["lanes"]["bf16"]["flagged"] == 0
