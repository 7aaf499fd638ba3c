"""Agreement in reports: per-suite and overall figures, bootstrap over cases, rendering."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_sessions import CAND, REF, build_full

from quantlab.agreement.compare import Agreement
from quantlab.agreement.summary import summarize
from quantlab.records import Exchange, LaneResult, SamplingParams
from quantlab.reports import brief, md
from quantlab.reports.agreement import agreement_md
from quantlab.reports.analysis import analyze
from quantlab.session import load_session


def _ex(suite: str | None, kl: list[float], top1: list[bool], method: str) -> Exchange:
    ag = Agreement(method, REF, 20, kl=kl, top1=top1, ref_rank=[1] * len(kl))
    ex = Exchange(prompt="p", params=SamplingParams(), suite=suite)
    ex.results = {REF: LaneResult(REF), CAND: LaneResult(CAND, agreement=ag.to_dict())}
    return ex


EXCHANGES = [
    _ex("sanity", [0.0, 0.2], [True, False], "shared-prefix"),
    _ex("sanity", [0.1, 0.1, 0.1, 0.1], [True] * 4, "shared-prefix"),
    _ex("sanity", [0.4], [False], "teacher-forced"),
    _ex(None, [0.05, 0.05], [True, True], "shared-prefix"),
]


def test_summary_pools_tokens_and_bootstraps_over_cases() -> None:
    s = summarize(EXCHANGES, resamples=500)
    rows = {(r["lane"], r["suite"]): r for r in s["rows"]}
    assert set(rows) == {(CAND, "sanity"), (CAND, "chat"), (CAND, "overall")}
    san = rows[(CAND, "sanity")]
    assert san["cases"] == 3 and san["tokens"] == 7
    assert san["mean_kl"] == pytest.approx(1.0 / 7, abs=1e-6)  # (0.2 + 0.4 + 0.4) / 7
    assert san["top1"] == pytest.approx(5 / 7, abs=1e-6)
    assert san["methods"] == {"shared-prefix": 2, "teacher-forced": 1}
    lo, hi = san["ci"]["mean_kl"]
    assert lo <= san["mean_kl"] <= hi and lo < hi
    assert rows[(CAND, "chat")]["ci"]["mean_kl"] is None  # one case: no interval
    ov = rows[(CAND, "overall")]
    assert ov["tokens"] == 9 and ov["mean_kl"] == pytest.approx(1.1 / 9, abs=1e-6)
    # same seed, same intervals
    assert summarize(EXCHANGES, resamples=500)["rows"] == s["rows"]


def test_section_renders_and_is_absent_without_agreement() -> None:
    lines = agreement_md(summarize(EXCHANGES, resamples=200))
    assert lines[0] == "## Token-level agreement with the reference"
    row = next(x for x in lines if x.startswith("| sanity |"))
    assert "| 3 | 7 |" in row and "0.1429 [" in row and "71.4 [" in row
    plain = [_ex("s", [], [], "shared-prefix")]
    plain[0].results[CAND].agreement = None
    assert agreement_md(summarize(plain)) == []


def test_full_report_and_brief_show_agreement(tmp_path: Path) -> None:
    session = load_session(build_full(tmp_path / "full.json"))
    before = md.render(analyze(session))
    assert "Token-level agreement" not in before  # an older session: no such section
    for i, ex in enumerate(session.exchanges):
        if CAND in ex.results and ex.results[CAND].ok:
            ag = Agreement("shared-prefix", REF, 20, kl=[0.01 * (i % 5)] * 10, top1=[True] * 10)
            ex.results[CAND].agreement = ag.to_dict()
    a = analyze(session)
    text = md.render(a)
    assert "## Token-level agreement with the reference" in text
    assert "| overall | awq |" in text
    assert "Token-level agreement (shared-prefix): KL 0.0" in brief.render(a)
